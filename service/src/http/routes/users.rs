//! `/api/v1/users/me/*`.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;

use crate::flows::{self, FaceEnrolled, Limit, OwnerProof};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::extract::{AuthUser, Client, Form};
use crate::state::AppState;

/// Multipart body of `POST /api/v1/users/me/faces`.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FaceForm {
    /// JPEG, PNG or WebP photo of the signed-in user.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    face_image: String,
}

/// Enrols another photo of the signed-in user (at most 10 in all). The photo must pass
/// liveness and match the account's existing face.
#[utoipa::path(
    post, path = "/api/v1/users/me/faces", tag = "users",
    security(("bearer" = [])),
    request_body(content = FaceForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Enrolled", body = FaceEnrolled),
        (status = 400, description = "`face_mismatch`, `too_many_faces`, face or image errors", body = ErrorBody),
        (status = 401, description = "`unauthorized` or `spoof_detected`", body = ErrorBody),
        (status = 403, description = "`account_inactive`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not multipart/form-data", body = ErrorBody),
        (status = 422, description = "`validation_error`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database or rate limiter down", body = ErrorBody),
    )
)]
pub async fn add_face(
    State(state): State<AppState>,
    client: Client,
    user: AuthUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<FaceEnrolled>)> {
    flows::rate_limit(&state, Limit::Default, &client).await?;
    let form = Form::read(
        multipart,
        &[],
        &["face_image"],
        state.config().max_upload_bytes,
    )
    .await?;
    let enrolled = flows::enroll_face(&state, user.id, form.file("face_image")?).await?;
    Ok((StatusCode::CREATED, Json(enrolled)))
}

/// Multipart body of `DELETE /api/v1/users/me`: one proof that the owner is there.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EraseForm {
    /// The account's password.
    password: Option<String>,
    /// Or a live photo of the account's owner.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    face_image: Option<String>,
}

/// Erases the signed-in user, every enrolled face and every refresh token. Failed-attempt
/// records stay (without the user reference) for fraud analysis.
///
/// A bearer token alone is not enough: the request carries a fresh proof that the owner
/// is there, the account's `password` or a live `face_image` matching its enrolled faces.
/// A wrong proof counts as a failed attempt against the account from this client (so
/// guessing is throttled and locked out like logins).
#[utoipa::path(
    delete, path = "/api/v1/users/me", tag = "users",
    security(("bearer" = [])),
    request_body(content = EraseForm, content_type = "multipart/form-data"),
    responses(
        (status = 204, description = "Erased"),
        (status = 400, description = "face or image errors of `face_image`", body = ErrorBody),
        (status = 401, description = "`unauthorized`, `reauthentication_failed` (wrong password or face) or `liveness_failed`", body = ErrorBody),
        (status = 404, description = "`not_found`: already erased", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`validation_error`: neither `password` nor `face_image` given", body = ErrorBody),
        (status = 423, description = "`account_locked`", body = ErrorBody),
        (status = 429, description = "`rate_limited` or `login_throttled`", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: database or rate limiter down", body = ErrorBody),
    )
)]
pub async fn delete_me(
    State(state): State<AppState>,
    client: Client,
    user: AuthUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<StatusCode> {
    flows::rate_limit(&state, Limit::Default, &client).await?;
    const NEEDED: &str = "erasing the account needs its `password` or a `face_image` of its owner (multipart/form-data)";
    let form = match multipart {
        Ok(m) => {
            Form::read(
                Ok(m),
                &["password"],
                &["face_image"],
                state.config().max_upload_bytes,
            )
            .await?
        }
        Err(_) => return Err(ApiError::Validation(NEEDED.to_owned())),
    };
    let proof = match (form.optional_text("password"), form.file("face_image")) {
        (Some(password), _) => OwnerProof::Password(password.to_owned()),
        (None, Ok(image)) => OwnerProof::Face(image),
        (None, Err(_)) => return Err(ApiError::Validation(NEEDED.to_owned())),
    };
    flows::erase(&state, &client, user.id, proof).await?;
    Ok(StatusCode::NO_CONTENT)
}
