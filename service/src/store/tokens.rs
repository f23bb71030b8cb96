//! Refresh tokens: stored as SHA-256 hashes, single use, rotated in families.
//!
//! Presenting a spent token again is treated as theft: the whole family (every token
//! descended from the same login) is revoked.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreResult;

/// The OpenID Connect grant a refresh token continues: which client it was issued to,
/// for which scope, and when and how the user authenticated. `None` for the original
/// API's tokens.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Grant {
    /// The client.
    pub client_id: String,
    /// The scope granted.
    pub scope: String,
    /// When the user authenticated (the ID token's `auth_time`).
    pub auth_time: DateTime<Utc>,
    /// How (`face` or `pwd`).
    pub amr: String,
    /// The liveness score of that authentication, if measured.
    pub liveness_score: Option<f32>,
}

/// Outcome of presenting a refresh token.
#[derive(Clone, Debug, PartialEq)]
pub enum Redeemed {
    /// Valid: it is now spent, and a successor was stored in the same family.
    Rotated {
        /// Owner.
        user_id: Uuid,
        /// The grant it continues (OpenID Connect clients).
        grant: Option<Grant>,
    },
    /// Already spent: the family has been revoked.
    Reused,
    /// Unknown, expired, revoked, or issued to another client.
    Invalid,
}

/// Stores a new token (by hash) starting a new family; returns the family.
pub async fn issue(
    pool: &PgPool,
    hash: &[u8],
    user: Uuid,
    expires_at: DateTime<Utc>,
    grant: Option<&Grant>,
) -> StoreResult<Uuid> {
    let family = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at,
                                     client_id, scope, auth_time, amr, liveness_score)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(hash)
    .bind(user)
    .bind(family)
    .bind(expires_at)
    .bind(grant.map(|g| &g.client_id))
    .bind(grant.map(|g| &g.scope))
    .bind(grant.map(|g| g.auth_time))
    .bind(grant.map(|g| &g.amr))
    .bind(grant.and_then(|g| g.liveness_score))
    .execute(pool)
    .await?;
    Ok(family)
}

/// Spends `hash` and stores `successor` in its family with the same grant, atomically.
/// `client` must be the client the token was issued to (`None`: the original API's
/// tokens); a token of another client is [`Redeemed::Invalid`] and stays unspent.
pub async fn rotate(
    pool: &PgPool,
    hash: &[u8],
    successor: &[u8],
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    client: Option<&str>,
) -> StoreResult<Redeemed> {
    let mut tx = pool.begin().await?;
    let spent: Option<(Uuid, Uuid)> = sqlx::query_as(
        "UPDATE refresh_tokens SET used_at = $2
         WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2
           AND client_id IS NOT DISTINCT FROM $3
         RETURNING user_id, family_id",
    )
    .bind(hash)
    .bind(now)
    .bind(client)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user_id, _family)) = spent else {
        let reused: Option<Uuid> = sqlx::query_scalar(
            "SELECT family_id FROM refresh_tokens
             WHERE token_hash = $1 AND used_at IS NOT NULL AND client_id IS NOT DISTINCT FROM $2",
        )
        .bind(hash)
        .bind(client)
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
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at,
                                     client_id, scope, auth_time, amr, liveness_score)
         SELECT $1, user_id, family_id, $3, client_id, scope, auth_time, amr, liveness_score
           FROM refresh_tokens WHERE token_hash = $2",
    )
    .bind(successor)
    .bind(hash)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    let grant: Option<Grant> = sqlx::query_as(
        "SELECT client_id, scope, auth_time, amr, liveness_score FROM refresh_tokens
         WHERE token_hash = $1 AND client_id IS NOT NULL",
    )
    .bind(hash)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Redeemed::Rotated { user_id, grant })
}

/// A live refresh token as introspection shows it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct LiveToken {
    /// Owner.
    pub user_id: Uuid,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// The OpenID client (`None` for the original API's tokens).
    pub client_id: Option<String>,
    /// The grant's scope.
    pub scope: Option<String>,
}

/// A live (unspent, unrevoked, unexpired) refresh token, for revocation and introspection.
pub async fn live(
    pool: &PgPool,
    hash: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<Option<LiveToken>> {
    Ok(sqlx::query_as(
        "SELECT user_id, expires_at, client_id, scope FROM refresh_tokens
          WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(hash)
    .bind(now)
    .fetch_optional(pool)
    .await?)
}

/// Revokes a whole family (a replayed authorization code's tokens).
pub async fn revoke_family(pool: &PgPool, family: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
    let mut conn = pool.acquire().await?;
    revoke_family_in(&mut conn, family, now).await
}

/// Revokes every refresh token `user` holds at OpenID client `client` (RP-initiated
/// logout).
pub async fn revoke_user_client(
    pool: &PgPool,
    user: Uuid,
    client: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $3
         WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL",
    )
    .bind(user)
    .bind(client)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
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
