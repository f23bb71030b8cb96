//! `/.well-known/jwks.json`: the public keys that verify the tenant's tokens.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// How long clients and caches may keep the JWKS, in seconds: far shorter than the hour
/// a new key is published before it signs (the operator's rotation), so every client
/// knows a key before it meets its tokens.
pub const JWKS_MAX_AGE_SECONDS: u32 = 300;

/// A JSON Web Key Set (RFC 7517 section 5).
#[derive(Debug, Serialize, ToSchema)]
pub struct JwkSet {
    /// The keys, signing and not yet or no longer signing alike.
    pub keys: Vec<Jwk>,
}

/// A public key (RFC 7517; OKP per RFC 8037, EC per RFC 7518). Never a private member.
#[derive(Debug, Serialize, ToSchema)]
pub struct Jwk {
    /// `OKP` (Ed25519) or `EC` (P-256).
    #[schema(example = "OKP")]
    pub kty: String,
    /// `Ed25519` or `P-256`.
    #[schema(example = "Ed25519")]
    pub crv: String,
    /// The public key (OKP) or its x coordinate (EC), base64url.
    pub x: String,
    /// The y coordinate (EC only), base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Key id: the `kid` header of the tokens it signs.
    pub kid: String,
    /// `EdDSA` or `ES256`: the only algorithm the key verifies.
    #[schema(example = "EdDSA")]
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub use_: String,
}

impl From<faceid_keys::Jwk> for Jwk {
    fn from(k: faceid_keys::Jwk) -> Self {
        Self {
            kty: k.kty,
            crv: k.crv,
            x: k.x,
            y: k.y,
            kid: k.kid,
            alg: k.alg,
            use_: k.use_,
        }
    }
}

/// The tenant's token verification keys. Access tokens carry the `kid` of the key that
/// signed them; a key is listed from before it signs until every token it signed has
/// expired. HS256 tokens (LEGACY_HS256_TOKENS) have no public key and are not listed.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "system",
    responses((status = 200, description = "The key set; cacheable for 300 seconds", body = JwkSet,
        headers(("Cache-Control" = String, description = "`public, max-age=300`")))))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let keys = state
        .tokens()
        .keys()
        .jwks(chrono::Utc::now())
        .into_iter()
        .map(Jwk::from)
        .collect();
    (
        [(
            header::CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE_SECONDS}"),
        )],
        Json(JwkSet { keys }),
    )
}
