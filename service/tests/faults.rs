//! Dependencies that go away: Redis stopped mid-test, PostgreSQL unreachable. The
//! service answers 503 (or its documented fallback), never 500, and recovers without a
//! restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

mod common;

use std::time::Duration;

use common::faults::{Cuttable, OwnRedis};
use common::{Tenant, face, required_env};

const IP: &str = "203.0.113.5";

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
    // Anonymous callers learn what is down, not why; the admin reads the error.
    let ready = t.get("/ready", None).await;
    ready.expect(503);
    assert_eq!(ready.json["checks"]["redis"], "down", "{}", ready.text);
    let ready = t.admin_get("/ready").await;
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

#[tokio::test]
async fn ready_turns_503_while_postgres_is_unreachable_and_back_without_restart() {
    let (proxy, proxied) = Cuttable::in_front_of(&required_env("DATABASE_URL")).await;
    let schema = common::unique_schema("t");
    let t = Tenant::with_schema_and_url(&schema, &proxied, &[]).await;
    t.get("/ready", None).await.expect(200);
    let reg = t
        .register("powell", &face("genuine/colin_powell_1.jpg"), IP)
        .await;
    reg.expect(201);

    proxy.down();
    let ready = t.get("/ready", None).await;
    ready.expect(503);
    assert_eq!(ready.json["checks"]["postgresql"], "down", "{}", ready.text);
    let ready = t.admin_get("/ready").await;
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
