//! DAG runs: list, get, trigger, mark success or failed, note, delete.

use super::dags::known_dag;
use crate::auth::Principal;
use crate::dto::DagRun;
use crate::extract::{JsonBody, QueryArgs};
use crate::params::{self, with_paging};
use crate::problem::{ApiResult, Problem};
use crate::state::RestState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use pave_core::{DagId, RunId, RunState};
use pave_scheduler::{TriggerRequest, actions, runs};
use pave_store::{ChangeBatch, Order, RunChange, RunQuery, RunRecord, RunSort, SortDir};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// A page of DAG runs.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DagRunCollection {
    pub dag_runs: Vec<DagRun>,
    pub total_entries: u64,
}

/// Query parameters of `GET /dags/{dag_id}/dagRuns` (documentation; the
/// handler reads them with `QueryArgs`).
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunListParams {
    /// Entries per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Entries to skip (default 0).
    pub offset: Option<u64>,
    /// `id`, `dag_run_id`, `dag_id`, `state`, `run_after`, `logical_date`,
    /// `start_date` or `end_date`; `-` in front for descending (default `id`).
    pub order_by: Option<String>,
    /// Only runs in these states (repeat, or separate by commas).
    pub state: Vec<String>,
    /// Only runs of these types: `manual`, `scheduled`, `backfill`.
    pub run_type: Vec<String>,
    pub logical_date_gte: Option<DateTime<Utc>>,
    pub logical_date_lte: Option<DateTime<Utc>>,
    pub start_date_gte: Option<DateTime<Utc>>,
    pub start_date_lte: Option<DateTime<Utc>>,
    pub end_date_gte: Option<DateTime<Utc>>,
    pub end_date_lte: Option<DateTime<Utc>>,
}

/// The run `run_id` of `dag_id`, or 404 naming both.
pub(crate) async fn known_run(
    state: &RestState,
    dag_id: &str,
    run_id: &str,
) -> ApiResult<RunRecord> {
    known_dag(state, dag_id).await?;
    Ok(state
        .core_store()
        .find_run(&DagId::new(dag_id), &RunId::new(run_id))
        .await?)
}

