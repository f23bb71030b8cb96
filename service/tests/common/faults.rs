//! Fault injection for the integration tests: a private Redis server that can be killed
//! and restarted, and a TCP proxy in front of PostgreSQL that can be cut and restored,
//! so "the dependency went away" can be staged without disturbing the shared servers the
//! other tests use.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A Redis server of this test's own (the shared one serves the other tests), run under
/// a watchdog that kills it as soon as the test process is gone, however that ended (a
/// panic, `std::process::exit`, SIGKILL): the `bash` wrapper checks every half second
/// that its parent is still the test process (see `faceid_e2e::Guarded` for the same
/// guard around the e2e suites' processes).
pub struct OwnRedis {
    pub port: u16,
    /// The watchdog and the server's pid.
    child: Option<(Child, u32)>,
}

/// The watchdog: `$1` is the parent's pid, the rest the command (its stdout discarded);
/// prints the command's pid, kills it when the parent is gone.
const WATCHDOG: &str = r#"
parent=$1
shift
"$@" >/dev/null & child=$!
echo "$child"
alive() {
    local _pid _comm _state ppid _rest
    read -r _pid _comm _state ppid _rest < /proc/$$/stat || return 1
    [ "$ppid" = "$parent" ] && kill -0 "$child" 2>/dev/null
}
while alive; do sleep 0.5; done
kill -9 "$child" 2>/dev/null
wait "$child"
"#;

impl OwnRedis {
    /// A free port for a Redis server.
    pub fn free_port() -> u16 {
        free_port()
    }

    /// Starts `redis-server` on `port` (loopback, no persistence) and waits until it
    /// accepts connections.
    pub fn start(port: u16) -> OwnRedis {
        let mut child = Command::new("bash")
            .args(["-c", WATCHDOG, "redis-watchdog"])
            .arg(std::process::id().to_string())
            .args([
                "redis-server",
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("bash and redis-server (installed by scripts/platform.sh)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("piped stdout")),
            &mut line,
        )
        .expect("the watchdog prints the server's pid");
        let pid: u32 = line.trim().parse().expect("a pid");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnRedis {
            port,
            child: Some((child, pid)),
        }
    }

    /// The `redis://` URL of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to the clients).
    pub fn stop(&mut self) {
        if let Some((mut watchdog, pid)) = self.child.take() {
            if matches!(watchdog.try_wait(), Ok(None)) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = watchdog.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy in front of PostgreSQL that the test can cut and restore, so "the
/// database went away" can be staged without stopping the database the other tests use.
pub struct Cuttable {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl Cuttable {
    /// A proxy on a free loopback port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Cuttable {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
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

    /// A proxy in front of the server of `database_url`, and the URL that goes through it.
    pub async fn in_front_of(database_url: &str) -> (Cuttable, String) {
        let parsed = url::Url::parse(database_url).expect("DATABASE_URL");
        let target: SocketAddr = format!(
            "{}:{}",
            parsed.host_str().expect("host"),
            parsed.port().unwrap_or(5432)
        )
        .parse()
        .expect("DATABASE_URL host must be an IP address");
        let proxy = Cuttable::start(target).await;
        let mut proxied = parsed.clone();
        proxied.set_port(Some(proxy.addr.port())).expect("port");
        (proxy, proxied.to_string())
    }

    /// Cuts every open connection and refuses new ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
