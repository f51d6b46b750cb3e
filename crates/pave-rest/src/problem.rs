//! Errors as RFC 9457 problem details (`application/problem+json`), and the
//! one place that maps every failure to a status code.
//!
//! `type` is `about:blank`, so `title` is the status's reason phrase;
//! `detail` says in a sentence what is wrong and how to fix it, naming the
//! thing concerned; `field` (an extension member) names the request field
//! or parameter at fault when there is one.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pave_scheduler::SchedulerError;
use pave_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem details object (RFC 9457).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status code says what kind of problem it is.
    #[serde(rename = "type")]
    pub type_: String,
    /// The reason phrase of the status code.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What is wrong, naming the thing concerned, and what would fix it.
    pub detail: String,
    /// The request field or parameter at fault, if any (e.g. `slots`, `limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// A problem with this status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            type_: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }
    /// Names the request field or parameter at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    /// 400: the request is malformed (bad JSON, a bad query parameter).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }
    /// 401: no credentials, or ones that are wrong or expired.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, detail)
    }
    /// 403: authenticated, but the role does not allow it (or CSRF failed).
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, detail)
    }
    /// 404: the thing named does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }
    /// 409: the state moved on, or the thing exists already.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, detail)
    }
    /// 422: well-formed, but a field has the wrong type or value.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
    /// 500: pave's own fault.
    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
    /// The status code as a `StatusCode`.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!("REST API: {}", self.detail);
        }
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pave\""),
            );
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => Problem::not_found(e.to_string()),
            StoreError::Conflict { .. } => Problem::conflict(e.to_string()),
            StoreError::Invalid { .. } => Problem::unprocessable(e.to_string()),
            _ => Problem::internal(e.to_string()),
        }
    }
}

impl From<SchedulerError> for Problem {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::Store(s) => s.into(),
            SchedulerError::BadRequest(m) => Problem::unprocessable(m),
            other => Problem::internal(other.to_string()),
        }
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, Problem>;
