//! The queries that must stay fast as a tenant grows use their indexes: checked with
//! `EXPLAIN` on a schema holding a few thousand rows (enough for the planner to prefer
//! an index over a sequential scan).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::Tenant;
use faceid_service::store::users::{NEAREST_SQL, NEAREST_TEMPLATE_SQL};

/// The plan on one of the service's own pooled connections, with the session settings
/// the pool gives every connection (the iterative scan among them).
async fn plan(t: &Tenant, sql: &str) -> String {
    let rows: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
        .fetch_all(t.state.db())
        .await
        .unwrap();
    rows.join("\n")
}

#[tokio::test]
async fn every_pooled_connection_searches_with_the_tenants_hnsw_settings() {
    let t = Tenant::new(&["--hnsw-ef-search", "123"]).await;
    let mut conn = t.state.db().acquire().await.unwrap();
    // Use a vector so pgvector is loaded and has adopted the startup placeholders.
    let d: f64 = sqlx::query_scalar("SELECT ('[1,0]'::vector <-> '[0,0]'::vector)::float8")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(d, 1.0);
    for (setting, want) in [
        ("hnsw.ef_search", "123"),
        ("hnsw.iterative_scan", "relaxed_order"),
    ] {
        let got: String = sqlx::query_scalar(&format!("SHOW {setting}"))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(got, want, "{setting}");
    }
}

#[tokio::test]
async fn searches_and_admin_queries_use_their_indexes() {
    let t = Tenant::new(&[]).await;
    // Seeding (an HNSW insert per row) may outlast the pool's statement timeout on a
    // loaded machine: it runs without one, in its own transaction.
    sqlx::raw_sql(
        "BEGIN;
         SET LOCAL statement_timeout = 0;
         INSERT INTO users (id, username, email, password_hash, face_embedding, model_version)
           SELECT gen_random_uuid(), 'user' || i, 'user' || i || '@example.com', 'x',
                  (SELECT array_agg(random() - 0.5)::vector FROM generate_series(1, 128) WHERE i > 0), 'm'
           FROM generate_series(1, 3000) i;
         INSERT INTO face_embeddings (id, user_id, embedding, model_version)
           SELECT gen_random_uuid(), id, face_embedding, 'm' FROM users;
         INSERT INTO failed_login_attempts (id, user_id, ip_address, reason, attempted_at)
           SELECT gen_random_uuid(), NULL, '10.0.' || (i % 200) || '.1', 'no_match', now() - make_interval(mins => i)
           FROM generate_series(1, 20000) i;
         ANALYZE;
         COMMIT;",
    )
    .execute(t.state.db())
    .await
    .unwrap();

    let probe = format!("'[{}]'::vector", vec!["0.01"; 128].join(","));
    let nearest = plan(
        &t,
        &NEAREST_SQL
            .replace("$1", &probe)
            .replace("$2", "10")
            .replace("$3", "'face-api-resnet128@1.7.15/128'"),
    )
    .await;
    assert!(
        nearest.contains("Index Scan using face_embeddings_hnsw_idx"),
        "1:N search does not use HNSW:\n{nearest}"
    );
    assert!(nearest.contains("users_pkey"), "{nearest}");
    let duplicate = plan(
        &t,
        &NEAREST_TEMPLATE_SQL
            .replace("$1", &probe)
            .replace("$2", "'face-api-resnet128@1.7.15/128'"),
    )
    .await;
    assert!(
        duplicate.contains("Index Scan using face_embeddings_hnsw_idx"),
        "duplicate-face check does not use HNSW:\n{duplicate}"
    );

    let recent = plan(&t, "SELECT * FROM failed_login_attempts WHERE attempted_at > now() - interval '1 hour' ORDER BY attempted_at DESC LIMIT 100").await;
    assert!(
        recent.contains("failed_login_attempts_time_idx"),
        "failed-attempts query:\n{recent}"
    );
    // The account-wide count and one client's count (`store::attempts`): both by index on
    // the account, the client's also on its key.
    let user = "'00000000-0000-0000-0000-000000000001'::uuid";
    let lockout = plan(&t, &format!("SELECT count(*) FROM failed_login_attempts WHERE user_id = {user} AND attempted_at > now() - interval '1 hour' AND reason NOT IN ('locked', 'rate_limit', 'duplicate_face')")).await;
    assert!(
        lockout.contains("failed_login_attempts_user_time_idx")
            || lockout.contains("failed_login_attempts_user_client_time_idx"),
        "lockout count:\n{lockout}"
    );
    assert!(
        lockout.contains("user_id = "),
        "lockout count by account:\n{lockout}"
    );
    let client = plan(&t, &format!("SELECT count(*), max(attempted_at) FROM failed_login_attempts WHERE user_id = {user} AND client_key = '10.0.0.1' AND attempted_at > now() - interval '1 hour' AND reason NOT IN ('locked', 'rate_limit', 'duplicate_face')")).await;
    assert!(
        client.contains("failed_login_attempts_user_client_time_idx"),
        "client lockout count:\n{client}"
    );
}
