//! The pages, one module each, and what they share: looking up the DAG,
//! run or task instance a URL names (404 naming it), and the summary of a
//! DAG that the list and the DAG page both show.

pub(crate) mod dag;
pub(crate) mod dags;
pub(crate) mod run;
pub(crate) mod ti;
pub(crate) mod trigger;

use crate::UiState;
use crate::error::UiError;
use crate::format;
use crate::render::segment;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use pave_core::schedule::{self, SchedulePolicy};
use pave_core::{Dag, DagId, RunId, Schedule};
use pave_scheduler::dags::LoadedDag;
use pave_store::{
    DagRecord, Order, PageRequest, RunQuery, RunRecord, RunSort, RunType, SortDir, StoreError,
};
use serde::Serialize;
use std::sync::Arc;

/// Whether the request came from htmx (it wants a fragment).
pub(crate) fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// The DAG `dag_id`, or a 404 naming it.
pub(crate) async fn known_dag(state: &UiState, dag_id: &str) -> Result<DagRecord, UiError> {
    match state.rest.core_store().get_dag(&DagId::new(dag_id)).await {
        Ok(d) => Ok(d),
        Err(StoreError::NotFound { .. }) => Err(UiError::NotFound(format!(
            "there is no DAG `{dag_id}`; the DAG list shows the DAGs pave has parsed"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The latest parsed version of a DAG.
pub(crate) async fn latest(state: &UiState, d: &DagRecord) -> Result<Arc<LoadedDag>, UiError> {
    let v = d.latest_version.ok_or_else(|| {
        UiError::NotFound(format!("DAG `{}` has no parsed version yet", d.dag_id))
    })?;
    Ok(state.rest.loaded(v).await?)
}

/// The run `run_id` of `dag_id`, or a 404 naming both.
pub(crate) async fn known_run(
    state: &UiState,
    dag_id: &str,
    run_id: &str,
) -> Result<RunRecord, UiError> {
    match state
        .rest
        .core_store()
        .find_run(&DagId::new(dag_id), &RunId::new(run_id))
        .await
    {
        Ok(r) => Ok(r),
        Err(StoreError::NotFound { .. }) => Err(UiError::NotFound(format!(
            "DAG `{dag_id}` has no run `{run_id}`"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The newest runs of a DAG (newest first).
pub(crate) async fn recent_runs(
    state: &UiState,
    dag_id: &DagId,
    limit: u32,
) -> Result<Vec<RunRecord>, UiError> {
    let page = state
        .rest
        .store()
        .query_runs(&RunQuery {
            dag_id: Some(dag_id.clone()),
            order: Order {
                field: RunSort::Id,
                dir: SortDir::Desc,
            },
            page: PageRequest { limit, offset: 0 },
            ..RunQuery::default()
        })
        .await?;
    Ok(page.items)
}

/// A run as a dot or a link.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RunDot {
    pub run_id: String,
    pub state: String,
    pub href: String,
    pub title: String,
}

pub(crate) fn run_href(dag_id: &str, run_id: &str) -> String {
    format!("/dags/{}/runs/{}", segment(dag_id), segment(run_id))
}

/// What the DAG list and the DAG page's header show about a DAG.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct DagSummary {
    pub dag_id: String,
    pub href: String,
    pub description: String,
    pub tags: Vec<String>,
    pub schedule: String,
    pub paused: bool,
    pub fileloc: String,
    /// Oldest first, so the newest is on the right.
    pub recent: Vec<RunDot>,
    pub last_run: String,
    pub next_run: String,
    pub next_run_title: String,
    pub has_params: bool,
}

pub(crate) fn schedule_text(dag: &Dag) -> String {
    match &dag.schedule {
        Schedule::None => "None".into(),
        Schedule::Once => "@once".into(),
        Schedule::Cron { expr } => expr.clone(),
        Schedule::Interval { every } => format!("every {}", format::duration(*every)),
    }
}

/// When the scheduler will create the DAG's next scheduled run, if ever.
fn next_run(dag: &Dag, runs: &[RunRecord], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if matches!(dag.schedule, Schedule::None) {
        return None;
    }
    let last = runs
        .iter()
        .find(|r| r.run_type == RunType::Scheduled)
        .and_then(|r| r.data_interval)
        .map(|d| schedule::DataInterval {
            start: d.start,
            end: d.end,
        });
    schedule::next_dagrun_info(dag, last.as_ref(), now, &SchedulePolicy::default())
        .ok()
        .flatten()
        .map(|i| i.run_after)
}

/// The summary of one DAG, reading its latest version and newest runs.
pub(crate) async fn dag_summary(
    state: &UiState,
    d: &DagRecord,
    recent: u32,
) -> Result<DagSummary, UiError> {
    let now = state.rest.now();
    let loaded = match d.latest_version {
        Some(v) => Some(state.rest.loaded(v).await?),
        None => None,
    };
    let dag = loaded.as_ref().map(|l| &l.dag);
    let runs = recent_runs(state, &d.dag_id, recent).await?;
    let next = match (dag, d.is_paused) {
        (Some(dag), false) => next_run(dag, &runs, now),
        _ => None,
    };
    let id = d.dag_id.as_str();
    Ok(DagSummary {
        dag_id: id.to_owned(),
        href: format!("/dags/{}", segment(id)),
        description: dag.and_then(|g| g.description.clone()).unwrap_or_default(),
        tags: dag.map(|g| g.tags.clone()).unwrap_or_default(),
        schedule: dag.map(schedule_text).unwrap_or_default(),
        paused: d.is_paused,
        fileloc: d.fileloc.clone().unwrap_or_default(),
        last_run: runs
            .first()
            .map(|r| format::relative(r.start_date.or(r.logical_date).unwrap_or(r.run_after), now))
            .unwrap_or_default(),
        recent: runs
            .iter()
            .rev()
            .map(|r| RunDot {
                run_id: r.run_id.to_string(),
                state: r.state.as_str().to_owned(),
                href: run_href(id, r.run_id.as_str()),
                title: format!("{} · {}", r.run_id, r.state),
            })
            .collect(),
        next_run: next.map(|t| format::relative(t, now)).unwrap_or_default(),
        next_run_title: next.map(|t| format::time(Some(t))).unwrap_or_default(),
        has_params: dag.is_some_and(|g| !g.params.is_empty()),
    })
}

/// Where a form goes back to: its `next` field if it is a local path,
/// else `default`.
pub(crate) fn back(next: Option<&str>, default: &str) -> Response {
    let to = match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => default,
    };
    Redirect::to(to).into_response()
}
