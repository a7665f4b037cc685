//! The API's errors and how they look on the wire: a status and `{"error": "…"}`, plus
//! `problems: [{path, message}]` for a definition that does not validate (422).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tarefas_core::Problems;
use tarefas_store::StoreError;

/// What went wrong with a request.
#[derive(Debug)]
pub enum ApiError {
    /// No token, a malformed one, or one that is unknown or revoked (401).
    Unauthorized,
    /// Not found in the caller's account (404): another account's ids look exactly the same.
    NotFound(String),
    /// The body is not what the endpoint reads (400).
    BadRequest(String),
    /// The definition does not validate (422), every problem at its path.
    Invalid(Problems),
    /// The request conflicts with the current state, e.g. cancelling a run that ended (409).
    Conflict(String),
    /// Postgres failed (503: worth retrying) or something unexpected (500).
    Internal(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            other => ApiError::Internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"tarefas\"")],
                Json(json!({
                    "error": "missing or invalid API token; send `Authorization: Bearer TOKEN` (create one with `tarefas token create --account ACCOUNT`)"
                })),
            )
                .into_response(),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, Json(json!({ "error": m }))).into_response(),
            ApiError::BadRequest(m) => {
                (StatusCode::BAD_REQUEST, Json(json!({ "error": m }))).into_response()
            }
            ApiError::Invalid(p) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "the task definition is invalid", "problems": p.0 })),
            )
                .into_response(),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, Json(json!({ "error": m }))).into_response(),
            ApiError::Internal(e) => {
                let status = match e {
                    StoreError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                tracing::error!(error.message = %e, error.cause_chain = ?e, "admin API request failed");
                (status, Json(json!({ "error": e.to_string() }))).into_response()
            }
        }
    }
}
