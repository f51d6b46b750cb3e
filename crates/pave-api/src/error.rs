//! The one error type of the API handlers, and the one place that maps
//! errors to HTTP status codes. Every error answers `{"error": "message"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pave_store::StoreError;
use serde_json::json;

/// What a request can fail with; each variant is one status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is not what the endpoint takes.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or one that is malformed, forged or expired.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: the thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the attempt the token names is no longer running.
    #[error("{0}")]
    Conflict(String),
    /// 413: a body or value over its size limit.
    #[error("{0}")]
    TooLarge(String),
    /// 422: well-formed, but cannot be processed (a template error).
    #[error("{0}")]
    Unprocessable(String),
    /// 500: pave's own fault (the store failed, stored data is corrupt).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!("execution API: {self}");
        }
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Conflict { .. } => ApiError::Conflict(e.to_string()),
            StoreError::Invalid { .. } => ApiError::BadRequest(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<pave_scheduler::SchedulerError> for ApiError {
    fn from(e: pave_scheduler::SchedulerError) -> Self {
        match e {
            pave_scheduler::SchedulerError::Store(s) => s.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
