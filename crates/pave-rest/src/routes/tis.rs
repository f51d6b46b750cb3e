//! Task instances: list with filters, get, tries, mark success or failed,
//! and clear (with upstream and downstream).

use super::dags::known_dag;
use super::runs::known_run;
use crate::auth::Principal;
use crate::dto::{StateArg, TaskInstance, TaskInstanceTry, task_state_names};
use crate::extract::{JsonBody, QueryArgs};
use crate::params::{self, with_paging};
use crate::problem::{ApiResult, Problem};
use crate::state::RestState;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use pave_core::{DagId, MapIndex, RunId, TaskId, TaskState};
use pave_scheduler::actions::{self, ClearRequest};
use pave_store::{Order, RunKey, RunRecord, SortDir, TiKey, TiQuery, TiRecord, TiSort};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A page of task instances.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskInstanceCollection {
    pub task_instances: Vec<TaskInstance>,
    pub total_entries: u64,
}

/// Query parameters of the task-instance listing (documentation; the
/// handler reads them with `QueryArgs`).
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TiListParams {
    /// Entries per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Entries to skip (default 0).
    pub offset: Option<u64>,
    /// `task_id`, `map_index`, `state`, `start_date`, `end_date`,
    /// `duration`, `try_number`, `priority_weight` or `pool`; `-` in front
    /// for descending (default: run, task id, map index).
    pub order_by: Option<String>,
    /// Only these states (`none` for no state; repeat, or separate by commas).
    pub state: Vec<String>,
    /// Only these task ids.
    pub task_id: Vec<String>,
    /// Only this map index (-1 for unmapped task instances).
    pub map_index: Option<i32>,
    /// Only task instances in these pools.
    pub pool: Vec<String>,
    pub start_date_gte: Option<DateTime<Utc>>,
    pub start_date_lte: Option<DateTime<Utc>>,
    pub end_date_gte: Option<DateTime<Utc>>,
    pub end_date_lte: Option<DateTime<Utc>>,
}

/// List task instances; `~` as DAG id or run id means every one.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances", tag = "TaskInstance",
    params(("dag_id" = String, Path, description = "The DAG id, or `~`"),
           ("dag_run_id" = String, Path, description = "The run id, or `~`"), TiListParams),
    responses((status = 200, body = TaskInstanceCollection),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_tis(
    State(state): State<RestState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    q: QueryArgs,
) -> ApiResult<Json<TaskInstanceCollection>> {
    q.only(&with_paging(&[
        "state",
        "task_id",
        "map_index",
        "pool",
        "start_date_gte",
        "start_date_lte",
        "end_date_gte",
        "end_date_lte",
    ]))?;
    let (dag_filter, run_filter) = match (dag_id.as_str(), run_id.as_str()) {
        ("~", "~") => (None, None),
        ("~", _) => {
            return Err(Problem::bad_request(
                "a run id needs its DAG id: use `~` for both, or name the DAG",
            ));
        }
        (dag, "~") => {
            known_dag(&state, dag).await?;
            (Some(DagId::new(dag)), None)
        }
        (dag, run) => {
            known_run(&state, dag, run).await?;
            (Some(DagId::new(dag)), Some(RunId::new(run)))
        }
    };
    let states: Vec<StateArg> =
        q.parse_list("state", &format!("a task state ({})", task_state_names()))?;
    let query = TiQuery {
        dag_id: dag_filter,
        run_id: run_filter,
        task_ids: q.list("task_id").into_iter().map(TaskId::new).collect(),
        map_index: q
            .parse::<i32>("map_index", "a map index (-1, 0, 1, ...)")?
            .map(MapIndex),
        states: states.into_iter().map(|s| s.0).collect(),
        pools: q.list("pool"),
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
                ("task_id", TiSort::TaskId),
                ("map_index", TiSort::MapIndex),
                ("state", TiSort::State),
                ("start_date", TiSort::StartDate),
                ("end_date", TiSort::EndDate),
                ("duration", TiSort::Duration),
                ("try_number", TiSort::TryNumber),
                ("priority_weight", TiSort::PriorityWeight),
                ("pool", TiSort::Pool),
            ],
            Order {
                field: TiSort::Key,
                dir: SortDir::Asc,
            },
        )?,
        page: params::page(&q)?,
    };
    let page = state.store().query_tis(&query).await?;
    Ok(Json(TaskInstanceCollection {
        task_instances: page.items.iter().map(TaskInstance::from).collect(),
        total_entries: page.total_entries,
    }))
}

