//! The database steps against the real PostgreSQL + pgvector of `scripts/platform.sh`
//! (`source .dev/env` sets `DATABASE_URL` to a role that may create schemas and roles).
//! Every test uses schemas of its own, so the tests run in parallel.

// Test code: a failed unwrap or panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use faceid_operator::controller::{Postgres, TenantDatabase};
use faceid_operator::database::{
    self, Error, IndexParams, ProvisionRequest, deprovision, generate_secret, provision,
    provision_schema, rebuild_index, role_database_url, role_name,
};
use sqlx::{Connection, PgConnection, PgPool, Row};

fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: these tests need the local PostgreSQL. Run `scripts/platform.sh start` and `source .dev/env` first.",
    )
}

async fn admin() -> PgPool {
    PgPool::connect(&admin_url())
        .await
        .expect("cannot connect to DATABASE_URL")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", generate_secret(8).to_lowercase())
}

fn request(tenant: &str, schema: &str, m: i32, ef: i32) -> ProvisionRequest {
    ProvisionRequest {
        tenant: tenant.to_owned(),
        schema: schema.to_owned(),
        role_password: generate_secret(32),
        index: IndexParams {
            m,
            ef_construction: ef,
        },
    }
}

async fn indexdef(pool: &PgPool, schema: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'face_embeddings_hnsw_idx'",
    )
    .bind(schema)
    .fetch_optional(pool)
    .await
    .unwrap()
}

