//! The tenant as an OpenID Provider (OpenID Connect Core 1.0, Discovery 1.0, RP-Initiated
//! Logout 1.0, RFC 7009 revocation, RFC 7662 introspection): the use cases behind
//! `/authorize`, `/token`, `/userinfo`, `/logout`, `/revoke` and `/introspect`.
//!
//! The login behind `/authorize` is the face login of the API ([`flows::authenticate_face`]:
//! the same liveness, lockout, rate limits, login mode and fraud record); what it issues is
//! a one-minute, single-use authorization code bound to the client, the redirect URI and
//! the PKCE challenge. Tokens are signed with the tenant's key set (EdDSA or ES256, never
//! HS256), so apps verify them with `/.well-known/jwks.json`.
//!
//! Protocol errors are [`OAuthError`]s (mapped to OAuth's JSON errors in `http/`); a
//! database that cannot answer is `temporarily_unavailable`, never a 500 with detail.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use jsonwebtoken::Validation;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::oidc::{
    AuthorizationRequest, Client, ErrorCode, OAuthError, RequestRefusal, pkce_matches,
    validate_request, with_query,
};
use crate::domain::tokens::{AccessClaims, TokenError, hash_refresh_token, new_refresh_token};
use crate::flows::{self, SessionStatus};
use crate::http::error::ApiError;
use crate::http::extract::Client as Caller;
use crate::state::AppState;
use crate::store::tokens::{Grant, Redeemed as RefreshRedeemed};
use crate::store::users::UserRow;
use crate::store::{StoreError, codes, tokens, users};

/// How long an authorization code can be exchanged.
pub const CODE_TTL_SECONDS: i64 = 60;
/// How long a spent or expired code is remembered, so that a replay is recognised.
pub const CODE_RETENTION_HOURS: i64 = 24;

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "OpenID Provider: storage failed");
        OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the provider cannot answer now; retry later",
        )
    }
}

// ---------------------------------------------------------------- discovery

/// `/.well-known/openid-configuration` (OpenID Connect Discovery 1.0, section 3).
pub fn discovery(issuer: &str) -> serde_json::Value {
    serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA", "ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": crate::domain::oidc::SCOPES,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "azp",
                             "liveness", "preferred_username", "email"],
        "prompt_values_supported": ["login", "consent"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
    })
}

// ---------------------------------------------------------------- authorization

/// Why the face step of an authorization did not produce a code.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The request itself is refused (shown, or sent back to the client).
    Request(RequestRefusal),
    /// The login failed: shown on the page, which lets the user try again.
    Login(ApiError),
}

/// Checks an authorization request (the `/authorize` page shows the login only for a
/// valid one).
pub fn check_request(
    state: &AppState,
    params: &[(String, String)],
) -> Result<AuthorizationRequest, RequestRefusal> {
    validate_request(&state.config().oidc_clients, params)
}

/// The face step: authenticates the person in `image` exactly as a face login does, then
/// issues a code for the request; returns where the browser goes next (the client's
/// redirect URI with `code`, `state` and `iss`).
pub async fn authorize_with_face(
    state: &AppState,
    caller: &Caller,
    params: &[(String, String)],
    username: Option<&str>,
    image: Bytes,
) -> Result<String, AuthorizeError> {
    let request = check_request(state, params).map_err(AuthorizeError::Request)?;
    let auth = flows::authenticate_face(state, caller, username, image)
        .await
        .map_err(AuthorizeError::Login)?;
    issue_code(state, &request, &auth.user, "face", auth.liveness)
        .await
        .map_err(AuthorizeError::Login)
}

