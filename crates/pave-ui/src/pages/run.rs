//! A DAG run: its details and conf, a Gantt chart of its task instances
//! (live while the run is active), their table, and the run's actions
//! (mark success or failed, clear).

use super::{back, is_htmx, known_dag, known_run, run_href};
use crate::UiState;
use crate::error::UiError;
use crate::format;
use crate::render::{render, segment};
use crate::session::{Fields, Me, Viewer, require_editor};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use pave_core::RunState;
use pave_scheduler::actions::{self, ClearRequest};
use pave_store::RunRecord;
use serde::Serialize;

/// One bar of the Gantt chart.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Bar {
    pub task_id: String,
    pub label: String,
    pub state: String,
    pub href: String,
    /// Where the queued part and the running part start, and their widths,
    /// in percent of the chart.
    pub queued_left: f64,
    pub queued_width: f64,
    pub left: f64,
    pub width: f64,
    pub title: String,
    pub try_number: u32,
    pub start: String,
    pub duration: String,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct GanttCtx {
    pub dag_id: String,
    pub run_id: String,
    pub run_state: String,
    pub active: bool,
    pub bars: Vec<Bar>,
    pub start: String,
    pub span: String,
    pub partial_url: String,
}

/// The Gantt chart of `run` (and the rows of its task-instance table).
pub(crate) async fn gantt_ctx(state: &UiState, run: &RunRecord) -> Result<GanttCtx, UiError> {
    let now = state.rest.now();
    let tis = state.rest.core_store().run_tis(run.key).await?;
    let order: Vec<String> = match state.rest.loaded(run.dag_version_id).await {
        Ok(l) => l.dag.tasks.iter().map(|t| t.task_id.to_string()).collect(),
        Err(_) => Vec::new(),
    };
    let begin = tis
        .iter()
        .filter_map(|t| t.queued_at.or(t.start_date))
        .chain(run.start_date)
        .min();
    let end = tis
        .iter()
        .map(|t| t.end_date.unwrap_or(now))
        .chain(run.end_date)
        .max();
    let total = match (begin, end) {
        (Some(b), Some(e)) => (e - b).num_milliseconds().max(1) as f64,
        _ => 1.0,
    };
    let pct = |t: chrono::DateTime<chrono::Utc>| -> f64 {
        begin
            .map(|b| ((t - b).num_milliseconds() as f64 / total * 100.0).clamp(0.0, 100.0))
            .map(|p| (p * 100.0).round() / 100.0)
            .unwrap_or(0.0)
    };
    let mut sorted = tis;
    sorted.sort_by_key(|t| {
        (
            order
                .iter()
                .position(|o| o == t.key.task_id.as_str())
                .unwrap_or(usize::MAX),
            t.key.map_index.0,
        )
    });
    let dag_id = run.dag_id.as_str();
    let bars = sorted
        .iter()
        .map(|t| {
            let start = t.start_date.map(pct);
            let stop = pct(t.end_date.unwrap_or(now));
            let queued = t.queued_at.map(pct);
            let (left, width) = match start {
                Some(s) => (s, (stop - s).max(0.4)),
                None => (0.0, 0.0),
            };
            let (queued_left, queued_width) = match (queued, start) {
                (Some(q), Some(s)) => (q, (s - q).max(0.0)),
                (Some(q), None) if t.state.is_active() => (q, (stop - q).max(0.4)),
                _ => (0.0, 0.0),
            };
            let mi = t.key.map_index;
            let label = if mi.is_unmapped() {
                t.key.task_id.to_string()
            } else {
                format!("{}[{}]", t.key.task_id, mi.0)
            };
            Bar {
                href: format!(
                    "/dags/{}/runs/{}/tasks/{}/{}",
                    segment(dag_id),
                    segment(run.run_id.as_str()),
                    segment(t.key.task_id.as_str()),
                    mi.0
                ),
                title: format!(
                    "{label} · {} · {}",
                    t.state,
                    format::span(t.start_date, t.end_date.or(Some(now)))
                ),
                task_id: t.key.task_id.to_string(),
                label,
                state: t.state.as_str().to_owned(),
                queued_left,
                queued_width,
                left,
                width,
                try_number: t.try_number.0,
                start: format::time(t.start_date),
                duration: format::span(t.start_date, t.end_date),
            }
        })
        .collect();
    Ok(GanttCtx {
        dag_id: dag_id.to_owned(),
        run_id: run.run_id.to_string(),
        run_state: run.state.as_str().to_owned(),
        active: !run.state.is_finished(),
        bars,
        start: format::time(begin),
        span: format::span(begin, end),
        partial_url: format!(
            "/ui/dags/{}/runs/{}/gantt",
            segment(dag_id),
            segment(run.run_id.as_str())
        ),
    })
}