async fn schema_exists(pool: &PgPool, schema: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn role_exists(pool: &PgPool, role: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(role)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn connect_as(req: &ProvisionRequest) -> PgConnection {
    let url = role_database_url(&admin_url(), &role_name(&req.schema), &req.role_password).unwrap();
    PgConnection::connect(&url)
        .await
        .expect("the tenant role cannot log in")
}

async fn insert_user(conn: &mut PgConnection, name: &str) {
    sqlx::query(
        "INSERT INTO users (id, username, email, password_hash, face_embedding, model_version)
         VALUES (gen_random_uuid(), $1, $1 || '@example.com', 'x', array_fill(0.1::real, ARRAY[128])::vector, 'v1')",
    )
    .bind(name)
    .execute(&mut *conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn provisioning_twice_is_a_no_op() {
    let pool = admin().await;
    let schema = unique("op_twice");
    let req = request("ns/twice", &schema, 16, 64);

    let first = provision(&pool, &req).await.unwrap();
    assert!(first.schema_created && first.role_created);
    let every_version: Vec<i64> = faceid_migrations::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(first.migrations_applied, every_version);
    assert_eq!(
        first.index,
        IndexParams {
            m: 16,
            ef_construction: 64
        }
    );
    assert!(
        !first.index_rebuilt,
        "the migration's index already has 16/64"
    );
    assert_eq!(first.role, role_name(&schema));

    let second = provision(&pool, &req).await.unwrap();
    assert!(!second.schema_created && !second.role_created && !second.index_rebuilt);
    assert!(second.migrations_applied.is_empty());
    assert_eq!(second.index, first.index);

    deprovision(&pool, "ns/twice", &schema).await.unwrap();
}

#[tokio::test]
async fn two_tenants_stay_isolated() {
    let pool = admin().await;
    let (a, b) = (unique("op_iso_a"), unique("op_iso_b"));
    let req_a = request("ns/a", &a, 16, 64);
    let req_b = request("ns/b", &b, 16, 64);
    provision(&pool, &req_a).await.unwrap();
    provision(&pool, &req_b).await.unwrap();

    let mut conn_a = connect_as(&req_a).await;
    // search_path is pinned to the tenant's schema: unqualified names land there.
    insert_user(&mut conn_a, "alice").await;
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{a}\".users"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n_b: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{b}\".users"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n_b, 0, "tenant B sees nothing of tenant A");

    // A's role can neither read nor write B's schema.
    let err = sqlx::query(&format!("SELECT * FROM \"{b}\".users"))
        .fetch_all(&mut conn_a)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    // ... nor create objects in public or in its own schema, nor rewrite the migration log.
    let err = sqlx::query("CREATE TABLE public.intruder (id int)")
        .execute(&mut conn_a)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    let err = sqlx::query("CREATE TABLE intruder (id int)")
        .execute(&mut conn_a)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    let err = sqlx::query("DELETE FROM schema_migrations")
        .execute(&mut conn_a)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    // It can still read the migration log (the service checks the schema version).
    let v: i64 = sqlx::query_scalar("SELECT max(version) FROM schema_migrations")
        .fetch_one(&mut conn_a)
        .await
        .unwrap();
    assert_eq!(v, faceid_migrations::MIGRATIONS.len() as i64);
    conn_a.close().await.unwrap();

    deprovision(&pool, "ns/a", &a).await.unwrap();
    deprovision(&pool, "ns/b", &b).await.unwrap();
}

#[tokio::test]
async fn index_is_rebuilt_with_new_parameters_and_reported() {
    let pool = admin().await;
    let schema = unique("op_hnsw");
    let tenant = "ns/hnsw";
    let req = request(tenant, &schema, 16, 64);
    provision(&pool, &req).await.unwrap();
    let mut conn = connect_as(&req).await;
    for name in ["alice", "bob", "carol"] {
        insert_user(&mut conn, name).await;
    }
    sqlx::query(
        "INSERT INTO face_embeddings (id, user_id, embedding, model_version)
         SELECT gen_random_uuid(), id, face_embedding, model_version FROM users",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let changed = provision(&pool, &request(tenant, &schema, 24, 100))
        .await
        .unwrap();
    assert!(changed.index_rebuilt);
    assert_eq!(
        changed.index,
        IndexParams {
            m: 24,
            ef_construction: 100
        }
    );
    let def = indexdef(&pool, &schema).await.unwrap();
    assert!(
        def.contains("m='24'") && def.contains("ef_construction='100'"),
        "{def}"
    );
    assert!(
        def.contains("::halfvec(128)") && def.contains("halfvec_l2_ops"),
        "{def}"
    );
    assert_eq!(
        database::index_params(&pool, &schema).await.unwrap(),
        Some(IndexParams {
            m: 24,
            ef_construction: 100
        })
    );
    // Exactly one HNSW index, valid, no leftover of the rebuild.
    let rows = sqlx::query(
        "SELECT c.relname::text, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname LIKE 'face_embeddings_hnsw%'",
    )
    .bind(&schema)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].get::<bool, _>(1));
    // The data is intact and the service role still searches through the new index.
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT id FROM face_embeddings ORDER BY embedding::halfvec(128) <-> array_fill(0.1::real, ARRAY[128])::vector::halfvec(128) LIMIT 2) x",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(n, 2);
    conn.close().await.unwrap();

    // The same parameters again: nothing to do.
    let again = provision(&pool, &request(tenant, &schema, 24, 100))
        .await
        .unwrap();
    assert!(!again.index_rebuilt);

    deprovision(&pool, tenant, &schema).await.unwrap();
}

#[tokio::test]
async fn delete_policy_drops_schema_and_role() {
    let pool = admin().await;
    let schema = unique("op_del");
    provision(&pool, &request("ns/del", &schema, 16, 64))
        .await
        .unwrap();
    assert!(schema_exists(&pool, &schema).await);

    let dropped = deprovision(&pool, "ns/del", &schema).await.unwrap();
    assert!(dropped.schema_dropped && dropped.role_dropped);
    assert!(!schema_exists(&pool, &schema).await);
    assert!(!role_exists(&pool, &role_name(&schema)).await);

    // Idempotent: a second cleanup (a retried finalizer) is fine.
    let again = deprovision(&pool, "ns/del", &schema).await.unwrap();
    assert!(!again.schema_dropped && !again.role_dropped);
}

#[tokio::test]
async fn retain_keeps_data_for_a_recreated_tenant() {
    let pool = admin().await;
    let schema = unique("op_keep");
    let tenant = "ns/keep";
    let first = request(tenant, &schema, 16, 64);
    provision(&pool, &first).await.unwrap();
    let mut conn = connect_as(&first).await;
    insert_user(&mut conn, "alice").await;
    conn.close().await.unwrap();

    // Retain: the tenant goes away, nothing is dropped; it comes back with a new
    // credentials Secret (new password) and finds its data.
    let recreated = request(tenant, &schema, 16, 64);
    let again = provision(&pool, &recreated).await.unwrap();
    assert!(!again.schema_created && !again.role_created);
    let mut conn = connect_as(&recreated).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
    conn.close().await.unwrap();
    // The old password no longer works.
    let old = role_database_url(&admin_url(), &role_name(&schema), &first.role_password).unwrap();
    assert!(PgConnection::connect(&old).await.is_err());

    deprovision(&pool, tenant, &schema).await.unwrap();
}

#[tokio::test]
async fn a_schema_claimed_by_another_tenant_is_refused() {
    let pool = admin().await;
    let schema = unique("op_claim");
    provision(&pool, &request("team-a/acme", &schema, 16, 64))
        .await
        .unwrap();

    let err = provision(&pool, &request("team-b/acme", &schema, 16, 64))
        .await
        .unwrap_err();
    match &err {
        Error::SchemaClaimed { owner, .. } => assert_eq!(owner, "team-a/acme"),
        other => panic!("expected SchemaClaimed, got {other:?}"),
    }
    assert!(err.is_permanent());
    assert!(err.to_string().contains("team-a/acme"), "{err}");

    // Nor may the other tenant's deletion drop it.
    let err = deprovision(&pool, "team-b/acme", &schema)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SchemaClaimed { .. }), "{err:?}");
    assert!(schema_exists(&pool, &schema).await);

    deprovision(&pool, "team-a/acme", &schema).await.unwrap();
}

