//! The PostgreSQL pool, pinned to the tenant schema.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

/// Pooled connections idle for longer than this are checked before use.
const RECHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Opens a lazily-connecting pool whose every connection has `search_path` set to
/// `schema` (then `public`, for the vector type) and a statement timeout, so a slow
/// database answers an error instead of holding requests forever.
///
/// `hnsw_ef_search` sets the HNSW search breadth (and pgvector's relaxed-order
/// iterative scan, so filtered-out rows do not shrink the result) for the whole session:
/// every 1:N search of a tenant uses the same value, and setting it once per connection
/// saves the transaction and two `SET LOCAL` round trips a search would otherwise cost.
/// PostgreSQL keeps them as placeholders until pgvector loads and adopts them.
pub fn connect_lazy(
    url: &str,
    schema: &str,
    max_connections: u32,
    statement_timeout: Duration,
    hnsw_ef_search: Option<u32>,
) -> Result<PgPool, sqlx::Error> {
    let mut settings = vec![
        ("search_path", faceid_migrations::search_path(schema)),
        (
            "statement_timeout",
            statement_timeout.as_millis().to_string(),
        ),
    ];
    if let Some(ef) = hnsw_ef_search {
        settings.push(("hnsw.ef_search", ef.clamp(1, 1000).to_string()));
        settings.push(("hnsw.iterative_scan", "relaxed_order".to_owned()));
    }
    let options = PgConnectOptions::from_str(url)?
        .application_name("faceid")
        .options(settings);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        // Fail fast when the database is down: callers answer 503, not a hang.
        .acquire_timeout(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(300))
        // A connection that sat idle may have been cut (a database restart, a proxy's
        // timeout): check it before use, so the request gets a fresh one instead of an
        // error. A connection used within the last second is not checked: under load
        // that check was a round trip per query (three per login).
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < RECHECK_IDLE_AFTER {
                    return Ok(true);
                }
                conn.ping().await.map(|()| true)
            })
        })
        .connect_lazy_with(options))
}

/// Whether the database answers and has pgvector, for `/ready`.
pub async fn check(pool: &PgPool) -> Result<(), String> {
    let vector: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_optional(pool)
            .await
            .map_err(|e| format!("postgresql: {}", short(&e)))?;
    if vector.is_none() {
        return Err("pgvector: extension not installed".to_owned());
    }
    Ok(())
}

fn short(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "unreachable (timed out)".to_owned(),
        sqlx::Error::Io(_) => "unreachable".to_owned(),
        sqlx::Error::Database(db) => format!("error {}", db.code().unwrap_or_default()),
        _ => "error".to_owned(),
    }
}
