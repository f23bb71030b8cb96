//! Biometric template protection: embeddings are never stored as the model produced them.
//!
//! Each tenant has a secret template key. From it a random orthogonal 128x128 matrix `Q`
//! is derived deterministically (ChaCha20 seeded with SHA-256 of the key, a Gaussian
//! matrix, Gram-Schmidt orthonormalisation: a Haar-random rotation). Every embedding is
//! stored and searched as `Q·e`. Because `Q` is orthogonal, `|Q·a − Q·b| = |a − b|`:
//! Euclidean distances, the HNSW index and accuracy are unchanged. Without the key a
//! stolen table holds vectors in an unknown rotation, the same face enrolled at two
//! tenants is stored as unrelated vectors, and a tenant can renew every template by
//! re-keying (`faceid rekey`), which applies `Q_new·Q_oldᵀ` to every stored row.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

/// Embedding dimension.
pub const DIM: usize = 128;

/// A tenant's template transform.
#[derive(Clone)]
pub struct TemplateKey {
    /// Row-major orthogonal matrix.
    q: Box<[[f64; DIM]; DIM]>,
    /// Public fingerprint of the key *and* the matrix derived from it (see
    /// [`TemplateKey::fingerprint`]).
    fingerprint: String,
    /// The fingerprint before it covered the matrix (of the key alone).
    legacy_fingerprint: String,
}

impl std::fmt::Debug for TemplateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl TemplateKey {
    /// Derives the transform from a secret key (any length; at least 32 bytes advised).
    pub fn derive(secret: &[u8]) -> Self {
        let seed: [u8; 32] = Sha256::new()
            .chain_update(b"faceid-template-transform-v1\0")
            .chain_update(secret)
            .finalize()
            .into();
        let legacy_fingerprint = hex4(&Sha256::digest(seed));
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut q = Box::new([[0.0f64; DIM]; DIM]);
        for row in q.iter_mut() {
            for x in row.iter_mut() {
                *x = gaussian(&mut rng);
            }
        }
        orthonormalise(&mut q);
        let fingerprint = matrix_fingerprint(&seed, &q);
        Self {
            q,
            fingerprint,
            legacy_fingerprint,
        }
    }

    /// The public fingerprint recorded beside the templates: SHA-256 of the key's seed
    /// and of the derived matrix (each entry to 6 decimals, so that last-bit differences
    /// between maths libraries do not count), as `q1-` and 8 hex digits. A dependency
    /// upgrade that changed the matrix derivation (the random generator, the Gaussian
    /// sampling) would change every tenant's templates; with the matrix in the
    /// fingerprint, the service then refuses to start instead of failing every login.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The fingerprint of the key alone, recorded by versions before the matrix was
    /// covered: a schema holding it is upgraded to [`Self::fingerprint`] on start-up.
    pub fn legacy_fingerprint(&self) -> &str {
        &self.legacy_fingerprint
    }

    /// The protected form of an embedding: `Q·e`.
    pub fn protect(&self, embedding: &[f32]) -> Vec<f32> {
        self.q
            .iter()
            .map(|row| {
                row.iter()
                    .zip(embedding)
                    .map(|(q, e)| q * f64::from(*e))
                    .sum::<f64>() as f32
            })
            .collect()
    }

    /// The embedding behind a protected template: `Qᵀ·t` (for re-keying only).
    pub fn unprotect(&self, template: &[f32]) -> Vec<f32> {
        (0..DIM)
            .map(|j| {
                self.q
                    .iter()
                    .zip(template)
                    .map(|(row, t)| row[j] * f64::from(*t))
                    .sum::<f64>() as f32
            })
            .collect()
    }

    /// Moves a template protected by `self` to the protection of `new`.
    pub fn rekey(&self, new: &TemplateKey, template: &[f32]) -> Vec<f32> {
        new.protect(&self.unprotect(template))
    }
}

