//! `/api/v1/admin/*`: fraud analysis and account administration. Every endpoint needs
//! `Authorization: Bearer <ADMIN_API_KEY>`; a user's access token gets 403.

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::flows::UserOut;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{Admin, parse_user_id};
use crate::state::AppState;
use crate::store::attempts::{self, AttemptRow, SuspiciousIp};
use crate::store::users;

fn query_error(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::Validation(format!("invalid query: {}", e.body_text()))
}

/// Query of `failed-attempts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FailedAttemptsQuery {
    /// Look back this many hours (1-720, default 24).
    #[param(minimum = 1, maximum = 720)]
    pub hours: Option<i64>,
    /// Most rows returned (1-1000, default 100), newest first.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Failed attempts in a time window.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedAttempts {
    /// The window, in hours.
    pub hours: i64,
    /// All failed attempts in the window.
    pub total: i64,
    /// The newest attempts (at most `limit`).
    pub attempts: Vec<AttemptRow>,
}

fn hours_in_range(hours: Option<i64>, default: i64) -> ApiResult<i64> {
    let hours = hours.unwrap_or(default);
    if (1..=720).contains(&hours) {
        Ok(hours)
    } else {
        Err(ApiError::Validation(
            "hours must be between 1 and 720".to_owned(),
        ))
    }
}

/// Recent failed login attempts.
#[utoipa::path(
    get, path = "/api/v1/admin/failed-attempts", tag = "admin",
    security(("admin" = [])), params(FailedAttemptsQuery),
    responses(
        (status = 200, description = "Failed attempts", body = FailedAttempts),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: a user token", body = ErrorBody),
        (status = 422, description = "`validation_error`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database down", body = ErrorBody),
    )
)]
pub async fn failed_attempts(
    State(state): State<AppState>,
    _: Admin,
    query: Result<Query<FailedAttemptsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<FailedAttempts>> {
    let Query(q) = query.map_err(query_error)?;
    let hours = hours_in_range(q.hours, 24)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Validation(
            "limit must be between 1 and 1000".to_owned(),
        ));
    }
    let since = Utc::now() - Duration::hours(hours);
    Ok(Json(FailedAttempts {
        hours,
        total: attempts::count_since(state.db(), since).await?,
        attempts: attempts::since(state.db(), since, limit).await?,
    }))
}

/// Query of `suspicious-activity`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuspiciousQuery {
    /// Least failures from one IP to report (1-10000, default 5).
    #[param(minimum = 1, maximum = 10000)]
    pub threshold: Option<i64>,
    /// Look back this many hours (1-720, default 24).
    #[param(minimum = 1, maximum = 720)]
    pub hours: Option<i64>,
}

/// IPs with many failures.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuspiciousActivity {
    /// The threshold applied.
    pub threshold: i64,
    /// The window, in hours.
    pub hours: i64,
    /// Offending IPs, worst first.
    pub suspicious_ips: Vec<SuspiciousIp>,
}

/// Client IPs with at least `threshold` failed attempts in the window.
#[utoipa::path(
    get, path = "/api/v1/admin/suspicious-activity", tag = "admin",
    security(("admin" = [])), params(SuspiciousQuery),
    responses(
        (status = 200, description = "Suspicious IPs", body = SuspiciousActivity),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 422, description = "`validation_error`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database down", body = ErrorBody),
    )
)]
pub async fn suspicious_activity(
    State(state): State<AppState>,
    _: Admin,
    query: Result<Query<SuspiciousQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<SuspiciousActivity>> {
    let Query(q) = query.map_err(query_error)?;
    let threshold = q.threshold.unwrap_or(5);
    if !(1..=10_000).contains(&threshold) {
        return Err(ApiError::Validation(
            "threshold must be between 1 and 10000".to_owned(),
        ));
    }
    let hours = hours_in_range(q.hours, 24)?;
    let since = Utc::now() - Duration::hours(hours);
    Ok(Json(SuspiciousActivity {
        threshold,
        hours,
        suspicious_ips: attempts::suspicious(state.db(), since, threshold).await?,
    }))
}

/// Counts for a dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsSummary {
    /// Tenant.
    pub tenant: String,
    /// Users in all.
    pub total_users: i64,
    /// Active users.
    pub active_users: i64,
    /// Currently locked accounts.
    pub locked_accounts: i64,
    /// Failed attempts in the last 24 hours.
    pub failed_attempts_24h: i64,
    /// Failed attempts in the last hour.
    pub failed_attempts_1h: i64,
    /// Failed attempts in the last 24 hours by reason.
    pub failures_by_reason_24h: std::collections::BTreeMap<String, i64>,
}