#[tokio::test]
async fn an_unmanaged_schema_is_refused_with_the_way_to_adopt_it() {
    let pool = admin().await;
    let schema = unique("op_foreign");
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&pool)
        .await
        .unwrap();
    let err = provision(&pool, &request("ns/x", &schema, 16, 64))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SchemaNotManaged { .. }), "{err:?}");
    assert!(err.to_string().contains("COMMENT ON SCHEMA"), "{err}");
    assert!(
        !role_exists(&pool, &role_name(&schema)).await,
        "nothing was created"
    );
    sqlx::query(&format!("DROP SCHEMA \"{schema}\""))
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn reserved_and_unsafe_schema_names_are_refused() {
    let pool = admin().await;
    for bad in [
        "public",
        "pg_catalog",
        "information_schema",
        "Bad",
        "a;drop",
    ] {
        let err = provision(&pool, &request("ns/x", bad, 16, 64))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSchema(_)), "{bad}: {err:?}");
    }
}

/// The deadlock of the admin pool: `provision` held one pooled connection while the
/// migrations took a second one, so as many concurrent provisions as the pool had
/// connections each waited for a second until the pool's acquire timeout.
#[tokio::test]
async fn twenty_tenants_provision_at_once_on_one_admin_url() {
    let url = admin_url();
    let db = Postgres::default();
    let requests: Vec<(String, ProvisionRequest)> = (0..20)
        .map(|i| {
            let schema = unique(&format!("op_many{i}"));
            (
                format!("ns/many{i}"),
                request(&format!("ns/many{i}"), &schema, 16, 64),
            )
        })
        .collect();
    let start = Instant::now();
    let results = tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join_all(requests.iter().map(|(_, r)| db.provision(&url, r))),
    )
    .await
    .expect("20 concurrent provisions did not finish within 120 s");
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    let pool = admin().await;
    for (tenant, r) in &requests {
        deprovision(&pool, tenant, &r.schema).await.unwrap();
    }
    assert!(
        failed.is_empty(),
        "{} of 20 failed: {failed:?}",
        failed.len()
    );
    eprintln!("20 tenants provisioned in {:?}", start.elapsed());
}

