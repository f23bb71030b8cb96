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
        let password = password.to_owned();
        let params = self.params.clone();
        self.run(move |area| hash_with(&params, password.as_bytes(), area))
            .await
    }

    /// Whether `password` matches the PHC string `phc` (any argon2id parameters), in
    /// constant time in the hash; run like [`Self::hash`].
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, HashError> {
        let (password, phc) = (password.to_owned(), phc.to_owned());
        self.run(move |area| verify_with(password.as_bytes(), &phc, area))
            .await
    }

    /// Runs `work` on the blocking pool with a work area, under a permit.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
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
        let (area, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut area);
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

/// Checks `password` against a PHC string in `area`.
fn verify_with(password: &[u8], phc: &str, area: &mut Vec<Block>) -> Result<bool, HashError> {
    use subtle::ConstantTimeEq;
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let parsed = PasswordHash::new(phc).map_err(|e| failed(&e))?;
    let params = Params::try_from(&parsed).map_err(|e| failed(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(HashError::Failed(
            "PHC string without salt or hash".to_owned(),
        ));
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(|e| failed(&e))?;
    if area.len() != params.block_count() {
        area.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into_with_memory(password, salt, &mut out, area.as_mut_slice())
        .map_err(|e| failed(&e))?;
    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
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
    async fn verify_accepts_the_password_and_the_reference_hash_only() {
        use argon2::PasswordHasher as _;
        let hasher = PasswordHasher::new(1);
        let ours = hasher.hash("correct horse battery staple").await.unwrap();
        assert!(
            hasher
                .verify("correct horse battery staple", &ours)
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("correct horse battery stapler", &ours)
                .await
                .unwrap()
        );
        // A hash made by the reference implementation with other parameters.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            Params::new(8192, 3, 1, None).unwrap(),
        )
        .hash_password(b"hunter2", &salt)
        .unwrap()
        .to_string();
        assert!(hasher.verify("hunter2", &theirs).await.unwrap());
        assert!(!hasher.verify("hunter3", &theirs).await.unwrap());
        assert!(hasher.verify("hunter2", "not a phc string").await.is_err());
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
