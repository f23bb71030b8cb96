//! The one mapping from failures to HTTP responses.
//!
//! Every error body is `{"error": {"code": "...", "message": "..."}, "request_id": "..."}`.
//! Codes are stable and machine-readable; messages are for people. Database, Redis and
//! internal failures are logged and answered with a generic body: no SQL, stack trace or
//! path ever reaches a client.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::login_policy::Refusal;
use crate::face::FaceError;
use crate::store::StoreError;
use crate::store::ratelimit::LimiterUnavailable;

tokio::task_local! {
    /// The current request's id, set by the request-id middleware for the whole request.
    pub static REQUEST_ID: String;
}

/// The current request id, if inside a request.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: a field is missing, malformed or out of range.
    #[error("{0}")]
    Validation(String),
    /// 400: username or e-mail already registered.
    #[error("a user with this {0} already exists")]
    UserExists(&'static str),
    /// 400 (or 413 for oversized images): the face engine refused the image.
    #[error(transparent)]
    Face(FaceError),
    /// 400: the face is already enrolled under another account.
    #[error("this face is already enrolled under another account")]
    DuplicateFace,
    /// 400: a photo enrolled for a user does not match the user's face.
    #[error("the face does not match the account's enrolled face")]
    FaceMismatch,
    /// 400: the user has the most faces allowed.
    #[error("this account already has the maximum of {0} enrolled faces")]
    TooManyFaces(i64),
    /// 401 at registration: the liveness check refused the image.
    #[error("spoofing detected: the image did not pass the liveness check")]
    SpoofDetected,
    /// 401 at login: the liveness check refused the image.
    #[error("liveness check failed")]
    LivenessFailed,
    /// 401: no enrolled face matches.
    #[error("face not recognized")]
    NotRecognized,
    /// 401: two enrolled users match almost equally well.
    #[error("face matches more than one account; log in with your username")]
    AmbiguousMatch,
    /// 401 `username_required` / 400 `username_not_accepted`: the tenant's login mode
    /// (or its gallery size) does not allow this kind of login.
    #[error("{0}")]
    LoginPolicy(#[from] crate::domain::login_policy::Refusal),
    /// 429 `login_throttled`: this client failed on this account several times and must
    /// wait before the next attempt.
    #[error(
        "too many failed attempts on this account from here: retry after {retry_after} seconds"
    )]
    LoginThrottled {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// 423: the account is locked.
    #[error("account locked after too many failed attempts; try again after the lock expires")]
    Locked {
        /// Seconds until the lock ends, when it has an end.
        retry_after: Option<u64>,
    },
    /// 403: the account is deactivated.
    #[error("account deactivated")]
    Inactive,
    /// 401: missing, malformed, expired or foreign bearer token or admin key.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 401: the username or password of the OpenID login page's password fallback is
    /// wrong (which of the two is not said).
    #[error("the username or password is wrong")]
    InvalidCredentials,
    /// 401: the password or face given to prove ownership does not.
    #[error("the password or face does not prove that this is the account's owner")]
    ReauthenticationFailed,
    /// 401: the refresh token is unknown, spent, expired or revoked.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// 403: authenticated, but not allowed here (a user token at an admin endpoint).
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 405: the route exists, not with this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 413: the body or a part is larger than allowed.
    #[error("request body too large (limit {0} bytes)")]
    PayloadTooLarge(u64),
    /// 415: the body is not multipart/form-data (or JSON where JSON is expected).
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    /// 429.
    #[error("rate limit exceeded: retry after {retry_after} seconds")]
    RateLimited {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// 503: a dependency is down or the service is saturated.
    #[error("service temporarily unavailable: {0}")]
    Unavailable(&'static str),
    /// 500: logged with detail, answered without.
    #[error("internal error")]
    Internal(String),
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// The JSON error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
    /// The request id (also in the `X-Request-ID` header).
    pub request_id: Option<String>,
}

/// A machine-readable code and a human message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `validation_error`, `no_face`, `rate_limited`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// HTTP status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError as E;
        match self {
            E::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
            E::UserExists(_) => (StatusCode::BAD_REQUEST, "user_exists"),
            E::Face(FaceError::Inference(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
            }
            E::Face(f) => (StatusCode::BAD_REQUEST, f.code()),
            E::DuplicateFace => (StatusCode::BAD_REQUEST, "duplicate_face"),
            E::FaceMismatch => (StatusCode::BAD_REQUEST, "face_mismatch"),
            E::TooManyFaces(_) => (StatusCode::BAD_REQUEST, "too_many_faces"),
            E::SpoofDetected => (StatusCode::UNAUTHORIZED, "spoof_detected"),
            E::LivenessFailed => (StatusCode::UNAUTHORIZED, "liveness_failed"),
            E::NotRecognized => (StatusCode::UNAUTHORIZED, "face_not_recognized"),
            E::AmbiguousMatch => (StatusCode::UNAUTHORIZED, "ambiguous_match"),
            E::LoginPolicy(Refusal::UsernameRequired) => {
                (StatusCode::UNAUTHORIZED, "username_required")
            }
            E::LoginPolicy(Refusal::UsernameNotAccepted) => {
                (StatusCode::BAD_REQUEST, "username_not_accepted")
            }
            E::LoginThrottled { .. } => (StatusCode::TOO_MANY_REQUESTS, "login_throttled"),
            E::Locked { .. } => (StatusCode::LOCKED, "account_locked"),
            E::Inactive => (StatusCode::FORBIDDEN, "account_inactive"),
            E::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            E::InvalidRefreshToken => (StatusCode::UNAUTHORIZED, "invalid_refresh_token"),
            E::ReauthenticationFailed => (StatusCode::UNAUTHORIZED, "reauthentication_failed"),
            E::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            E::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            E::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            E::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            E::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            E::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            E::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            E::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(field) => ApiError::UserExists(field),
            StoreError::Unavailable(inner) => {
                tracing::warn!(event = "database_unavailable", error = %inner, "database unavailable");
                ApiError::Unavailable("database")
            }
            StoreError::Database(inner) => ApiError::Internal(format!("database: {inner}")),
        }
    }
}

impl From<LimiterUnavailable> for ApiError {
    fn from(e: LimiterUnavailable) -> Self {
        tracing::warn!(event = "redis_unavailable", error = %e, "rate-limit store unavailable");
        ApiError::Unavailable("rate limiter")
    }
}

impl From<FaceError> for ApiError {
    fn from(e: FaceError) -> Self {
        ApiError::Face(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(event = "internal_error", detail = %detail, "internal error");
                "internal error".to_owned()
            }
            ApiError::Face(FaceError::Inference(detail)) => {
                tracing::error!(event = "inference_error", detail = %detail, "face engine failure");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
            request_id: current_request_id(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        let retry_after = match self {
            ApiError::RateLimited { retry_after } | ApiError::LoginThrottled { retry_after } => {
                Some(retry_after)
            }
            ApiError::Locked { retry_after } => retry_after,
            ApiError::Unavailable(_) => Some(5),
            _ => None,
        };
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Seconds from now until `until`, rounded up, at least 1.
pub fn seconds_until(
    until: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> u64 {
    let d = (until - now).to_std().unwrap_or(Duration::ZERO);
    d.as_secs_f64().ceil().max(1.0) as u64
}

/// An OAuth / OpenID Connect error as its endpoints answer it (RFC 6749 5.2, RFC 6750 3):
/// `{"error", "error_description"}`, 400; `invalid_client` 401 with a Basic challenge;
/// `invalid_token` 401 with a Bearer challenge; `temporarily_unavailable` 503.
#[derive(Debug)]
pub struct OAuthErrorResponse(pub crate::domain::oidc::OAuthError);

impl IntoResponse for OAuthErrorResponse {
    fn into_response(self) -> Response {
        use crate::domain::oidc::ErrorCode;
        let e = self.0;
        let status = match e.code {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = serde_json::json!({
            "error": e.code.as_str(),
            "error_description": e.description,
        });
        let mut response = (status, axum::Json(body)).into_response();
        let challenge = match e.code {
            ErrorCode::InvalidClient => Some("Basic realm=\"faceid\"".to_owned()),
            ErrorCode::InvalidToken => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                e.description.replace('"', "'")
            )),
            _ => None,
        };
        if let Some(c) = challenge
            && let Ok(v) = HeaderValue::from_str(&c)
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<crate::domain::oidc::OAuthError> for OAuthErrorResponse {
    fn from(e: crate::domain::oidc::OAuthError) -> Self {
        Self(e)
    }
}
