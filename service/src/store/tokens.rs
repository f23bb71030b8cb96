//! Refresh tokens: stored as SHA-256 hashes, single use, rotated in families.
//!
//! Presenting a spent token again is treated as theft: the whole family (every token
//! descended from the same login) is revoked.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreResult;

/// Outcome of presenting a refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// Valid: it is now spent, and a successor was stored in the same family.
    Rotated {
        /// Owner.
        user_id: Uuid,
    },
    /// Already spent: the family has been revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

/// Stores a new token (by hash) starting a new family.
pub async fn issue(
    pool: &PgPool,
    hash: &[u8],
    user: Uuid,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(hash)
        .bind(user)
        .bind(Uuid::new_v4())
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// Spends `hash` and stores `successor` in its family, atomically.
pub async fn rotate(
    pool: &PgPool,
    hash: &[u8],
    successor: &[u8],
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<Redeemed> {
    let mut tx = pool.begin().await?;
    let spent: Option<(Uuid, Uuid)> = sqlx::query_as(
        "UPDATE refresh_tokens SET used_at = $2
         WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2
         RETURNING user_id, family_id",
    )
    .bind(hash)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user_id, family)) = spent else {
        let reused: Option<Uuid> = sqlx::query_scalar(
            "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND used_at IS NOT NULL",
        )
        .bind(hash)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match reused {
            Some(family) => {
                revoke_family_in(&mut tx, family, now).await?;
                Redeemed::Reused
            }
            None => Redeemed::Invalid,
        };
        tx.commit().await?;
        return Ok(outcome);
    };
    sqlx::query("INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(successor)
        .bind(user_id)
        .bind(family)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Redeemed::Rotated { user_id })
}

async fn revoke_family_in(
    tx: &mut sqlx::PgConnection,
    family: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// Revokes the family of `hash` (logout). Returns the owner when the token was known.
pub async fn revoke(pool: &PgPool, hash: &[u8], now: DateTime<Utc>) -> StoreResult<Option<Uuid>> {
    let mut tx = pool.begin().await?;
    let found: Option<(Uuid, Uuid)> =
        sqlx::query_as("SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((_, family)) = found {
        revoke_family_in(&mut tx, family, now).await?;
    }
    tx.commit().await?;
    Ok(found.map(|(user, _)| user))
}
