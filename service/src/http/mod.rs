//! The HTTP layer: router, middleware, extractors, handlers and the one error mapping.

pub mod error;
pub mod extract;
pub mod headers;
pub mod openapi;
pub mod routes;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use self::error::{ApiError, REQUEST_ID};
use crate::state::AppState;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application: what `faceid serve` runs and what tests call.
pub fn app(state: AppState) -> Router {
    let max_body = usize::try_from(state.config().max_upload_bytes).unwrap_or(usize::MAX);
    // Admin endpoints count against the default rate limit before the credential is
    // even looked at, so guessing the admin key is as slow as everything else.
    let admin = Router::new()
        .route(
            "/api/v1/admin/failed-attempts",
            get(routes::admin::failed_attempts),
        )
        .route(
            "/api/v1/admin/suspicious-activity",
            get(routes::admin::suspicious_activity),
        )
        .route(
            "/api/v1/admin/metrics-summary",
            get(routes::admin::metrics_summary),
        )
        .route(
            "/api/v1/admin/users/{user_id}/unlock",
            post(routes::admin::unlock),
        )
        .route(
            "/api/v1/admin/users/{user_id}/deactivate",
            post(routes::admin::deactivate),
        )
        .route(
            "/api/v1/admin/users/{user_id}/activate",
            post(routes::admin::activate),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_admin));
    let api = Router::new()
        .route("/api/v1/auth/register", post(routes::auth::register))
        .route("/api/v1/auth/login", post(routes::auth::login))
        .route("/api/v1/auth/refresh", post(routes::auth::refresh))
        .route("/api/v1/auth/logout", post(routes::auth::logout))
        .route("/api/v1/auth/me", get(routes::auth::me))
        .route("/api/v1/users/me/faces", post(routes::users::add_face))
        .route(
            "/api/v1/users/me",
            axum::routing::delete(routes::users::delete_me),
        )
        .merge(admin)
        .route("/health", get(routes::system::health))
        .route("/ready", get(routes::system::ready))
        .route("/metrics", get(routes::system::metrics))
        .route("/authorize", get(routes::openid::authorize))
        .route("/authorize/face", post(routes::openid::authorize_face))
        .route(
            "/authorize/password",
            post(routes::openid::authorize_password),
        )
        .route("/authorize/cancel", get(routes::openid::authorize_cancel))
        .route("/introspect", post(routes::openid::introspect))
        .route(
            "/logout",
            get(routes::openid::logout).post(routes::openid::logout_post),
        )
        .route("/", get(routes::system::camera_page))
        .merge(openapi::routes(state.config().max_upload_bytes))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors(&state.config().cors_origins));

    api.merge(openid_browser_endpoints(&state))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!(event = "panic", "a request handler panicked");
            ApiError::Internal("handler panicked".to_owned()).into_response()
        }))
        .layer(middleware::from_fn(headers::secure))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn limit_admin(
    State(state): State<AppState>,
    client: extract::Client,
    request: Request,
    next: Next,
) -> Response {
    match crate::flows::rate_limit(&state, crate::flows::Limit::Default, &client).await {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The OpenID Provider's endpoints that a browser app (a public client) calls with
/// `fetch`, with their own CORS: the discovery document and the JWKS are public (any
/// origin), and `/token`, `/userinfo` and `/revoke` answer `CORS_ORIGINS` and the web
/// origins of the public clients' redirect URIs (Keycloak's "web origins: +"), so a
/// single-page app needs no setting beyond its registration.
fn openid_browser_endpoints(state: &AppState) -> Router<AppState> {
    let config = state.config();
    let mut origins = config.cors_origins.clone();
    origins.extend(config.oidc_clients.browser_origins());
    let documents = Router::new()
        .route("/.well-known/jwks.json", get(routes::well_known::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(routes::openid::discovery),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors(&["*".to_owned()]));
    let protocol = Router::new()
        .route("/token", post(routes::openid::token))
        .route(
            "/userinfo",
            get(routes::openid::userinfo).post(routes::openid::userinfo),
        )
        .route("/revoke", post(routes::openid::revoke))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors(&origins));
    documents.merge(protocol)
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, X_REQUEST_ID])
        .expose_headers([X_REQUEST_ID, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        base.allow_origin(AllowOrigin::any())
    } else {
        base.allow_origin(AllowOrigin::list(origins))
    }
}

/// Outermost: request id (from `X-Request-ID` when sane, else generated), the request's
/// tracing span, the access log line and the HTTP metrics.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    // A label value per method a client invents would grow the metrics without bound.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let span = tracing::info_span!("request", request_id = %id, tenant = %state.config().tenant, method = %method, route = %route);
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request).instrument(span.clone()))
        .await;
    let elapsed = started.elapsed();
    let status = response.status();
    let class = match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let metrics = state.metrics();
    metrics
        .http_requests
        .with_label_values(&[method, &route, class])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[method, &route])
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), duration_ms = ms, "request failed");
        } else if status.is_client_error() {
            tracing::info!(
                status = status.as_u16(),
                duration_ms = ms,
                "request refused"
            );
        } else if route != "/health" && route != "/metrics" && route != "/ready" {
            tracing::info!(status = status.as_u16(), duration_ms = ms, "request served");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, v);
    }
    response
}

/// Refuses bodies declared larger than the limit (413 before reading them) and answers
/// 503 when a request outlives the timeout.
async fn guard(State(state): State<AppState>, request: Request<Body>, next: Next) -> Response {
    let config = state.config();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > config.max_upload_bytes) {
        return ApiError::PayloadTooLarge(config.max_upload_bytes).into_response();
    }
    let limit = Duration::from_secs(config.request_timeout_seconds);
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                event = "request_timeout",
                timeout_s = limit.as_secs(),
                "request timed out"
            );
            ApiError::Unavailable("the request timed out").into_response()
        }
    }
}
