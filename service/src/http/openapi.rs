//! The OpenAPI document, generated from the handlers' annotations, and the pages that
//! render it: Swagger UI at `/docs` (assets embedded in the binary) and ReDoc at `/redoc`.

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::routes::{admin, auth, system, users};
use crate::state::AppState;

/// The service's API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "FaceID",
        description = "Face authentication for one tenant: register with a photo, log in by face, \
                       tokens, lockout and fraud analysis. Every error body is \
                       `{\"error\": {\"code\", \"message\"}, \"request_id\"}`.",
    ),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::me,
        users::add_face, users::delete_me,
        admin::failed_attempts, admin::suspicious_activity, admin::metrics_summary,
        admin::unlock, admin::deactivate, admin::activate,
        system::health, system::ready, system::metrics,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Registration, login and tokens"),
        (name = "users", description = "The signed-in user's faces and data"),
        (name = "admin", description = "Fraud analysis and account administration (ADMIN_API_KEY)"),
        (name = "system", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".to_owned());
        bearer.description = Some("Access token from login, registration or refresh".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some("The tenant's ADMIN_API_KEY".to_owned());
        components.add_security_scheme("admin", SecurityScheme::Http(admin));
    }
}

/// `/openapi.json`, `/docs` and `/redoc`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
        .route("/redoc", get(redoc))
        .route("/redoc/redoc.standalone.js", get(redoc_js))
}

async fn redoc() -> Html<&'static str> {
    Html(include_str!("../../static/redoc.html"))
}

async fn redoc_js() -> impl axum::response::IntoResponse {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../static/vendor/redoc.standalone.js"),
    )
}
