//! The HTTP API against real PostgreSQL + pgvector, Redis and the real face engine,
//! with real photos from `testdata/faces`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

mod common;

use axum::body::Body;
use axum::http::{Request, header};
use common::{Multipart, Tenant, face};
use serde_json::json;

const IP: &str = "192.0.2.10";

#[tokio::test]
async fn register_then_log_in_with_a_different_photo() {
    let t = Tenant::new(&[]).await;
    let reg = t
        .register("gwbush", &face("genuine/george_w_bush_1.jpg"), IP)
        .await;
    reg.expect(201);
    assert_eq!(reg.json["user"]["username"], "gwbush");
    assert_eq!(reg.json["token_type"], "bearer");
    assert!(
        reg.json["liveness_score"].as_f64().is_some(),
        "{}",
        reg.text
    );
    let user = reg.user_id();

    // 1:N with another photo of the same person.
    let login = t
        .login(&face("genuine/george_w_bush_3.jpg"), None, IP)
        .await;
    login.expect(200);
    assert_eq!(login.user_id(), user);
    let confidence = login.json["confidence_score"].as_f64().unwrap();
    assert!((0.4..=1.0).contains(&confidence), "confidence {confidence}");
    assert!(login.json["liveness_score"].as_f64().is_some());

    // 1:1 with the username.
    t.login(&face("genuine/george_w_bush_3.jpg"), Some("GWBush"), IP)
        .await
        .expect(200);

    // The access token reaches /me.
    let me = t.get("/api/v1/auth/me", Some(&login.access_token())).await;
    me.expect(200);
    assert_eq!(me.json["id"], user);

    // The fraud record and the embedding were stored in this tenant's schema only.
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM face_embeddings").await,
        1
    );
}

#[tokio::test]
async fn unknown_faces_and_wrong_accounts_are_not_recognised() {
    let t = Tenant::new(&[]).await;
    t.register("powell", &face("genuine/colin_powell_1.jpg"), IP)
        .await
        .expect(201);
    // Someone never enrolled.
    t.login(&face("genuine/tony_blair_1.jpg"), None, IP)
        .await
        .expect_error(401, "face_not_recognized");
    // An enrolled account, but not this face (1:1).
    t.login(&face("genuine/tony_blair_2.jpg"), Some("powell"), IP)
        .await
        .expect_error(401, "face_not_recognized");
    // An account that does not exist answers the same (no user enumeration).
    t.login(&face("genuine/colin_powell_2.jpg"), Some("nobody"), IP)
        .await
        .expect_error(401, "face_not_recognized");
    let recorded = t
        .scalar_i64("SELECT count(*) FROM failed_login_attempts WHERE reason = 'no_match'")
        .await;
    assert_eq!(recorded, 3);
}

#[tokio::test]
async fn registration_input_is_validated() {
    let t = Tenant::new(&[]).await;
    let photo = face("genuine/hugo_chavez_1.jpg");
    // Missing fields.
    let r = Multipart::new()
        .text("username", "hugo")
        .file("face_image", "a.jpg", &photo)
        .request("/api/v1/auth/register");
    t.send(r, IP).await.expect_error(422, "validation_error");
    let r = Multipart::new()
        .text("username", "hugo")
        .text("email", "hugo@example.com")
        .text("password", "correct horse")
        .request("/api/v1/auth/register");
    t.send(r, IP).await.expect_error(422, "validation_error");
    // Hostile and malformed values.
    for (username, email) in [
        ("robert'); DROP TABLE users;--", "r@example.com"),
        ("hugo", "not-an-email"),
        ("h", "h@example.com"),
        ("ünïcödé", "u@example.com"),
    ] {
        t.register_with(username, email, "correct horse", &photo)
            .await
            .expect_error(422, "validation_error");
    }
    // A repeated field.
    let r = Multipart::new()
        .text("username", "hugo")
        .text("username", "hugo2")
        .text("email", "hugo@example.com")
        .text("password", "correct horse")
        .file("face_image", "a.jpg", &photo)
        .request("/api/v1/auth/register");
    t.send(r, IP).await.expect_error(422, "validation_error");
    // Not multipart at all.
    let r = Request::post("/api/v1/auth/register")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    t.send(r, IP)
        .await
        .expect_error(415, "unsupported_media_type");
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM users").await,
        0,
        "nothing stored"
    );
}

