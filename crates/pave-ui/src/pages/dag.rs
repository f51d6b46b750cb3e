//! The DAG page: a header (schedule, next run, pause, trigger) and tabs:
//! grid (runs x tasks), graph (dagre, live states), Gantt of a run, code,
//! versions. Live parts are htmx partials under `/ui/dags/{dag_id}/...`.

use super::run::{GanttCtx, gantt_ctx};
use super::{DagSummary, dag_summary, known_dag, known_run, latest, recent_runs};
use crate::UiState;
use crate::error::UiError;
use crate::grid::{self, Grid};
use crate::grid_cache;
use crate::render::{render, segment};
use crate::session::{Me, Viewer};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use pave_scheduler::dags::LoadedDag;
use pave_store::query::{GridRun, GridTi};
use pave_store::{DagRecord, PageRequest, RunKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Runs shown as dots in the header.
const HEADER_RUNS: u32 = 12;

/// Runs in the grid unless `?runs=N` says otherwise.
const GRID_RUNS: u32 = 20;

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct DagQuery {
    #[serde(default)]
    tab: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
    /// Expanded groups and mapped tasks, comma-separated.
    #[serde(default)]
    expand: Option<String>,
    #[serde(default)]
    runs: Option<u32>,
}

impl DagQuery {
    fn run_count(&self) -> u32 {
        self.runs.unwrap_or(GRID_RUNS).clamp(1, 100)
    }
}

#[derive(Serialize)]
struct GridCtx<'a> {
    dag_href: String,
    grid: Grid,
    expand: &'a str,
    runs: u32,
}

#[derive(Serialize)]
struct GridFragment<'a> {
    gc: GridCtx<'a>,
}

/// What the grid is made of, read fresh from the store on every request.
struct GridData {
    loaded: Arc<LoadedDag>,
    /// Oldest first.
    runs: Vec<GridRun>,
    /// `tis[i]` belongs to `runs[i]`.
    tis: Vec<Vec<GridTi>>,
    bars: Vec<u32>,
}

impl GridData {
    fn inputs<'a>(&'a self, q: &'a DagQuery) -> grid::Inputs<'a> {
        grid::Inputs {
            dag: &self.loaded.dag,
            version: self.loaded.version,
            runs: &self.runs,
            bars: &self.bars,
            tis: &self.tis,
            expand: q.expand.as_deref().unwrap_or(""),
            run_count: q.run_count(),
        }
    }
}

/// Reads the grid's runs and task instances: two narrow queries (only the
/// columns the grid shows), however many runs it shows.
async fn grid_data(state: &UiState, d: &DagRecord, q: &DagQuery) -> Result<GridData, UiError> {
    let loaded = latest(state, d).await?;
    let store = state.rest.store();
    let mut runs = store.grid_runs(&d.dag_id, q.run_count()).await?;
    runs.reverse();
    let keys: Vec<RunKey> = runs.iter().map(|r| r.key).collect();
    let mut by_run: HashMap<RunKey, Vec<GridTi>> = HashMap::with_capacity(runs.len());
    for ti in store.grid_tis(&keys).await? {
        by_run.entry(ti.run).or_default().push(ti);
    }
    let tis = runs
        .iter()
        .map(|r| by_run.remove(&r.key).unwrap_or_default())
        .collect();
    let bars = grid::bars(&runs, state.rest.now());
    Ok(GridData {
        loaded,
        runs,
        tis,
        bars,
    })
}

/// The grid fragment's HTML for `inputs` (fingerprinted as `key`): the
/// kept copy when nothing it shows has changed, else rendered and kept.
fn grid_html(state: &UiState, key: [u8; 16], inputs: &grid::Inputs<'_>) -> Result<Bytes, UiError> {
    if let Some(html) = state.grid_cache.get(&key) {
        return Ok(html);
    }
    let ctx = GridFragment {
        gc: GridCtx {
            dag_href: format!("/dags/{}", segment(inputs.dag.dag_id.as_str())),
            grid: grid::build(inputs),
            expand: inputs.expand,
            runs: inputs.run_count,
        },
    };
    let html = Bytes::from(render("partials/grid.html", ctx)?.0);
    state.grid_cache.put(key, html.clone());
    Ok(html)
}

