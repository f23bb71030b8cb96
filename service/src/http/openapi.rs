//! The OpenAPI document, generated from the handlers' annotations, and the pages that
//! render it: Swagger UI at `/docs` (assets embedded in the binary) and ReDoc at `/redoc`.

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{KnownFormat, RefOr, Schema, SchemaFormat};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::routes::{admin, auth, system, users, well_known};
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
        well_known::jwks,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Registration, login and tokens"),
        (name = "users", description = "The signed-in user's faces and data"),
        (name = "admin", description = "Fraud analysis and account administration (ADMIN_API_KEY)"),
        (name = "system", description = "Health, readiness, metrics and the token verification keys"),
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

/// The document a server with the body limit `max_upload_bytes` (`MAX_UPLOAD_BYTES`)
/// serves: [`ApiDoc`] plus what only the configuration knows. Every binary field of a
/// multipart form gets that limit as `maxLength` (an image can be no larger than the
/// whole body) and `minLength` 1 (an empty file is refused), and the description says
/// that larger bodies are answered 413.
///
/// The response `links` (which returned id or token feeds which operation) are written
/// on the handlers; utoipa 5.5 serialises a Link's `operationId` and `requestBody` in
/// snake case, which `fix_link_keys` mends, so the document is JSON rather than
/// utoipa's type.
pub fn document(max_upload_bytes: u64) -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    let limit = usize::try_from(max_upload_bytes).unwrap_or(usize::MAX);
    let note = format!(
        " At most {max_upload_bytes} bytes, the whole request body included (MAX_UPLOAD_BYTES; \
         larger: 413 `payload_too_large`). Width, height and pixel count are bounded too \
         (MAX_IMAGE_WIDTH, MAX_IMAGE_HEIGHT, MAX_IMAGE_PIXELS): a baseline JPEG above them, up \
         to 100 megapixels, is decoded at 1/2, 1/4 or 1/8 of its size instead; anything else \
         larger: 400 `image_too_large`)."
    );
    if let Some(components) = doc.components.as_mut() {
        for schema in components.schemas.values_mut() {
            let RefOr::T(Schema::Object(form)) = schema else {
                continue;
            };
            for property in form.properties.values_mut() {
                if let RefOr::T(Schema::Object(field)) = property
                    && matches!(
                        field.format,
                        Some(SchemaFormat::KnownFormat(KnownFormat::Binary))
                    )
                {
                    // An empty file is refused (422) like a missing one.
                    field.min_length = Some(1);
                    field.max_length = Some(limit);
                    field.description = Some(format!(
                        "{}{note}",
                        field.description.as_deref().unwrap_or_default()
                    ));
                }
            }
        }
    }
    doc.info.description = Some(format!(
        "{} Request bodies larger than {max_upload_bytes} bytes (MAX_UPLOAD_BYTES) are \
         refused with 413 `payload_too_large` before they are read.",
        doc.info.description.as_deref().unwrap_or_default()
    ));
    let mut json = serde_json::to_value(&doc).unwrap_or_default();
    fix_link_keys(&mut json);
    json
}

/// Renames the snake-case keys of every response link to the OpenAPI names.
fn fix_link_keys(doc: &mut serde_json::Value) {
    let Some(paths) = doc
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    let responses = paths
        .values_mut()
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let Some(links) = response
            .get_mut("links")
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        for link in links
            .values_mut()
            .filter_map(serde_json::Value::as_object_mut)
        {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(snake) {
                    link.insert(camel.to_owned(), value);
                }
            }
        }
    }
}

/// `/openapi.json` (the [`document`] for `max_upload_bytes`), `/docs` and `/redoc`.
pub fn routes(max_upload_bytes: u64) -> Router<AppState> {
    Router::new()
        .merge(
            SwaggerUi::new("/docs")
                .external_url_unchecked("/openapi.json", document(max_upload_bytes)),
        )
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