#[tokio::test]
async fn duplicate_usernames_and_emails_are_refused() {
    let t = Tenant::new(&[]).await;
    t.register("chirac", &face("genuine/jacques_chirac_1.jpg"), IP)
        .await
        .expect(201);
    t.register("CHIRAC", &face("genuine/jacques_chirac_2.jpg"), IP)
        .await
        .expect_error(400, "user_exists");
    t.register_with(
        "other",
        "Chirac@Example.com",
        "correct horse",
        &face("genuine/jacques_chirac_2.jpg"),
    )
    .await
    .expect_error(400, "user_exists");
    assert_eq!(t.scalar_i64("SELECT count(*) FROM users").await, 1);
}

#[tokio::test]
async fn images_without_one_usable_face_are_refused_cleanly() {
    let t = Tenant::new(&[]).await;
    t.register("noface", &face("noface/street_cars.jpg"), IP)
        .await
        .expect_error(400, "no_face");
    t.register("group", &face("multiface/group_3faces_a.jpg"), IP)
        .await
        .expect_error(400, "multiple_faces");
    for bad in [
        "bad/empty.jpg",
        "bad/text_renamed.jpg",
        "bad/truncated_half.jpg",
        "bad/face_gif.gif",
        "bad/tiny_1x1.png",
        "bad/huge_12000x12000.png",
    ] {
        let reply = t.register("badimage", &face(bad), IP).await;
        if bad == "bad/empty.jpg" {
            // An empty upload is a missing image.
            reply.expect_error(422, "validation_error");
        } else {
            assert_eq!(reply.status.as_u16(), 400, "{bad}: {}", reply.text);
            assert!(
                reply.json["error"]["code"].is_string(),
                "{bad}: {}",
                reply.text
            );
        }
    }
    assert_eq!(t.scalar_i64("SELECT count(*) FROM users").await, 0);
}

#[tokio::test]
async fn oversized_uploads_are_refused_before_reading() {
    let t = Tenant::new(&["--max-upload-bytes", "100000"]).await;
    let big = vec![0u8; 200_000];
    t.register("big", &big, IP)
        .await
        .expect_error(413, "payload_too_large");
}

const OWNER_IP: &str = "203.0.113.5";

#[tokio::test]
async fn repeated_failures_lock_the_client_out_not_the_owner() {
    let t = Tenant::new(&["--max-failed-login-attempts", "3", "--lockout-minutes", "5"]).await;
    t.register("rumsfeld", &face("genuine/donald_rumsfeld_1.jpg"), OWNER_IP)
        .await
        .expect(201);
    // Three failed 1:1 attempts with someone else's face, from one client...
    for _ in 0..3 {
        t.login(&face("genuine/vladimir_putin_1.jpg"), Some("rumsfeld"), IP)
            .await
            .expect_error(401, "face_not_recognized");
    }
    // ...lock that client out of the account: even the right face is refused from there,
    // by 1:N and by 1:1 alike, with the same answer as a locked account.
    let locked = t
        .login(&face("genuine/donald_rumsfeld_2.jpg"), None, IP)
        .await;
    locked.expect_error(423, "account_locked");
    let retry: u64 = locked.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "Retry-After {retry}");
    t.login(&face("genuine/donald_rumsfeld_2.jpg"), Some("rumsfeld"), IP)
        .await
        .expect_error(423, "account_locked");
    // Attempts during the lockout did no face work and wrote nothing (3 rows, not 5).
    let attempts = t.admin_get("/api/v1/admin/failed-attempts?hours=1").await;
    attempts.expect(200);
    assert_eq!(attempts.json["total"], 3, "{}", attempts.text);
    let suspicious = t
        .admin_get("/api/v1/admin/suspicious-activity?threshold=3")
        .await;
    suspicious.expect(200);
    assert_eq!(suspicious.json["suspicious_ips"][0]["ip_address"], IP);
    // The owner, from their own device, is not locked out, and the account is not locked.
    t.login(
        &face("genuine/donald_rumsfeld_2.jpg"),
        Some("rumsfeld"),
        OWNER_IP,
    )
    .await
    .expect(200);
    let summary = t.admin_get("/api/v1/admin/metrics-summary").await;
    summary.expect(200);
    assert_eq!(summary.json["locked_accounts"], 0);
}

