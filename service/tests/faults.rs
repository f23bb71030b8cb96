//! Dependencies that go away: Redis stopped mid-test, PostgreSQL unreachable. The
//! service answers 503 (or its documented fallback), never 500, and recovers without a
//! restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Tenant, face, required_env};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const IP: &str = "203.0.113.5";

/// A Redis server of this test's own (the shared one serves the other tests).
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed by scripts/platform.sh");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnRedis {
            port,
            child: Some(child),
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn redis_going_away_fails_closed_for_login_and_recovers() {
    let port = OwnRedis::free_port();
    let mut redis = OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}/0");
    let t = Tenant::new(&["--redis-url", &url]).await;
    let reg = t
        .register("chavez", &face("genuine/hugo_chavez_1.jpg"), IP)
        .await;
    reg.expect(201);
    t.get("/ready", None).await.expect(200);

    redis.stop();
    // Login and registration fail closed (the documented default) with 503, not 500.
    let login = t.login(&face("genuine/hugo_chavez_2.jpg"), None, IP).await;
    login.expect_error(503, "service_unavailable");
    assert!(login.headers.contains_key("retry-after"));
    t.register("other", &face("genuine/kit_harington_1.jpg"), IP)
        .await
        .expect_error(503, "service_unavailable");
    // Other endpoints stay open.
    t.get("/api/v1/auth/me", Some(&reg.access_token()))
        .await
        .expect(200);
    let ready = t.get("/ready", None).await;
    ready.expect(503);
    assert!(
        ready.json["checks"]["redis"]
            .as_str()
            .unwrap()
            .starts_with("unreachable"),
        "{}",
        ready.text
    );

    // Back again: the same process recovers.
    let _redis = OwnRedis::start(redis.port);
    let mut recovered = false;
    for _ in 0..50 {
        if t.get("/ready", None).await.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "service did not see Redis come back");
    t.login(&face("genuine/hugo_chavez_2.jpg"), None, IP)
        .await
        .expect(200);
}

#[tokio::test]
async fn redis_failure_policy_open_lets_logins_through() {
    let port = OwnRedis::free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    // Nothing listens there: Redis is down from the start.
    let t = Tenant::new(&["--redis-url", &url, "--rate-limit-redis-failure", "open"]).await;
    t.register("putin", &face("genuine/vladimir_putin_1.jpg"), IP)
        .await
        .expect(201);
    t.login(&face("genuine/vladimir_putin_2.jpg"), None, IP)
        .await
        .expect(200);
}

/// A TCP proxy in front of PostgreSQL that the test can cut and restore, so "the
/// database went away" can be staged without stopping the database the other tests use.
struct Cuttable {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl Cuttable {
    async fn start(target: SocketAddr) -> Cuttable {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    break;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        Cuttable { addr, up, cut }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn ready_turns_503_while_postgres_is_unreachable_and_back_without_restart() {
    let url = required_env("DATABASE_URL");
    let parsed = url::Url::parse(&url).unwrap();
    let target: SocketAddr = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    )
    .parse()
    .unwrap();
    let proxy = Cuttable::start(target).await;
    let mut proxied = parsed.clone();
    proxied.set_port(Some(proxy.addr.port())).unwrap();

    let schema = common::unique_schema("t");
    let t = Tenant::with_schema_and_url(&schema, proxied.as_str(), &[]).await;
    t.get("/ready", None).await.expect(200);
    let reg = t
        .register("powell", &face("genuine/colin_powell_1.jpg"), IP)
        .await;
    reg.expect(201);

    proxy.down();
    let ready = t.get("/ready", None).await;
    ready.expect(503);
    assert!(
        ready.json["checks"]["postgresql"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{}",
        ready.text
    );
    // API calls needing the database answer 503, not 500, and promptly.
    let started = std::time::Instant::now();
    t.login(&face("genuine/colin_powell_2.jpg"), None, IP)
        .await
        .expect_error(503, "service_unavailable");
    t.get("/api/v1/auth/me", Some(&reg.access_token()))
        .await
        .expect_error(503, "service_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );

    proxy.restore();
    let mut recovered = false;
    for _ in 0..100 {
        if t.get("/ready", None).await.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "service did not see PostgreSQL come back");
    t.login(&face("genuine/colin_powell_2.jpg"), None, IP)
        .await
        .expect(200);
}