/// Users, locks and failures at a glance.
#[utoipa::path(
    get, path = "/api/v1/admin/metrics-summary", tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Summary", body = MetricsSummary),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database down", body = ErrorBody),
    )
)]
pub async fn metrics_summary(
    State(state): State<AppState>,
    _: Admin,
) -> ApiResult<Json<MetricsSummary>> {
    let now = Utc::now();
    let (total, active, locked) = users::counts(state.db(), now).await?;
    let day = now - Duration::hours(24);
    Ok(Json(MetricsSummary {
        tenant: state.config().tenant.clone(),
        total_users: total,
        active_users: active,
        locked_accounts: locked,
        failed_attempts_24h: attempts::count_since(state.db(), day).await?,
        failed_attempts_1h: attempts::count_since(state.db(), now - Duration::hours(1)).await?,
        failures_by_reason_24h: attempts::by_reason(state.db(), day)
            .await?
            .into_iter()
            .collect(),
    }))
}

/// Unlocks an account and restarts its lockout count.
#[utoipa::path(
    post, path = "/api/v1/admin/users/{user_id}/unlock", tag = "admin",
    security(("admin" = [])), params(("user_id" = uuid::Uuid, Path, description = "User id (UUID)")),
    responses(
        (status = 200, description = "Unlocked", body = UserOut, links(
            ("unlock" = (operation_id = "unlock", parameters(("user_id" = "$response.body#/id")),
                description = "Unlock the same account")),
            ("deactivate" = (operation_id = "deactivate", parameters(("user_id" = "$response.body#/id")),
                description = "Deactivate the same account")),
            ("activate" = (operation_id = "activate", parameters(("user_id" = "$response.body#/id")),
                description = "Reactivate the same account")),
        )),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_error`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database down", body = ErrorBody),
    )
)]
pub async fn unlock(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<UserOut>> {
    let id = parse_user_id(&id)?;
    let now = Utc::now();
    let row = users::set_locked(state.db(), id, false, None, now)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    tracing::info!(event = "account_unlocked", user_id = %id, "account unlocked by admin");
    Ok(Json(crate::flows::user_out(row, now)))
}

/// Deactivates an account: it can no longer log in or refresh tokens.
#[utoipa::path(
    post, path = "/api/v1/admin/users/{user_id}/deactivate", tag = "admin",
    security(("admin" = [])), params(("user_id" = uuid::Uuid, Path, description = "User id (UUID)")),
    responses(
        (status = 200, description = "Deactivated", body = UserOut, links(
            ("unlock" = (operation_id = "unlock", parameters(("user_id" = "$response.body#/id")),
                description = "Unlock the same account")),
            ("deactivate" = (operation_id = "deactivate", parameters(("user_id" = "$response.body#/id")),
                description = "Deactivate the same account")),
            ("activate" = (operation_id = "activate", parameters(("user_id" = "$response.body#/id")),
                description = "Reactivate the same account")),
        )),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_error`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database down", body = ErrorBody),
    )
)]
pub async fn deactivate(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<UserOut>> {
    set_active(state, id, false).await
}

/// Reactivates a deactivated account.
#[utoipa::path(
    post, path = "/api/v1/admin/users/{user_id}/activate", tag = "admin",
    security(("admin" = [])), params(("user_id" = uuid::Uuid, Path, description = "User id (UUID)")),
    responses(
        (status = 200, description = "Activated", body = UserOut, links(
            ("unlock" = (operation_id = "unlock", parameters(("user_id" = "$response.body#/id")),
                description = "Unlock the same account")),
            ("deactivate" = (operation_id = "deactivate", parameters(("user_id" = "$response.body#/id")),
                description = "Deactivate the same account")),
            ("activate" = (operation_id = "activate", parameters(("user_id" = "$response.body#/id")),
                description = "Reactivate the same account")),
        )),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`validation_error`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database down", body = ErrorBody),
    )
)]
pub async fn activate(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<UserOut>> {
    set_active(state, id, true).await
}

async fn set_active(state: AppState, id: String, active: bool) -> ApiResult<Json<UserOut>> {
    let id = parse_user_id(&id)?;
    let now = Utc::now();
    let row = users::set_active(state.db(), id, active, now)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    state.gallery().invalidate();
    tracing::info!(event = if active { "account_activated" } else { "account_deactivated" }, user_id = %id, "account state changed by admin");
    Ok(Json(crate::flows::user_out(row, now)))
}