#[derive(Serialize)]
struct Version {
    number: u32,
    created_at: String,
    hash: String,
    href: String,
}

#[derive(Serialize)]
struct PageCtx {
    me: Me,
    title: String,
    d: DagSummary,
    tab: String,
    /// The grid fragment, rendered (or kept) as the poll renders it.
    grid_html: Option<String>,
    gantt: Option<GanttCtx>,
    run_choices: Vec<super::RunDot>,
    selected_run: String,
    code: Option<Vec<String>>,
    code_error: Option<String>,
    versions: Vec<Version>,
}

/// `GET /dags/{dag_id}?tab=grid|graph|gantt|code|versions`.
pub(crate) async fn page(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(dag_id): Path<String>,
    Query(q): Query<DagQuery>,
) -> Result<Response, UiError> {
    let d = known_dag(&state, &dag_id).await?;
    let summary = dag_summary(&state, &d, HEADER_RUNS).await?;
    let tab = q
        .tab
        .as_deref()
        .filter(|t| matches!(*t, "graph" | "gantt" | "code" | "versions"))
        .unwrap_or("grid");
    let mut ctx = PageCtx {
        me: viewer.me(),
        title: dag_id.clone(),
        d: summary,
        tab: tab.to_owned(),
        grid_html: None,
        gantt: None,
        run_choices: Vec::new(),
        selected_run: String::new(),
        code: None,
        code_error: None,
        versions: Vec::new(),
    };
    match tab {
        "grid" => {
            let data = grid_data(&state, &d, &q).await?;
            let inputs = data.inputs(&q);
            let key = grid::fingerprint(state.grid_cache.salt(), &inputs);
            let html = grid_html(&state, key, &inputs)?;
            ctx.grid_html = Some(String::from_utf8_lossy(&html).into_owned());
            // The newest run's Gantt chart sits next to the grid.
            if let Some(newest) = recent_runs(&state, &d.dag_id, 1).await?.first() {
                ctx.gantt = Some(gantt_ctx(&state, newest).await?);
            }
        }
        "graph" | "gantt" => {
            let runs = recent_runs(&state, &d.dag_id, 50).await?;
            let selected = match q.run_id.as_deref() {
                Some(r) if !r.is_empty() => Some(known_run(&state, &dag_id, r).await?),
                _ => runs.first().cloned(),
            };
            ctx.run_choices = runs
                .iter()
                .map(|r| super::RunDot {
                    run_id: r.run_id.to_string(),
                    state: r.state.as_str().to_owned(),
                    href: String::new(),
                    title: String::new(),
                })
                .collect();
            if let Some(run) = selected {
                ctx.selected_run = run.run_id.to_string();
                if tab == "gantt" {
                    ctx.gantt = Some(gantt_ctx(&state, &run).await?);
                }
            }
        }
        "code" => match d.fileloc.as_deref() {
            // The path comes from the DAG processor, never from the request.
            Some(path) => match tokio::fs::read_to_string(path).await {
                Ok(text) => ctx.code = Some(text.lines().map(str::to_owned).collect()),
                Err(e) => ctx.code_error = Some(format!("cannot read {path}: {e}")),
            },
            None => ctx.code_error = Some("this DAG has no recorded file".into()),
        },
        _ => {
            let page = state
                .rest
                .store()
                .list_dag_versions(
                    &d.dag_id,
                    PageRequest {
                        limit: 100,
                        offset: 0,
                    },
                )
                .await?;
            ctx.versions = page
                .items
                .into_iter()
                .map(|v| Version {
                    href: format!(
                        "/dags/{}/versions/{}",
                        segment(d.dag_id.as_str()),
                        v.version_number
                    ),
                    number: v.version_number,
                    created_at: crate::format::time(Some(v.created_at)),
                    hash: v.spec_hash.chars().take(12).collect(),
                })
                .collect();
        }
    }
    Ok(render("dag.html", ctx)?.into_response())
}

