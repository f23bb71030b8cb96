//! `/api/v1/auth/*`.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::flows::{self, Limit, LoggedIn, Registered, Registration, TokenPair, UserOut};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{
    AuthUser, Client, Form, validate_email, validate_password, validate_username,
};
use crate::state::AppState;

/// Multipart body of `POST /api/v1/auth/register`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct RegisterForm {
    /// 3-64 characters: letters, digits, `_`, `.`, `-`. Unique, case-insensitively.
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9_.-]{3,64}$")]
    username: String,
    /// E-mail address. Unique, case-insensitively.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 8-128 characters.
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    /// JPEG, PNG or WebP photo with exactly one face.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    face_image: String,
}

/// Multipart body of `POST /api/v1/auth/login`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct LoginForm {
    /// JPEG, PNG or WebP photo of the face.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    face_image: String,
    /// Optional: verify against this user only (1:1) instead of identifying (1:N).
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9_.-]{3,64}$")]
    username: Option<String>,
}

/// A refresh token in a JSON body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token from a login, registration or previous refresh.
    #[schema(min_length = 1, max_length = 256)]
    pub refresh_token: String,
}

/// Registers a user with a face photo.
#[utoipa::path(
    post, path = "/api/v1/auth/register", tag = "auth",
    request_body(content = RegisterForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Registered", body = Registered, links(
            ("refresh" = (operation_id = "refresh",
                request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                description = "Exchange the refresh token")),
            ("logout" = (operation_id = "logout",
                request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                description = "Revoke the refresh token")),
            ("unlock" = (operation_id = "unlock", parameters(("user_id" = "$response.body#/user/id")),
                description = "Unlock the account (admin)")),
            ("deactivate" = (operation_id = "deactivate", parameters(("user_id" = "$response.body#/user/id")),
                description = "Deactivate the account (admin)")),
            ("activate" = (operation_id = "activate", parameters(("user_id" = "$response.body#/user/id")),
                description = "Reactivate the account (admin)")),
        )),
        (status = 400, description = "`user_exists`, `duplicate_face` (the face is enrolled under another account), `no_face`, `multiple_faces`, `poor_quality`/`face_too_small`/..., or an image error (`invalid_image`, `unsupported_format`, `image_too_large`, ...)", body = ErrorBody),
        (status = 401, description = "`spoof_detected`: the liveness check refused the photo", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not multipart/form-data", body = ErrorBody),
        (status = 422, description = "`validation_error`: a field is missing or malformed", body = ErrorBody),
        (status = 429, description = "`rate_limited` (see `Retry-After`)", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database or rate limiter down", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    client: Client,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    flows::rate_limit(&state, Limit::Register, &client).await?;
    let form = Form::read(
        multipart,
        &["username", "email", "password"],
        &["face_image"],
        state.config().max_upload_bytes,
    )
    .await?;
    let input = Registration {
        username: validate_username(form.text("username")?)?,
        email: validate_email(form.text("email")?)?,
        password: validate_password(form.text("password")?)?,
        image: form.file("face_image")?,
    };
    let registered = flows::register(&state, &client, input).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

/// Logs in with a face photo.
///
/// Without `username` the face is identified among all active users (1:N); with it,
/// verified against that user only (1:1). A locked account is always answered 423,
/// whichever way it was reached.
///
/// Face-only login is open while the tenant's gallery is within the safe size measured
/// for its tolerance (`LOGIN_MODE`, `FACE_ONLY_MAX_USERS`, `FACE_ONLY_ACCEPT_RISK`):
/// past it, or when the tenant takes usernames only, a login without `username` is
/// answered 401 `username_required` before the photo is analysed, and the client asks
/// for the username. A tenant that logs in by face only answers a `username` with 400
/// `username_not_accepted`.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body(content = LoginForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Logged in", body = LoggedIn, links(
            ("refresh" = (operation_id = "refresh",
                request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                description = "Exchange the refresh token")),
            ("logout" = (operation_id = "logout",
                request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                description = "Revoke the refresh token")),
            ("unlock" = (operation_id = "unlock", parameters(("user_id" = "$response.body#/user/id")),
                description = "Unlock the account (admin)")),
            ("deactivate" = (operation_id = "deactivate", parameters(("user_id" = "$response.body#/user/id")),
                description = "Deactivate the account (admin)")),
            ("activate" = (operation_id = "activate", parameters(("user_id" = "$response.body#/user/id")),
                description = "Reactivate the account (admin)")),
        )),
        (status = 400, description = "`no_face`, `multiple_faces`, quality or image errors; `username_not_accepted`", body = ErrorBody),
        (status = 401, description = "`liveness_failed`, `face_not_recognized`, `ambiguous_match` or `username_required` (face-only login closed: send `username`)", body = ErrorBody),
        (status = 403, description = "`account_inactive`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`validation_error`", body = ErrorBody),
        (status = 423, description = "`account_locked` (see `Retry-After`): the account is locked, or this client is locked out of it after repeated failures", body = ErrorBody),
        (status = 429, description = "`rate_limited`, or `login_throttled`: this client failed on this account repeatedly and must wait (see `Retry-After`)", body = ErrorBody),
        (status = 503, description = "`service_unavailable`", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<LoggedIn>> {
    flows::rate_limit(&state, Limit::Login, &client).await?;
    let (username, image) = read_login_form(&state, multipart).await?;
    Ok(Json(
        flows::login(&state, &client, username.as_deref(), image).await?,
    ))
}

/// A face login's multipart form (the API's login and the OpenID login page's face
/// step): the photo and an optional, validated `username`.
pub async fn read_login_form(
    state: &AppState,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(Option<String>, bytes::Bytes)> {
    let form = Form::read(
        multipart,
        &["username"],
        &["face_image"],
        state.config().max_upload_bytes,
    )
    .await?;
    let username = form
        .optional_text("username")
        .map(validate_username)
        .transpose()?
        .map(str::to_owned);
    Ok((username, form.file("face_image")?))
}

fn refresh_body(
    body: Result<Json<RefreshRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<RefreshRequest> {
    use axum::extract::rejection::JsonRejection as R;
    match body {
        Ok(Json(b)) if !b.refresh_token.is_empty() && b.refresh_token.len() <= 256 => Ok(b),
        Ok(_) => Err(ApiError::Validation(
            "refresh_token must be 1-256 characters".to_owned(),
        )),
        Err(R::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType(
            "expected an application/json body",
        )),
        Err(e) => Err(ApiError::Validation(format!(
            "invalid JSON body: {}",
            e.body_text()
        ))),
    }
}

/// Exchanges a refresh token for a new access and refresh token. The presented token is
/// spent; presenting it again revokes every token of that login.
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenPair, links(
            ("refresh" = (operation_id = "refresh",
                request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                description = "Exchange the refresh token")),
            ("logout" = (operation_id = "logout",
                request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                description = "Revoke the refresh token")),
        )),
        (status = 401, description = "`invalid_refresh_token`", body = ErrorBody),
        (status = 403, description = "`account_inactive`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`validation_error`", body = ErrorBody),
        (status = 423, description = "`account_locked`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database or rate limiter down", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    client: Client,
    body: Result<Json<RefreshRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<TokenPair>> {
    flows::rate_limit(&state, Limit::Default, &client).await?;
    let body = refresh_body(body)?;
    Ok(Json(flows::refresh(&state, &body.refresh_token).await?))
}

/// Revokes a refresh token (and every token of the same login).
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Revoked (also answered for unknown tokens)"),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`validation_error`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database or rate limiter down", body = ErrorBody),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    client: Client,
    body: Result<Json<RefreshRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    flows::rate_limit(&state, Limit::Default, &client).await?;
    let body = refresh_body(body)?;
    flows::logout(&state, &body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(
    get, path = "/api/v1/auth/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserOut),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database or rate limiter down", body = ErrorBody),
    )
)]
pub async fn me(
    State(state): State<AppState>,
    client: Client,
    user: AuthUser,
) -> ApiResult<Json<UserOut>> {
    flows::rate_limit(&state, Limit::Default, &client).await?;
    Ok(Json(flows::me(&state, user.id).await?))
}