fn hex4(digest: &[u8]) -> String {
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

fn matrix_fingerprint(seed: &[u8; 32], q: &[[f64; DIM]; DIM]) -> String {
    let mut hash = Sha256::new().chain_update(seed);
    for x in q.iter().flatten() {
        hash.update(format!("{x:.6};").as_bytes());
    }
    format!("q1-{}", hex4(&hash.finalize()))
}

/// A standard normal sample (Box-Muller), so the matrix is Haar-random once orthonormalised.
fn gaussian(rng: &mut ChaCha20Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Modified Gram-Schmidt on the rows, twice for numerical orthogonality.
fn orthonormalise(q: &mut [[f64; DIM]; DIM]) {
    for _ in 0..2 {
        for i in 0..DIM {
            let (done, rest) = q.split_at_mut(i);
            let row = &mut rest[0];
            for prev in done.iter() {
                let dot: f64 = row.iter().zip(prev).map(|(a, b)| a * b).sum();
                for (x, p) in row.iter_mut().zip(prev) {
                    *x -= dot * p;
                }
            }
            let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
            for x in row.iter_mut() {
                *x /= norm;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(seed: u64) -> Vec<f32> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (0..DIM)
            .map(|_| gaussian(&mut rng) as f32 * 0.125)
            .collect()
    }

    fn distance(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    }

    fn correlation(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (
            a.iter().map(|x| f64::from(*x)).sum::<f64>() / n,
            b.iter().map(|x| f64::from(*x)).sum::<f64>() / n,
        );
        let cov: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - ma) * (f64::from(*y) - mb))
            .sum();
        let va: f64 = a.iter().map(|x| (f64::from(*x) - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (f64::from(*y) - mb).powi(2)).sum();
        cov / (va.sqrt() * vb.sqrt())
    }

    #[test]
    fn distances_are_preserved() {
        let key = TemplateKey::derive(b"tenant-a-template-key-0123456789");
        for s in 0..20 {
            let (a, b) = (vector(s), vector(s + 100));
            let before = distance(&a, &b);
            let after = distance(&key.protect(&a), &key.protect(&b));
            assert!((before - after).abs() < 1e-5, "{before} vs {after}");
        }
    }

    #[test]
    fn the_transform_is_keyed_deterministic_and_invertible() {
        let a = TemplateKey::derive(b"key-one-key-one-key-one-key-one!");
        let a2 = TemplateKey::derive(b"key-one-key-one-key-one-key-one!");
        let b = TemplateKey::derive(b"key-two-key-two-key-two-key-two!");
        let e = vector(7);
        assert_eq!(a.protect(&e), a2.protect(&e));
        assert_ne!(a.fingerprint(), b.fingerprint());
        let back = a.unprotect(&a.protect(&e));
        assert!(distance(&back, &e) < 1e-5);
        let moved = a.rekey(&b, &a.protect(&e));
        assert!(distance(&moved, &b.protect(&e)) < 1e-5);
    }

    /// Known answer: a dependency upgrade that changes how the matrix is derived changes
    /// every tenant's templates; this test (and the fingerprint the service checks at
    /// start-up) catch it.
    #[test]
    fn the_derived_matrix_is_pinned() {
        let key = TemplateKey::derive(b"known-answer-template-key-012345");
        assert_eq!(key.legacy_fingerprint(), "e863409f");
        assert_eq!(key.fingerprint(), "q1-eb4ad703");
        let corner = [key.q[0][0], key.q[0][1], key.q[127][127]];
        let pinned = [0.098_452_678_974, -0.062_058_276_204, 0.042_971_821_831];
        for (got, want) in corner.iter().zip(pinned) {
            assert!((got - want).abs() < 1e-9, "{corner:?}");
        }
    }

    #[test]
    fn templates_of_one_face_under_two_keys_are_uncorrelated() {
        let a = TemplateKey::derive(b"tenant-a-template-key-0123456789");
        let b = TemplateKey::derive(b"tenant-b-template-key-0123456789");
        let mut worst: f64 = 0.0;
        for s in 0..50 {
            let e = vector(s);
            worst = worst.max(correlation(&a.protect(&e), &b.protect(&e)).abs());
            // Nor does the stored form resemble the raw embedding.
            assert!(correlation(&a.protect(&e), &e).abs() < 0.45);
        }
        // 128 components: |r| of unrelated vectors rarely exceeds ~0.35.
        assert!(worst < 0.45, "max |correlation| {worst}");
    }
}
