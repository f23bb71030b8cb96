//! The OpenID Provider's endpoints: discovery, `/authorize` (the face login page and its
//! face step), `/token`, `/userinfo`, `/revoke`, `/introspect` and `/logout`. The rules
//! and use cases are in [`crate::openid`] and [`crate::domain::oidc`]; here: parsing,
//! client credentials, and turning outcomes into redirects, pages and OAuth errors.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::FormRejection;
use axum::extract::{Multipart, RawQuery, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;

use crate::domain::oidc::{ErrorCode, OAuthError, RequestRefusal};
use crate::flows::{self, Limit};
use crate::http::error::{ApiError, OAuthErrorResponse};
use crate::http::extract::{Client, validate_username};
use crate::openid::{
    self, AuthorizeError, ClientCredentials, Introspection, LoggedOut, TokenForm, TokenResponse,
    UserInfo,
};
use crate::state::AppState;

/// The login page `/authorize` shows for a valid request.
pub const AUTHORIZE_PAGE: &str = include_str!("../../../static/authorize.html");

/// `GET /.well-known/openid-configuration`.
pub async fn discovery(State(state): State<AppState>) -> Response {
    let mut response = Json(openid::discovery(&state.config().issuer())).into_response();
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// `GET /authorize`: the login page for a valid request; a refused one goes back to the
/// client, or, when the client or redirect URI cannot be trusted, is shown.
pub async fn authorize(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    match openid::check_request(&state, &query_pairs(query.as_deref())) {
        Ok(_) if state.config().oidc_password_login => Html(
            AUTHORIZE_PAGE.replace("data-password-login=\"off\"", "data-password-login=\"on\""),
        )
        .into_response(),
        Ok(_) => Html(AUTHORIZE_PAGE).into_response(),
        Err(refusal) => refusal_response(&state, refusal),
    }
}

fn refusal_response(state: &AppState, refusal: RequestRefusal) -> Response {
    match refusal {
        RequestRefusal::Unredirectable(why) => message_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            &format!(
                "{why}. Go back to the app and try again; if it keeps happening, tell the app's developers."
            ),
        ),
        RequestRefusal::Redirect {
            redirect_uri,
            error,
            state: s,
        } => see_other(&openid::error_redirect(
            &state.config().issuer(),
            &redirect_uri,
            &error,
            s.as_deref(),
        )),
    }
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(LOCATION, v)]).into_response(),
        Err(_) => ApiError::Internal("unencodable redirect".to_owned()).into_response(),
    }
}

/// A small HTML page with a title and a message, escaped.
fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title></head><body style=\"font: 16px/1.5 system-ui, sans-serif; \
         max-width: 36em; margin: 3em auto; padding: 0 1em\"><h1 style=\"font-size: 1.3em\">{t}</h1>\
         <p>{m}</p></body></html>",
        t = esc(title),
        m = esc(message)
    );
    (status, Html(html)).into_response()
}

/// Where the login page sends the browser next.
#[derive(Debug, Serialize)]
pub struct Next {
    /// The client's redirect URI with the code (or an error).
    pub redirect_to: String,
}

/// `POST /authorize/face?<the authorization request>`: the login page's face step
/// (multipart `face_image`, optional `username`). Login failures are the API's errors,
/// shown on the page; the outcome otherwise is where to go next.
pub async fn authorize_face(
    State(state): State<AppState>,
    client: Client,
    RawQuery(query): RawQuery,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Next>, ApiError> {
    let params = query_pairs(query.as_deref());
    flows::rate_limit(&state, Limit::Login, &client).await?;
    let (username, image) = super::auth::read_login_form(&state, multipart).await?;
    next_step(
        &state,
        openid::authorize_with_face(&state, &client, &params, username.as_deref(), image).await,
    )
}

/// The form of `POST /authorize/password`.
#[derive(Debug, serde::Deserialize)]
pub struct PasswordForm {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

/// `POST /authorize/password?<the authorization request>`: the login page's password
/// fallback (form `username`, `password`), where the tenant enables it
/// (`OIDC_PASSWORD_LOGIN`; otherwise 403).
pub async fn authorize_password(
    State(state): State<AppState>,
    client: Client,
    RawQuery(query): RawQuery,
    form: Result<axum::Form<PasswordForm>, FormRejection>,
) -> Result<Json<Next>, ApiError> {
    let params = query_pairs(query.as_deref());
    flows::rate_limit(&state, Limit::Login, &client).await?;
    let axum::Form(form) = form.map_err(|e| ApiError::Validation(e.body_text()))?;
    let username = validate_username(&form.username)?;
    if form.password.is_empty() || form.password.len() > 128 {
        return Err(ApiError::Validation(
            "password must be 1-128 characters".to_owned(),
        ));
    }
    next_step(
        &state,
        openid::authorize_with_password(&state, &client, &params, username, &form.password).await,
    )
}

/// Where the login page goes after a step: the redirect, a refusal sent back to the
/// client, or the login error shown on the page.
fn next_step(
    state: &AppState,
    outcome: Result<String, AuthorizeError>,
) -> Result<Json<Next>, ApiError> {
    match outcome {
        Ok(redirect_to) => Ok(Json(Next { redirect_to })),
        Err(AuthorizeError::Login(e)) => Err(e),
        Err(AuthorizeError::Request(RequestRefusal::Redirect {
            redirect_uri,
            error,
            state: s,
        })) => Ok(Json(Next {
            redirect_to: openid::error_redirect(
                &state.config().issuer(),
                &redirect_uri,
                &error,
                s.as_deref(),
            ),
        })),
        Err(AuthorizeError::Request(RequestRefusal::Unredirectable(why))) => {
            Err(ApiError::Validation(why))
        }
    }
}

/// `GET /authorize/cancel?<the authorization request>`: back to the client with
/// `access_denied`.
pub async fn authorize_cancel(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    match openid::cancel(&state, &query_pairs(query.as_deref())) {
        Ok(location) => see_other(&location),
        Err(refusal) => refusal_response(&state, refusal),
    }
}

/// The client's credentials from `Authorization: Basic` (RFC 6749 2.3.1: both parts
/// form-urlencoded before base64).
fn basic_credentials(headers: &HeaderMap) -> Result<ClientCredentials, OAuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(ClientCredentials::default());
    };
    let bad = || OAuthError::new(ErrorCode::InvalidClient, "malformed Basic credentials");
    let value = value.to_str().map_err(|_| bad())?;
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Err(bad());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(ClientCredentials {
        id: Some(unescape(id)),
        secret: Some(unescape(secret)).filter(|s| !s.is_empty()),
    })
}

