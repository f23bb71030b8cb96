//! The SQL migrations of one tenant schema, and the runner that applies them.
//!
//! Every tenant owns one PostgreSQL schema; the same numbered, plain-SQL migrations
//! (the `*.sql` files beside this crate's `Cargo.toml`) are applied inside each.
//! Both the service (`MIGRATE_ON_START`) and the operator call [`apply`], so the two
//! can never disagree about what a tenant schema holds.
//!
//! Guarantees:
//! - pending migrations run in one transaction with `search_path` pinned to the tenant
//!   schema (then `public`, where the `vector` extension lives);
//! - concurrent runners (several replicas starting at once, or the operator) serialise
//!   on a per-schema advisory lock, and a migration already applied is skipped;
//! - a released migration that was edited afterwards is refused (its SHA-256 is stored).

use sha2::{Digest, Sha256};
use sqlx::{Executor, PgPool, Row};

/// One numbered migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing number, from the file name.
    pub version: i64,
    /// Human-readable name, from the file name.
    pub name: &'static str,
    /// The SQL, run as one transaction.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "security",
        sql: include_str!("../0002_security.sql"),
    },
    Migration {
        version: 3,
        name: "halfvec_index",
        sql: include_str!("../0003_halfvec_index.sql"),
    },
    Migration {
        version: 4,
        name: "openid_connect",
        sql: include_str!("../0004_openid_connect.sql"),
    },
];

/// What can go wrong while migrating a tenant schema.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The schema name is not a plain lower-case identifier.
    #[error(
        "invalid schema name {0:?}: use 1-63 characters from a-z, 0-9 and _, starting with a letter or _"
    )]
    InvalidSchemaName(String),
    /// A migration recorded as applied no longer matches the file.
    #[error(
        "migration {version} ({name}) was changed after it was applied to schema {schema:?}; released migrations must never be edited"
    )]
    Modified {
        /// Tenant schema.
        schema: String,
        /// Migration number.
        version: i64,
        /// Migration name.
        name: &'static str,
    },
    /// The schema has migrations newer than this build knows about.
    #[error(
        "schema {schema:?} is at migration {applied}, newer than this build's {known}; refusing to run an older binary against it"
    )]
    TooNew {
        /// Tenant schema.
        schema: String,
        /// Highest applied version.
        applied: i64,
        /// Highest version this build knows.
        known: i64,
    },
    /// The `vector` extension is missing and this role may not create it.
    #[error(
        "the pgvector extension is not installed in this database and could not be created: {0}"
    )]
    NoVector(#[source] sqlx::Error),
    /// Any database failure.
    #[error("database error while migrating: {0}")]
    Database(#[from] sqlx::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that `name` is safe to use as a schema identifier.
///
/// Only plain lower-case identifiers are accepted, so a name never needs quoting rules
/// beyond double quotes and can never inject SQL.
pub fn validate_schema_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(Error::InvalidSchemaName(name.to_owned()))
    }
}

/// The schema name as a quoted SQL identifier. Call [`validate_schema_name`] first.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The `search_path` value that makes unqualified names resolve inside `schema`.
pub fn search_path(schema: &str) -> String {
    if schema == "public" {
        "public".to_owned()
    } else {
        format!("{},public", quote_ident(schema))
    }
}

/// Outcome of [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Versions applied by this call (empty when the schema was up to date).
    pub newly_applied: Vec<i64>,
    /// The schema's version after the call.
    pub current: i64,
}

fn checksum(sql: &str) -> Vec<u8> {
    Sha256::digest(sql.as_bytes()).to_vec()
}

/// Advisory-lock key for one schema: concurrent runners on the same schema queue up,
/// runners on different schemas do not block each other.
fn lock_key(schema: &str) -> i64 {
    let digest = Sha256::digest(format!("faceid-migrations:{schema}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Creates `schema` if needed and applies every pending migration inside it.
///
/// Everything happens in one transaction holding a per-schema advisory lock: replicas
/// starting together queue on the lock and then find the work done, and a failing
/// migration leaves the schema exactly as it was.
pub async fn apply(pool: &PgPool, schema: &str) -> Result<Applied> {
    validate_schema_name(schema)?;
    ensure_vector_extension(pool).await?;
    let ident = quote_ident(schema);

    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(schema))
        .execute(&mut *tx)
        .await?;
    // `Executor::execute` with a plain string runs it through the simple-query protocol,
    // which accepts several statements (and, unlike `raw_sql`, yields a `Send` future).
    let bootstrap = format!(
        "CREATE SCHEMA IF NOT EXISTS {ident};
         CREATE TABLE IF NOT EXISTS {ident}.schema_migrations (
             version    bigint      PRIMARY KEY,
             name       text        NOT NULL,
             checksum   bytea       NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    );
    tx.execute(bootstrap.as_str()).await?;

    let rows = sqlx::query(&format!(
        "SELECT version, checksum FROM {ident}.schema_migrations ORDER BY version"
    ))
    .fetch_all(&mut *tx)
    .await?;
    let applied: Vec<(i64, Vec<u8>)> = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;

    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(&(newest, _)) = applied.last()
        && newest > known
    {
        return Err(Error::TooNew {
            schema: schema.to_owned(),
            applied: newest,
            known,
        });
    }

    sqlx::query(&format!("SET LOCAL search_path TO {}", search_path(schema)))
        .execute(&mut *tx)
        .await?;
    let mut newly_applied = Vec::new();
    for migration in MIGRATIONS {
        let sum = checksum(migration.sql);
        if let Some((_, stored)) = applied.iter().find(|(v, _)| *v == migration.version) {
            if *stored != sum {
                return Err(Error::Modified {
                    schema: schema.to_owned(),
                    version: migration.version,
                    name: migration.name,
                });
            }
            continue;
        }
        tx.execute(migration.sql).await?;
        sqlx::query(&format!(
            "INSERT INTO {ident}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
        ))
        .bind(migration.version)
        .bind(migration.name)
        .bind(&sum)
        .execute(&mut *tx)
        .await?;
        newly_applied.push(migration.version);
    }
    tx.commit().await?;
    for version in &newly_applied {
        tracing::info!(schema, version, "migration applied");
    }
    Ok(Applied {
        newly_applied,
        current: known,
    })
}

async fn ensure_vector_extension(pool: &PgPool) -> Result<()> {
    let present: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')")
            .fetch_one(pool)
            .await?;
    if !present {
        // Serialised, since two concurrent CREATE EXTENSION IF NOT EXISTS can collide.
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key("extension:vector"))
            .execute(&mut *tx)
            .await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public")
            .execute(&mut *tx)
            .await
            .map_err(Error::NoVector)?;
        tx.commit().await.map_err(Error::NoVector)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["tenant_a", "_x", "a1", "public"] {
            assert!(validate_schema_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "1abc", "a-b", "a;drop", "a\"b", &"x".repeat(64)] {
            assert!(validate_schema_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(versions, sorted);
        assert_eq!(versions.first(), Some(&1));
    }

    #[test]
    fn search_path_keeps_public_for_the_vector_type() {
        assert_eq!(search_path("tenant_a"), "\"tenant_a\",public");
        assert_eq!(search_path("public"), "public");
    }
}