/// `GET /ui/dags/{dag_id}/grid`: the grid, for the poll and the toggles.
/// Its ETag is the fingerprint of what it shows: a browser that has this
/// fragment gets a 304, and an unchanged fragment is not rendered again.
pub(crate) async fn grid_partial(
    State(state): State<UiState>,
    _viewer: Viewer,
    Path(dag_id): Path<String>,
    Query(q): Query<DagQuery>,
    headers: HeaderMap,
) -> Result<Response, UiError> {
    let d = known_dag(&state, &dag_id).await?;
    let data = grid_data(&state, &d, &q).await?;
    let inputs = data.inputs(&q);
    let key = grid::fingerprint(state.grid_cache.salt(), &inputs);
    let tag = grid_cache::etag(&key);
    if grid_cache::not_modified(&headers, &tag) {
        return Ok(grid_cache::respond(&headers, &tag, None));
    }
    let html = grid_html(&state, key, &inputs)?;
    Ok(grid_cache::respond(&headers, &tag, Some(html)))
}

#[derive(Serialize)]
struct HeaderCtx {
    me: Me,
    d: DagSummary,
}

/// `GET /ui/dags/{dag_id}/header`: the header's run dots and next run.
pub(crate) async fn header_partial(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(dag_id): Path<String>,
) -> Result<Response, UiError> {
    let d = known_dag(&state, &dag_id).await?;
    let ctx = HeaderCtx {
        me: viewer.me(),
        d: dag_summary(&state, &d, HEADER_RUNS).await?,
    };
    Ok(render("partials/dag_header.html", ctx)?.into_response())
}

/// `GET /ui/dags/{dag_id}/graph?run_id=`: tasks, edges, groups and the
/// states of a run (the newest unless one is named), as JSON.
pub(crate) async fn graph_json(
    State(state): State<UiState>,
    _viewer: Viewer,
    Path(dag_id): Path<String>,
    Query(q): Query<DagQuery>,
) -> Result<Response, UiError> {
    let d = known_dag(&state, &dag_id).await?;
    let run = match q.run_id.as_deref() {
        Some(r) if !r.is_empty() => Some(known_run(&state, &dag_id, r).await?),
        _ => recent_runs(&state, &d.dag_id, 1).await?.into_iter().next(),
    };
    // The run's own version, so the graph matches its task instances.
    let loaded = match &run {
        Some(r) => state.rest.loaded(r.dag_version_id).await?,
        None => latest(&state, &d).await?,
    };
    let tis = match &run {
        Some(r) => state.rest.core_store().run_tis(r.key).await?,
        None => Vec::new(),
    };
    let graph = crate::graph::build(&loaded.dag, run.as_ref().map(|r| (r, tis.as_slice())));
    Ok(Json(graph).into_response())
}

#[derive(Serialize)]
struct VersionCtx {
    me: Me,
    title: String,
    d: DagSummary,
    number: u32,
    created_at: String,
    hash: String,
    spec: serde_json::Value,
}

/// `GET /dags/{dag_id}/versions/{number}`: one stored version's serialized form.
pub(crate) async fn version(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((dag_id, number)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let d = known_dag(&state, &dag_id).await?;
    let n: u32 = number.parse().map_err(|_| {
        UiError::NotFound(format!("`{number}` is not a version number (1, 2, ...)"))
    })?;
    let v = state
        .rest
        .store()
        .get_dag_version_by_number(&d.dag_id, n)
        .await?;
    let ctx = VersionCtx {
        me: viewer.me(),
        title: format!("{dag_id} v{n}"),
        d: dag_summary(&state, &d, HEADER_RUNS).await?,
        number: n,
        created_at: crate::format::time(Some(v.created_at)),
        hash: v.spec_hash,
        spec: v.spec,
    };
    Ok(render("version.html", ctx)?.into_response())
}
