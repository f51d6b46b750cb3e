//! The task execution API (`docs/execution-api.md`): the only way a running
//! task reaches pave's state. Every request carries an attempt token; the
//! attempt must still be running; reads stay within the attempt's run and
//! writes within its own task instance.
//!
//! The router serves paths relative to where the caller nests it
//! (`/execution/v1` by convention). Handlers live by concern: `auth` (the
//! token and attempt check every handler starts with), `context` (the
//! template context and rendering), `xcom` (reads and writes of XComs).

mod auth;
mod context;
mod xcom;

pub use auth::Attempt;
pub use context::TiContext;

use crate::error::ApiError;
use crate::token::TokenSigner;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post};
use pave_scheduler::dags::{DagCache, LoadedDag};
use pave_scheduler::{Clock, SchedulerConfig};
use pave_store::{DagVersionId, Store};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Request bodies are refused above this size (or the XCom cap plus room for
/// the envelope, when that is larger).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The limits the API enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutionLimits {
    /// Largest XCom value, in bytes of its compact JSON (`PAVE_XCOM_MAX_BYTES`).
    pub xcom_max_bytes: usize,
    /// Largest list a mapping source may push (Airflow's `max_map_length`).
    pub max_map_length: usize,
}

impl Default for ExecutionLimits {
    fn default() -> Self {
        ExecutionLimits {
            xcom_max_bytes: 64 * 1024,
            max_map_length: 1024,
        }
    }
}

impl From<&SchedulerConfig> for ExecutionLimits {
    fn from(cfg: &SchedulerConfig) -> Self {
        ExecutionLimits {
            xcom_max_bytes: cfg.xcom_max_bytes,
            max_map_length: cfg.max_map_length,
        }
    }
}

/// What the execution API's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ExecutionState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    signer: TokenSigner,
    clock: Arc<dyn Clock>,
    limits: ExecutionLimits,
    /// DAG versions are immutable, so this cache never goes stale.
    dags: Mutex<DagCache>,
}

impl ExecutionState {
    pub fn new(
        store: Arc<dyn Store>,
        signer: TokenSigner,
        clock: Arc<dyn Clock>,
        limits: ExecutionLimits,
    ) -> Self {
        ExecutionState {
            inner: Arc::new(Inner {
                store,
                signer,
                clock,
                limits,
                dags: Mutex::new(DagCache::default()),
            }),
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The signer whose tokens this API accepts (the scheduler issues with it).
    pub fn signer(&self) -> &TokenSigner {
        &self.inner.signer
    }

    pub fn limits(&self) -> ExecutionLimits {
        self.inner.limits
    }

    fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    /// A stored DAG version, parsed.
    async fn dag(&self, version: DagVersionId) -> Result<Arc<LoadedDag>, ApiError> {
        let mut cache = self.inner.dags.lock().await;
        Ok(cache.get(self.store(), version).await?)
    }
}

/// The execution API, to be nested under `/execution/v1`.
pub fn execution_router(state: ExecutionState) -> Router {
    let body_limit = state.body_limit();
    Router::new()
        .route("/ti/context", get(context::get_context))
        .route("/render", post(context::render))
        // A catch-all, so that a key or task id with `/` reaches the handler
        // and is refused with a reason instead of an unexplained 404.
        .route("/xcom/{*name}", get(xcom::get_xcom).put(xcom::put_xcom))
        .route("/xcom", get(xcom::empty_name).put(xcom::empty_name))
        .route("/xcom/", get(xcom::empty_name).put(xcom::empty_name))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no endpoint `{}` in the execution API; see docs/execution-api.md",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "`{method} {}` is not an endpoint of the execution API; see docs/execution-api.md",
        uri.path()
    ))
}

impl ExecutionState {
    /// The largest request body the router accepts.
    fn body_limit(&self) -> usize {
        MAX_BODY_BYTES.max(self.limits().xcom_max_bytes.saturating_add(64 * 1024))
    }
}

/// The value of the one field of a JSON body `{"<field>": ...}`.
fn envelope(
    state: &ExecutionState,
    body: Result<Bytes, BytesRejection>,
    field: &str,
    example: &str,
) -> Result<Value, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the request body is over the limit of {} bytes",
                state.body_limit()
            ))
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {}", e.body_text()))
        }
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "the request body is not JSON ({e}); send {example}"
        ))
    })?;
    match value {
        Value::Object(mut map) => {
            if map.len() == 1
                && let Some(v) = map.remove(field)
            {
                return Ok(v);
            }
            let fields: Vec<&str> = map.keys().map(String::as_str).collect();
            Err(ApiError::BadRequest(format!(
                "the request body must be an object with exactly the field `{field}`, like {example}; \
                 got the fields [{}]",
                fields.join(", ")
            )))
        }
        other => Err(ApiError::BadRequest(format!(
            "the request body must be an object like {example}, got {}",
            context::kind(&other)
        ))),
    }
}
