//! Users and their face templates.

use chrono::{DateTime, Utc};
use pgvector::Vector;
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::matching::Candidate;

/// Most templates one user may enrol (registration included).
pub const MAX_FACES_PER_USER: i64 = 10;

/// A user as stored (no password hash, no embedding).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserRow {
    /// Id.
    pub id: Uuid,
    /// Username as registered.
    pub username: String,
    /// E-mail as registered.
    pub email: String,
    /// Deactivated users cannot log in.
    pub is_active: bool,
    /// Lock flag; see [`crate::domain::lockout::is_locked`].
    pub is_locked: bool,
    /// End of the lock.
    pub locked_until: Option<DateTime<Utc>>,
    /// Start of the lockout counting window.
    pub lockout_reset_at: Option<DateTime<Utc>>,
    /// Model that produced the registration template.
    pub model_version: String,
    /// Access tokens of an older generation are refused (see `bump_token_generation`).
    pub token_generation: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

const USER_COLUMNS: &str = "id, username, email, is_active, is_locked, locked_until, lockout_reset_at, model_version, token_generation, created_at, updated_at";

/// A user to create.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// Username.
    pub username: &'a str,
    /// E-mail.
    pub email: &'a str,
    /// Argon2id PHC string.
    pub password_hash: &'a str,
    /// Registration template.
    pub embedding: &'a [f32],
    /// Model that produced it.
    pub model_version: &'a str,
    /// The recognition network and dimension (see [`crate::flows::RECOGNITION_NETWORK`]).
    pub network: &'a str,
}

/// Which unique field, if any, an existing user already holds.
pub async fn taken_field(
    pool: &PgPool,
    username: &str,
    email: &str,
) -> StoreResult<Option<&'static str>> {
    let row: Option<(bool, bool)> = sqlx::query_as(
        "SELECT lower(username) = lower($1), lower(email) = lower($2) FROM users
         WHERE lower(username) = lower($1) OR lower(email) = lower($2) LIMIT 1",
    )
    .bind(username)
    .bind(email)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(u, _)| if u { "username" } else { "email" }))
}

/// Outcome of [`create`].
#[derive(Debug)]
pub enum Created {
    /// The new user.
    User(UserRow),
    /// An enrolled template of this account lies within the duplicate distance.
    DuplicateOf(Candidate),
}

/// Creates a user and its first template in one transaction.
///
/// With `duplicate_within`, the face is first compared with every enrolled template
/// (active accounts or not) and nothing is created when one lies within that distance.
/// The check and the insert hold one transaction-scoped advisory lock of the schema, so
/// two registrations of one face at the same moment cannot both pass the check; it
/// serialises only the (milliseconds long) check-and-insert of registrations.
pub async fn create(
    pool: &PgPool,
    new: NewUser<'_>,
    duplicate_within: Option<f32>,
) -> StoreResult<Created> {
    let id = Uuid::new_v4();
    let vector = Vector::from(new.embedding.to_vec());
    let mut tx = pool.begin().await?;
    if let Some(within) = duplicate_within {
        // Keyed by the schema, so tenants sharing a database do not wait on each other.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext('faceid:register:' || current_schema()))",
        )
        .execute(&mut *tx)
        .await?;
        let nearest: Option<(Uuid, f64)> = sqlx::query_as(NEAREST_TEMPLATE_SQL)
            .bind(&vector)
            .bind(new.network)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some((user_id, distance)) = nearest
            && distance as f32 <= within
        {
            return Ok(Created::DuplicateOf(Candidate {
                user_id,
                distance: distance as f32,
            }));
        }
    }
    let user: UserRow = sqlx::query_as(&format!(
        "INSERT INTO users (id, username, email, password_hash, face_embedding, model_version, network)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(new.username)
    .bind(new.email)
    .bind(new.password_hash)
    .bind(&vector)
    .bind(new.model_version)
    .bind(new.network)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO face_embeddings (id, user_id, embedding, model_version, network)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::new_v4())
    .bind(id)
    .bind(&vector)
    .bind(new.model_version)
    .bind(new.network)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Created::User(user))
}

/// A user by id.
pub async fn by_id(pool: &PgPool, id: Uuid) -> StoreResult<Option<UserRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// A user by username (case-insensitive).
pub async fn by_username(pool: &PgPool, username: &str) -> StoreResult<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1)"
    ))
    .bind(username)
    .fetch_optional(pool)
    .await?)
}

