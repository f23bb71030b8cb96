//! OpenID Connect rules, free of I/O: the registered clients, the authorization request
//! (OpenID Connect Core 1.0 3.1.2.1, OAuth 2.0 Security BCP), PKCE (RFC 7636, S256 only)
//! and the protocol's error codes.
//!
//! What this provider accepts, on purpose narrower than the specifications allow:
//! the authorization code flow only (`response_type=code`, query response mode), PKCE
//! with S256 for every client (public and confidential), exact redirect URI match, and a
//! fresh authentication at every authorization (`prompt=none` is answered with
//! `login_required`: there is no provider session to reuse).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use faceid_keys::Alg;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

/// Scopes this provider knows; others in a request are ignored (RFC 6749 3.3).
pub const SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];
/// Longest `state` / `nonce` accepted (they are echoed into URLs and tokens).
pub const MAX_ECHOED_LEN: usize = 512;

/// An OAuth error code (RFC 6749 4.1.2.1 and 5.2, OpenID Connect Core 3.1.2.6,
/// RFC 7009, RFC 7662).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed or missing parameter, duplicated parameter, missing PKCE.
    InvalidRequest,
    /// Client authentication failed (unknown client, wrong or missing secret).
    InvalidClient,
    /// The code or refresh token is invalid, expired, spent, or was issued to another
    /// client or redirect URI; or the PKCE verifier does not match.
    InvalidGrant,
    /// This client may not use this grant.
    UnauthorizedClient,
    /// Only `authorization_code` and `refresh_token`.
    UnsupportedGrantType,
    /// Only `code`.
    UnsupportedResponseType,
    /// The scope lacks `openid`.
    InvalidScope,
    /// The user did not authenticate.
    AccessDenied,
    /// `prompt=none`: the provider keeps no session, so it must ask.
    LoginRequired,
    /// `request` objects are not supported.
    RequestNotSupported,
    /// `request_uri` is not supported.
    RequestUriNotSupported,
    /// The access token is missing, invalid or revoked (RFC 6750).
    InvalidToken,
    /// The provider could not answer (database down).
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::LoginRequired => "login_required",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
            Self::InvalidToken => "invalid_token",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// An OAuth error with its human-readable description.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    /// The code.
    pub code: ErrorCode,
    /// What was wrong (`error_description`; ASCII, no secrets).
    pub description: String,
}

impl OAuthError {
    /// An error with a description.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

// ---------------------------------------------------------------- clients

/// How a client authenticates at the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// A browser or native app: no secret, PKCE alone binds the code to it.
    Public,
    /// A server-side app: `client_secret_basic` or `client_secret_post`; only the
    /// secret's SHA-256 is configured (the secret is 32 random bytes, so a plain hash
    /// suffices).
    Confidential {
        /// SHA-256 of the secret.
        secret_sha256: [u8; 32],
    },
}

/// A registered client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// Redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may return to, matched exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// Public or confidential.
    pub kind: ClientKind,
    /// What its ID tokens are signed with (EdDSA unless the client asks for ES256).
    pub id_token_alg: Alg,
}

/// One client as configured (`OIDC_CLIENTS`, a JSON array; the operator renders it from
/// `spec.oidc.clients`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `client_id`.
    pub client_id: String,
    /// Redirect URIs (exact match).
    pub redirect_uris: Vec<String>,
    /// Post-logout redirect URIs (exact match).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Hex SHA-256 of the client secret; absent for a public client.
    #[serde(default)]
    pub secret_sha256: Option<String>,
    /// `EdDSA` (default) or `ES256`, for client libraries without EdDSA.
    #[serde(default)]
    pub id_token_signed_response_alg: Option<Alg>,
}

/// The clients of a tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientRegistry {
    clients: BTreeMap<String, Client>,
}