/// The password step, where the tenant enables it (`OIDC_PASSWORD_LOGIN`): as
/// [`authorize_with_face`], authenticating with a username and password (`amr: ["pwd"]`).
pub async fn authorize_with_password(
    state: &AppState,
    caller: &Caller,
    params: &[(String, String)],
    username: &str,
    password: &str,
) -> Result<String, AuthorizeError> {
    let request = check_request(state, params).map_err(AuthorizeError::Request)?;
    if !state.config().oidc_password_login {
        return Err(AuthorizeError::Login(ApiError::Forbidden(
            "this tenant signs in by face only",
        )));
    }
    let auth = flows::authenticate_password(state, caller, username, password)
        .await
        .map_err(AuthorizeError::Login)?;
    issue_code(state, &request, &auth.user, "pwd", None)
        .await
        .map_err(AuthorizeError::Login)
}

/// The user gave up: back to the client with `access_denied`.
pub fn cancel(state: &AppState, params: &[(String, String)]) -> Result<String, RequestRefusal> {
    let request = check_request(state, params)?;
    Ok(error_redirect(
        &state.config().issuer(),
        &request.redirect_uri,
        &OAuthError::new(ErrorCode::AccessDenied, "the user cancelled the login"),
        request.state.as_deref(),
    ))
}

/// Where a refused request's error goes: the client's redirect URI with `error`,
/// `error_description`, `state` and `iss` (RFC 9207).
pub fn error_redirect(
    issuer: &str,
    redirect_uri: &str,
    error: &OAuthError,
    state: Option<&str>,
) -> String {
    let mut params = vec![
        ("error", error.code.as_str()),
        ("error_description", error.description.as_str()),
    ];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", issuer));
    with_query(redirect_uri, &params)
}

async fn issue_code(
    state: &AppState,
    request: &AuthorizationRequest,
    user: &UserRow,
    amr: &str,
    liveness: Option<f32>,
) -> Result<String, ApiError> {
    let now = Utc::now();
    let code = random_token();
    let stored = codes::Code {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        user_id: user.id,
        scope: request.scope.clone(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        auth_time: now,
        amr: amr.to_owned(),
        liveness_score: liveness,
    };
    codes::store(
        state.db(),
        &sha256(&code),
        &stored,
        now + chrono::Duration::seconds(CODE_TTL_SECONDS),
    )
    .await?;
    tracing::info!(event = "authorization_code_issued", user_id = %user.id, client_id = %request.client_id, "authorization code issued");
    let issuer = state.config().issuer();
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &request.state {
        params.push(("state", s));
    }
    params.push(("iss", &issuer));
    Ok(with_query(&request.redirect_uri, &params))
}

// ---------------------------------------------------------------- the token endpoint

/// How a client authenticated (HTTP Basic or form fields), before checking.
#[derive(Clone, Debug, Default)]
pub struct ClientCredentials {
    /// `client_id`.
    pub id: Option<String>,
    /// `client_secret`.
    pub secret: Option<String>,
}

/// The token endpoint's form (RFC 6749 4.1.3 and 6).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TokenForm {
    /// `authorization_code` or `refresh_token`.
    pub grant_type: Option<String>,
    /// The code.
    pub code: Option<String>,
    /// The redirect URI of the authorization request.
    pub redirect_uri: Option<String>,
    /// PKCE verifier.
    pub code_verifier: Option<String>,
    /// For `refresh_token`.
    pub refresh_token: Option<String>,
    /// `client_secret_post`, or a public client naming itself.
    pub client_id: Option<String>,
    /// `client_secret_post`.
    pub client_secret: Option<String>,
}

/// A successful token response (RFC 6749 5.1, OpenID Connect Core 3.1.3.3).
#[derive(Clone, Debug, Serialize)]
pub struct TokenResponse {
    /// A JWT access token (`at+jwt`), for this tenant's API and the app's resource servers.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// The ID token.
    pub id_token: String,
    /// Single use, rotated on every refresh.
    pub refresh_token: String,
    /// The scope granted.
    pub scope: String,
}

/// `POST /token`.
pub async fn token(
    state: &AppState,
    credentials: ClientCredentials,
    form: TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let posted = ClientCredentials {
        id: form.client_id.clone(),
        secret: form.client_secret.clone(),
    };
    let client = authenticate_client(state, credentials, posted)?;
    match form.grant_type.as_deref() {
        Some("authorization_code") => exchange_code(state, &client, &form).await,
        Some("refresh_token") => refresh(state, &client, &form).await,
        Some(_) => Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "grant_type must be authorization_code or refresh_token",
        )),
        None => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "grant_type is missing",
        )),
    }
}

