//! Tokens: JWT access tokens and opaque refresh tokens that are stored only as their
//! SHA-256.
//!
//! Access tokens are signed with the tenant's asymmetric key set ([`KeySet`]: EdDSA by
//! default, or ES256), their header naming the key (`kid`), so anyone can verify them
//! with the public keys of `/.well-known/jwks.json`. For the original API's existing
//! clients a tenant can keep HS256 with its `SECRET_KEY` (`LEGACY_HS256_TOKENS`): then
//! HS256 tokens verify too, and are what is issued unless `ACCESS_TOKEN_ALGORITHM`
//! says otherwise.
//!
//! Verification reads the header first and pins one algorithm before any signature is
//! checked: an asymmetric token must name a key of the set by `kid` and carry exactly
//! that key's algorithm; an HS256 token is accepted only while HS256 is on, and never
//! with a `kid`. So `alg: none`, HS256 signed with a public key as the secret (the
//! classic confusion), an unknown or retired `kid` and an algorithm other than the
//! key's are all [`TokenError::Invalid`].
//!
//! Claims: `iss` (`faceid/<tenant>`), `aud` (the tenant), `sub` (user id), `exp`, `iat`,
//! `nbf`, `jti`, and `typ` = `access`. A token of another tenant fails on the signature
//! (its own keys) and, were keys shared, on `aud`/`iss`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use faceid_keys::Alg;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

mod crypto;
mod keys;

pub use keys::{KeySet, jwt_algorithm};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: i64 = 5;

/// Claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: `faceid/<tenant>`.
    pub iss: String,
    /// Audience: the tenant.
    pub aud: String,
    /// The user's id.
    pub sub: Uuid,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique id of this token.
    pub jti: Uuid,
    /// Token type: always `access`.
    pub typ: String,
    /// The user's token generation when it was issued: logout, deactivation and locks
    /// raise the user's generation, which revokes every access token issued before.
    /// (Tokens from before generations existed read as 0.)
    #[serde(default)]
    pub r#gen: i32,
    /// The OpenID Connect client the token was issued to (RFC 9068); absent for the
    /// original API's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The scope granted to that client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Why a presented token was refused. Deliberately coarse towards clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Expired.
    #[error("token expired")]
    Expired,
    /// Anything else: bad signature, wrong algorithm or key, audience, issuer, malformed.
    #[error("invalid token")]
    Invalid,
}

/// `ACCESS_TOKEN_ALGORITHM`: what access tokens are signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccessAlgorithm {
    /// Ed25519, with the key set's EdDSA key.
    #[value(name = "EdDSA")]
    EdDsa,
    /// ECDSA P-256, with the key set's ES256 key (for clients without EdDSA).
    #[value(name = "ES256")]
    Es256,
    /// HMAC-SHA256 with `SECRET_KEY` (only with `LEGACY_HS256_TOKENS`).
    #[value(name = "HS256")]
    Hs256,
}

/// Why a token configuration cannot serve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenConfigError {
    /// HS256 issuance without HS256 on.
    #[error("ACCESS_TOKEN_ALGORITHM=HS256 needs LEGACY_HS256_TOKENS=true")]
    Hs256Off,
    /// No key of the algorithm signs now.
    #[error("ACCESS_TOKEN_ALGORITHM={0}: SIGNING_KEYS has no {0} key that signs now")]
    NoSigningKey(Alg),
    /// The key document cannot be used (the message never holds key material).
    #[error("SIGNING_KEYS: {0}")]
    SigningKeys(faceid_keys::KeyError),
}

