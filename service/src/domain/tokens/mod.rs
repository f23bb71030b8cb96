//! Tokens: JWT access tokens (HS256, algorithm pinned) and opaque refresh tokens that
//! are stored only as their SHA-256.
//!
//! Claims: `iss` (`faceid/<tenant>`), `aud` (the tenant), `sub` (user id), `exp`, `iat`,
//! `nbf`, `jti`, and `typ` = `access`. A token of another tenant fails on the signature
//! (its own `SECRET_KEY`) and, were keys shared, on `aud`/`iss`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

mod crypto;

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
}

/// Why a presented token was refused. Deliberately coarse towards clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Expired.
    #[error("token expired")]
    Expired,
    /// Anything else: bad signature, wrong algorithm, audience, issuer, malformed.
    #[error("invalid token")]
    Invalid,
}

/// Issues and verifies a tenant's tokens.
#[derive(Clone)]
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    access_ttl: Duration,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// A token service for `tenant` signing with `secret` (at least 32 bytes, checked by
    /// the configuration).
    pub fn new(tenant: &str, secret: &[u8], access_ttl: Duration) -> Self {
        crypto::install();
        let issuer = format!("faceid/{tenant}");
        // Only HS256 verifies: `none`, RS/ES (key confusion) and other HS sizes are refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[tenant]);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "nbf", "aud", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer,
            audience: tenant.to_owned(),
            access_ttl,
        }
    }

    /// Access-token lifetime.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Signs an access token for `user`, at the user's token `generation`, issued at `now`.
    pub fn issue_access(
        &self,
        user: Uuid,
        generation: i32,
        now: DateTime<Utc>,
    ) -> Result<String, TokenError> {
        let iat = now.timestamp();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user,
            exp: iat + i64::try_from(self.access_ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iat,
            nbf: iat,
            jti: Uuid::new_v4(),
            typ: "access".to_owned(),
            r#gen: generation,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| TokenError::Invalid)
    }

    /// Verifies an access token's signature, algorithm, audience, issuer, times and type.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.typ != "access" {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
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