/// Checks the client's credentials from HTTP Basic (`basic`) or the form body (`posted`),
/// one method only.
fn authenticate_client(
    state: &AppState,
    basic: ClientCredentials,
    posted: ClientCredentials,
) -> Result<Client, OAuthError> {
    let failed = || OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
    let (id, secret) = match (basic.id, posted.id, posted.secret) {
        (Some(_), _, Some(_)) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "use one client authentication method",
            ));
        }
        (Some(id), form_id, None) => {
            if form_id.is_some_and(|f| f != id) {
                return Err(failed());
            }
            (id, basic.secret)
        }
        (None, Some(id), secret) => (id, secret),
        (None, None, _) => return Err(failed()),
    };
    state
        .config()
        .oidc_clients
        .authenticate(&id, secret.as_deref())
        .cloned()
}

async fn exchange_code(
    state: &AppState,
    client: &Client,
    form: &TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let (Some(code), Some(redirect_uri)) = (&form.code, &form.redirect_uri) else {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "code and redirect_uri are required",
        ));
    };
    let invalid = |why: &str| OAuthError::new(ErrorCode::InvalidGrant, why);
    let now = Utc::now();
    let hash = sha256(code);
    let spent = match codes::redeem(state.db(), &hash, now).await? {
        codes::Redeemed::Spent(spent) => spent,
        codes::Redeemed::Replayed { user_id, family } => {
            revoke_replayed(state, user_id, family, now).await?;
            return Err(invalid(
                "the code was already used; what it was exchanged for is revoked",
            ));
        }
        codes::Redeemed::Invalid => return Err(invalid("the code is unknown or expired")),
    };
    // The code is spent from here on, whatever follows: a stolen code is burnt by its
    // first presentation.
    if spent.client_id != client.id || spent.redirect_uri != *redirect_uri {
        return Err(invalid(
            "the code was issued to another client or redirect URI",
        ));
    }
    let verifier = form.code_verifier.as_deref().unwrap_or_default();
    if !pkce_matches(verifier, &spent.code_challenge) {
        return Err(invalid(
            "the code_verifier does not match the code_challenge",
        ));
    }
    let user = usable_user(state, spent.user_id, now).await?;
    let grant = Grant {
        client_id: client.id.clone(),
        scope: spent.scope.clone(),
        auth_time: spent.auth_time,
        amr: spent.amr.clone(),
        liveness_score: spent.liveness_score,
    };
    let refresh_token = new_refresh_token();
    let family = tokens::issue(
        state.db(),
        &hash_refresh_token(&refresh_token),
        user.id,
        refresh_expiry(state, now),
        Some(&grant),
    )
    .await?;
    codes::attach_family(state.db(), &hash, family).await?;
    tracing::info!(event = "authorization_code_exchanged", user_id = %user.id, client_id = %client.id, "tokens issued for an authorization code");
    respond(
        state,
        client,
        &user,
        &grant,
        spent.nonce.as_deref(),
        refresh_token,
        now,
    )
}

async fn refresh(
    state: &AppState,
    client: &Client,
    form: &TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let Some(presented) = &form.refresh_token else {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "refresh_token is required",
        ));
    };
    let now = Utc::now();
    let successor = new_refresh_token();
    let redeemed = tokens::rotate(
        state.db(),
        &hash_refresh_token(presented),
        &hash_refresh_token(&successor),
        now,
        refresh_expiry(state, now),
        Some(&client.id),
    )
    .await?;
    let invalid = |why: &str| OAuthError::new(ErrorCode::InvalidGrant, why);
    match redeemed {
        RefreshRedeemed::Rotated {
            user_id,
            grant: Some(grant),
        } => {
            let user = usable_user(state, user_id, now).await?;
            respond(state, client, &user, &grant, None, successor, now)
        }
        RefreshRedeemed::Rotated { grant: None, .. } | RefreshRedeemed::Invalid => Err(invalid(
            "the refresh token is unknown, expired, revoked or another client's",
        )),
        RefreshRedeemed::Reused => {
            tracing::warn!(event = "refresh_token_reused", client_id = %client.id, "spent refresh token presented again; family revoked");
            Err(invalid(
                "the refresh token was already used; its family is revoked",
            ))
        }
    }
}

