//! The DAG list: recent run states, next run, pause toggle, tag and text
//! filters, and the import-errors banner. The table body refreshes itself
//! every few seconds (`/ui/dags`, same query).

use super::{DagSummary, back, dag_summary, is_htmx, known_dag};
use crate::UiState;
use crate::error::UiError;
use crate::render::render;
use crate::session::{Fields, Me, Viewer, require_editor};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use pave_core::DagId;
use pave_store::{DagQuery, PageRequest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Runs shown as dots per DAG.
const RECENT_RUNS: u32 = 12;

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    q: Option<String>,
    /// `active`, `paused`, or all.
    #[serde(default)]
    show: Option<String>,
}

impl ListQuery {
    fn query_string(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(t) = self.tag.as_deref().filter(|t| !t.is_empty()) {
            s.append_pair("tag", t);
        }
        if let Some(q) = self.q.as_deref().filter(|q| !q.is_empty()) {
            s.append_pair("q", q);
        }
        if let Some(v) = self.show.as_deref().filter(|v| !v.is_empty()) {
            s.append_pair("show", v);
        }
        s.finish()
    }
}

#[derive(Serialize)]
struct ImportError {
    fileloc: String,
    timestamp: String,
    stacktrace: String,
}

#[derive(Serialize)]
struct ListCtx {
    me: Me,
    dags: Vec<DagSummary>,
    all_tags: Vec<String>,
    tag: String,
    q: String,
    show: String,
    query: String,
    import_errors: Vec<ImportError>,
    total: u64,
    title: &'static str,
}

async fn list_ctx(state: &UiState, viewer: &Viewer, q: &ListQuery) -> Result<ListCtx, UiError> {
    let store = state.rest.store();
    let query = DagQuery {
        dag_id_pattern: q.q.clone().filter(|s| !s.trim().is_empty()),
        paused: match q.show.as_deref() {
            Some("active") => Some(false),
            Some("paused") => Some(true),
            _ => None,
        },
        tags: q.tag.iter().filter(|t| !t.is_empty()).cloned().collect(),
        page: PageRequest {
            limit: 500,
            offset: 0,
        },
        ..DagQuery::default()
    };
    let page = store.query_dags(&query).await?;
    let mut dags = Vec::with_capacity(page.items.len());
    for d in &page.items {
        dags.push(dag_summary(state, d, RECENT_RUNS).await?);
    }
    // Every tag of every DAG, for the filter chips.
    let mut all_tags = BTreeSet::new();
    for d in store.list_dags().await? {
        if let Some(v) = d.latest_version
            && let Ok(l) = state.rest.loaded(v).await
        {
            all_tags.extend(l.dag.tags.iter().cloned());
        }
    }
    let import_errors = store
        .list_import_errors()
        .await?
        .into_iter()
        .map(|e| ImportError {
            fileloc: e.fileloc,
            timestamp: crate::format::time(Some(e.timestamp)),
            stacktrace: e.stacktrace,
        })
        .collect();
    Ok(ListCtx {
        me: viewer.me(),
        dags,
        all_tags: all_tags.into_iter().collect(),
        tag: q.tag.clone().unwrap_or_default(),
        q: q.q.clone().unwrap_or_default(),
        show: q.show.clone().unwrap_or_default(),
        query: q.query_string(),
        import_errors,
        total: page.total_entries,
        title: "DAGs",
    })
}

/// `GET /`: the DAG list.
pub(crate) async fn index(
    State(state): State<UiState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Response, UiError> {
    let ctx = list_ctx(&state, &viewer, &q).await?;
    Ok(render("dags.html", ctx)?.into_response())
}

/// `GET /ui/dags`: the list's body, for the poll.
pub(crate) async fn list_partial(
    State(state): State<UiState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Response, UiError> {
    let ctx = list_ctx(&state, &viewer, &q).await?;
    Ok(render("partials/dag_rows.html", ctx)?.into_response())
}

#[derive(Serialize)]
struct ToggleCtx {
    me: Me,
    d: DagSummary,
}

/// `POST /dags/{dag_id}/pause` (`paused=true|false`): pauses or unpauses.
/// htmx gets the new toggle; a plain form goes back to `next`.
pub(crate) async fn pause(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(dag_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = Fields::parse(&body);
    require_editor(&viewer, &headers, &fields, "pausing or unpausing a DAG")?;
    let paused = match fields.get("paused") {
        Some("true") => true,
        Some("false") => false,
        other => {
            return Err(UiError::BadRequest(format!(
                "field `paused` must be `true` or `false`, got {other:?}"
            )));
        }
    };
    known_dag(&state, &dag_id).await?;
    let id = DagId::new(dag_id.as_str());
    state.rest.core_store().set_dag_paused(&id, paused).await?;
    state.rest.scheduler().poke();
    if is_htmx(&headers) {
        let d = known_dag(&state, &dag_id).await?;
        let ctx = ToggleCtx {
            me: viewer.me(),
            d: dag_summary(&state, &d, 0).await?,
        };
        return Ok(render("partials/pause_toggle.html", ctx)?.into_response());
    }
    Ok(back(fields.get("next"), "/"))
}
