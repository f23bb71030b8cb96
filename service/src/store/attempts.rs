//! Failed login attempts: the fraud record, lockout counting and the admin queries.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::lockout::LockoutPolicy;

/// Why an attempt failed; stored as the `reason` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// No enrolled face within the tolerance.
    NoMatch,
    /// The liveness check refused the image.
    LivenessFailed,
    /// The client was rate limited.
    RateLimit,
    /// The account is locked.
    Locked,
    /// Two users matched nearly equally well.
    AmbiguousMatch,
    /// No face in the image.
    NoFace,
    /// Several comparable faces.
    MultipleFaces,
    /// The face failed a quality check.
    PoorQuality,
    /// The upload is not a usable image.
    InvalidImage,
    /// The account is deactivated.
    Inactive,
    /// A registration presented a face already enrolled under the attempt's account.
    DuplicateFace,
    /// A wrong password was given to prove ownership of the account.
    InvalidPassword,
}

impl FailureReason {
    /// The stored (and metric label) form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoMatch => "no_match",
            Self::LivenessFailed => "liveness_failed",
            Self::RateLimit => "rate_limit",
            Self::Locked => "locked",
            Self::AmbiguousMatch => "ambiguous_match",
            Self::NoFace => "no_face",
            Self::MultipleFaces => "multiple_faces",
            Self::PoorQuality => "poor_quality",
            Self::InvalidImage => "invalid_image",
            Self::Inactive => "inactive",
            Self::DuplicateFace => "duplicate_face",
            Self::InvalidPassword => "invalid_password",
        }
    }

    /// Whether a failure of this kind counts towards a lock (see `NOT_COUNTED`).
    pub fn counts_towards_lock(self) -> bool {
        !matches!(self, Self::Locked | Self::RateLimit | Self::DuplicateFace)
    }
}

/// One failed attempt to record.
#[derive(Clone, Debug)]
pub struct NewAttempt {
    /// The account it was against, when known (1:1 login, or a 1:N probe that matched).
    pub user_id: Option<Uuid>,
    /// Client IP.
    pub ip: String,
    /// What lockout counts the client by (IPv4 address or IPv6 /64).
    pub client_key: String,
    /// Client user agent (truncated).
    pub user_agent: String,
    /// Why it failed.
    pub reason: FailureReason,
    /// Match confidence, when a match was computed.
    pub confidence: Option<f32>,
    /// Liveness score, when computed.
    pub liveness: Option<f32>,
}

/// Reasons that are no attempt on the account: refusals that did no face work because
/// the account or client was already locked, rate limits, and somebody else registering
/// with the account's face. They never count towards a lock.
const NOT_COUNTED: &str = "('locked', 'rate_limit', 'duplicate_face')";

/// A client's counted failures against one account since a time, and the last one.
pub async fn client_failures(
    pool: &PgPool,
    user: Uuid,
    client_key: &str,
    since: DateTime<Utc>,
) -> StoreResult<(u64, Option<DateTime<Utc>>)> {
    let (count, last): (i64, Option<DateTime<Utc>>) = sqlx::query_as(&format!(
        "SELECT count(*), max(attempted_at) FROM failed_login_attempts
         WHERE user_id = $1 AND client_key = $2 AND attempted_at > $3
           AND reason NOT IN {NOT_COUNTED}"
    ))
    .bind(user)
    .bind(client_key)
    .bind(since)
    .fetch_one(pool)
    .await?;
    Ok((u64::try_from(count).unwrap_or(0), last))
}