/// A code presented twice: its first exchange may have been the attacker's, so what it
/// was exchanged for is revoked (the refresh-token family and every access token).
async fn revoke_replayed(
    state: &AppState,
    user: Uuid,
    family: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(), OAuthError> {
    if let Some(family) = family {
        tokens::revoke_family(state.db(), family, now).await?;
    }
    users::bump_token_generation(state.db(), user).await?;
    tracing::warn!(event = "authorization_code_replayed", user_id = %user, "authorization code presented again; its tokens are revoked");
    Ok(())
}

async fn usable_user(
    state: &AppState,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<UserRow, OAuthError> {
    let refused = || OAuthError::new(ErrorCode::InvalidGrant, "the account cannot sign in now");
    let user = users::by_id(state.db(), id).await?.ok_or_else(refused)?;
    if !user.is_active || crate::domain::lockout::is_locked(user.is_locked, user.locked_until, now)
    {
        return Err(refused());
    }
    Ok(user)
}

fn refresh_expiry(state: &AppState, now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(state.config().refresh_ttl()).unwrap_or_default()
}

fn respond(
    state: &AppState,
    client: &Client,
    user: &UserRow,
    grant: &Grant,
    nonce: Option<&str>,
    refresh_token: String,
    now: DateTime<Utc>,
) -> Result<TokenResponse, OAuthError> {
    let signing = |e: TokenError| {
        tracing::error!(error = %e, "OpenID Provider: signing failed");
        OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the provider cannot sign now",
        )
    };
    let tokens = state.tokens();
    let access_token = tokens
        .issue_client_access(
            user.id,
            user.token_generation,
            &client.id,
            &grant.scope,
            now,
        )
        .map_err(signing)?;
    let claims = IdTokenClaims::new(state, client, user, grant, nonce, now);
    let id_token = tokens
        .keys()
        .sign(client.id_token_alg, None, &claims, now)
        .map_err(signing)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: tokens.access_ttl().as_secs(),
        id_token,
        refresh_token,
        scope: grant.scope.clone(),
    })
}

/// The liveness outcome of the authentication, as a claim.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LivenessClaim {
    /// The photo passed the tenant's liveness check.
    pub passed: bool,
    /// Its score in [0, 1].
    pub score: f32,
}

/// ID token claims (OpenID Connect Core 2).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// The issuer URL.
    pub iss: String,
    /// The user's id.
    pub sub: String,
    /// The client.
    pub aud: String,
    /// The client (authorized party).
    pub azp: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// When the user authenticated.
    pub auth_time: i64,
    /// The request's nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// `["face"]` (or `["pwd"]`).
    pub amr: Vec<String>,
    /// The liveness outcome, when liveness is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessClaim>,
    /// Username (scope `profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// E-mail (scope `email`), as registered: not verified by this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl IdTokenClaims {
    fn new(
        state: &AppState,
        client: &Client,
        user: &UserRow,
        grant: &Grant,
        nonce: Option<&str>,
        now: DateTime<Utc>,
    ) -> Self {
        let iat = now.timestamp();
        let ttl = i64::try_from(state.tokens().access_ttl().as_secs()).unwrap_or(3600);
        let threshold = state.config().engine.liveness_threshold;
        let scoped = |scope: &str| grant.scope.split(' ').any(|s| s == scope);
        Self {
            iss: state.config().issuer(),
            sub: user.id.to_string(),
            aud: client.id.clone(),
            azp: client.id.clone(),
            exp: iat + ttl,
            iat,
            auth_time: grant.auth_time.timestamp(),
            nonce: nonce.map(str::to_owned),
            amr: vec![grant.amr.clone()],
            liveness: grant.liveness_score.map(|score| LivenessClaim {
                passed: score >= threshold,
                score,
            }),
            preferred_username: scoped("profile").then(|| user.username.clone()),
            email: scoped("email").then(|| user.email.clone()),
        }
    }
}

