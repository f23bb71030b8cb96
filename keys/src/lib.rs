//! A tenant's token signing keys, shared by the operator (which generates, stores and
//! rotates them) and the service (which signs with them and publishes their public
//! halves as a JWKS).
//!
//! **The `SIGNING_KEYS` document** is JSON, `{"keys": [entry, ...]}`, each entry:
//!
//! | field | meaning |
//! |---|---|
//! | `kid` | key id in token headers and the JWKS: 1-128 characters from `A-Z a-z 0-9 . _ -` (generated keys use the RFC 7638 thumbprint) |
//! | `alg` | `EdDSA` (Ed25519) or `ES256` (ECDSA P-256 with SHA-256) |
//! | `private_key` | the PKCS#8 private key, PEM (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey` writes) |
//! | `created` | RFC 3339 instant the key was made (rotation counts its age from it) |
//! | `not_before` | optional: the key signs from this instant on (default `created`); a key is published in the JWKS before it signs, so every replica and every client's JWKS cache knows it first |
//! | `expires` | optional: from this instant the key is neither used nor trusted, and leaves the JWKS |
//!
//! Per algorithm, the key that signs at an instant is the one with the latest
//! `not_before` at or before it, among those not expired; every other unexpired key
//! still verifies. [`KeyDocument::parse`] refuses anything it could not use (bad PEM, a
//! key of another algorithm than `alg`, duplicate `kid`s), so a service never starts with
//! a key set that would fail at the first token.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The environment variable (and Secret key) holding the document.
pub const ENV: &str = "SIGNING_KEYS";

/// Longest `kid`.
pub const MAX_KID_LEN: usize = 128;

/// A signature algorithm of the key set (JOSE names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Alg {
    /// Ed25519 signatures (RFC 8037).
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// ECDSA on P-256 with SHA-256 (RFC 7518 3.4), for clients without EdDSA.
    #[serde(rename = "ES256")]
    Es256,
}

impl Alg {
    /// Every algorithm, in the order keys are generated.
    pub const ALL: [Alg; 2] = [Alg::EdDsa, Alg::Es256];

    /// The JOSE name (`EdDSA`, `ES256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDsa => "EdDSA",
            Alg::Es256 => "ES256",
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Alg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "EdDSA" => Ok(Alg::EdDsa),
            "ES256" => Ok(Alg::Es256),
            other => Err(format!("{other:?} is not EdDSA or ES256")),
        }
    }
}

/// One key of the document.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Key id.
    pub kid: String,
    /// Algorithm the key signs with (and only with).
    pub alg: Alg,
    /// PKCS#8 private key, PEM.
    pub private_key: String,
    /// When the key was made.
    pub created: DateTime<Utc>,
    /// When it starts signing (`created` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// When it stops being used and trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for KeyEntry {
    // The private key never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created", &self.created)
            .field("not_before", &self.not_before)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl KeyEntry {
    /// A freshly generated key of `alg`, its `kid` the public key's thumbprint.
    pub fn generate(alg: Alg, created: DateTime<Utc>, not_before: Option<DateTime<Utc>>) -> Self {
        Self::from_private(&PrivateKey::generate(alg), created, not_before)
    }

    /// The entry of an existing private key.
    pub fn from_private(
        key: &PrivateKey,
        created: DateTime<Utc>,
        not_before: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            kid: key.public().thumbprint(),
            alg: key.alg(),
            private_key: key.to_pem(),
            created,
            not_before: not_before.filter(|n| *n != created),
            expires: None,
        }
    }

    /// When the key starts signing.
    pub fn signs_from(&self) -> DateTime<Utc> {
        self.not_before.unwrap_or(self.created)
    }

    /// Whether the key is still trusted (and published) at `now`.
    pub fn trusted_at(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_none_or(|e| now < e)
    }

    /// The parsed private key.
    pub fn private(&self) -> Result<PrivateKey, KeyError> {
        PrivateKey::from_pem(self.alg, &self.private_key).map_err(|reason| KeyError::Key {
            kid: self.kid.clone(),
            reason,
        })
    }
}

