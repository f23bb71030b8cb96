//! OpenID Connect authorization codes: stored as SHA-256 hashes, a minute long, spent once.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreResult;

/// What a code stands for: the authorization request it answers and the authentication
/// that let it be issued.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Code {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI of the request (the token request must repeat it).
    pub redirect_uri: String,
    /// The user.
    pub user_id: Uuid,
    /// The scope granted.
    pub scope: String,
    /// The request's nonce, for the ID token.
    pub nonce: Option<String>,
    /// The PKCE challenge.
    pub code_challenge: String,
    /// When the user authenticated.
    pub auth_time: DateTime<Utc>,
    /// How (`face` or `pwd`).
    pub amr: String,
    /// The liveness score of that authentication.
    pub liveness_score: Option<f32>,
}

/// Outcome of presenting a code.
#[derive(Clone, Debug, PartialEq)]
pub enum Redeemed {
    /// Valid: now spent.
    Spent(Code),
    /// Presented before: whatever it was exchanged for must be revoked.
    Replayed {
        /// Its user.
        user_id: Uuid,
        /// The refresh-token family its first exchange started.
        family: Option<Uuid>,
    },
    /// Unknown or expired.
    Invalid,
}

/// Stores a new code (by hash).
pub async fn store(
    pool: &PgPool,
    hash: &[u8],
    code: &Code,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, user_id, scope,
             nonce, code_challenge, auth_time, amr, liveness_score, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(hash)
    .bind(&code.client_id)
    .bind(&code.redirect_uri)
    .bind(code.user_id)
    .bind(&code.scope)
    .bind(&code.nonce)
    .bind(&code.code_challenge)
    .bind(code.auth_time)
    .bind(&code.amr)
    .bind(code.liveness_score)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Spends the code `hash`: only one caller ever gets [`Redeemed::Spent`] for it.
pub async fn redeem(pool: &PgPool, hash: &[u8], now: DateTime<Utc>) -> StoreResult<Redeemed> {
    let spent: Option<Code> = sqlx::query_as(
        "UPDATE authorization_codes SET used_at = $2
          WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2
         RETURNING client_id, redirect_uri, user_id, scope, nonce, code_challenge, auth_time,
                   amr, liveness_score",
    )
    .bind(hash)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    if let Some(code) = spent {
        return Ok(Redeemed::Spent(code));
    }
    let replayed: Option<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT user_id, family_id FROM authorization_codes WHERE code_hash = $1 AND used_at IS NOT NULL",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    Ok(match replayed {
        Some((user_id, family)) => Redeemed::Replayed { user_id, family },
        None => Redeemed::Invalid,
    })
}

/// Records the refresh-token family a code's exchange started.
pub async fn attach_family(pool: &PgPool, hash: &[u8], family: Uuid) -> StoreResult<()> {
    sqlx::query("UPDATE authorization_codes SET family_id = $2 WHERE code_hash = $1")
        .bind(hash)
        .bind(family)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes codes that expired before `cutoff` (kept a while after expiry, so a late
/// replay is still recognised as one).
pub async fn delete_expired(pool: &PgPool, cutoff: DateTime<Utc>) -> StoreResult<u64> {
    Ok(
        sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
            .bind(cutoff)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