impl ClientRegistry {
    /// Parses and checks `OIDC_CLIENTS` (empty: no clients, the provider refuses every
    /// authorization).
    pub fn from_json(json: &str) -> Result<Self, String> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        let configs: Vec<ClientConfig> =
            serde_json::from_str(json).map_err(|e| format!("OIDC_CLIENTS: {e}"))?;
        let mut clients = BTreeMap::new();
        for c in configs {
            let client = client_from_config(c)?;
            if clients.contains_key(&client.id) {
                return Err(format!("OIDC_CLIENTS: client {:?} twice", client.id));
            }
            clients.insert(client.id.clone(), client);
        }
        Ok(Self { clients })
    }

    /// The client named `id`.
    pub fn get(&self, id: &str) -> Option<&Client> {
        self.clients.get(id)
    }

    /// Whether any client is registered.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The web origins of the public clients' redirect URIs (`https://spa.example`,
    /// `http://localhost:3000`): a browser app calls `/token`, `/userinfo` and `/revoke`
    /// from there, so those endpoints answer it with CORS headers. Native apps'
    /// private-use schemes have no web origin.
    pub fn browser_origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = self
            .clients
            .values()
            .filter(|c| c.kind == ClientKind::Public)
            .flat_map(|c| &c.redirect_uris)
            .filter_map(|uri| url::Url::parse(uri).ok())
            .filter(|url| matches!(url.scheme(), "https" | "http"))
            .map(|url| url.origin().ascii_serialization())
            .collect();
        origins.sort();
        origins.dedup();
        origins
    }

    /// Authenticates a client at the token, revocation or introspection endpoint:
    /// a confidential client must present its secret; a public client presents none.
    pub fn authenticate(&self, id: &str, secret: Option<&str>) -> Result<&Client, OAuthError> {
        let invalid = || OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
        let client = self.get(id).ok_or_else(invalid)?;
        match (&client.kind, secret) {
            (ClientKind::Public, None) => Ok(client),
            (ClientKind::Confidential { secret_sha256 }, Some(secret)) => {
                let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
                if bool::from(presented.ct_eq(secret_sha256)) {
                    Ok(client)
                } else {
                    Err(invalid())
                }
            }
            _ => Err(invalid()),
        }
    }
}

fn client_from_config(c: ClientConfig) -> Result<Client, String> {
    if c.client_id.is_empty()
        || c.client_id.len() > 128
        || !c
            .client_id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b':')
    {
        return Err(format!(
            "OIDC_CLIENTS: client_id {:?} must be 1-128 visible ASCII characters without ':'",
            c.client_id
        ));
    }
    if c.redirect_uris.is_empty() {
        return Err(format!(
            "OIDC_CLIENTS: client {:?} has no redirect URI",
            c.client_id
        ));
    }
    for uri in c.redirect_uris.iter().chain(&c.post_logout_redirect_uris) {
        check_redirect_uri(uri)
            .map_err(|e| format!("OIDC_CLIENTS: client {:?}: {e}", c.client_id))?;
    }
    let kind = match &c.secret_sha256 {
        None => ClientKind::Public,
        Some(hex) => ClientKind::Confidential {
            secret_sha256: parse_sha256_hex(hex).ok_or_else(|| {
                format!(
                    "OIDC_CLIENTS: client {:?}: secret_sha256 must be 64 hex digits",
                    c.client_id
                )
            })?,
        },
    };
    Ok(Client {
        id: c.client_id,
        redirect_uris: c.redirect_uris,
        post_logout_redirect_uris: c.post_logout_redirect_uris,
        kind,
        id_token_alg: c.id_token_signed_response_alg.unwrap_or(Alg::EdDsa),
    })
}

fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Whether `uri` may be registered as a redirect URI (OAuth 2.0 Security BCP 4.1,
/// RFC 8252): absolute, no fragment, no user info; `https`, or `http` on a loopback host
/// (native apps and development), or a private-use scheme with a dot (`com.example.app:/cb`).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let url =
        Url::parse(uri).map_err(|e| format!("redirect URI {uri:?} is not an absolute URL: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("redirect URI {uri:?} must not have a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "redirect URI {uri:?} must not carry user information"
        ));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")) => Ok(()),
        "http" => Err(format!(
            "redirect URI {uri:?}: plain http is allowed only on a loopback host (localhost, 127.0.0.1, [::1])"
        )),
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(format!(
            "redirect URI {uri:?}: the scheme must be https, http on a loopback host, or a private-use scheme like com.example.app"
        )),
    }
}

// ---------------------------------------------------------------- the request

/// A validated authorization request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthorizationRequest {
    /// The client.
    pub client_id: String,
    /// Its registered redirect URI, as given.
    pub redirect_uri: String,
    /// The known scopes asked for, space-separated, `openid` first.
    pub scope: String,
    /// Echoed back with the code.
    pub state: Option<String>,
    /// Echoed into the ID token.
    pub nonce: Option<String>,
    /// BASE64URL(SHA-256(code_verifier)).
    pub code_challenge: String,
}