/// List DAG runs; `~` as the DAG id lists the runs of every DAG.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path, description = "The DAG id, or `~` for every DAG"), RunListParams),
    responses((status = 200, body = DagRunCollection),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_runs(
    State(state): State<RestState>,
    Path(dag_id): Path<String>,
    q: QueryArgs,
) -> ApiResult<Json<DagRunCollection>> {
    q.only(&with_paging(&[
        "state",
        "run_type",
        "logical_date_gte",
        "logical_date_lte",
        "start_date_gte",
        "start_date_lte",
        "end_date_gte",
        "end_date_lte",
    ]))?;
    let dag_filter = if dag_id == "~" {
        None
    } else {
        known_dag(&state, &dag_id).await?;
        Some(DagId::new(dag_id))
    };
    let query = RunQuery {
        dag_id: dag_filter,
        states: q
            .parse_list::<RunState>("state", "a run state (queued, running, success, failed)")?,
        run_types: q.parse_list::<pave_store::RunType>(
            "run_type",
            "a run type (manual, scheduled, backfill)",
        )?,
        logical_date: pave_store::TimeRange {
            gte: q.time("logical_date_gte")?,
            lte: q.time("logical_date_lte")?,
        },
        start_date: pave_store::TimeRange {
            gte: q.time("start_date_gte")?,
            lte: q.time("start_date_lte")?,
        },
        end_date: pave_store::TimeRange {
            gte: q.time("end_date_gte")?,
            lte: q.time("end_date_lte")?,
        },
        order: params::order(
            &q,
            &[
                ("id", RunSort::Id),
                ("dag_run_id", RunSort::RunId),
                ("dag_id", RunSort::DagId),
                ("state", RunSort::State),
                ("run_after", RunSort::RunAfter),
                ("logical_date", RunSort::LogicalDate),
                ("start_date", RunSort::StartDate),
                ("end_date", RunSort::EndDate),
            ],
            Order {
                field: RunSort::Id,
                dir: SortDir::Asc,
            },
        )?,
        page: params::page(&q)?,
    };
    let page = state.store().query_runs(&query).await?;
    Ok(Json(DagRunCollection {
        dag_runs: page.items.iter().map(DagRun::from).collect(),
        total_entries: page.total_entries,
    }))
}

/// Get a DAG run.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path, description = "The DAG id"),
           ("dag_run_id" = String, Path, description = "The run id")),
    responses((status = 200, body = DagRun),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_run(
    State(state): State<RestState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<DagRun>> {
    let run = known_run(&state, &dag_id, &run_id).await?;
    Ok(Json(DagRun::from(&run)))
}

/// A manual run to create (Airflow's `TriggerDAGRunPostBody`).
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    /// Default: `manual__<logical date>`.
    pub dag_run_id: Option<String>,
    /// Default: now.
    pub logical_date: Option<DateTime<Utc>>,
    /// The run's conf: a JSON object, checked against the DAG's params.
    #[schema(value_type = Option<Object>)]
    pub conf: Option<Map<String, Value>>,
    pub note: Option<String>,
}

/// Trigger a DAG run.
#[utoipa::path(post, path = "/dags/{dag_id}/dagRuns", tag = "DagRun",
    params(("dag_id" = String, Path, description = "The DAG id")),
    request_body = TriggerBody,
    responses((status = 200, body = DagRun),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn trigger_run(
    State(state): State<RestState>,
    Path(dag_id): Path<String>,
    JsonBody(body): JsonBody<TriggerBody>,
) -> ApiResult<Json<DagRun>> {
    known_dag(&state, &dag_id).await?;
    let id = DagId::new(dag_id.as_str());
    let now = state.now();
    let logical_date = body.logical_date.unwrap_or(now);
    // Say "conflict" for a taken run id or logical date (the scheduler's
    // helper words these for the CLI).
    if let Some(run_id) = &body.dag_run_id
        && state
            .core_store()
            .find_run(&id, &RunId::new(run_id.as_str()))
            .await
            .is_ok()
    {
        return Err(Problem::conflict(format!(
            "DAG `{dag_id}` already has a run `{run_id}`; pick another `dag_run_id`"
        ))
        .with_field("dag_run_id"));
    }
    let same_date = state
        .store()
        .query_runs(&RunQuery {
            dag_id: Some(id.clone()),
            logical_date: pave_store::TimeRange {
                gte: Some(logical_date),
                lte: Some(logical_date),
            },
            page: pave_store::PageRequest {
                limit: 1,
                offset: 0,
            },
            ..RunQuery::default()
        })
        .await?;
    if let Some(r) = same_date.items.first() {
        return Err(Problem::conflict(format!(
            "DAG `{dag_id}` already has a run with logical date {} (`{}`); pick another `logical_date`",
            logical_date.to_rfc3339(),
            r.run_id
        ))
        .with_field("logical_date"));
    }
    let req = TriggerRequest {
        run_id: body.dag_run_id.clone(),
        logical_date: Some(logical_date),
        conf: body.conf.map(Value::Object).unwrap_or(Value::Null),
    };
    let store = state.core_store();
    let run = state
        .with_cache(async |cache| {
            runs::trigger(store, cache, &id, req, now, &Default::default()).await
        })
        .await?;
    let run = match body.note {
        Some(note) => {
            let change = RunChange::new(run.key, run.state)
                .expect(run.state)
                .note(note);
            store.apply(ChangeBatch::one(now, change)).await?;
            store.get_run(run.key).await?
        }
        None => run,
    };
    state.scheduler().poke();
    Ok(Json(DagRun::from(&run)))
}

/// A target state for a run.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunTargetState {
    Success,
    Failed,
}

/// What `PATCH /dags/{dag_id}/dagRuns/{dag_run_id}` changes (at least one).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunPatch {
    /// Mark the run `success` (every unfinished task instance succeeds) or
    /// `failed` (attempts in flight fail, the rest are skipped).
    pub state: Option<RunTargetState>,
    /// Set the run's note.
    pub note: Option<String>,
}

/// Mark a DAG run success or failed, or set its note.
#[utoipa::path(patch, path = "/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path, description = "The DAG id"),
           ("dag_run_id" = String, Path, description = "The run id")),
    request_body = RunPatch,
    responses((status = 200, body = DagRun),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_run(
    State(state): State<RestState>,
    Extension(principal): Extension<Principal>,
    Path((dag_id, run_id)): Path<(String, String)>,
    JsonBody(patch): JsonBody<RunPatch>,
) -> ApiResult<Json<DagRun>> {
    if patch.state.is_none() && patch.note.is_none() {
        return Err(Problem::unprocessable(
            "nothing to change: send `state` (`success` or `failed`) and/or `note`",
        ));
    }
    let run = known_run(&state, &dag_id, &run_id).await?;
    let now = state.now();
    let store = state.core_store();
    if let Some(target) = patch.state {
        let to = match target {
            RunTargetState::Success => RunState::Success,
            RunTargetState::Failed => RunState::Failed,
        };
        let note = format!("marked {to} by {}", principal.username());
        actions::mark_run(store, &run, to, &note, now).await?;
    }
    if let Some(note) = patch.note {
        let current = store.get_run(run.key).await?;
        let change = RunChange::new(run.key, current.state)
            .expect(current.state)
            .note(note);
        store.apply(ChangeBatch::one(now, change)).await?;
    }
    state.scheduler().poke();
    Ok(Json(DagRun::from(&store.get_run(run.key).await?)))
}

/// Delete a DAG run with its task instances, tries and XComs (log files
/// stay on disk). 409 while an attempt of the run is in flight.
#[utoipa::path(delete, path = "/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "DagRun",
    params(("dag_id" = String, Path, description = "The DAG id"),
           ("dag_run_id" = String, Path, description = "The run id")),
    responses((status = 204, description = "Deleted"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_run(
    State(state): State<RestState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let run = known_run(&state, &dag_id, &run_id).await?;
    state.store().delete_run(run.key).await?;
    state.scheduler().poke();
    Ok(StatusCode::NO_CONTENT)
}