// ---------------------------------------------------------------- userinfo

/// `/userinfo` claims (OpenID Connect Core 5.3.2).
#[derive(Clone, Debug, Serialize)]
pub struct UserInfo {
    /// The user's id.
    pub sub: String,
    /// Username (scope `profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// E-mail (scope `email`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Always false: this provider does not verify addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// `/userinfo` for a bearer access token of an OpenID client.
pub async fn userinfo(state: &AppState, bearer: Option<&str>) -> Result<UserInfo, OAuthError> {
    let claims = live_access_token(state, bearer.unwrap_or_default()).await?;
    let scope = claims.scope.clone().unwrap_or_default();
    let scoped = |s: &str| scope.split(' ').any(|x| x == s);
    let user = users::by_id(state.db(), claims.sub)
        .await?
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidToken, "the account no longer exists"))?;
    Ok(UserInfo {
        sub: user.id.to_string(),
        preferred_username: scoped("profile").then(|| user.username.clone()),
        email: scoped("email").then(|| user.email.clone()),
        email_verified: scoped("email").then_some(false),
    })
}

/// A verified access token issued to an OpenID client whose user can still use it.
async fn live_access_token(state: &AppState, token: &str) -> Result<AccessClaims, OAuthError> {
    let invalid = |why: &str| OAuthError::new(ErrorCode::InvalidToken, why);
    let claims = state
        .tokens()
        .verify_access(token)
        .map_err(|_| invalid("the access token is invalid or expired"))?;
    if claims.client_id.is_none() {
        return Err(invalid(
            "the access token was not issued to an OpenID client",
        ));
    }
    match flows::session_status(state, claims.sub, claims.r#gen, Utc::now()).await? {
        SessionStatus::Valid => Ok(claims),
        _ => Err(invalid("the access token is revoked")),
    }
}

// ---------------------------------------------------------------- revocation, introspection

/// `POST /revoke` (RFC 7009): a refresh token's family, or (for an access token) every
/// access token of its user. Tokens that are unknown or another client's are answered
/// like revoked ones, revealing nothing.
pub async fn revoke(
    state: &AppState,
    basic: ClientCredentials,
    posted: ClientCredentials,
    token: &str,
) -> Result<(), OAuthError> {
    let client = authenticate_client(state, basic, posted)?;
    let now = Utc::now();
    if let Some(live) = tokens::live(state.db(), &hash_refresh_token(token), now).await? {
        if live.client_id.as_deref() == Some(client.id.as_str()) {
            tokens::revoke(state.db(), &hash_refresh_token(token), now).await?;
            tracing::info!(event = "token_revoked", kind = "refresh", user_id = %live.user_id, client_id = %client.id, "refresh token revoked");
        }
        return Ok(());
    }
    if let Ok(claims) = state.tokens().verify_access(token)
        && claims.client_id.as_deref() == Some(client.id.as_str())
    {
        users::bump_token_generation(state.db(), claims.sub).await?;
        tracing::info!(event = "token_revoked", kind = "access", user_id = %claims.sub, client_id = %client.id, "access tokens revoked");
    }
    Ok(())
}

/// An introspection answer (RFC 7662 2.2).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Introspection {
    /// Whether the token is usable now.
    pub active: bool,
    /// `access_token` or `refresh_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// The client it was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Its scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// `POST /introspect` (RFC 7662), for confidential clients (resource servers): active
