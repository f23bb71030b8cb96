//! Health, readiness, metrics and the camera page.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::error::ApiError;
use crate::http::extract::Admin;
use crate::state::AppState;

/// `/health` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    pub status: &'static str,
    /// Service version.
    pub version: &'static str,
    /// Tenant.
    pub tenant: String,
}

/// Liveness of the process (no dependency is checked).
#[utoipa::path(get, path = "/health", tag = "system",
    responses((status = 200, description = "The process serves", body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        tenant: state.config().tenant.clone(),
    })
}

/// `/ready` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Each dependency: `ok`, `not_configured`, or what is wrong.
    pub checks: std::collections::BTreeMap<&'static str, String>,
}

/// Readiness: PostgreSQL, pgvector, Redis (when configured) and the face models (each
/// network run once on a zero input). 503 names what is down; what went wrong is told
/// only to the admin (`Authorization: Bearer <ADMIN_API_KEY>`): an anonymous caller reads
/// `ok`, `down` or `not_configured`, no error text.
#[utoipa::path(get, path = "/ready", tag = "system",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: `checks` names what is down", body = Readiness),
    ))]
pub async fn ready(State(state): State<AppState>, admin: Result<Admin, ApiError>) -> Response {
    let mut response = readiness(&state).await;
    if admin.is_err() {
        for value in response.1.checks.values_mut() {
            if value != "ok" && value != "not_configured" && !value.starts_with("ok ") {
                *value = "down".to_owned();
            }
        }
    }
    response.into_response()
}

async fn readiness(state: &AppState) -> (StatusCode, Json<Readiness>) {
    let mut checks = std::collections::BTreeMap::new();
    let mut ok = true;
    match crate::store::db::check(state.db()).await {
        Ok(()) => {
            checks.insert("postgresql", "ok".to_owned());
            checks.insert("pgvector", "ok".to_owned());
        }
        Err(e) => {
            ok = false;
            state
                .metrics()
                .dependency_errors
                .with_label_values(&["postgresql"])
                .inc();
            let key = if e.starts_with("pgvector") {
                "pgvector"
            } else {
                "postgresql"
            };
            checks.insert(key, e);
        }
    }
    match state.limiter().ping().await {
        None => {
            checks.insert("redis", "not_configured".to_owned());
        }
        Some(Ok(())) => {
            checks.insert("redis", "ok".to_owned());
        }
        Some(Err(e)) => {
            ok = false;
            checks.insert("redis", format!("unreachable: {}", e.0));
        }
    }
    match state.engine().self_check().await {
        Ok(_) => {
            checks.insert("models", format!("ok ({})", state.engine().model_version()));
        }
        Err(e) => {
            ok = false;
            checks.insert("models", format!("failing: {e}"));
        }
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ok { "ready" } else { "not_ready" },
        checks,
    };
    (status, Json(body))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

/// The camera page: register and log in from the browser's camera.
pub async fn camera_page() -> Html<&'static str> {
    Html(crate::http::headers::CAMERA_PAGE)
}