/// HS256 with the tenant's `SECRET_KEY`.
#[derive(Clone)]
struct Hs256Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Issues and verifies a tenant's tokens.
#[derive(Clone)]
pub struct TokenService {
    keys: Arc<KeySet>,
    hs256: Option<Hs256Keys>,
    issue: AccessAlgorithm,
    validation: Validation,
    issuer: String,
    /// The OpenID Provider's issuer URL: the `iss` of tokens issued to its clients.
    oidc_issuer: Option<String>,
    audience: String,
    access_ttl: Duration,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("issue", &self.issue)
            .field("hs256", &self.hs256.is_some())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// An HS256-only token service for `tenant` signing with `secret` (at least 32
    /// bytes, checked by the configuration): the original API's tokens, no key set.
    pub fn new(tenant: &str, secret: &[u8], access_ttl: Duration) -> Self {
        Self::build(
            tenant,
            KeySet::empty(),
            Some(secret),
            AccessAlgorithm::Hs256,
            access_ttl,
        )
    }

    /// A token service issuing access tokens with `issue`, verifying tokens of `keys`
    /// and, when `legacy_secret` is given, HS256 tokens signed with it.
    pub fn with_keys(
        tenant: &str,
        keys: KeySet,
        legacy_secret: Option<&[u8]>,
        issue: AccessAlgorithm,
        access_ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Self, TokenConfigError> {
        match issue {
            AccessAlgorithm::Hs256 if legacy_secret.is_none() => {
                return Err(TokenConfigError::Hs256Off);
            }
            AccessAlgorithm::EdDsa | AccessAlgorithm::Es256 => {
                let alg = issue_alg(issue).unwrap_or(Alg::EdDsa);
                if keys.signing_kid(alg, now).is_none() {
                    return Err(TokenConfigError::NoSigningKey(alg));
                }
            }
            AccessAlgorithm::Hs256 => {}
        }
        Ok(Self::build(tenant, keys, legacy_secret, issue, access_ttl))
    }

    fn build(
        tenant: &str,
        keys: KeySet,
        legacy_secret: Option<&[u8]>,
        issue: AccessAlgorithm,
        access_ttl: Duration,
    ) -> Self {
        crypto::install();
        let issuer = format!("faceid/{tenant}");
        // The algorithm is set per token from its key; times are checked against the
        // caller's clock in `verify_access_at`.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[tenant]);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "nbf", "aud", "iss", "sub"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self {
            keys: Arc::new(keys),
            hs256: legacy_secret.map(|secret| Hs256Keys {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
            }),
            issue,
            validation,
            issuer,
            oidc_issuer: None,
            audience: tenant.to_owned(),
            access_ttl,
        }
    }