fn token_form(form: Result<axum::Form<TokenForm>, FormRejection>) -> Result<TokenForm, OAuthError> {
    form.map(|axum::Form(f)| f).map_err(|e| {
        OAuthError::new(
            ErrorCode::InvalidRequest,
            format!("expected an application/x-www-form-urlencoded body without repeated parameters: {}", e.body_text()),
        )
    })
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /token`: the authorization code and refresh token grants.
pub async fn token(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
    form: Result<axum::Form<TokenForm>, FormRejection>,
) -> Result<Response, Response> {
    flows::rate_limit(&state, Limit::Default, &client)
        .await
        .map_err(IntoResponse::into_response)?;
    let result: Result<TokenResponse, OAuthError> = async {
        let credentials = basic_credentials(&headers)?;
        openid::token(&state, credentials, token_form(form)?).await
    }
    .await;
    match result {
        Ok(tokens) => Ok(no_store(Json(tokens).into_response())),
        Err(e) => Err(no_store(OAuthErrorResponse(e).into_response())),
    }
}

/// `GET` or `POST /userinfo` with `Authorization: Bearer`.
pub async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<UserInfo>, OAuthErrorResponse> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    Ok(Json(openid::userinfo(&state, bearer).await?))
}

/// The form of `/revoke` and `/introspect`: `token`, an optional `token_type_hint`, and
/// client credentials.
#[derive(Debug, Default, serde::Deserialize)]
pub struct TokenCheckForm {
    /// The token.
    pub token: Option<String>,
    /// `access_token` or `refresh_token` (only a hint).
    pub token_type_hint: Option<String>,
    /// `client_secret_post`, or a public client naming itself.
    pub client_id: Option<String>,
    /// `client_secret_post`.
    pub client_secret: Option<String>,
}

/// The posted client credentials and the token of a `/revoke` or `/introspect` form.
fn check_form(
    form: Result<axum::Form<TokenCheckForm>, FormRejection>,
) -> Result<(ClientCredentials, String), OAuthError> {
    let axum::Form(f) = form.map_err(|e| {
        OAuthError::new(
            ErrorCode::InvalidRequest,
            format!(
                "expected an application/x-www-form-urlencoded body: {}",
                e.body_text()
            ),
        )
    })?;
    let posted = ClientCredentials {
        id: f.client_id,
        secret: f.client_secret,
    };
    let token = f
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "token is required"))?;
    Ok((posted, token))
}

/// `POST /revoke` (RFC 7009): always 200 for a token, known or not.
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<axum::Form<TokenCheckForm>, FormRejection>,
) -> Result<StatusCode, OAuthErrorResponse> {
    let basic = basic_credentials(&headers)?;
    let (posted, token) = check_form(form)?;
    openid::revoke(&state, basic, posted, &token).await?;
    Ok(StatusCode::OK)
}

/// `POST /introspect` (RFC 7662), for confidential clients.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<axum::Form<TokenCheckForm>, FormRejection>,
) -> Result<Response, OAuthErrorResponse> {
    let basic = basic_credentials(&headers)?;
    let (posted, token) = check_form(form)?;
    let answer: Introspection = openid::introspect(&state, basic, posted, &token).await?;
    Ok(no_store(Json(answer).into_response()))
}

/// `GET /logout` (RP-initiated logout; `POST` with a form works the same).
pub async fn logout(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    logout_with(&state, &query_pairs(query.as_deref())).await
}

/// `POST /logout` with a form body.
pub async fn logout_post(State(state): State<AppState>, body: String) -> Response {
    logout_with(&state, &query_pairs(Some(&body))).await
}

async fn logout_with(state: &AppState, params: &[(String, String)]) -> Response {
    match openid::end_session(state, params).await {
        Ok(LoggedOut::Redirect(location)) => see_other(&location),
        Ok(LoggedOut::Page) => message_page(
            StatusCode::OK,
            "You are signed out",
            "You are signed out of this app. You can close this page.",
        ),
        Err(e) if e.code == ErrorCode::TemporarilyUnavailable => {
            OAuthErrorResponse(e).into_response()
        }
        Err(e) => message_page(
            StatusCode::BAD_REQUEST,
            "This sign-out link is not valid",
            &e.description,
        ),
    }
}
