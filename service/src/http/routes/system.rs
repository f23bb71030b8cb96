//! Health, readiness, metrics and the camera page.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

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

/// Readiness: PostgreSQL, pgvector, Redis (when configured) and the face models.
/// 503 names what is down.
#[utoipa::path(get, path = "/ready", tag = "system",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: `checks` names what is down", body = Readiness),
    ))]
pub async fn ready(State(state): State<AppState>) -> Response {
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
    checks.insert("models", format!("ok ({})", state.engine().model_version()));
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ok { "ready" } else { "not_ready" },
        checks,
    };
    (status, Json(body)).into_response()
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
    Html(include_str!("../../../static/index.html"))
}