/// Records a failed attempt and, when it is against a known account, applies the
/// account-wide lock of the policy in the same transaction. Returns whether this attempt
/// locked the account. (A client's own lockout needs no write: it is read from these
/// rows, [`client_failures`].)
///
/// The user row is locked (`FOR UPDATE`) before counting, so concurrent failures against
/// one account serialise and every one of them is counted.
pub async fn record(
    pool: &PgPool,
    attempt: &NewAttempt,
    policy: &LockoutPolicy,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    let reset: Option<Option<DateTime<Utc>>> = match attempt.user_id {
        Some(user) => {
            sqlx::query_scalar("SELECT lockout_reset_at FROM users WHERE id = $1 FOR UPDATE")
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?
        }
        None => None,
    };
    sqlx::query(
        "INSERT INTO failed_login_attempts
             (id, user_id, ip_address, client_key, user_agent, reason, confidence_score, liveness_score, attempted_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::new_v4())
    .bind(reset.as_ref().and(attempt.user_id))
    .bind(&attempt.ip)
    .bind(&attempt.client_key)
    .bind(&attempt.user_agent)
    .bind(attempt.reason.as_str())
    .bind(attempt.confidence)
    .bind(attempt.liveness)
    .bind(now)
    .execute(&mut *tx)
    .await?;

    let mut locked_now = false;
    if let (Some(user), Some(last_reset)) = (attempt.user_id, reset)
        && attempt.reason.counts_towards_lock()
    {
        let since = policy.counting_since(now, last_reset);
        let failures: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM failed_login_attempts
             WHERE user_id = $1 AND attempted_at > $2 AND reason NOT IN {NOT_COUNTED}"
        ))
        .bind(user)
        .bind(since)
        .fetch_one(&mut *tx)
        .await?;
        if policy.should_lock_account(u64::try_from(failures).unwrap_or(0)) {
            let done = sqlx::query(
                "UPDATE users SET is_locked = true, locked_until = $2, lockout_reset_at = $3, updated_at = $3,
                        token_generation = token_generation + 1
                 WHERE id = $1",
            )
            .bind(user)
            .bind(policy.locked_until(now))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            locked_now = done.rows_affected() == 1;
        }
    }
    tx.commit().await?;
    Ok(locked_now)
}

/// A failed attempt as the admin API shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AttemptRow {
    /// Id.
    pub id: Uuid,
    /// The account, when known.
    pub user_id: Option<Uuid>,
    /// Client IP.
    pub ip_address: String,
    /// Client user agent.
    pub user_agent: String,
    /// Why it failed (`no_match`, `liveness_failed`, `rate_limit`, `locked`, ...;
    /// `duplicate_face`: a registration with this account's face).
    pub reason: String,
    /// Match confidence, when computed.
    pub confidence_score: Option<f32>,
    /// Liveness score, when computed.
    pub liveness_score: Option<f32>,
    /// When.
    pub attempted_at: DateTime<Utc>,
}

/// Failed attempts since `since`, newest first, at most `limit`.
pub async fn since(
    pool: &PgPool,
    since: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<AttemptRow>> {
    Ok(sqlx::query_as(
        "SELECT id, user_id, ip_address, user_agent, reason, confidence_score, liveness_score, attempted_at
         FROM failed_login_attempts WHERE attempted_at > $1
         ORDER BY attempted_at DESC LIMIT $2",
    )
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Failed attempts since `since`, in total.
pub async fn count_since(pool: &PgPool, since: DateTime<Utc>) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM failed_login_attempts WHERE attempted_at > $1")
            .bind(since)
            .fetch_one(pool)
            .await?,
    )
}

/// An IP with many recent failures.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SuspiciousIp {
    /// Client IP.
    pub ip_address: String,
    /// Failed attempts in the window.
    pub failed_attempts: i64,
    /// Distinct accounts targeted.
    pub distinct_users: i64,
    /// Distinct failure reasons.
    pub reasons: Vec<String>,
    /// First failure in the window.
    pub first_attempt: DateTime<Utc>,
    /// Latest failure.
    pub last_attempt: DateTime<Utc>,
}

/// IPs with at least `threshold` failures since `since`, worst first.
pub async fn suspicious(
    pool: &PgPool,
    since: DateTime<Utc>,
    threshold: i64,
) -> StoreResult<Vec<SuspiciousIp>> {
    Ok(sqlx::query_as(
        "SELECT ip_address,
                count(*) AS failed_attempts,
                count(DISTINCT user_id) AS distinct_users,
                array_agg(DISTINCT reason ORDER BY reason) AS reasons,
                min(attempted_at) AS first_attempt,
                max(attempted_at) AS last_attempt
         FROM failed_login_attempts WHERE attempted_at > $1
         GROUP BY ip_address HAVING count(*) >= $2
         ORDER BY failed_attempts DESC, ip_address LIMIT 1000",
    )
    .bind(since)
    .bind(threshold)
    .fetch_all(pool)
    .await?)
}

/// Failures since `since` grouped by reason.
pub async fn by_reason(pool: &PgPool, since: DateTime<Utc>) -> StoreResult<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT reason, count(*) FROM failed_login_attempts WHERE attempted_at > $1
         GROUP BY reason ORDER BY reason",
    )
    .bind(since)
    .fetch_all(pool)
    .await?)
}

/// Deletes attempts older than `cutoff` (retention). Returns how many.
pub async fn delete_older_than(pool: &PgPool, cutoff: DateTime<Utc>) -> StoreResult<u64> {
    Ok(
        sqlx::query("DELETE FROM failed_login_attempts WHERE attempted_at < $1")
            .bind(cutoff)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
