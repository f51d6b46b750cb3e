//! pave-rest: pave's public REST API under `/api/v1`, and the users,
//! roles, API tokens and sessions that guard it.
//!
//! [`router`] takes a [`RestState`] (the store, the clock, the logs folder,
//! a [`SchedulerLink`] to poke the scheduler after writes) and serves
//! `/api/v1/...`; the OpenAPI document, generated from the handlers, is at
//! `/api/v1/openapi.json`. Only `GET /api/v1/health` and
//! `POST /api/v1/auth/login` answer without authentication.
//!
//! Modules: `routes` (one per resource), `auth` (principals, the
//! permission table, sessions, tokens, passwords), `extract` (request
//! parsing that names the bad field), `problem` (RFC 9457 errors), `dto`
//! (wire types shared by routes), `params` (paging and ordering).
//!
//! API boundary: this crate is the edge. It turns HTTP into calls of
//! `pave_store::ApiStore` and of pave-scheduler's helpers (`runs::trigger`,
//! `actions::{clear, mark_tis, mark_run}`), the same paths the CLI and the
//! scheduler use; no scheduling rule and no SQL lives here. The web UI
//! (a separate surface) reuses `auth` for its sessions and CSRF checks.

pub mod auth;
pub mod dto;
pub mod extract;
pub mod params;
pub mod problem;
pub mod routes;
pub mod state;

pub use auth::{Principal, require_auth};
pub use problem::{ApiResult, Problem};
pub use routes::openapi;
pub use state::{RestConfig, RestState, SchedulerLink};

use axum::Router;
use axum::extract::DefaultBodyLimit;

/// Where [`router`] serves the API.
pub const API_PREFIX: &str = "/api/v1";

/// Request bodies above this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The public REST API, served under `/api/v1`.
pub fn router(state: RestState) -> Router {
    Router::new()
        .nest(API_PREFIX, routes::api_routes(state))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