/// only while the token verifies and its user can still use it, so logout, deactivation
/// and locks show at once.
pub async fn introspect(
    state: &AppState,
    basic: ClientCredentials,
    posted: ClientCredentials,
    token: &str,
) -> Result<Introspection, OAuthError> {
    let client = authenticate_client(state, basic, posted)?;
    if matches!(client.kind, crate::domain::oidc::ClientKind::Public) {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "introspection is for confidential clients",
        ));
    }
    let now = Utc::now();
    if let Ok(claims) = live_access_token(state, token).await {
        return Ok(Introspection {
            active: true,
            token_type: Some("access_token"),
            client_id: claims.client_id,
            scope: claims.scope,
            sub: Some(claims.sub.to_string()),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            iss: Some(claims.iss),
            aud: Some(claims.aud),
        });
    }
    if let Some(live) = tokens::live(state.db(), &hash_refresh_token(token), now).await?
        && live.client_id.is_some()
        && usable_user(state, live.user_id, now).await.is_ok()
    {
        return Ok(Introspection {
            active: true,
            token_type: Some("refresh_token"),
            client_id: live.client_id,
            scope: live.scope,
            sub: Some(live.user_id.to_string()),
            exp: Some(live.expires_at.timestamp()),
            iss: Some(state.config().issuer()),
            ..Introspection::default()
        });
    }
    Ok(Introspection::default())
}

// ---------------------------------------------------------------- logout

/// What RP-initiated logout ends in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoggedOut {
    /// Back to the client's registered post-logout URI (with its `state`).
    Redirect(String),
    /// No return address: the provider shows that the user is signed out.
    Page,
}

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): the user of
/// `id_token_hint` (an ID token this provider issued, expired or not) loses the client's
/// refresh tokens and every access token at once.
pub async fn end_session(
    state: &AppState,
    params: &[(String, String)],
) -> Result<LoggedOut, OAuthError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let invalid = |why: &str| OAuthError::new(ErrorCode::InvalidRequest, why);
    let hint = get("id_token_hint").ok_or_else(|| invalid("id_token_hint is required"))?;
    let claims = verify_id_token(state, hint)
        .ok_or_else(|| invalid("id_token_hint is not an ID token of this provider"))?;
    if get("client_id").is_some_and(|c| c != claims.aud) {
        return Err(invalid("client_id does not match the ID token's audience"));
    }
    let client = state
        .config()
        .oidc_clients
        .get(&claims.aud)
        .cloned()
        .ok_or_else(|| invalid("the ID token's client is not registered"))?;
    let back = match get("post_logout_redirect_uri") {
        Some(uri) if client.post_logout_redirect_uris.iter().any(|r| r == uri) => Some(uri),
        Some(_) => {
            return Err(invalid(
                "post_logout_redirect_uri is not registered for this client",
            ));
        }
        None => None,
    };
    let user: Uuid = claims
        .sub
        .parse()
        .map_err(|_| invalid("id_token_hint has no valid subject"))?;
    let now = Utc::now();
    tokens::revoke_user_client(state.db(), user, &client.id, now).await?;
    users::bump_token_generation(state.db(), user).await?;
    tracing::info!(event = "logged_out", user_id = %user, client_id = %client.id, "RP-initiated logout: the client's refresh tokens and every access token revoked");
    Ok(match back {
        Some(uri) => {
            let mut q = Vec::new();
            if let Some(s) = get("state") {
                q.push(("state", s));
            }
            LoggedOut::Redirect(with_query(uri, &q))
        }
        None => LoggedOut::Page,
    })
}

/// The claims of an ID token this provider signed (its signature, algorithm and issuer;
/// expired tokens are accepted, as logout hints may be).
fn verify_id_token(state: &AppState, token: &str) -> Option<IdTokenClaims> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    let (key, algorithm) = state
        .tokens()
        .keys()
        .verifying(header.kid.as_deref()?, Utc::now())?;
    if algorithm != header.alg {
        return None;
    }
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[state.config().issuer()]);
    validation.set_required_spec_claims(&["iss", "sub", "aud"]);
    let claims = jsonwebtoken::decode::<IdTokenClaims>(token, key, &validation)
        .ok()?
        .claims;
    Some(claims)
}

// ---------------------------------------------------------------- helpers

fn random_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}