#[derive(Serialize)]
struct RunCtx {
    me: Me,
    title: String,
    dag_id: String,
    dag_href: String,
    run_id: String,
    href: String,
    state: String,
    run_type: String,
    logical_date: String,
    start_date: String,
    end_date: String,
    duration: String,
    conf: serde_json::Value,
    note: String,
    version: u32,
    gantt: GanttCtx,
}

/// `GET /dags/{dag_id}/runs/{run_id}`.
pub(crate) async fn page(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    known_dag(&state, &dag_id).await?;
    let run = known_run(&state, &dag_id, &run_id).await?;
    let ctx = RunCtx {
        me: viewer.me(),
        title: format!("{dag_id} · {run_id}"),
        dag_href: format!("/dags/{}", segment(&dag_id)),
        href: run_href(&dag_id, &run_id),
        dag_id,
        run_id,
        state: run.state.as_str().to_owned(),
        run_type: run.run_type.as_str().to_owned(),
        logical_date: format::time(run.logical_date),
        start_date: format::time(run.start_date),
        end_date: format::time(run.end_date),
        duration: format::span(run.start_date, run.end_date),
        conf: run.conf.clone(),
        note: run.note.clone().unwrap_or_default(),
        version: state.rest.version_number(run.dag_version_id).await?,
        gantt: gantt_ctx(&state, &run).await?,
    };
    Ok(render("run.html", ctx)?.into_response())
}

/// `GET /ui/dags/{dag_id}/runs/{run_id}/gantt`: the chart, for the poll.
pub(crate) async fn gantt_partial(
    State(state): State<UiState>,
    _viewer: Viewer,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let run = known_run(&state, &dag_id, &run_id).await?;
    let gt = gantt_ctx(&state, &run).await?;
    Ok(render("partials/gantt.html", serde_json::json!({ "gt": gt }))?.into_response())
}

/// After an action: htmx reloads the page (`HX-Refresh`), a form goes back.
pub(crate) fn done(headers: &HeaderMap, fields: &Fields, default: &str) -> Response {
    if is_htmx(headers) {
        let mut r = axum::http::StatusCode::NO_CONTENT.into_response();
        r.headers_mut()
            .insert("hx-refresh", axum::http::HeaderValue::from_static("true"));
        return r;
    }
    back(fields.get("next"), default)
}

/// `POST /dags/{dag_id}/runs/{run_id}/mark` (`state=success|failed`).
pub(crate) async fn mark(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((dag_id, run_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = Fields::parse(&body);
    require_editor(&viewer, &headers, &fields, "marking a run")?;
    let to = match fields.get("state") {
        Some("success") => RunState::Success,
        Some("failed") => RunState::Failed,
        other => {
            return Err(UiError::BadRequest(format!(
                "field `state` must be `success` or `failed`, got {other:?}"
            )));
        }
    };
    let run = known_run(&state, &dag_id, &run_id).await?;
    let note = format!("marked {to} by {} in the UI", viewer.0.username());
    actions::mark_run(state.rest.core_store(), &run, to, &note, state.rest.now()).await?;
    state.rest.scheduler().poke();
    Ok(done(&headers, &fields, &run_href(&dag_id, &run_id)))
}

/// `POST /dags/{dag_id}/runs/{run_id}/clear` (`only_failed=on` for the
/// failed ones only): every task instance of the run runs again.
pub(crate) async fn clear(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((dag_id, run_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = Fields::parse(&body);
    require_editor(&viewer, &headers, &fields, "clearing a run")?;
    let run = known_run(&state, &dag_id, &run_id).await?;
    let loaded = state.rest.loaded(run.dag_version_id).await?;
    let req = ClearRequest {
        only_failed: fields.checked("only_failed"),
        ..ClearRequest::default()
    };
    actions::clear(
        state.rest.core_store(),
        &run,
        &loaded.dag,
        &req,
        state.rest.now(),
    )
    .await?;
    state.rest.scheduler().poke();
    Ok(done(&headers, &fields, &run_href(&dag_id, &run_id)))
}
