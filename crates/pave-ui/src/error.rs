//! The UI's one error type, shown as an HTML error page with the right
//! status code (or, for an htmx request, a short fragment).

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pave_rest::Problem;
use pave_scheduler::SchedulerError;
use pave_store::StoreError;
use serde::Serialize;

/// What went wrong handling a UI request.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Internal(String),
}

impl UiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::Forbidden(_) => StatusCode::FORBIDDEN,
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::Conflict(_) => StatusCode::CONFLICT,
            UiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            UiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => UiError::NotFound(e.to_string()),
            StoreError::Conflict { .. } => UiError::Conflict(e.to_string()),
            StoreError::Invalid { .. } => UiError::Unprocessable(e.to_string()),
            other => UiError::Internal(other.to_string()),
        }
    }
}

impl From<SchedulerError> for UiError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::Store(s) => s.into(),
            SchedulerError::BadRequest(m) => UiError::Unprocessable(m),
            other => UiError::Internal(other.to_string()),
        }
    }
}

impl From<Problem> for UiError {
    fn from(p: Problem) -> Self {
        match p.status {
            400 => UiError::BadRequest(p.detail),
            401 | 403 => UiError::Forbidden(p.detail),
            404 => UiError::NotFound(p.detail),
            409 => UiError::Conflict(p.detail),
            422 => UiError::Unprocessable(p.detail),
            _ => UiError::Internal(p.detail),
        }
    }
}

#[derive(Serialize)]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    detail: String,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!("UI request failed: {self}");
        }
        let ctx = ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            detail: self.to_string(),
        };
        match crate::render::render("error.html", ctx) {
            Ok(html) => (status, html).into_response(),
            Err(e) => (status, format!("{}\n({e})", self)).into_response(),
        }
    }
}

/// The fallback: a 404 page for any path the UI does not know.
pub(crate) async fn not_found_page(uri: Uri) -> UiError {
    UiError::NotFound(format!("there is no page at `{}`", uri.path()))
}