/// The `map_index` query parameter (default -1), as the only one allowed
/// besides `extra`.
pub(crate) fn map_index_arg(q: &QueryArgs, extra: &[&str]) -> ApiResult<Option<MapIndex>> {
    let mut allowed = vec!["map_index"];
    allowed.extend_from_slice(extra);
    q.only(&allowed)?;
    Ok(q.parse::<i32>("map_index", "a map index (-1, 0, 1, ...)")?
        .map(MapIndex))
}

/// One task instance of a run, or 404 naming it.
pub(crate) async fn known_ti(
    state: &RestState,
    run: &RunRecord,
    task_id: &str,
    map_index: MapIndex,
) -> ApiResult<TiRecord> {
    let key = TiKey::new(run.key, task_id, map_index);
    state.core_store().get_ti(&key).await.map_err(|e| match e {
        pave_store::StoreError::NotFound { .. } => Problem::not_found(format!(
            "run `{}` of DAG `{}` has no task instance `{task_id}` with map index {map_index}",
            run.run_id, run.dag_id
        )),
        other => other.into(),
    })
}

/// Get a task instance (`map_index` query parameter for a mapped one).
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", tag = "TaskInstance",
    params(("dag_id" = String, Path, description = "The DAG id"),
           ("dag_run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id"),
           ("map_index" = Option<i32>, Query, description = "Map index (default -1)")),
    responses((status = 200, body = TaskInstance),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_ti(
    State(state): State<RestState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    q: QueryArgs,
) -> ApiResult<Json<TaskInstance>> {
    let map_index = map_index_arg(&q, &[])?.unwrap_or(MapIndex::UNMAPPED);
    let run = known_run(&state, &dag_id, &run_id).await?;
    let ti = known_ti(&state, &run, &task_id, map_index).await?;
    Ok(Json(TaskInstance::from(&ti)))
}

/// The tries of a task instance.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskInstanceTryCollection {
    pub task_instances: Vec<TaskInstanceTry>,
    pub total_entries: u64,
}

/// List the tries (attempts) of a task instance.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries", tag = "TaskInstance",
    params(("dag_id" = String, Path, description = "The DAG id"),
           ("dag_run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id"),
           ("map_index" = Option<i32>, Query, description = "Map index (default -1)")),
    responses((status = 200, body = TaskInstanceTryCollection),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_tries(
    State(state): State<RestState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    q: QueryArgs,
) -> ApiResult<Json<TaskInstanceTryCollection>> {
    let map_index = map_index_arg(&q, &[])?.unwrap_or(MapIndex::UNMAPPED);
    let run = known_run(&state, &dag_id, &run_id).await?;
    let ti = known_ti(&state, &run, &task_id, map_index).await?;
    let tries = state.core_store().list_tries(&ti.key).await?;
    Ok(Json(TaskInstanceTryCollection {
        total_entries: tries.len() as u64,
        task_instances: tries.iter().map(TaskInstanceTry::from).collect(),
    }))
}

/// A state a task instance can be marked with.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TiTargetState {
    Success,
    Failed,
}

/// What `PATCH .../taskInstances/{task_id}` does (Airflow's body).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TiPatch {
    pub new_state: TiTargetState,
    /// Only report what would change.
    #[serde(default)]
    pub dry_run: bool,
}