    /// Access-token lifetime.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Also issues and accepts tokens of the OpenID Provider at `issuer` (its URL), for
    /// its clients ([`TokenService::issue_client_access`]).
    pub fn with_oidc_issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[self.issuer.as_str(), issuer]);
        self.oidc_issuer = Some(issuer.to_owned());
        self
    }

    /// The tenant (the `aud` of access tokens).
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The asymmetric key set (the JWKS, and the signer of other tokens).
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// What access tokens are signed with.
    pub fn access_algorithm(&self) -> AccessAlgorithm {
        self.issue
    }

    /// Whether HS256 tokens are accepted.
    pub fn accepts_hs256(&self) -> bool {
        self.hs256.is_some()
    }

    /// Signs an access token for `user`, at the user's token `generation`, issued at `now`.
    pub fn issue_access(
        &self,
        user: Uuid,
        generation: i32,
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let claims = self.access_claims(self.issuer.clone(), user, generation, now);
        self.sign_access_claims(&claims, now)
    }

    /// Signs an access token for an OpenID Connect `client_id` with `scope`: `iss` is the
    /// provider's issuer URL, `client_id` and `scope` are claims (RFC 9068), and it is
    /// always signed with the key set, never HS256.
    pub fn issue_client_access(
        &self,
        user: Uuid,
        generation: i32,
        client_id: &str,
        scope: &str,
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let issuer = self.oidc_issuer.clone().ok_or(TokenError::Invalid)?;
        let mut claims = self.access_claims(issuer, user, generation, now);
        claims.client_id = Some(client_id.to_owned());
        claims.scope = Some(scope.to_owned());
        let alg = issue_alg(self.issue).unwrap_or(Alg::EdDsa);
        self.keys.sign(alg, Some("at+jwt"), &claims, now)
    }

    fn access_claims(
        &self,
        iss: String,
        user: Uuid,
        generation: i32,
        now: DateTime<Utc>,
    ) -> AccessClaims {
        let iat = now.timestamp();
        AccessClaims {
            iss,
            aud: self.audience.clone(),
            sub: user,
            exp: iat + i64::try_from(self.access_ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat,
            nbf: iat,
            jti: Uuid::new_v4(),
            typ: "access".to_owned(),
            r#gen: generation,
            client_id: None,
            scope: None,
        }
    }

    fn sign_access_claims(
        &self,
        claims: &AccessClaims,
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        match (issue_alg(self.issue), &self.hs256) {
            (Some(alg), _) => self.keys.sign(alg, None, claims, now),
            (None, Some(hs)) => {
                jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &hs.encoding)
                    .map_err(|_| TokenError::Invalid)
            }
            (None, None) => Err(TokenError::Invalid),
        }
    }

    /// Verifies an access token now: [`TokenService::verify_access_at`].
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.verify_access_at(token, Utc::now())
    }

    /// Verifies an access token's key, algorithm, signature, audience, issuer and type,
    /// and its times against `now` (5 s leeway).
    pub fn verify_access_at(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let (key, algorithm) = match (header.alg, header.kid.as_deref(), &self.hs256) {
            (Algorithm::HS256, None, Some(hs)) => (&hs.decoding, Algorithm::HS256),
            (Algorithm::EdDSA | Algorithm::ES256, Some(kid), _) => {
                let (key, algorithm) = self.keys.verifying(kid, now).ok_or(TokenError::Invalid)?;
                if algorithm != header.alg {
                    return Err(TokenError::Invalid);
                }
                (key, algorithm)
            }
            _ => return Err(TokenError::Invalid),
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![algorithm];
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        let now = now.timestamp();
        if claims.nbf > now + LEEWAY_SECONDS || claims.typ != "access" {
            return Err(TokenError::Invalid);
        }
        if claims.exp < now - LEEWAY_SECONDS {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// The key-set algorithm of an issuing choice (`None` for HS256).
fn issue_alg(issue: AccessAlgorithm) -> Option<Alg> {
    match issue {
        AccessAlgorithm::EdDsa => Some(Alg::EdDsa),
        AccessAlgorithm::Es256 => Some(Alg::Es256),
        AccessAlgorithm::Hs256 => None,
    }
}

/// A new opaque refresh token: 32 random bytes, URL-safe hex. Only its hash is stored.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a refresh token, the form it is stored and looked up in.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64_like::b64url;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn svc(tenant: &str, key: &[u8]) -> TokenService {
        TokenService::new(tenant, key, Duration::from_secs(1800))
    }

    /// Minimal base64url encoder so tests can forge tokens by hand.
    mod base64_like {
        pub fn b64url(data: &[u8]) -> String {
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in data.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                let chars = chunk.len() + 1;
                for i in 0..chars {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }

    #[test]
    fn round_trip() {
        let s = svc("acme", KEY);
        let user = Uuid::new_v4();
        let token = s.issue_access(user, 0, Utc::now()).unwrap();
        let claims = s.verify_access(&token).unwrap();
        assert_eq!(claims.sub, user);
        assert_eq!(claims.aud, "acme");
        assert_eq!(claims.iss, "faceid/acme");
    }

    #[test]
    fn other_tenant_and_other_key_are_refused() {
        let token = svc("acme", KEY)
            .issue_access(Uuid::new_v4(), 0, Utc::now())
            .unwrap();
        assert_eq!(
            svc("globex", KEY).verify_access(&token),
            Err(TokenError::Invalid)
        );
        let other_key = b"fedcba9876543210fedcba9876543210";
        assert_eq!(
            svc("acme", other_key).verify_access(&token),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn expired_and_not_yet_valid_are_refused() {
        let s = svc("acme", KEY);
        let old = s
            .issue_access(Uuid::new_v4(), 0, Utc::now() - chrono::Duration::hours(2))
            .unwrap();
        assert_eq!(s.verify_access(&old), Err(TokenError::Expired));
        let future = s
            .issue_access(Uuid::new_v4(), 0, Utc::now() + chrono::Duration::hours(2))
            .unwrap();
        assert_eq!(s.verify_access(&future), Err(TokenError::Invalid));
    }

    #[test]
    fn alg_none_and_tampering_are_refused() {
        let s = svc("acme", KEY);
        let token = s.issue_access(Uuid::new_v4(), 0, Utc::now()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        // alg: none with the original payload and no signature.
        let none = format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert_eq!(s.verify_access(&none), Err(TokenError::Invalid));
        // HS512 header over the same payload.
        let hs512 = format!(
            "{}.{}.{}",
            b64url(br#"{"alg":"HS512","typ":"JWT"}"#),
            parts[1],
            parts[2]
        );
        assert_eq!(s.verify_access(&hs512), Err(TokenError::Invalid));
        // A changed payload under the original signature.
        let claims = format!(
            r#"{{"iss":"faceid/acme","aud":"acme","sub":"{}","exp":9999999999,"iat":1,"nbf":1,"jti":"{}","typ":"access"}}"#,
            Uuid::new_v4(),
            Uuid::new_v4()
        );
        let tampered = format!("{}.{}.{}", parts[0], b64url(claims.as_bytes()), parts[2]);
        assert_eq!(s.verify_access(&tampered), Err(TokenError::Invalid));
        assert_eq!(s.verify_access("not a token"), Err(TokenError::Invalid));
    }

    fn key_set(algs: &[Alg]) -> KeySet {
        let created = Utc::now() - chrono::Duration::days(1);
        KeySet::from_document(&faceid_keys::KeyDocument {
            keys: algs
                .iter()
                .map(|alg| faceid_keys::KeyEntry::generate(*alg, created, None))
                .collect(),
        })
        .unwrap()
    }

    fn asym(
        tenant: &str,
        keys: KeySet,
        legacy: Option<&[u8]>,
        issue: AccessAlgorithm,
    ) -> TokenService {
        TokenService::with_keys(
            tenant,
            keys,
            legacy,
            issue,
            Duration::from_secs(1800),
            Utc::now(),
        )
        .unwrap()
    }

    fn header_of(token: &str) -> Header {
        jsonwebtoken::decode_header(token).unwrap()
    }

    /// A token over `claims` with `header`, signed HS256 with `secret`.
    fn hs256_with(header: &serde_json::Value, claims: &str, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.as_bytes())
        );
        let signature = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{input}.{signature}")
    }

    #[test]
    fn asymmetric_tokens_name_their_key_and_verify() {
        for (issue, alg, name) in [
            (AccessAlgorithm::EdDsa, Alg::EdDsa, "EdDSA"),
            (AccessAlgorithm::Es256, Alg::Es256, "ES256"),
        ] {
            let keys = key_set(&[Alg::EdDsa, Alg::Es256]);
            let kid = keys.signing_kid(alg, Utc::now()).unwrap().to_owned();
            let s = asym("acme", keys, None, issue);
            let user = Uuid::new_v4();
            let token = s.issue_access(user, 3, Utc::now()).unwrap();
            let header = header_of(&token);
            assert_eq!(header.kid.as_deref(), Some(kid.as_str()), "{name}");
            assert_eq!(header.alg, jwt_algorithm(alg));
            let claims = s.verify_access(&token).unwrap();
            assert_eq!((claims.sub, claims.r#gen), (user, 3));
            assert!(!s.accepts_hs256());
        }
    }

    #[test]
    fn forged_asymmetric_tokens_are_refused() {
        let keys = key_set(&[Alg::EdDsa, Alg::Es256]);
        let now = Utc::now();
        let ed_kid = keys.signing_kid(Alg::EdDsa, now).unwrap().to_owned();
        let es_kid = keys.signing_kid(Alg::Es256, now).unwrap().to_owned();
        let jwks = keys.jwks(now);
        let public_x = |kid: &str| {
            let jwk = jwks.iter().find(|k| k.kid == kid).unwrap();
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &jwk.x)
                .unwrap()
        };
        for legacy in [None, Some(KEY)] {
            let s = asym("acme", keys.clone(), legacy, AccessAlgorithm::EdDsa);
            let token = s.issue_access(Uuid::new_v4(), 0, now).unwrap();
            assert!(s.verify_access(&token).is_ok(), "positive control");
            let parts: Vec<&str> = token.split('.').collect();
            let claims = String::from_utf8(
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
                    .unwrap(),
            )
            .unwrap();
            let with_header = |h: serde_json::Value| {
                format!(
                    "{}.{}.{}",
                    b64url(h.to_string().as_bytes()),
                    parts[1],
                    parts[2]
                )
            };
            let tampered_claims =
                claims.replace("\"typ\":\"access\"", "\"typ\":\"access\",\"x\":1");
            let forged = [
                (
                    "alg none",
                    with_header(serde_json::json!({"alg": "none", "kid": ed_kid})),
                ),
                (
                    "alg none, no signature",
                    format!("{}.{}.", b64url(br#"{"alg":"none"}"#), parts[1]),
                ),
                (
                    "HS256 with the public key as the secret, kid kept",
                    hs256_with(
                        &serde_json::json!({"alg": "HS256", "kid": ed_kid}),
                        &claims,
                        &public_x(&ed_kid),
                    ),
                ),
                (
                    "HS256 with the public key as the secret, no kid",
                    hs256_with(
                        &serde_json::json!({"alg": "HS256"}),
                        &claims,
                        &public_x(&ed_kid),
                    ),
                ),
                (
                    "unknown kid",
                    with_header(serde_json::json!({"alg": "EdDSA", "kid": "nope"})),
                ),
                ("no kid", with_header(serde_json::json!({"alg": "EdDSA"}))),
                (
                    "ES256 key's kid over an EdDSA signature",
                    with_header(serde_json::json!({"alg": "EdDSA", "kid": es_kid})),
                ),
                (
                    "alg ES256 claimed for the EdDSA key",
                    with_header(serde_json::json!({"alg": "ES256", "kid": ed_kid})),
                ),
                (
                    "alg ES384",
                    with_header(serde_json::json!({"alg": "ES384", "kid": ed_kid})),
                ),
                (
                    "tampered payload",
                    format!(
                        "{}.{}.{}",
                        parts[0],
                        b64url(tampered_claims.as_bytes()),
                        parts[2]
                    ),
                ),
                (
                    "truncated signature",
                    format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]),
                ),
            ];
            for (what, token) in forged {
                assert_eq!(
                    s.verify_access(&token),
                    Err(TokenError::Invalid),
                    "{what} (legacy {})",
                    legacy.is_some()
                );
            }
            // Another tenant's key set, same tenant name: its kid is unknown here.
            let other = asym(
                "acme",
                key_set(&[Alg::EdDsa]),
                legacy,
                AccessAlgorithm::EdDsa,
            )
            .issue_access(Uuid::new_v4(), 0, now)
            .unwrap();
            assert_eq!(s.verify_access(&other), Err(TokenError::Invalid));
            // Another tenant's name, same keys.
            let foreign = asym("globex", keys.clone(), legacy, AccessAlgorithm::EdDsa)
                .issue_access(Uuid::new_v4(), 0, now)
                .unwrap();
            assert_eq!(s.verify_access(&foreign), Err(TokenError::Invalid));
            let old = s
                .issue_access(Uuid::new_v4(), 0, now - chrono::Duration::hours(2))
                .unwrap();
            assert_eq!(s.verify_access(&old), Err(TokenError::Expired));
        }
    }

    #[test]
    fn hs256_is_accepted_only_while_legacy_tokens_are_on() {
        let keys = key_set(&[Alg::EdDsa]);
        let legacy = asym("acme", keys.clone(), Some(KEY), AccessAlgorithm::Hs256);
        let hs = legacy.issue_access(Uuid::new_v4(), 0, Utc::now()).unwrap();
        assert_eq!(header_of(&hs).alg, Algorithm::HS256);
        assert_eq!(header_of(&hs).kid, None);
        assert!(legacy.verify_access(&hs).is_ok());
        // Migrating: EdDSA issued, HS256 still accepted.
        let migrating = asym("acme", keys.clone(), Some(KEY), AccessAlgorithm::EdDsa);
        assert!(migrating.verify_access(&hs).is_ok());
        let ed = migrating
            .issue_access(Uuid::new_v4(), 0, Utc::now())
            .unwrap();
        assert!(legacy.verify_access(&ed).is_ok());
        // Off: HS256 refused, even signed with the right secret.
        let off = asym("acme", keys.clone(), None, AccessAlgorithm::EdDsa);
        assert_eq!(off.verify_access(&hs), Err(TokenError::Invalid));
        assert!(off.verify_access(&ed).is_ok());
        // HS256 issuance needs HS256 on; asymmetric issuance a key that signs now.
        assert_eq!(
            TokenService::with_keys(
                "acme",
                keys.clone(),
                None,
                AccessAlgorithm::Hs256,
                Duration::from_secs(60),
                Utc::now()
            )
            .err(),
            Some(TokenConfigError::Hs256Off)
        );
        assert_eq!(
            TokenService::with_keys(
                "acme",
                keys,
                None,
                AccessAlgorithm::Es256,
                Duration::from_secs(60),
                Utc::now()
            )
            .err(),
            Some(TokenConfigError::NoSigningKey(Alg::Es256))
        );
    }

    #[test]
    fn a_rotated_out_key_stops_verifying_when_it_expires() {
        // The operator's documents before and after a rotation, as the service reads them.
        let t0 = Utc::now() - chrono::Duration::days(30);
        let old = faceid_keys::KeyEntry::generate(Alg::EdDsa, t0, None);
        let s = asym(
            "acme",
            KeySet::from_document(&faceid_keys::KeyDocument {
                keys: vec![old.clone()],
            })
            .unwrap(),
            None,
            AccessAlgorithm::EdDsa,
        );
        let now = Utc::now();
        let token = s.issue_access(Uuid::new_v4(), 0, now).unwrap();
        let mut retiring = old.clone();
        retiring.expires = Some(now + chrono::Duration::minutes(30));
        let next = faceid_keys::KeyEntry::generate(
            Alg::EdDsa,
            now - chrono::Duration::hours(1),
            Some(now),
        );
        let rotated = asym(
            "acme",
            KeySet::from_document(&faceid_keys::KeyDocument {
                keys: vec![retiring, next.clone()],
            })
            .unwrap(),
            None,
            AccessAlgorithm::EdDsa,
        );
        assert_eq!(
            header_of(&rotated.issue_access(Uuid::new_v4(), 0, now).unwrap()).kid,
            Some(next.kid)
        );
        assert!(
            rotated
                .verify_access_at(&token, now + chrono::Duration::minutes(29))
                .is_ok()
        );
        assert_eq!(
            rotated.verify_access_at(&token, now + chrono::Duration::minutes(30)),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(hash_refresh_token(&a).len(), 32);
        assert_ne!(hash_refresh_token(&a), hash_refresh_token(&b));
    }
}
