//! Password hashing: argon2id with the `argon2` crate's defaults (19 MiB, 2 passes, one
//! lane), run off the async executor on a fixed set of reusable work areas.
//!
//! Each hash needs 19 MiB of working memory. Allocating it per request let glibc keep
//! freed 19 MiB blocks in its heaps (its dynamic mmap threshold rises to that size after
//! the first free), so a burst of registrations left the process near 1 GiB resident
//! (docs/PERFORMANCE.md, footprint). Here there are as many work areas as concurrent
//! hashes allowed (one per CPU: more would not finish sooner), each allocated on first
//! use and kept: the hashing memory is bounded by `concurrency x 19 MiB` whatever the
//! load, and no large allocation happens per request.

use std::sync::Mutex;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Argon2, Block, Params};
use tokio::sync::Semaphore;

/// Why a hash could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The hasher is shutting down (its permits are closed).
    #[error("password hashing is shut down")]
    Closed,
    /// The hashing task failed (argon2 refused its inputs, or the task panicked).
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Hashes passwords into PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`),
/// verifiable by any argon2 implementation.
#[derive(Debug)]
pub struct PasswordHasher {
    permits: Semaphore,
    /// Work areas not in use; never more than `concurrency`.
    idle: Mutex<Vec<Vec<Block>>>,
    params: Params,
}

impl PasswordHasher {
    /// A hasher running at most `concurrency` hashes at once (at least one).
    pub fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            permits: Semaphore::new(concurrency),
            idle: Mutex::new(Vec::with_capacity(concurrency)),
            params: Params::default(),
        }
    }

    /// Hashes `password` with a fresh random salt on Tokio's blocking pool; waits
    /// (without blocking the executor) while `concurrency` hashes are running.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HashError::Closed)?;
        let mut area = self
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop())
            .unwrap_or_default();
        let password = password.to_owned();
        let params = self.params.clone();
        let (area, result) = tokio::task::spawn_blocking(move || {
            let result = hash_with(&params, password.as_bytes(), &mut area);
            (area, result)
        })
        .await
        .map_err(|e| HashError::Failed(format!("task: {e}")))?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(area);
        }
        result
    }
}

/// One argon2id hash in `area` (grown to the block count on first use).
fn hash_with(params: &Params, password: &[u8], area: &mut Vec<Block>) -> Result<String, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    if area.len() != params.block_count() {
        area.resize(params.block_count(), Block::default());
    }
    let mut salt_bytes = [0u8; 16];
    OsRng.fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| failed(&e))?;
    let argon2 = Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params.clone(),
    );
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(password, &salt_bytes, &mut out, area.as_mut_slice())
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: params.try_into().map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    #[tokio::test]
    async fn hashes_verify_with_the_reference_verifier_and_salts_differ() {
        let hasher = PasswordHasher::new(2);
        let a = hasher.hash("correct horse battery staple").await.unwrap();
        let b = hasher.hash("correct horse battery staple").await.unwrap();
        assert_ne!(a, b, "fresh salt per hash");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        let parsed = PasswordHash::new(&a).unwrap();
        Argon2::default()
            .verify_password(b"correct horse battery staple", &parsed)
            .unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery stapler", &parsed)
                .is_err()
        );
    }

    #[tokio::test]
    async fn work_areas_are_reused_and_bounded_by_the_concurrency() {
        let hasher = std::sync::Arc::new(PasswordHasher::new(2));
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let h = hasher.clone();
                tokio::spawn(async move { h.hash(&format!("password {i}")).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let areas = hasher.idle.lock().unwrap().len();
        assert!((1..=2).contains(&areas), "{areas} work areas for 6 hashes");
        assert_eq!(hasher.permits.available_permits(), 2);
    }
}
