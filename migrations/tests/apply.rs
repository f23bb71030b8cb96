//! The migration runner against the real local PostgreSQL + pgvector.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed assertion

use sqlx::PgPool;

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: run the tests through scripts/test.sh (or `scripts/platform.sh start && source .dev/env`)")
    })
}

fn schema(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

async fn pool() -> PgPool {
    PgPool::connect(&database_url()).await.unwrap()
}

async fn tables(pool: &PgPool, schema: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn applies_once_and_is_idempotent() {
    let pool = pool().await;
    let s = schema("mig_once");
    let first = faceid_migrations::apply(&pool, &s).await.unwrap();
    assert_eq!(first.newly_applied, vec![1, 2, 3, 4]);
    let second = faceid_migrations::apply(&pool, &s).await.unwrap();
    assert!(second.newly_applied.is_empty());
    assert_eq!(
        tables(&pool, &s).await,
        [
            "authorization_codes",
            "face_embeddings",
            "failed_login_attempts",
            "refresh_tokens",
            "schema_migrations",
            "template_protection",
            "users"
        ]
    );
    // The HNSW index exists with L2 distance, over half-precision copies.
    let def: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'face_embeddings_hnsw_idx'",
    )
    .bind(&s)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        def.contains("hnsw")
            && def.contains("(embedding)::halfvec(128)")
            && def.contains("halfvec_l2_ops"),
        "{def}"
    );
    sqlx::query(&format!(
        "DROP SCHEMA {} CASCADE",
        faceid_migrations::quote_ident(&s)
    ))
    .execute(&pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn concurrent_runners_apply_each_migration_once() {
    let pool = pool().await;
    let s = schema("mig_race");
    let runs = futures_join(&pool, &s).await;
    let applied: usize = runs.iter().map(|a| a.newly_applied.len()).sum();
    assert_eq!(
        applied,
        faceid_migrations::MIGRATIONS.len(),
        "each migration applied by exactly one runner: {runs:?}"
    );
}

async fn futures_join(pool: &PgPool, s: &str) -> Vec<faceid_migrations::Applied> {
    let mut handles = Vec::new();
    for _ in 0..4 {
        let pool = pool.clone();
        let s = s.to_owned();
        handles.push(tokio::spawn(async move {
            faceid_migrations::apply(&pool, &s).await.unwrap()
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let pool = pool().await;
    let s = schema("mig_edit");
    faceid_migrations::apply(&pool, &s).await.unwrap();
    sqlx::query(&format!(
        "UPDATE {}.schema_migrations SET checksum = '\\x00' WHERE version = 1",
        faceid_migrations::quote_ident(&s)
    ))
    .execute(&pool)
    .await
    .unwrap();
    let err = faceid_migrations::apply(&pool, &s).await.unwrap_err();
    assert!(
        matches!(err, faceid_migrations::Error::Modified { version: 1, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn schemas_are_separate() {
    let pool = pool().await;
    let (a, b) = (schema("mig_a"), schema("mig_b"));
    faceid_migrations::apply(&pool, &a).await.unwrap();
    faceid_migrations::apply(&pool, &b).await.unwrap();
    sqlx::query(&format!(
        "INSERT INTO {}.users (id, username, email, password_hash, face_embedding, model_version)
         VALUES (gen_random_uuid(), 'alice', 'alice@example.com', 'x', array_fill(0.1, ARRAY[128])::vector, 'm')",
        faceid_migrations::quote_ident(&a)
    ))
    .execute(&pool)
    .await
    .unwrap();
    let count = |s: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!(
                "SELECT count(*) FROM {}.users",
                faceid_migrations::quote_ident(&s)
            ))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(count(a).await, 1);
    assert_eq!(count(b).await, 0);
}

#[tokio::test]
async fn invalid_schema_names_never_reach_sql() {
    let pool = pool().await;
    let err = faceid_migrations::apply(&pool, "x; DROP TABLE y")
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        faceid_migrations::Error::InvalidSchemaName(_)
    ));
}

/// Migration 0003 turns a tenant's full-precision index into the half-precision one and
/// keeps the graph parameters the operator gave it, and a search through it still finds
/// the nearest template.
#[tokio::test]
async fn halfvec_migration_keeps_the_tenants_graph_parameters() {
    let pool = pool().await;
    let s = schema("mig_halfvec");
    faceid_migrations::apply(&pool, &s).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let path = faceid_migrations::search_path(&s);
    // The index as a tenant had it before 0003, rebuilt by the operator with m 24.
    sqlx::raw_sql(&format!(
        "SET search_path = {path};
         DROP INDEX face_embeddings_hnsw_idx;
         CREATE INDEX face_embeddings_hnsw_idx ON face_embeddings
             USING hnsw (embedding vector_l2_ops) WITH (m = 24, ef_construction = 100);
         INSERT INTO users (id, username, email, password_hash, face_embedding, model_version)
           SELECT gen_random_uuid(), 'user' || i, 'user' || i || '@example.com', 'x',
                  array_fill(i / 1000.0, ARRAY[128])::vector, 'm'
           FROM generate_series(1, 200) i;
         INSERT INTO face_embeddings (id, user_id, embedding, model_version)
           SELECT gen_random_uuid(), id, face_embedding, 'm' FROM users;"
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    let halfvec = faceid_migrations::MIGRATIONS
        .iter()
        .find(|m| m.name == "halfvec_index")
        .unwrap();
    sqlx::raw_sql(halfvec.sql)
        .execute(&mut *conn)
        .await
        .unwrap();
    let def: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'face_embeddings_hnsw_idx'",
    )
    .bind(&s)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert!(
        def.contains("halfvec_l2_ops")
            && def.contains("m='24'")
            && def.contains("ef_construction='100'"),
        "{def}"
    );
    let nearest: String = sqlx::query_scalar(
        "SELECT u.username FROM face_embeddings f JOIN users u ON u.id = f.user_id
          ORDER BY f.embedding::halfvec(128) <-> array_fill(0.0421::real, ARRAY[128])::vector::halfvec(128)
          LIMIT 1",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(nearest, "user42");
    drop(conn);
    sqlx::query(&format!(
        "DROP SCHEMA {} CASCADE",
        faceid_migrations::quote_ident(&s)
    ))
    .execute(&pool)
    .await
    .unwrap();
}
