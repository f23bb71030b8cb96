//! Storage: the tenant schema in PostgreSQL (sqlx + pgvector) and the rate-limit
//! counters (Redis, or in-process when no Redis is configured).

pub mod attempts;
pub mod codes;
pub mod db;
pub mod ratelimit;
pub mod templates;
pub mod tokens;
pub mod users;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (e.g. the username is taken).
    #[error("conflict on {0}")]
    Conflict(&'static str),
    /// The database could not be reached or answered too slowly.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

/// Result alias for storage calls.
pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                let which = match db.constraint() {
                    Some(c) if c.contains("username") => "username",
                    Some(c) if c.contains("email") => "email",
                    _ => "unique key",
                };
                StoreError::Conflict(which)
            }
            // statement_timeout (57014) and connection-class errors mean "try later".
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    c == "57014" || c.starts_with("08") || c == "57P01" || c == "57P03"
                }) =>
            {
                StoreError::Unavailable(e)
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            _ => StoreError::Database(e),
        }
    }
}