/// Why an authorization request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestRefusal {
    /// The client or redirect URI cannot be trusted: the user is told, and nothing is
    /// sent to the redirect URI (RFC 6749 4.1.2.1).
    Unredirectable(String),
    /// The error goes back to the client's redirect URI.
    Redirect {
        /// Where.
        redirect_uri: String,
        /// The error.
        error: OAuthError,
        /// The request's `state`, echoed.
        state: Option<String>,
    },
}

/// Validates the parameters of an authorization request (`/authorize` query, or the
/// same fields posted back by the login page) against the registered clients: first
/// what makes the redirect URI trustworthy (refused without redirecting), then the rest
/// (refused by redirecting the error to the client).
pub fn validate_request(
    clients: &ClientRegistry,
    params: &[(String, String)],
) -> Result<AuthorizationRequest, RequestRefusal> {
    let (map, duplicated) = parameter_map(params);
    let (client, redirect_uri) = registered_target(clients, &map, duplicated)?;
    let state = map.get("state").map(|s| (*s).to_owned());
    let redirected = |(code, description): Refusal| RequestRefusal::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        error: OAuthError::new(code, description),
        state: state.clone().filter(|s| s.len() <= MAX_ECHOED_LEN),
    };
    if let Some(name) = duplicated {
        return Err(redirected((
            ErrorCode::InvalidRequest,
            format!("{name} is given more than once"),
        )));
    }
    supported_flow(&map).map_err(redirected)?;
    let scope = requested_scope(&map).map_err(redirected)?;
    let code_challenge = pkce_challenge(&map).map_err(redirected)?;
    let nonce = echoed_values(&map, state.as_deref()).map_err(redirected)?;
    if map
        .get("prompt")
        .is_some_and(|p| p.split(' ').any(|v| v == "none"))
    {
        return Err(redirected(refusal(
            ErrorCode::LoginRequired,
            "every authorization needs the user's face: prompt=none cannot be answered",
        )));
    }
    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state,
        nonce,
        code_challenge,
    })
}

/// An authorization request's error before it is sent to the client: code and
/// description.
type Refusal = (ErrorCode, String);

fn refusal(code: ErrorCode, description: &str) -> Refusal {
    (code, description.to_owned())
}

/// The parameters by name (the last of a repeated one) and the name of a repeated one.
fn parameter_map(params: &[(String, String)]) -> (BTreeMap<&str, &str>, Option<&str>) {
    let mut map: BTreeMap<&str, &str> = BTreeMap::new();
    let mut duplicated = None;
    for (k, v) in params {
        if map.insert(k.as_str(), v.as_str()).is_some() {
            duplicated = Some(k.as_str());
        }
    }
    (map, duplicated)
}

/// The registered client and the redirect URI registered for it: without both an
/// error is shown, never redirected (to what could be an attacker's address).
fn registered_target<'a>(
    clients: &'a ClientRegistry,
    map: &BTreeMap<&str, &'a str>,
    duplicated: Option<&str>,
) -> Result<(&'a Client, &'a str), RequestRefusal> {
    let unredirectable = |m: &str| RequestRefusal::Unredirectable(m.to_owned());
    let client_id = map
        .get("client_id")
        .ok_or_else(|| unredirectable("client_id is missing"))?;
    let client = clients
        .get(client_id)
        .ok_or_else(|| unredirectable("the client_id is not a registered client of this tenant"))?;
    let redirect_uri = *map
        .get("redirect_uri")
        .ok_or_else(|| unredirectable("redirect_uri is missing"))?;
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(unredirectable(
            "the redirect_uri is not registered for this client (exact match required)",
        ));
    }
    if let Some(name) = duplicated.filter(|n| matches!(*n, "client_id" | "redirect_uri")) {
        return Err(unredirectable(&format!("{name} is given more than once")));
    }
    Ok((client, redirect_uri))
}

/// The authorization code flow with query responses, and no request objects.
fn supported_flow(map: &BTreeMap<&str, &str>) -> Result<(), Refusal> {
    if map.contains_key("request") {
        return Err(refusal(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        ));
    }
    if map.contains_key("request_uri") {
        return Err(refusal(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        ));
    }
    match map.get("response_type") {
        Some(&"code") => {}
        Some(_) => {
            return Err(refusal(
                ErrorCode::UnsupportedResponseType,
                "only the authorization code flow (response_type=code) is supported",
            ));
        }
        None => {
            return Err(refusal(
                ErrorCode::InvalidRequest,
                "response_type is missing",
            ));
        }
    }
    if map.get("response_mode").is_some_and(|m| *m != "query") {
        return Err(refusal(
            ErrorCode::InvalidRequest,
            "only response_mode=query is supported",
        ));
    }
    Ok(())
}