/// The 1:N search: the `$2` templates of active users made by network `$3` nearest to
/// `$1`, nearest first, with their exact distances. Walks the HNSW index, which orders by
/// the half-precision copies of the templates (migration 0003), joins each row to its
/// user by primary key (both tested with `EXPLAIN`), then re-ranks the candidates by the
/// full-precision distance the decision uses.
pub const NEAREST_SQL: &str = "SELECT user_id, distance FROM (
         SELECT f.user_id, (f.embedding <-> $1)::float8 AS distance
           FROM face_embeddings f JOIN users u ON u.id = f.user_id
          WHERE u.is_active AND f.network = $3
          ORDER BY f.embedding::halfvec(128) <-> $1::halfvec(128)
          LIMIT $2
     ) candidates
     ORDER BY distance";

/// The duplicate-face check at registration: the template of network `$2` nearest to `$1`
/// (any user, active or not), through the same index as [`NEAREST_SQL`].
pub const NEAREST_TEMPLATE_SQL: &str = "SELECT user_id, distance FROM (
         SELECT user_id, (embedding <-> $1)::float8 AS distance
           FROM face_embeddings
          WHERE network = $2
          ORDER BY embedding::halfvec(128) <-> $1::halfvec(128)
          LIMIT 4
     ) candidates
     ORDER BY distance
     LIMIT 1";

/// The `limit` templates of active users nearest to `embedding`, through the HNSW index.
///
/// The search breadth and pgvector 0.8's iterative index scan (which keeps the scan going
/// when the join filter drops rows, so inactive users do not starve the result) are
/// settings of the pool's connections (`store::db::connect_lazy`).
pub async fn nearest(
    pool: &PgPool,
    embedding: &[f32],
    limit: i64,
    network: &str,
) -> StoreResult<Vec<Candidate>> {
    let rows: Vec<(Uuid, f64)> = sqlx::query_as(NEAREST_SQL)
        .bind(Vector::from(embedding.to_vec()))
        .bind(limit)
        .bind(network)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, distance)| Candidate {
            user_id,
            distance: distance as f32,
        })
        .collect())
}

/// The number of active users (the 1:N gallery), counted at most once per
/// [`GALLERY_COUNT_TTL`] per process: face-only login consults it on every request, and
/// counting a large table each time would cost more than the search. Registrations and
/// erasures in this process invalidate it at once; other replicas' catch up within the TTL.
#[derive(Debug, Default)]
pub struct GalleryCount {
    cached: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

/// How long a gallery count is reused.
pub const GALLERY_COUNT_TTL: std::time::Duration = std::time::Duration::from_secs(10);

impl GalleryCount {
    /// Active users, from the cache when it is fresh.
    pub async fn get(&self, pool: &PgPool) -> StoreResult<u64> {
        if let Some((at, n)) = *self.lock()
            && at.elapsed() < GALLERY_COUNT_TTL
        {
            return Ok(n);
        }
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE is_active")
            .fetch_one(pool)
            .await?;
        let n = u64::try_from(n).unwrap_or(0);
        *self.lock() = Some((std::time::Instant::now(), n));
        Ok(n)
    }

