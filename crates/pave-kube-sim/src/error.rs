//! Errors: `SimError` for the Rust API, and `ApiError`, which the HTTP layer
//! turns into a `v1 Status` body exactly as the real API server does.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What can go wrong when a test or the CLI drives the simulated cluster.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No pod with this namespace and name exists.
    #[error("pod {namespace}/{name} not found")]
    PodNotFound {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        name: String,
    },
    /// No node with this name exists.
    #[error("node {0} not found")]
    NodeNotFound(String),
    /// A node file could not be read or parsed.
    #[error("node file {path}: {message}")]
    NodeFile {
        /// The file that was read.
        path: String,
        /// What is wrong with it, naming the line or node.
        message: String,
    },
    /// A wait helper gave up.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, String),
    /// The API refused a request made through the Rust API (same rules as HTTP).
    #[error("{0}")]
    Api(String),
    /// The TLS certificate or server configuration could not be made.
    #[error("TLS: {0}")]
    Tls(String),
    /// Reading or writing a file, or binding a socket, failed.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        cause: std::io::Error,
    },
}

impl From<ApiError> for SimError {
    fn from(e: ApiError) -> Self {
        SimError::Api(e.message)
    }
}

/// One field-level validation problem, formatted as the API server does
/// (`spec.containers[0].image: Required value`).
#[derive(Debug, Clone)]
pub(crate) struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub(crate) enum FieldErrorKind {
    Invalid(String),
    Required,
    Forbidden,
    NotSupported,
}

impl FieldError {
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid(value.into()),
            detail: detail.into(),
        }
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Required,
            detail: detail.into(),
        }
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Forbidden,
            detail: detail.into(),
        }
    }
    pub fn not_supported(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::NotSupported,
            detail: detail.into(),
        }
    }

    /// The part after the field path: `Invalid value: "2": must be ...`.
    fn body(&self) -> String {
        let head = match &self.kind {
            FieldErrorKind::Invalid(v) => format!("Invalid value: {v:?}"),
            FieldErrorKind::Required => "Required value".to_string(),
            FieldErrorKind::Forbidden => "Forbidden".to_string(),
            FieldErrorKind::NotSupported => "Unsupported value".to_string(),
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }

    fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
        }
    }
}

/// An error answered with a `v1 Status` body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, kind: &str, name: &str) -> Self {
        self.details = Some(json!({ "name": name, "kind": kind }));
        self
    }

    pub fn not_found(plural: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{plural} \"{name}\" not found"))
            .with_details(plural, name)
    }

    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{plural} \"{name}\" already exists"),
        )
        .with_details(plural, name)
    }

    pub fn conflict(plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {plural} \"{name}\": {why}"),
        )
        .with_details(plural, name)
    }

    pub fn modified(plural: &str, name: &str) -> Self {
        Self::conflict(
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn gone(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    pub fn too_many_requests(message: impl Into<String>) -> Self {
        let mut e = Self::new(429, "TooManyRequests", message);
        e.retry_after = Some(1);
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 422 Invalid with one cause per field error, worded like the API server.
    pub fn invalid(kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let parts: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.body()))
            .collect();
        let joined = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({ "reason": e.reason(), "message": e.body(), "field": e.field }))
            .collect();
        let mut err = Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {joined}"),
        );
        err.details = Some(json!({ "name": name, "kind": kind.to_lowercase(), "causes": causes }));
        err
    }

    /// The `v1 Status` object for this error (also used in watch ERROR events).
    pub fn status(&self) -> Value {
        status_body(self.code, self.reason, &self.message, self.details.clone())
    }
}

/// A `v1 Status` object.
pub(crate) fn status_body(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": if code < 400 { "Success" } else { "Failure" },
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        v["details"] = d;
    }
    v
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, axum::Json(self.status())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