async fn role_verifier(pool: &PgPool, role: &str) -> String {
    sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(role)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_role_password_is_written_only_when_it_changes() {
    let pool = admin().await;
    let schema = unique("op_pw");
    let tenant = "ns/pw";
    let req = request(tenant, &schema, 16, 64);
    let first = provision(&pool, &req).await.unwrap();
    assert!(first.password_set);
    // The stored SCRAM verifier has a random salt: it changes whenever the password is
    // written, even with the same password.
    let verifier = role_verifier(&pool, &role_name(&schema)).await;

    let again = provision(&pool, &req).await.unwrap();
    assert!(!again.password_set, "the role already logs in with it");
    assert_eq!(role_verifier(&pool, &role_name(&schema)).await, verifier);

    // A rotated password (a regenerated credentials Secret) is written.
    let rotated = ProvisionRequest {
        role_password: generate_secret(32),
        ..req.clone()
    };
    let changed = provision(&pool, &rotated).await.unwrap();
    assert!(changed.password_set);
    assert_ne!(role_verifier(&pool, &role_name(&schema)).await, verifier);
    connect_as(&rotated).await.close().await.unwrap();
    let old = role_database_url(&admin_url(), &role_name(&schema), &req.role_password).unwrap();
    assert!(PgConnection::connect(&old).await.is_err());

    // A role that cannot log in (NOLOGIN, e.g. by hand) gets its login back.
    sqlx::query(&format!("ALTER ROLE \"{}\" NOLOGIN", role_name(&schema)))
        .execute(&pool)
        .await
        .unwrap();
    assert!(provision(&pool, &rotated).await.unwrap().password_set);
    connect_as(&rotated).await.close().await.unwrap();

    deprovision(&pool, tenant, &schema).await.unwrap();
}

#[tokio::test]
async fn delete_finishes_while_the_role_is_connected() {
    let pool = admin().await;
    let schema = unique("op_busy");
    let tenant = "ns/busy";
    let req = request(tenant, &schema, 16, 64);
    provision(&pool, &req).await.unwrap();
    // A pod in the middle of a transaction holding a lock on the users table.
    let mut held = connect_as(&req).await;
    sqlx::query("BEGIN").execute(&mut held).await.unwrap();
    sqlx::query("SELECT count(*) FROM users")
        .execute(&mut held)
        .await
        .unwrap();
    // And a pod that keeps reconnecting and locking the table.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reconnecting = {
        let (req, stop) = (req.clone(), stop.clone());
        tokio::spawn(async move {
            let url = role_database_url(&admin_url(), &role_name(&req.schema), &req.role_password)
                .unwrap();
            let mut logins = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut c) = PgConnection::connect(&url).await {
                    logins += 1;
                    let _ = sqlx::query("BEGIN").execute(&mut c).await;
                    let _ = sqlx::query("SELECT count(*) FROM users")
                        .execute(&mut c)
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = c.close().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            logins
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let start = Instant::now();
    let dropped =
        tokio::time::timeout(Duration::from_secs(40), deprovision(&pool, tenant, &schema))
            .await
            .expect("deprovision did not finish within its bounds")
            .unwrap();
    let took = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let logins = reconnecting.await.unwrap();
    assert!(
        dropped.schema_dropped && dropped.role_dropped,
        "{dropped:?}"
    );
    assert!(dropped.sessions_terminated >= 1, "{dropped:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(logins >= 1, "the reconnecting pod never logged in");
    // The held session was terminated; the role can no longer log in.
    assert!(sqlx::query("SELECT 1").execute(&mut held).await.is_err());
    assert!(!schema_exists(&pool, &schema).await);
    assert!(!role_exists(&pool, &role_name(&schema)).await);
    let url = role_database_url(&admin_url(), &role_name(&schema), &req.role_password).unwrap();
    assert!(PgConnection::connect(&url).await.is_err());
}

#[tokio::test]
async fn delete_is_bounded_when_another_session_holds_a_lock() {
    let pool = admin().await;
    let schema = unique("op_locked");
    let tenant = "ns/locked";
    provision(&pool, &request(tenant, &schema, 16, 64))
        .await
        .unwrap();
    // A session of another role (not the tenant's, so not terminated) holds a lock.
    let mut other = pool.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *other).await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{schema}\".users IN ACCESS SHARE MODE"
    ))
    .execute(&mut *other)
    .await
    .unwrap();
    let start = Instant::now();
    let err = deprovision(&pool, tenant, &schema).await.unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();
    drop(other);
    // Retried (the finalizer does), it finishes.
    let dropped = deprovision(&pool, tenant, &schema).await.unwrap();
    assert!(dropped.schema_dropped);
}

#[tokio::test]
async fn an_index_rebuild_runs_once_per_schema_and_blocks_no_provisioning() {
    let pool = admin().await;
    let schema = unique("op_bg");
    let tenant = "ns/bg";
    provision(&pool, &request(tenant, &schema, 16, 64))
        .await
        .unwrap();
    // A writer's open transaction: CREATE INDEX CONCURRENTLY waits for it to end.
    let mut writer = pool.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *writer).await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE \"{schema}\".face_embeddings IN ROW EXCLUSIVE MODE"
    ))
    .execute(&mut *writer)
    .await
    .unwrap();
    let want = IndexParams {
        m: 24,
        ef_construction: 96,
    };
    let first = {
        let (pool, schema) = (pool.clone(), schema.clone());
        tokio::spawn(async move { rebuild_index(&pool, &schema, want).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!first.is_finished(), "the rebuild waits for the writer");
    // A second rebuild of the same schema is refused at once.
    let second = tokio::time::timeout(Duration::from_secs(5), rebuild_index(&pool, &schema, want))
        .await
        .expect("the second rebuild waited");
    assert!(matches!(second, Err(Error::IndexBusy { .. })), "{second:?}");
    // Provisioning goes on meanwhile, reporting the rebuild still wanted.
    let p = tokio::time::timeout(
        Duration::from_secs(20),
        provision_schema(&pool, &request(tenant, &schema, 24, 96)),
    )
    .await
    .expect("provisioning waited for the rebuild")
    .unwrap();
    assert_eq!(p.index_wanted, Some(want));
    assert_eq!(p.index, IndexParams::default());
    sqlx::query("COMMIT").execute(&mut *writer).await.unwrap();
    drop(writer);
    let done = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(done.rebuilt);
    assert_eq!(done.index, want);
    let p = provision_schema(&pool, &request(tenant, &schema, 24, 96))
        .await
        .unwrap();
    assert_eq!((p.index, p.index_wanted), (want, None));
    deprovision(&pool, tenant, &schema).await.unwrap();
}

#[tokio::test]
async fn twenty_tenants_are_deleted_at_once_on_one_admin_url() {
    let url = admin_url();
    let db = Postgres::default();
    let requests: Vec<ProvisionRequest> = (0..20)
        .map(|i| {
            request(
                &format!("ns/gone{i}"),
                &unique(&format!("op_gone{i}")),
                16,
                64,
            )
        })
        .collect();
    for r in futures::future::join_all(requests.iter().map(|r| db.provision(&url, r))).await {
        r.unwrap();
    }
    let results = tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join_all(
            requests
                .iter()
                .map(|r| db.deprovision(&url, &r.tenant, &r.schema)),
        ),
    )
    .await
    .expect("20 concurrent deletions did not finish within 120 s");
    for r in results {
        let d = r.unwrap();
        assert!(d.schema_dropped && d.role_dropped);
    }
}