#[tokio::test]
async fn failures_from_many_clients_lock_the_account_until_an_admin_unlocks() {
    let t = Tenant::new(&[
        "--max-failed-login-attempts",
        "10",
        "--account-lock-failures",
        "3",
        "--lockout-minutes",
        "5",
    ])
    .await;
    let user = t
        .register("rumsfeld", &face("genuine/donald_rumsfeld_1.jpg"), OWNER_IP)
        .await
        .expect(201)
        .user_id();
    // One failure from each of three clients: none is throttled, the account locks.
    for ip in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        t.login(&face("genuine/vladimir_putin_1.jpg"), Some("rumsfeld"), ip)
            .await
            .expect_error(401, "face_not_recognized");
    }
    // Locked for everyone, the owner included, by 1:N and 1:1.
    for (username, ip) in [(None, OWNER_IP), (Some("rumsfeld"), IP)] {
        let r = t
            .login(&face("genuine/donald_rumsfeld_2.jpg"), username, ip)
            .await;
        r.expect_error(423, "account_locked");
        assert!(r.headers.contains_key(header::RETRY_AFTER));
    }
    let summary = t.admin_get("/api/v1/admin/metrics-summary").await;
    summary.expect(200);
    assert_eq!(summary.json["locked_accounts"], 1);
    // The admin unlocks; the count restarts, so one more failure does not re-lock.
    t.admin_post(&format!("/api/v1/admin/users/{user}/unlock"))
        .await
        .expect(200);
    t.login(&face("genuine/donald_rumsfeld_2.jpg"), None, OWNER_IP)
        .await
        .expect(200);
    t.login(&face("genuine/vladimir_putin_2.jpg"), Some("rumsfeld"), IP)
        .await
        .expect_error(401, "face_not_recognized");
    t.login(
        &face("genuine/donald_rumsfeld_3.jpg"),
        Some("rumsfeld"),
        OWNER_IP,
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn deactivated_accounts_cannot_log_in() {
    let t = Tenant::new(&[]).await;
    let user = t
        .register("schroeder", &face("genuine/gerhard_schroeder_1.jpg"), IP)
        .await
        .expect(201)
        .user_id();
    t.admin_post(&format!("/api/v1/admin/users/{user}/deactivate"))
        .await
        .expect(200);
    t.login(
        &face("genuine/gerhard_schroeder_2.jpg"),
        Some("schroeder"),
        IP,
    )
    .await
    .expect_error(403, "account_inactive");
    // 1:N searches active users only.
    t.login(&face("genuine/gerhard_schroeder_2.jpg"), None, IP)
        .await
        .expect_error(401, "face_not_recognized");
    t.admin_post(&format!("/api/v1/admin/users/{user}/activate"))
        .await
        .expect(200);
    t.login(&face("genuine/gerhard_schroeder_2.jpg"), None, IP)
        .await
        .expect(200);
    t.admin_post("/api/v1/admin/users/not-a-uuid/unlock")
        .await
        .expect_error(422, "validation_error");
    t.admin_post(&format!(
        "/api/v1/admin/users/{}/unlock",
        uuid::Uuid::new_v4()
    ))
    .await
    .expect_error(404, "not_found");
}

#[tokio::test]
async fn login_rate_limit_answers_429_with_retry_after() {
    let t = Tenant::new(&[
        "--rate-limit-login",
        "2/minute",
        "--redis-url",
        &common::required_env("REDIS_URL"),
    ])
    .await;
    let photo = face("noface/blank_white.png");
    let ip = "198.51.100.7";
    for _ in 0..2 {
        t.login(&photo, None, ip).await.expect_error(400, "no_face");
    }
    let refused = t.login(&photo, None, ip).await;
    refused.expect_error(429, "rate_limited");
    let retry: u64 = refused.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Another client is not affected.
    t.login(&photo, None, "198.51.100.8")
        .await
        .expect_error(400, "no_face");
    let recorded = t
        .scalar_i64("SELECT count(*) FROM failed_login_attempts WHERE reason = 'rate_limit'")
        .await;
    assert_eq!(recorded, 1);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let t = Tenant::new(&[]).await;
    let reg = t
        .register("blair", &face("genuine/tony_blair_1.jpg"), IP)
        .await;
    reg.expect(201);
    let first = reg.refresh_token();
    let rotated = t.refresh(&first).await;
    rotated.expect(200);
    let second = rotated.refresh_token();
    assert_ne!(first, second);
    t.get("/api/v1/auth/me", Some(&rotated.access_token()))
        .await
        .expect(200);
    // Replaying the spent token fails and revokes its successor too.
    t.expect_replay_revokes(&first, &second).await;
    // Logout revokes a token.
    let login = t.login(&face("genuine/tony_blair_2.jpg"), None, IP).await;
    login.expect(200);
    t.post_json(
        "/api/v1/auth/logout",
        json!({"refresh_token": login.refresh_token()}),
        None,
    )
    .await
    .expect(204);
    t.refresh(&login.refresh_token())
        .await
        .expect_error(401, "invalid_refresh_token");
    // Malformed bodies.
    t.post_json("/api/v1/auth/refresh", json!({"token": "x"}), None)
        .await
        .expect_error(422, "validation_error");
    let r = Request::post("/api/v1/auth/refresh")
        .body(Body::from("refresh_token=x"))
        .unwrap();
    t.send(r, IP)
        .await
        .expect_error(415, "unsupported_media_type");
    // Stored hashed: the raw token is nowhere in the table.
    let raw: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE encode(token_hash, 'escape') LIKE '%' || $1 || '%'")
        .bind(&second)
        .fetch_one(t.state.db())
        .await
        .unwrap();
    assert_eq!(raw, 0);
}

#[tokio::test]
async fn tenants_are_isolated_and_refuse_each_others_tokens() {
    let a = Tenant::new(&[]).await;
    let b = Tenant::new(&[]).await;
    let reg = a
        .register("obama", &face("genuine/barack_obama_1.jpg"), IP)
        .await;
    reg.expect(201);
    // Enrolled at A, unknown at B.
    b.login(&face("genuine/barack_obama_2.jpg"), None, IP)
        .await
        .expect_error(401, "face_not_recognized");
    a.login(&face("genuine/barack_obama_2.jpg"), None, IP)
        .await
        .expect(200);
    // A's token at B.
    b.get("/api/v1/auth/me", Some(&reg.access_token()))
        .await
        .expect_error(401, "unauthorized");
    // Forged, missing and malformed tokens.
    a.get("/api/v1/auth/me", None)
        .await
        .expect_error(401, "unauthorized");
    a.get(
        "/api/v1/auth/me",
        Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."),
    )
    .await
    .expect_error(401, "unauthorized");
    // B's users table is empty; A's has one row.
    assert_eq!(b.scalar_i64("SELECT count(*) FROM users").await, 0);
    assert_eq!(a.scalar_i64("SELECT count(*) FROM users").await, 1);
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_key() {
    let t = Tenant::new(&[]).await;
    let reg = t
        .register("biden", &face("genuine/joe_biden_1.jpg"), IP)
        .await;
    reg.expect(201);
    for path in [
        "/api/v1/admin/failed-attempts?hours=24",
        "/api/v1/admin/suspicious-activity?threshold=5",
        "/api/v1/admin/metrics-summary",
    ] {
        t.get(path, None).await.expect_error(401, "unauthorized");
        t.get(path, Some("wrong-key-wrong-key"))
            .await
            .expect_error(401, "unauthorized");
        t.get(path, Some(&reg.access_token()))
            .await
            .expect_error(403, "forbidden");
        t.admin_get(path).await.expect(200);
    }
    t.admin_get("/api/v1/admin/failed-attempts?hours=0")
        .await
        .expect_error(422, "validation_error");
    t.admin_get("/api/v1/admin/failed-attempts?hours=abc")
        .await
        .expect_error(422, "validation_error");
    t.admin_get("/api/v1/admin/suspicious-activity?threshold=-1")
        .await
        .expect_error(422, "validation_error");
}

#[tokio::test]
async fn guessing_the_admin_key_is_rate_limited() {
    let t = Tenant::new(&["--rate-limit-default", "3/minute"]).await;
    for _ in 0..3 {
        t.get("/api/v1/admin/metrics-summary", Some("guess-guess-guess-1"))
            .await
            .expect_error(401, "unauthorized");
    }
    // Counted before the credential is looked at: even the right key waits now.
    let r = t.admin_get("/api/v1/admin/metrics-summary").await;
    r.expect_error(429, "rate_limited");
    assert!(r.headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn enrolling_more_faces_and_erasing_the_user() {
    let t = Tenant::new(&[]).await;
    let reg = t
        .register("kit", &face("genuine/arnold_schwarzenegger_1.jpg"), IP)
        .await;
    reg.expect(201);
    let token = reg.access_token();
    let user = reg.user_id();
    let added = t
        .enrol(&token, &face("genuine/arnold_schwarzenegger_2.jpg"), IP)
        .await;
    added.expect(201);
    assert_eq!(added.json["face_count"], 2);
    // Someone else's face cannot be added to this account.
    t.enrol(&token, &face("genuine/hugo_chavez_1.jpg"), IP)
        .await
        .expect_error(400, "face_mismatch");
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM face_embeddings").await,
        2
    );

    // Erasure needs a fresh proof beside the token: none, a wrong password, or another
    // person's face is refused and erases nothing.
    let erase = |form: Option<Multipart>| t.erase(&token, form, IP);
    erase(None).await.expect_error(422, "validation_error");
    erase(Some(Multipart::new().text("password", "not the password")))
        .await
        .expect_error(401, "reauthentication_failed");
    erase(Some(Multipart::new().file(
        "face_image",
        "f.jpg",
        &face("genuine/hugo_chavez_1.jpg"),
    )))
    .await
    .expect_error(401, "reauthentication_failed");
    assert_eq!(t.scalar_i64("SELECT count(*) FROM users").await, 1);
    // The owner's face proves it (the password would too).
    erase(Some(Multipart::new().file(
        "face_image",
        "f.jpg",
        &face("genuine/arnold_schwarzenegger_3.jpg"),
    )))
    .await
    .expect(204);
    assert_eq!(t.scalar_i64("SELECT count(*) FROM users").await, 0);
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM face_embeddings").await,
        0
    );
    assert_eq!(t.scalar_i64("SELECT count(*) FROM refresh_tokens").await, 0);
    let leftover: i64 =
        sqlx::query_scalar("SELECT count(*) FROM failed_login_attempts WHERE user_id = $1::uuid")
            .bind(&user)
            .fetch_one(t.state.db())
            .await
            .unwrap();
    assert_eq!(leftover, 0);
    t.login(&face("genuine/arnold_schwarzenegger_3.jpg"), None, IP)
        .await
        .expect_error(401, "face_not_recognized");
    t.get("/api/v1/auth/me", Some(&token))
        .await
        .expect_error(401, "unauthorized");
}

#[tokio::test]
async fn system_endpoints_docs_and_camera_page() {
    let t = Tenant::new(&[]).await;
    let health = t.get("/health", None).await;
    health.expect(200);
    assert_eq!(health.json["status"], "ok");
    let ready = t.get("/ready", None).await;
    ready.expect(200);
    assert_eq!(ready.json["checks"]["pgvector"], "ok");
    // The models are run, not assumed.
    assert!(
        ready.json["checks"]["models"]
            .as_str()
            .unwrap()
            .starts_with("ok ("),
        "{}",
        ready.text
    );

    let page = t.get("/", None).await;
    page.expect(200);
    assert!(page.text.contains("getUserMedia"));
    // The pages cannot be framed, the camera page runs only its own inline code, and
    // nothing is sniffed.
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    // Token responses are never cached.
    let reg = t
        .register("headers", &face("genuine/joe_biden_1.jpg"), IP)
        .await;
    reg.expect(201);
    assert_eq!(reg.headers["cache-control"], "no-store");
    assert_eq!(reg.headers["x-content-type-options"], "nosniff");
    // A method a route does not take has its own code.
    let r = Request::put("/api/v1/auth/login")
        .body(Body::empty())
        .unwrap();
    t.send(r, IP).await.expect_error(405, "method_not_allowed");
    let docs = t.get("/docs/", None).await;
    docs.expect(200);
    assert!(
        docs.text.contains("swagger"),
        "{}",
        &docs.text[..docs.text.len().min(300)]
    );
    t.get("/redoc", None).await.expect(200);
    t.get("/redoc/redoc.standalone.js", None).await.expect(200);

    let spec = t.get("/openapi.json", None).await;
    spec.expect(200);
    let paths = spec.json["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/me",
        "/api/v1/users/me/faces",
        "/api/v1/users/me",
        "/api/v1/admin/failed-attempts",
        "/api/v1/admin/suspicious-activity",
        "/api/v1/admin/metrics-summary",
        "/api/v1/admin/users/{user_id}/unlock",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }

    t.register("rauch", &face("genuine/melissa_rauch_1.png"), IP)
        .await;
    t.get("/nope", None).await.expect_error(404, "not_found");
    let metrics = t.get("/metrics", None).await;
    metrics.expect(200);
    for name in [
        "faceid_registration_attempts_total",
        "faceid_login_attempts_total",
        "faceid_liveness_checks_total",
        "faceid_face_match_latency_seconds",
        "faceid_vector_search_duration_seconds",
        "faceid_rate_limit_hits_total",
        "faceid_active_users_total",
        "faceid_locked_accounts_total",
        "faceid_http_requests_total",
    ] {
        assert!(metrics.text.contains(name), "{name} missing from /metrics");
    }
    assert!(
        metrics
            .text
            .contains(r#"route="/api/v1/auth/register",status_class="#)
    );
}

#[tokio::test]
async fn request_ids_are_echoed() {
    let t = Tenant::new(&[]).await;
    let r = Request::get("/api/v1/auth/me")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let reply = t.send(r, IP).await;
    reply.expect_error(401, "unauthorized");
    assert_eq!(reply.headers["x-request-id"], "abc-123");
    assert_eq!(reply.json["request_id"], "abc-123");
    // A hostile id is replaced, not echoed.
    let r = Request::get("/health")
        .header("x-request-id", "<script>")
        .body(Body::empty())
        .unwrap();
    let reply = t.send(r, IP).await;
    assert_ne!(reply.headers["x-request-id"], "<script>");
}

#[tokio::test]
async fn spoofs_and_poor_photos_are_refused_with_their_own_codes() {
    let t = Tenant::new(&[]).await;
    // The printed-photo attack that the liveness fusion refuses (see docs/FACE_ENGINE.md).
    t.register("printed", &face("spoof/attack/sfas_print_2.jpg"), IP)
        .await
        .expect_error(401, "spoof_detected");
    t.login(&face("spoof/attack/sfas_print_2.jpg"), None, IP)
        .await
        .expect_error(401, "liveness_failed");
    let recorded = t
        .scalar_i64("SELECT count(*) FROM failed_login_attempts WHERE reason = 'liveness_failed' AND liveness_score < 0.7")
        .await;
    assert_eq!(recorded, 2);
    // A heavily blurred photo: found, but refused for quality.
    let photo = image::load_from_memory(&face("genuine/george_w_bush_1.jpg")).unwrap();
    let blurred = image::DynamicImage::ImageRgba8(image::imageops::blur(&photo, 2.5));
    let mut png = std::io::Cursor::new(Vec::new());
    blurred.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let reply = t.register("blurry", png.get_ref(), IP).await;
    reply.expect(400);
    assert_eq!(reply.code(), "blurry", "{}", reply.text);
    assert_eq!(t.scalar_i64("SELECT count(*) FROM users").await, 0);
    // With liveness disabled by configuration, the same print is accepted (the setting works).
    let open = Tenant::new(&["--liveness-enabled", "false"]).await;
    let reply = open
        .register("printed", &face("spoof/attack/sfas_print_2.jpg"), IP)
        .await;
    assert_ne!(reply.code(), "spoof_detected", "{}", reply.text);
}

#[tokio::test]
async fn housekeeping_deletes_old_attempts_and_updates_the_gauges() {
    let t = Tenant::new(&["--failed-attempt-retention-days", "30"]).await;
    t.register("sharon", &face("genuine/ariel_sharon_1.jpg"), IP)
        .await
        .expect(201);
    for age_days in [45, 31, 29, 0] {
        sqlx::query(
            "INSERT INTO failed_login_attempts (id, ip_address, reason, attempted_at)
             VALUES (gen_random_uuid(), '192.0.2.99', 'no_match', now() - make_interval(days => $1))",
        )
        .bind(age_days)
        .execute(t.state.db())
        .await
        .unwrap();
    }
    faceid_service::flows::housekeeping(&t.state).await.unwrap();
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM failed_login_attempts")
            .await,
        2,
        "only attempts within 30 days stay"
    );
    let metrics = t.get("/metrics", None).await;
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l == "faceid_active_users_total 1"),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l == "faceid_locked_accounts_total 0")
    );
}

