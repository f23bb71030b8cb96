//! The template key's bookkeeping and re-keying of every stored template.

use pgvector::Vector;
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::templates::TemplateKey;

/// How the configured key relates to the stored templates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// The schema had no key recorded; this one now is.
    Recorded,
    /// The stored templates are protected by this key.
    Matches,
    /// The schema recorded this key's fingerprint in the form before it covered the
    /// matrix; it now holds the full one.
    Upgraded,
    /// They are protected by another key (fingerprint given).
    Mismatch(String),
}

/// Records the key's fingerprint on first use, or compares it with the recorded one.
pub async fn check_or_record(pool: &PgPool, key: &TemplateKey) -> StoreResult<KeyCheck> {
    let inserted = sqlx::query(
        "INSERT INTO template_protection (fingerprint) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(key.fingerprint())
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(KeyCheck::Recorded);
    }
    let stored: String = sqlx::query_scalar("SELECT fingerprint FROM template_protection")
        .fetch_one(pool)
        .await?;
    if stored == key.fingerprint() {
        return Ok(KeyCheck::Matches);
    }
    if stored != key.legacy_fingerprint() {
        return Ok(KeyCheck::Mismatch(stored));
    }
    // Only this exact legacy value is replaced, so two replicas starting together agree.
    sqlx::query(
        "UPDATE template_protection SET fingerprint = $1, updated_at = now() WHERE fingerprint = $2",
    )
    .bind(key.fingerprint())
    .bind(key.legacy_fingerprint())
    .execute(pool)
    .await?;
    Ok(KeyCheck::Upgraded)
}

/// Outcome of [`rekey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rekeyed {
    /// Users whose registration template was re-protected.
    pub users: u64,
    /// Templates in `face_embeddings` re-protected.
    pub faces: u64,
}

/// Why re-keying refused to start.
#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    /// The old key is not the one protecting the stored templates.
    #[error(
        "the old key (fingerprint {given}) does not protect these templates (fingerprint {stored})"
    )]
    WrongOldKey {
        /// Fingerprint of the key given as old.
        given: String,
        /// Fingerprint recorded in the schema.
        stored: String,
    },
    /// Storage failure (nothing was changed).
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

const BATCH: i64 = 2000;

/// Re-protects every stored template from `old` to `new` in one transaction: logins keep
/// working with `new`, and nothing is left half-converted if it fails. Writers wait
/// (the tables are locked against writes) while it runs.
pub async fn rekey(
    pool: &PgPool,
    old: &TemplateKey,
    new: &TemplateKey,
) -> Result<Rekeyed, RekeyError> {
    let mut tx = pool.begin().await.map_err(super::StoreError::from)?;
    sqlx::query(
        "LOCK TABLE users, face_embeddings, template_protection IN SHARE ROW EXCLUSIVE MODE",
    )
    .execute(&mut *tx)
    .await
    .map_err(super::StoreError::from)?;
    let stored: Option<String> = sqlx::query_scalar("SELECT fingerprint FROM template_protection")
        .fetch_optional(&mut *tx)
        .await
        .map_err(super::StoreError::from)?;
    if let Some(stored) = stored
        && stored != old.fingerprint()
        && stored != old.legacy_fingerprint()
    {
        return Err(RekeyError::WrongOldKey {
            given: old.fingerprint().to_owned(),
            stored,
        });
    }
    let mut counts = [0u64; 2];
    for (i, (table, column)) in [
        ("users", "face_embedding"),
        ("face_embeddings", "embedding"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut last = Uuid::nil();
        loop {
            let rows: Vec<(Uuid, Vector)> = sqlx::query_as(&format!(
                "SELECT id, {column} FROM {table} WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(last)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await
            .map_err(super::StoreError::from)?;
            let Some((tail, _)) = rows.last() else { break };
            last = *tail;
            let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
            let vectors: Vec<Vector> = rows
                .iter()
                .map(|(_, v)| Vector::from(old.rekey(new, v.as_slice())))
                .collect();
            sqlx::query(&format!(
                "UPDATE {table} SET {column} = data.v FROM unnest($1::uuid[], $2::vector[]) AS data(id, v)
                 WHERE {table}.id = data.id"
            ))
            .bind(&ids)
            .bind(&vectors)
            .execute(&mut *tx)
            .await
            .map_err(super::StoreError::from)?;
            counts[i] += rows.len() as u64;
        }
    }
    sqlx::query(
        "INSERT INTO template_protection (fingerprint) VALUES ($1)
         ON CONFLICT (singleton) DO UPDATE SET fingerprint = excluded.fingerprint, updated_at = now()",
    )
    .bind(new.fingerprint())
    .execute(&mut *tx)
    .await
    .map_err(super::StoreError::from)?;
    tx.commit().await.map_err(super::StoreError::from)?;
    Ok(Rekeyed {
        users: counts[0],
        faces: counts[1],
    })
}
