//! pave-ui: the web UI, served by the same binary as the REST API.
//!
//! Server-rendered HTML from minijinja templates (`templates/`, autoescaped)
//! with htmx for live partial updates and a vendored dagre for the graph
//! layout; every asset is embedded with rust-embed, so `cargo build` alone
//! gives a working UI. [`ui_router`] serves the pages under `/`, the
//! UI-private partials and JSON under `/ui/`, and assets under `/static/`.
//!
//! Modules: `session` (who is asking, login/logout, CSRF and role checks
//! on every form), `render` (the template environment and its filters),
//! `assets` (embedded files), `grid` and `graph` (pure builders of what the
//! grid and graph views show), `grid_cache` (rendered grid fragments by the
//! fingerprint of what they show, and their ETags), `pages::*` (one module
//! per page).
//!
//! API boundary: this crate reads through `pave_store::ApiStore` and
//! changes state only through pave-scheduler's helpers (`runs::trigger`,
//! `actions::{clear, mark_tis, mark_run}`), the same paths the REST API
//! uses; it holds no scheduling rule and no SQL. Authentication reuses
//! pave-rest's sessions (one login serves both surfaces).

mod assets;
mod error;
mod format;
mod graph;
mod grid;
mod grid_cache;
mod pages;
mod render;
mod session;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use pave_rest::RestState;
use pave_scheduler::dags::DagCache;
use std::sync::Arc;
use tokio::sync::Mutex;
use tower_http::set_header::SetResponseHeaderLayer;

pub use error::UiError;

/// What every UI handler gets. Cheap to clone.
#[derive(Clone)]
pub struct UiState {
    pub(crate) rest: RestState,
    /// For `runs::trigger`, which wants a cache of its own.
    pub(crate) trigger_cache: Arc<Mutex<DagCache>>,
    /// Rendered grid fragments by fingerprint (`grid_cache`).
    pub(crate) grid_cache: Arc<grid_cache::GridCache>,
}

impl UiState {
    /// The UI's state over the REST API's (same store, clock, logs, scheduler link).
    pub fn new(rest: RestState) -> Self {
        UiState {
            rest,
            trigger_cache: Arc::new(Mutex::new(DagCache::default())),
            grid_cache: Arc::new(grid_cache::GridCache::default()),
        }
    }
}

/// Largest form the UI accepts (a trigger form with a big conf).
const MAX_FORM_BYTES: usize = 256 * 1024;

/// The web UI: pages under `/`, partials under `/ui/`, assets under
/// `/static/`. Merge it next to `pave_rest::router` (it has the fallback
/// 404 page, the REST router has none at the top level).
pub fn ui_router(rest: RestState) -> Router {
    let state = UiState::new(rest);
    use pages::{dag, dags, run, ti, trigger};
    Router::new()
        .route("/", get(dags::index))
        .route(
            "/login",
            get(session::login_page).post(session::login_submit),
        )
        .route("/logout", post(session::logout))
        .route("/static/{*path}", get(assets::serve))
        .route("/ui/dags", get(dags::list_partial))
        .route("/dags/{dag_id}", get(dag::page))
        .route("/dags/{dag_id}/pause", post(dags::pause))
        .route(
            "/dags/{dag_id}/trigger",
            get(trigger::form).post(trigger::submit),
        )
        .route("/dags/{dag_id}/versions/{number}", get(dag::version))
        .route("/ui/dags/{dag_id}/grid", get(dag::grid_partial))
        .route("/ui/dags/{dag_id}/graph", get(dag::graph_json))
        .route("/ui/dags/{dag_id}/header", get(dag::header_partial))
        .route("/dags/{dag_id}/runs/{run_id}", get(run::page))
        .route(
            "/ui/dags/{dag_id}/runs/{run_id}/gantt",
            get(run::gantt_partial),
        )
        .route("/dags/{dag_id}/runs/{run_id}/mark", post(run::mark))
        .route("/dags/{dag_id}/runs/{run_id}/clear", post(run::clear))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(ti::page_unmapped),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/{map_index}",
            get(ti::page),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/{map_index}/clear",
            post(ti::clear),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/{map_index}/mark",
            post(ti::mark),
        )
        .route(
            "/ui/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/{map_index}/summary",
            get(ti::summary_partial),
        )
        .route(
            "/ui/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/{map_index}/logs/{try_number}",
            get(ti::log_chunk),
        )
        .fallback(error::not_found_page)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        // Pages, fragments and assets shrink 4-10x with gzip (htmx alone
        // from 52 to 16 KB); browsers always ask for it.
        .layer(tower_http::compression::CompressionLayer::new())
        // No framing by other sites (clickjacking), no sniffing, no
        // Referer with ids leaving the site.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}