/// The scopes asked for that the provider knows (space-separated), `openid` required.
fn requested_scope(map: &BTreeMap<&str, &str>) -> Result<String, Refusal> {
    let asked: Vec<&str> = map
        .get("scope")
        .map_or(Vec::new(), |s| s.split(' ').collect());
    if !asked.contains(&"openid") {
        return Err(refusal(
            ErrorCode::InvalidScope,
            "the scope must include openid",
        ));
    }
    Ok(SCOPES
        .iter()
        .filter(|s| asked.contains(s))
        .copied()
        .collect::<Vec<_>>()
        .join(" "))
}

/// The PKCE S256 challenge, required of every client.
fn pkce_challenge(map: &BTreeMap<&str, &str>) -> Result<String, Refusal> {
    match (map.get("code_challenge"), map.get("code_challenge_method")) {
        (Some(c), Some(&"S256")) if is_s256_challenge(c) => Ok((*c).to_owned()),
        (Some(_), Some(&"S256")) => Err(refusal(
            ErrorCode::InvalidRequest,
            "code_challenge must be 43 base64url characters (S256)",
        )),
        (Some(_), _) => Err(refusal(
            ErrorCode::InvalidRequest,
            "code_challenge_method must be S256",
        )),
        (None, _) => Err(refusal(
            ErrorCode::InvalidRequest,
            "PKCE is required: code_challenge and code_challenge_method=S256",
        )),
    }
}

/// The `nonce`, once it and `state` (both echoed later) are known to be short enough.
fn echoed_values(
    map: &BTreeMap<&str, &str>,
    state: Option<&str>,
) -> Result<Option<String>, Refusal> {
    if state.is_some_and(|s| s.len() > MAX_ECHOED_LEN) {
        return Err(refusal(ErrorCode::InvalidRequest, "state is too long"));
    }
    let nonce = map.get("nonce").map(|n| (*n).to_owned());
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_ECHOED_LEN) {
        return Err(refusal(ErrorCode::InvalidRequest, "nonce is too long"));
    }
    Ok(nonce)
}

fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `verifier` (RFC 7636 4.1: 43-128 unreserved characters) hashes to `challenge`.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// `uri` with `params` appended to its query (keeping any query it has).
pub fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    match Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        Err(_) => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn registry() -> ClientRegistry {
        ClientRegistry::from_json(&format!(
            r#"[{{"client_id":"shop","redirect_uris":["https://shop.example/cb"]}},
                {{"client_id":"api","redirect_uris":["http://localhost:8080/cb"],
                  "secret_sha256":"{}"}}]"#,
            hex(&Sha256::digest(b"s3cret"))
        ))
        .unwrap()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn params(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p: BTreeMap<&str, &str> = [
            ("client_id", "shop"),
            ("redirect_uri", "https://shop.example/cb"),
            ("response_type", "code"),
            ("scope", "openid email unknown"),
            ("state", "xyz"),
            ("nonce", "n-1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
        .into_iter()
        .collect();
        for (k, v) in extra {
            if v.is_empty() {
                p.remove(k);
            } else {
                p.insert(k, v);
            }
        }
        p.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn redirect_error(r: Result<AuthorizationRequest, RequestRefusal>) -> ErrorCode {
        match r {
            Err(RequestRefusal::Redirect { error, state, .. }) => {
                assert_eq!(state.as_deref(), Some("xyz"));
                error.code
            }
            other => panic!("expected a redirected error, got {other:?}"),
        }
    }

    #[test]
    fn rfc7636_appendix_b_verifier_matches_its_challenge() {
        assert!(pkce_matches(VERIFIER, CHALLENGE));
        assert!(!pkce_matches(&VERIFIER.replace('d', "e"), CHALLENGE));
        assert!(!pkce_matches("short", CHALLENGE));
        assert!(!pkce_matches(&format!("{VERIFIER}!"), CHALLENGE));
    }

    #[test]
    fn a_good_request_keeps_the_known_scopes() {
        let r = validate_request(&registry(), &params(&[])).unwrap();
        assert_eq!(r.scope, "openid email");
        assert_eq!(r.code_challenge, CHALLENGE);
        assert_eq!(r.nonce.as_deref(), Some("n-1"));
    }

    #[test]
    fn unknown_client_or_redirect_uri_is_never_redirected_to() {
        for extra in [
            [("client_id", "nobody")],
            [("redirect_uri", "https://shop.example/cb/")],
            [("redirect_uri", "https://evil.example/cb")],
            [("redirect_uri", "")],
        ] {
            assert!(matches!(
                validate_request(&registry(), &params(&extra)),
                Err(RequestRefusal::Unredirectable(_))
            ));
        }
        let mut twice = params(&[]);
        twice.push(("redirect_uri".into(), "https://evil.example/cb".into()));
        assert!(matches!(
            validate_request(&registry(), &twice),
            Err(RequestRefusal::Unredirectable(_))
        ));
    }

    #[test]
    fn protocol_errors_go_back_to_the_client() {
        let r = &registry();
        let cases: &[(&[(&str, &str)], ErrorCode)] = &[
            (&[("code_challenge", "")], ErrorCode::InvalidRequest),
            (
                &[("code_challenge_method", "plain")],
                ErrorCode::InvalidRequest,
            ),
            (&[("code_challenge_method", "")], ErrorCode::InvalidRequest),
            (&[("code_challenge", "abc")], ErrorCode::InvalidRequest),
            (
                &[("response_type", "token")],
                ErrorCode::UnsupportedResponseType,
            ),
            (&[("response_type", "")], ErrorCode::InvalidRequest),
            (&[("scope", "email")], ErrorCode::InvalidScope),
            (&[("prompt", "none")], ErrorCode::LoginRequired),
            (&[("request", "eyJ...")], ErrorCode::RequestNotSupported),
            (&[("response_mode", "fragment")], ErrorCode::InvalidRequest),
        ];
        for (extra, want) in cases {
            assert_eq!(
                redirect_error(validate_request(r, &params(extra))),
                *want,
                "{extra:?}"
            );
        }
        let mut twice = params(&[]);
        twice.push(("scope".into(), "openid".into()));
        assert_eq!(
            redirect_error(validate_request(r, &twice)),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn confidential_clients_need_their_secret_and_public_ones_none() {
        let r = registry();
        assert!(r.authenticate("api", Some("s3cret")).is_ok());
        assert!(r.authenticate("api", Some("wrong")).is_err());
        assert!(r.authenticate("api", None).is_err());
        assert!(r.authenticate("shop", None).is_ok());
        assert!(r.authenticate("shop", Some("anything")).is_err());
        assert!(r.authenticate("nobody", None).is_err());
    }

    #[test]
    fn redirect_uris_are_checked_at_configuration() {
        for ok in [
            "https://app.example/cb",
            "https://app.example/cb?x=1",
            "http://localhost:3000/cb",
            "http://127.0.0.1/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/cb",
            "https://app.example/cb#frag",
            "http://app.example/cb",
            "https://user:pw@app.example/cb",
            "javascript:alert(1)",
            "ftp://app.example/cb",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
        assert!(
            ClientRegistry::from_json(
                r#"[{"client_id":"a","redirect_uris":["http://evil.example/cb"]}]"#
            )
            .is_err()
        );
        assert!(ClientRegistry::from_json(r#"[{"client_id":"a","redirect_uris":[]}]"#).is_err());
        assert!(
            ClientRegistry::from_json(
                r#"[{"client_id":"a","redirect_uris":["https://a.example/"],"secret_sha256":"zz"}]"#
            )
            .is_err()
        );
        assert!(
            ClientRegistry::from_json(
                r#"[{"client_id":"a","redirect_uris":["https://a.example/"],"extra":1}]"#
            )
            .is_err()
        );
        assert!(ClientRegistry::from_json("").unwrap().is_empty());
    }

    #[test]
    fn browser_origins_are_the_public_clients_web_origins() {
        let registry = ClientRegistry::from_json(&format!(
            r#"[{{"client_id":"web","redirect_uris":["https://shop.example/cb"],"secret_sha256":"{}"}},
                {{"client_id":"spa","redirect_uris":["https://spa.example:8443/cb","https://spa.example:8443/other"]}},
                {{"client_id":"dev","redirect_uris":["http://localhost:5173/cb"]}},
                {{"client_id":"native","redirect_uris":["com.example.app:/cb"]}}]"#,
            "ab".repeat(32)
        ))
        .unwrap();
        assert_eq!(
            registry.browser_origins(),
            ["http://localhost:5173", "https://spa.example:8443"]
        );
    }

    #[test]
    fn errors_are_appended_to_the_redirect_uri_query() {
        assert_eq!(
            with_query(
                "https://a.example/cb?x=1",
                &[("code", "c d"), ("state", "s&t")]
            ),
            "https://a.example/cb?x=1&code=c+d&state=s%26t"
        );
    }
}