    /// Forgets the cached count (the gallery changed).
    pub fn invalidate(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(std::time::Instant, u64)>> {
        // The guarded value is a plain cache: a panic elsewhere cannot leave it invalid.
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Distance from `embedding` to the nearest template of one user made by `network`
/// (1:1 verification); `None` when the user has none.
pub async fn distance_to_user(
    pool: &PgPool,
    user: Uuid,
    embedding: &[f32],
    network: &str,
) -> StoreResult<Option<f32>> {
    let d: Option<f64> = sqlx::query_scalar(
        "SELECT min(embedding <-> $2)::float8 FROM face_embeddings WHERE user_id = $1 AND network = $3",
    )
    .bind(user)
    .bind(Vector::from(embedding.to_vec()))
    .bind(network)
    .fetch_one(pool)
    .await?;
    Ok(d.map(|d| d as f32))
}

/// Distance from `embedding` to a user's registration template (the first enrolment,
/// `users.face_embedding`), the anchor every later enrolment must match; `None` when the
/// user does not exist or registered with another network.
pub async fn distance_to_registration(
    pool: &PgPool,
    user: Uuid,
    embedding: &[f32],
    network: &str,
) -> StoreResult<Option<f32>> {
    let d: Option<Option<f64>> = sqlx::query_scalar(
        "SELECT CASE WHEN network = $3 THEN (face_embedding <-> $2)::float8 END FROM users WHERE id = $1",
    )
    .bind(user)
    .bind(Vector::from(embedding.to_vec()))
    .bind(network)
    .fetch_optional(pool)
    .await?;
    Ok(d.flatten().map(|d| d as f32))
}

/// Adds a template to a user, unless the user already has [`MAX_FACES_PER_USER`].
/// Returns the new template's id, or `None` when the user is at the limit.
pub async fn add_face(
    pool: &PgPool,
    user: Uuid,
    embedding: &[f32],
    model_version: &str,
    network: &str,
) -> StoreResult<Option<Uuid>> {
    let mut tx = pool.begin().await?;
    // Lock the user row so concurrent enrolments count correctly.
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM face_embeddings WHERE user_id = $1")
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
    if count >= MAX_FACES_PER_USER {
        return Ok(None);
    }
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO face_embeddings (id, user_id, embedding, model_version, network)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(user)
    .bind(Vector::from(embedding.to_vec()))
    .bind(model_version)
    .bind(network)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE users SET updated_at = now() WHERE id = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(id))
}

/// Number of templates a user has.
pub async fn face_count(pool: &PgPool, user: Uuid) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM face_embeddings WHERE user_id = $1")
            .bind(user)
            .fetch_one(pool)
            .await?,
    )
}

/// Erases a user: the row, every template and refresh token (cascade). Failed attempts
/// keep their fraud record with the user reference cleared. Returns whether it existed.
pub async fn delete(pool: &PgPool, user: Uuid) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets or clears the lock. Clearing also restarts the lockout counting window.
pub async fn set_locked(
    pool: &PgPool,
    user: Uuid,
    locked: bool,
    until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StoreResult<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE users SET is_locked = $2, locked_until = $3, lockout_reset_at = $4, updated_at = $4,
                token_generation = token_generation + CASE WHEN $2 THEN 1 ELSE 0 END
         WHERE id = $1 RETURNING {USER_COLUMNS}"
    ))
    .bind(user)
    .bind(locked)
    .bind(if locked { until } else { None })
    .bind(now)
    .fetch_optional(pool)
    .await?)
}

/// A user's password hash (PHC string), `None` when the user does not exist.
pub async fn password_hash(pool: &PgPool, user: Uuid) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(pool)
            .await?,
    )
}

/// Revokes every access token of a user issued so far (logout, deactivation, locks).
pub async fn bump_token_generation(pool: &PgPool, user: Uuid) -> StoreResult<()> {
    sqlx::query("UPDATE users SET token_generation = token_generation + 1 WHERE id = $1")
        .bind(user)
        .execute(pool)
        .await?;
    Ok(())
}

/// What an access token's bearer is checked against on every request.
#[derive(Clone, Copy, Debug, sqlx::FromRow)]
pub struct SessionState {
    /// Current token generation.
    pub token_generation: i32,
    /// Deactivated users are refused.
    pub is_active: bool,
    /// Lock flag.
    pub is_locked: bool,
    /// End of the lock.
    pub locked_until: Option<DateTime<Utc>>,
}

/// The session state of a user (one primary-key lookup), `None` when erased.
pub async fn session_state(pool: &PgPool, user: Uuid) -> StoreResult<Option<SessionState>> {
    Ok(sqlx::query_as(
        "SELECT token_generation, is_active, is_locked, locked_until FROM users WHERE id = $1",
    )
    .bind(user)
    .fetch_optional(pool)
    .await?)
}

/// Activates or deactivates a user.
pub async fn set_active(
    pool: &PgPool,
    user: Uuid,
    active: bool,
    now: DateTime<Utc>,
) -> StoreResult<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "UPDATE users SET is_active = $2, updated_at = $3,
                token_generation = token_generation + CASE WHEN $2 THEN 0 ELSE 1 END
         WHERE id = $1 RETURNING {USER_COLUMNS}"
    ))
    .bind(user)
    .bind(active)
    .bind(now)
    .fetch_optional(pool)
    .await?)
}

/// Active users and currently locked users, for the gauges and the admin summary.
pub async fn counts(pool: &PgPool, now: DateTime<Utc>) -> StoreResult<(i64, i64, i64)> {
    let row: (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*),
                count(*) FILTER (WHERE is_active),
                count(*) FILTER (WHERE is_locked AND (locked_until IS NULL OR locked_until > $1))
         FROM users",
    )
    .bind(now)
    .fetch_one(pool)
    .await?;
    Ok(row)
}