/// A signing key document with one EdDSA and one ES256 key, made a day ago.
fn signing_keys() -> String {
    let created = chrono::Utc::now() - chrono::Duration::days(1);
    faceid_keys::KeyDocument {
        keys: vec![
            faceid_keys::KeyEntry::generate(faceid_keys::Alg::EdDsa, created, None),
            faceid_keys::KeyEntry::generate(faceid_keys::Alg::Es256, created, None),
        ],
    }
    .to_json()
}

fn b64url(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// Verifies `token` with the JWK its header names, rebuilding the public key from the
/// JWK's coordinates with the curve libraries directly (neither jsonwebtoken nor the
/// service's provider), and returns the header.
fn verify_with_jwks(token: &str, jwks: &serde_json::Value) -> serde_json::Value {
    use ed25519_dalek::Verifier as _;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: serde_json::Value = serde_json::from_slice(&b64url(parts[0])).unwrap();
    let kid = header["kid"].as_str().expect("a kid in the header");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in the JWKS {jwks}"));
    assert_eq!(
        jwk["alg"], header["alg"],
        "the key's algorithm is the token's"
    );
    let input = format!("{}.{}", parts[0], parts[1]);
    let signature = b64url(parts[2]);
    match jwk["kty"].as_str().unwrap() {
        "OKP" => {
            assert_eq!(jwk["crv"], "Ed25519");
            let x: [u8; 32] = b64url(jwk["x"].as_str().unwrap()).try_into().unwrap();
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
            let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
            key.verify(input.as_bytes(), &signature)
                .expect("Ed25519 signature");
            assert!(
                key.verify(format!("{input}x").as_bytes(), &signature)
                    .is_err()
            );
        }
        "EC" => {
            use p256::ecdsa::signature::Verifier as _;
            assert_eq!(jwk["crv"], "P-256");
            let mut point = vec![4u8];
            point.extend(b64url(jwk["x"].as_str().unwrap()));
            point.extend(b64url(jwk["y"].as_str().unwrap()));
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
            let signature = p256::ecdsa::Signature::from_slice(&signature).unwrap();
            key.verify(input.as_bytes(), &signature)
                .expect("P-256 signature");
            assert!(
                key.verify(format!("{input}x").as_bytes(), &signature)
                    .is_err()
            );
        }
        other => panic!("kty {other}"),
    }
    header
}

#[tokio::test]
async fn tokens_verify_against_the_published_jwks() {
    let keys = signing_keys();
    for (algorithm, kty) in [("EdDSA", "OKP"), ("ES256", "EC")] {
        let t = Tenant::new(&[
            "--signing-keys",
            &keys,
            "--access-token-algorithm",
            algorithm,
        ])
        .await;
        let jwks = t.get("/.well-known/jwks.json", None).await;
        jwks.expect(200);
        let cache = jwks.headers[header::CACHE_CONTROL].to_str().unwrap();
        assert_eq!(cache, "public, max-age=300");
        let published = jwks.json["keys"].as_array().unwrap();
        assert_eq!(published.len(), 2, "{}", jwks.text);
        for key in published {
            assert_eq!(key["use"], "sig");
            // Public halves only.
            for private in ["d", "p", "q", "k", "private_key"] {
                assert!(key.get(private).is_none(), "{private} in {key}");
            }
        }
        assert!(!jwks.text.contains("PRIVATE"));

        let reg = t
            .register("gwbush", &face("genuine/george_w_bush_1.jpg"), IP)
            .await;
        reg.expect(201);
        let token = reg.access_token();
        let header = verify_with_jwks(&token, &jwks.json);
        assert_eq!(header["alg"], algorithm);
        let jwk = published
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .unwrap();
        assert_eq!(jwk["kty"], kty);
        t.get("/api/v1/auth/me", Some(&token)).await.expect(200);
    }
}

#[tokio::test]
async fn without_signing_keys_each_process_signs_with_its_own_ephemeral_key() {
    let a = Tenant::new(&[]).await;
    let jwks = a.get("/.well-known/jwks.json", None).await;
    jwks.expect(200);
    let keys = jwks.json["keys"].as_array().unwrap();
    let kinds: Vec<(Option<&str>, Option<&str>)> = keys
        .iter()
        .map(|k| (k["kty"].as_str(), k["alg"].as_str()))
        .collect();
    assert_eq!(
        kinds,
        [(Some("OKP"), Some("EdDSA")), (Some("EC"), Some("ES256"))],
        "one key per algorithm: {}",
        jwks.text
    );
    let reg = a
        .register("gwbush", &face("genuine/george_w_bush_1.jpg"), IP)
        .await;
    reg.expect(201);
    let token = reg.access_token();
    verify_with_jwks(&token, &jwks.json);
    a.get("/api/v1/auth/me", Some(&token)).await.expect(200);
    // A second process on the same schema and settings (a replica, or a restart) has
    // another key: the token is refused there.
    let b = Tenant::with_schema(&a.schema, &[]).await;
    let other = b.get("/.well-known/jwks.json", None).await;
    assert_ne!(other.json["keys"][0]["kid"], keys[0]["kid"]);
    b.get("/api/v1/auth/me", Some(&token)).await.expect(401);
}