/// The `SIGNING_KEYS` document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDocument {
    /// Every key, in any order.
    pub keys: Vec<KeyEntry>,
}

/// Why a document or a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not the document's JSON shape.
    #[error(
        "not a signing key document ({0}); expected {{\"keys\": [{{\"kid\", \"alg\", \"private_key\", \"created\", ...}}]}}"
    )]
    Json(String),
    /// A `kid` outside the allowed characters or length.
    #[error("kid {0:?} must be 1-{MAX_KID_LEN} characters from A-Z, a-z, 0-9, '.', '_' and '-'")]
    Kid(String),
    /// Two keys share a `kid`.
    #[error("kid {0:?} is used by more than one key")]
    DuplicateKid(String),
    /// A key that does not parse as its algorithm's.
    #[error("key {kid:?}: {reason}")]
    Key {
        /// The key's id.
        kid: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl KeyDocument {
    /// Parses and checks a document: every key usable, `kid`s valid and unique.
    pub fn parse(json: &str) -> Result<Self, KeyError> {
        let doc: KeyDocument =
            serde_json::from_str(json).map_err(|e| KeyError::Json(without_input(&e)))?;
        doc.check()?;
        Ok(doc)
    }

    /// The checks of [`KeyDocument::parse`] on a document built in code.
    pub fn check(&self) -> Result<(), KeyError> {
        let mut seen = BTreeSet::new();
        for key in &self.keys {
            if !is_kid(&key.kid) {
                return Err(KeyError::Kid(key.kid.clone()));
            }
            if !seen.insert(key.kid.as_str()) {
                return Err(KeyError::DuplicateKid(key.kid.clone()));
            }
            key.private()?;
            if key.expires.is_some_and(|e| e <= key.signs_from()) {
                return Err(KeyError::Key {
                    kid: key.kid.clone(),
                    reason: "expires must be after not_before (or created)".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The document as compact JSON.
    pub fn to_json(&self) -> String {
        // Plain data: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The key that signs with `alg` at `now`: the latest `not_before` at or before
    /// `now` among the unexpired keys of `alg` (ties: the newest, then the greatest kid).
    pub fn signing(&self, alg: Alg, now: DateTime<Utc>) -> Option<&KeyEntry> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg && k.signs_from() <= now && k.trusted_at(now))
            .max_by(|a, b| {
                (a.signs_from(), a.created, &a.kid).cmp(&(b.signs_from(), b.created, &b.kid))
            })
    }

    /// Every key trusted at `now` (published in the JWKS, verifying tokens), the ones
    /// not signing yet included.
    pub fn trusted(&self, now: DateTime<Utc>) -> impl Iterator<Item = &KeyEntry> {
        self.keys.iter().filter(move |k| k.trusted_at(now))
    }
}

/// The JSON error's message without the input, which holds private keys: serde_json
/// quotes field and variant names, and sometimes a whole string value.
fn without_input(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match e.classify() {
        serde_json::error::Category::Data if !text.contains("PRIVATE") && text.len() < 300 => text,
        _ => format!(
            "invalid document at line {} column {}",
            e.line(),
            e.column()
        ),
    }
}

/// Whether `kid` is a key id this set accepts.
pub fn is_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A parsed private key.
#[derive(Clone)]
pub enum PrivateKey {
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
    /// P-256.
    P256(p256::ecdsa::SigningKey),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("alg", &self.alg())
            .field("kid", &self.public().thumbprint())
            .finish_non_exhaustive()
    }
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

impl PrivateKey {
    /// A new random key of `alg` (the operating system's generator).
    pub fn generate(alg: Alg) -> Self {
        let mut rng = rand::rng();
        loop {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            if let Some(key) = Self::from_seed(alg, &seed) {
                return key;
            }
            // P-256 refuses 0 and values of at least the group order (chance 2^-32).
        }
    }

    /// The key of `alg` whose secret is `seed` (the Ed25519 seed, or the P-256 scalar);
    /// `None` for a scalar outside `[1, n)`.
    pub fn from_seed(alg: Alg, seed: &[u8; 32]) -> Option<Self> {
        match alg {
            Alg::EdDsa => Some(Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed))),
            Alg::Es256 => p256::ecdsa::SigningKey::from_slice(seed)
                .ok()
                .map(Self::P256),
        }
    }

    /// Parses a PKCS#8 PEM private key that must be of `alg`.
    pub fn from_pem(alg: Alg, pem: &str) -> Result<Self, String> {
        let der = pem_to_der(pem)?;
        Self::from_pkcs8_der(alg, &der)
    }

    /// Parses a PKCS#8 DER private key that must be of `alg`.
    pub fn from_pkcs8_der(alg: Alg, der: &[u8]) -> Result<Self, String> {
        match alg {
            Alg::EdDsa => ed25519_dalek::SigningKey::from_pkcs8_der(der)
                .map(Self::Ed25519)
                .map_err(|_| "not a PKCS#8 Ed25519 private key (alg EdDSA)".to_owned()),
            Alg::Es256 => p256::SecretKey::from_pkcs8_der(der)
                .map(|k| Self::P256(k.into()))
                .map_err(|_| "not a PKCS#8 P-256 private key (alg ES256)".to_owned()),
        }
    }

    /// The algorithm.
    pub fn alg(&self) -> Alg {
        match self {
            Self::Ed25519(_) => Alg::EdDsa,
            Self::P256(_) => Alg::Es256,
        }
    }

    /// PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        // Encoding a valid key into memory cannot fail.
        let doc = match self {
            Self::Ed25519(k) => k.to_pkcs8_der(),
            Self::P256(k) => p256::SecretKey::from(k).to_pkcs8_der(),
        };
        doc.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pem(&self) -> String {
        let body = STANDARD.encode(self.to_pkcs8_der());
        let mut out = String::from(PEM_BEGIN);
        out.push('\n');
        for line in body.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str(PEM_END);
        out.push('\n');
        out
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        match self {
            Self::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            Self::P256(k) => PublicKey::P256(*k.verifying_key()),
        }
    }
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    let body = pem
        .trim()
        .strip_prefix(PEM_BEGIN)
        .and_then(|rest| rest.strip_suffix(PEM_END))
        .ok_or_else(|| format!("private_key must be PKCS#8 PEM, from {PEM_BEGIN} to {PEM_END}"))?;
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(compact)
        .map_err(|_| "private_key: the PEM body is not base64".to_owned())
}

/// A public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// P-256.
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// The algorithm.
    pub fn alg(&self) -> Alg {
        match self {
            Self::Ed25519(_) => Alg::EdDsa,
            Self::P256(_) => Alg::Es256,
        }
    }

    /// The raw public key: the 32 bytes of an Ed25519 key, the uncompressed SEC1 point
    /// (`04 || x || y`, 65 bytes) of a P-256 key.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Ed25519(k) => k.to_bytes().to_vec(),
            Self::P256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
        }
    }

    /// The JWK's key members (RFC 7517/7518/8037) without `kid`, `alg` and `use`:
    /// `kty`, `crv`, `x` and for P-256 `y`, base64url.
    fn members(&self) -> (&'static str, &'static str, String, Option<String>) {
        match self {
            Self::Ed25519(k) => ("OKP", "Ed25519", URL_SAFE_NO_PAD.encode(k.to_bytes()), None),
            Self::P256(k) => {
                let point = k.to_encoded_point(false);
                let coordinate = |c: Option<&p256::FieldBytes>| {
                    URL_SAFE_NO_PAD.encode(c.map(|b| &b[..]).unwrap_or_default())
                };
                (
                    "EC",
                    "P-256",
                    coordinate(point.x()),
                    Some(coordinate(point.y())),
                )
            }
        }
    }

    /// The RFC 7638 thumbprint (SHA-256, base64url): the `kid` of generated keys.
    pub fn thumbprint(&self) -> String {
        // The required members in lexicographic order, no whitespace.
        let canonical = match self.members() {
            (kty, crv, x, Some(y)) => {
                format!(r#"{{"crv":"{crv}","kty":"{kty}","x":"{x}","y":"{y}"}}"#)
            }
            (kty, crv, x, None) => format!(r#"{{"crv":"{crv}","kty":"{kty}","x":"{x}"}}"#),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The public JWK of this key under `kid`.
    pub fn jwk(&self, kid: &str) -> Jwk {
        let (kty, crv, x, y) = self.members();
        Jwk {
            kty: kty.to_owned(),
            crv: crv.to_owned(),
            x,
            y,
            kid: kid.to_owned(),
            alg: self.alg().as_str().to_owned(),
            use_: "sig".to_owned(),
        }
    }
}

/// A public JSON Web Key as the JWKS publishes it: never a private member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `OKP` (Ed25519) or `EC` (P-256).
    pub kty: String,
    /// `Ed25519` or `P-256`.
    pub crv: String,
    /// The public key (Ed25519) or its x coordinate (P-256), base64url.
    pub x: String,
    /// The y coordinate (P-256 only), base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Key id, as in the tokens' `kid` header.
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// RFC 8037 Appendix A.1/A.3: the Ed25519 key and its thumbprint.
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    fn rfc8037_key() -> PrivateKey {
        let seed: [u8; 32] = URL_SAFE_NO_PAD
            .decode(RFC8037_D)
            .unwrap()
            .try_into()
            .unwrap();
        PrivateKey::from_seed(Alg::EdDsa, &seed).unwrap()
    }

    #[test]
    fn ed25519_public_key_jwk_and_thumbprint_match_rfc_8037() {
        let key = rfc8037_key();
        let jwk = key.public().jwk("k1");
        assert_eq!((jwk.kty.as_str(), jwk.crv.as_str()), ("OKP", "Ed25519"));
        assert_eq!(jwk.x, RFC8037_X);
        assert_eq!(jwk.y, None);
        assert_eq!(key.public().thumbprint(), RFC8037_THUMBPRINT);
    }

    #[test]
    fn pem_round_trips_for_both_algorithms_and_pins_the_algorithm() {
        for alg in Alg::ALL {
            let key = PrivateKey::generate(alg);
            let pem = key.to_pem();
            assert!(pem.starts_with(PEM_BEGIN), "{pem}");
            let back = PrivateKey::from_pem(alg, &pem).unwrap();
            assert_eq!(back.public(), key.public());
            let other = if alg == Alg::EdDsa {
                Alg::Es256
            } else {
                Alg::EdDsa
            };
            assert!(PrivateKey::from_pem(other, &pem).is_err(), "{alg}");
        }
        assert!(PrivateKey::from_pem(Alg::EdDsa, "not pem").is_err());
        assert!(PrivateKey::from_pem(Alg::EdDsa, &format!("{PEM_BEGIN}\n!!!\n{PEM_END}")).is_err());
    }

    /// Keys written by `openssl genpkey` (OpenSSL 3.0) parse, and the P-256 one has the
    /// public point `openssl pkey -pubout` printed.
    #[test]
    fn openssl_generated_keys_parse() {
        let ed = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEICZ56BoPH0iA98N6NkISzKxJc6RSgLRhvCoo3EfTgl1i\n-----END PRIVATE KEY-----\n";
        let ec = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgbyOJOLvyH+ryKxnv\nfyQ0jTpzCDzHWYhnY/um0JwE3gKhRANCAAQiD7iQnjnX3s3ye+WZwR9YB5FAJVWn\ng2MNzFAUP4cOQ4Bsb+ccvCSFdmnp+lbKuaOAY1d19eHzZsneUAOUNY1t\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            PrivateKey::from_pem(Alg::EdDsa, ed).unwrap().alg(),
            Alg::EdDsa
        );
        let point: String = PrivateKey::from_pem(Alg::Es256, ec)
            .unwrap()
            .public()
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            point,
            "04220fb8909e39d7decdf27be599c11f580791402555a783630dcc50143f870e43806c6fe71cbc24857669e9fa56cab9a380635775f5e1f366c9de500394358d6d"
        );
    }

    #[test]
    fn p256_jwk_has_32_byte_coordinates_of_the_sec1_point() {
        let key = PrivateKey::generate(Alg::Es256);
        let jwk = key.public().jwk("k");
        assert_eq!((jwk.kty.as_str(), jwk.crv.as_str()), ("EC", "P-256"));
        let x = URL_SAFE_NO_PAD.decode(&jwk.x).unwrap();
        let y = URL_SAFE_NO_PAD.decode(jwk.y.unwrap()).unwrap();
        let sec1 = key.public().to_bytes();
        assert_eq!(sec1.len(), 65);
        assert_eq!(sec1[0], 4);
        assert_eq!((&sec1[1..33], &sec1[33..]), (x.as_slice(), y.as_slice()));
    }

    #[test]
    fn the_signing_key_is_the_latest_started_unexpired_one() {
        let old = KeyEntry::generate(Alg::EdDsa, at("2026-01-01T00:00:00Z"), None);
        let mut retiring = old.clone();
        retiring.expires = Some(at("2026-02-02T00:00:00Z"));
        let next = KeyEntry::generate(
            Alg::EdDsa,
            at("2026-01-31T00:00:00Z"),
            Some(at("2026-02-01T00:00:00Z")),
        );
        let es = KeyEntry::generate(Alg::Es256, at("2026-01-01T00:00:00Z"), None);
        let doc = KeyDocument {
            keys: vec![retiring.clone(), next.clone(), es.clone()],
        };
        doc.check().unwrap();
        let kid = |t: &str, alg| doc.signing(alg, at(t)).map(|k| k.kid.clone());
        assert_eq!(kid("2025-12-31T00:00:00Z", Alg::EdDsa), None);
        assert_eq!(
            kid("2026-01-31T12:00:00Z", Alg::EdDsa),
            Some(old.kid.clone())
        );
        assert_eq!(
            kid("2026-02-01T00:00:00Z", Alg::EdDsa),
            Some(next.kid.clone())
        );
        assert_eq!(
            kid("2026-03-01T00:00:00Z", Alg::Es256),
            Some(es.kid.clone())
        );
        // Published: the next key before it signs; the old one until it expires.
        let trusted = |t: &str| doc.trusted(at(t)).count();
        assert_eq!(trusted("2026-01-31T12:00:00Z"), 3);
        assert_eq!(trusted("2026-02-02T00:00:00Z"), 2);
    }

    #[test]
    fn documents_round_trip_and_bad_ones_are_refused_without_echoing_keys() {
        let a = KeyEntry::generate(Alg::EdDsa, at("2026-01-01T00:00:00Z"), None);
        let b = KeyEntry::generate(Alg::Es256, at("2026-01-01T00:00:00Z"), None);
        let doc = KeyDocument {
            keys: vec![a.clone(), b.clone()],
        };
        assert_eq!(KeyDocument::parse(&doc.to_json()).unwrap(), doc);

        let mut dup = doc.clone();
        dup.keys[1].kid = a.kid.clone();
        assert!(matches!(
            KeyDocument::parse(&dup.to_json()),
            Err(KeyError::DuplicateKid(_))
        ));
        let mut wrong_alg = doc.clone();
        wrong_alg.keys[0].alg = Alg::Es256;
        let err = KeyDocument::parse(&wrong_alg.to_json()).unwrap_err();
        assert!(matches!(err, KeyError::Key { .. }), "{err}");
        assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
        let mut bad_kid = doc.clone();
        bad_kid.keys[0].kid = "a b".into();
        assert!(matches!(
            KeyDocument::parse(&bad_kid.to_json()),
            Err(KeyError::Kid(_))
        ));
        let mut backwards = doc.clone();
        backwards.keys[0].expires = Some(at("2025-01-01T00:00:00Z"));
        assert!(KeyDocument::parse(&backwards.to_json()).is_err());
        // A syntax error names the position, not the text around it.
        let broken = doc.to_json().replace("\"alg\"", "alg");
        let err = KeyDocument::parse(&broken).unwrap_err().to_string();
        assert!(!err.contains("BEGIN"), "{err}");
        assert!(KeyDocument::parse(r#"{"keys": [], "extra": 1}"#).is_err());
        // The private key never reaches Debug output.
        assert!(!format!("{doc:?}").contains("PRIVATE"), "{doc:?}");
    }
}