/// Mark a task instance success or failed. Without `map_index`, every
/// instance of a mapped task is marked. An attempt in flight runs on, but
/// its report when it ends is ignored: the mark stands.
#[utoipa::path(patch, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", tag = "TaskInstance",
    params(("dag_id" = String, Path, description = "The DAG id"),
           ("dag_run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id"),
           ("map_index" = Option<i32>, Query, description = "Map index (default: every instance)")),
    request_body = TiPatch,
    responses((status = 200, body = TaskInstanceCollection),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_ti(
    State(state): State<RestState>,
    Extension(principal): Extension<Principal>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    q: QueryArgs,
    JsonBody(patch): JsonBody<TiPatch>,
) -> ApiResult<Json<TaskInstanceCollection>> {
    let map_index = map_index_arg(&q, &[])?;
    let run = known_run(&state, &dag_id, &run_id).await?;
    let tis = match map_index {
        Some(m) => vec![known_ti(&state, &run, &task_id, m).await?],
        None => {
            let all = task_tis(&state, run.key, &task_id).await?;
            if all.is_empty() {
                return Err(Problem::not_found(format!(
                    "run `{run_id}` of DAG `{dag_id}` has no task instance `{task_id}`"
                )));
            }
            all
        }
    };
    let to = match patch.new_state {
        TiTargetState::Success => TaskState::Success,
        TiTargetState::Failed => TaskState::Failed,
    };
    if !patch.dry_run {
        let loaded = state.loaded(run.dag_version_id).await?;
        let note = format!("marked {to} by {}", principal.username());
        actions::mark_tis(
            state.core_store(),
            &run,
            &loaded.dag,
            &tis,
            to,
            &note,
            state.now(),
        )
        .await?;
        state.scheduler().poke();
    }
    let mut out = Vec::with_capacity(tis.len());
    for ti in &tis {
        out.push(TaskInstance::from(
            &state.core_store().get_ti(&ti.key).await?,
        ));
    }
    Ok(Json(TaskInstanceCollection {
        total_entries: out.len() as u64,
        task_instances: out,
    }))
}

/// Every instance of one task in a run.
async fn task_tis(state: &RestState, run: RunKey, task_id: &str) -> ApiResult<Vec<TiRecord>> {
    Ok(state
        .core_store()
        .run_tis(run)
        .await?
        .into_iter()
        .filter(|t| t.key.task_id.as_str() == task_id)
        .collect())
}

/// What to clear (Airflow's `ClearTaskInstancesBody`, for one run).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearBody {
    /// The run whose task instances to clear.
    pub dag_run_id: String,
    /// Task ids to clear; empty or absent means every task.
    #[serde(default)]
    pub task_ids: Vec<String>,
    #[serde(default)]
    pub include_upstream: bool,
    #[serde(default)]
    pub include_downstream: bool,
    /// Only failed and upstream_failed task instances.
    #[serde(default)]
    pub only_failed: bool,
    /// Report what would be cleared and change nothing. As in Airflow, the
    /// default is `true`: send `false` to clear.
    #[serde(default = "yes")]
    pub dry_run: bool,
}

fn yes() -> bool {
    true
}

/// Clear task instances of a run so they run again.
#[utoipa::path(post, path = "/dags/{dag_id}/clearTaskInstances", tag = "TaskInstance",
    params(("dag_id" = String, Path, description = "The DAG id")),
    request_body = ClearBody,
    responses((status = 200, body = TaskInstanceCollection, description = "The task instances cleared (or that would be, for a dry run), as they were"),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn clear_tis(
    State(state): State<RestState>,
    Path(dag_id): Path<String>,
    JsonBody(body): JsonBody<ClearBody>,
) -> ApiResult<Json<TaskInstanceCollection>> {
    let run = known_run(&state, &dag_id, &body.dag_run_id).await?;
    let loaded = state.loaded(run.dag_version_id).await?;
    let req = ClearRequest {
        task_ids: body.task_ids,
        include_downstream: body.include_downstream,
        include_upstream: body.include_upstream,
        only_failed: body.only_failed,
        dry_run: body.dry_run,
    };
    let cleared = actions::clear(state.core_store(), &run, &loaded.dag, &req, state.now())
        .await
        .map_err(|e| match e {
            pave_scheduler::SchedulerError::BadRequest(m) => {
                Problem::unprocessable(m).with_field("task_ids")
            }
            other => other.into(),
        })?;
    if !body.dry_run && !cleared.is_empty() {
        state.scheduler().poke();
    }
    Ok(Json(TaskInstanceCollection {
        total_entries: cleared.len() as u64,
        task_instances: cleared.iter().map(TaskInstance::from).collect(),
    }))
}
