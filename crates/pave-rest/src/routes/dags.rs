//! DAGs: list, get, pause and unpause, tasks, versions and source.

use crate::extract::{JsonBody, QueryArgs};
use crate::params::{self, with_paging};
use crate::problem::{ApiResult, Problem};
use crate::state::RestState;
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use pave_core::{Dag, DagId, Schedule};
use pave_store::{DagQuery, DagRecord, DagSort, Order, SortDir};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// A DAG tag.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DagTag {
    pub name: String,
}

/// A DAG (Airflow's `DAGResponse`), from its latest version.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DagResponse {
    pub dag_id: String,
    pub is_paused: bool,
    pub fileloc: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<DagTag>,
    /// The schedule: a cron expression, `@once`, `None`, or `every Ns`.
    pub timetable_summary: String,
    pub max_active_runs: Option<u32>,
    pub max_active_tasks: Option<u32>,
    pub last_parsed_time: Option<DateTime<Utc>>,
    /// The number of the latest version (1, 2, ...).
    pub latest_version_number: Option<u32>,
    pub created_at: DateTime<Utc>,
}

/// A page of DAGs.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DagCollection {
    pub dags: Vec<DagResponse>,
    pub total_entries: u64,
}

/// What `PATCH /dags/{dag_id}` changes.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagPatch {
    pub is_paused: bool,
}

/// Query parameters of `GET /dags` (for the OpenAPI document; the handler
/// reads them with `QueryArgs`, which names a bad one).
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DagListParams {
    /// Entries per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Entries to skip (default 0).
    pub offset: Option<u64>,
    /// `dag_id`, `last_parsed_time` or `created_at`; `-` in front for descending.
    pub order_by: Option<String>,
    /// DAG ids containing this text (`%` and `_` are wildcards).
    pub dag_id_pattern: Option<String>,
    /// Only paused (`true`) or unpaused (`false`) DAGs.
    pub paused: Option<bool>,
    /// DAGs with any of these tags (repeat the parameter or separate by commas).
    pub tags: Vec<String>,
}

fn schedule_text(dag: &Dag) -> String {
    match &dag.schedule {
        Schedule::None => "None".into(),
        Schedule::Once => "@once".into(),
        Schedule::Cron { expr } => expr.clone(),
        Schedule::Interval { every } => format!("every {}s", every.as_secs()),
    }
}

/// The response for a DAG, reading its latest version.
pub(crate) async fn dag_response(state: &RestState, d: DagRecord) -> ApiResult<DagResponse> {
    let (dag, number) = match d.latest_version {
        Some(v) => (
            Some(state.loaded(v).await?),
            Some(state.version_number(v).await?),
        ),
        None => (None, None),
    };
    let dag = dag.as_ref().map(|l| &l.dag);
    Ok(DagResponse {
        is_paused: d.is_paused,
        fileloc: d.fileloc,
        description: dag.and_then(|g| g.description.clone()),
        tags: dag
            .map(|g| g.tags.iter().map(|t| DagTag { name: t.clone() }).collect())
            .unwrap_or_default(),
        timetable_summary: dag.map(schedule_text).unwrap_or_default(),
        max_active_runs: dag.and_then(|g| g.max_active_runs),
        max_active_tasks: dag.and_then(|g| g.max_active_tasks),
        last_parsed_time: d.last_parsed_at,
        latest_version_number: number,
        created_at: d.created_at,
        dag_id: d.dag_id.to_string(),
    })
}

/// The DAG `dag_id`, or 404 naming it.
pub(crate) async fn known_dag(state: &RestState, dag_id: &str) -> ApiResult<DagRecord> {
    Ok(state.core_store().get_dag(&DagId::new(dag_id)).await?)
}

/// List DAGs.
#[utoipa::path(get, path = "/dags", tag = "DAG", params(DagListParams),
    responses((status = 200, body = DagCollection),
              (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn list_dags(
    State(state): State<RestState>,
    q: QueryArgs,
) -> ApiResult<Json<DagCollection>> {
    q.only(&with_paging(&["dag_id_pattern", "paused", "tags"]))?;
    let query = DagQuery {
        dag_id_pattern: q.text("dag_id_pattern")?.map(str::to_owned),
        paused: q.boolean("paused")?,
        tags: q.list("tags"),
        order: params::order(
            &q,
            &[
                ("dag_id", DagSort::DagId),
                ("last_parsed_time", DagSort::LastParsedAt),
                ("created_at", DagSort::CreatedAt),
            ],
            Order {
                field: DagSort::DagId,
                dir: SortDir::Asc,
            },
        )?,
        page: params::page(&q)?,
    };
    let page = state.store().query_dags(&query).await?;
    let mut dags = Vec::with_capacity(page.items.len());
    for d in page.items {
        dags.push(dag_response(&state, d).await?);
    }
    Ok(Json(DagCollection {
        dags,
        total_entries: page.total_entries,
    }))
}

/// Get a DAG.
#[utoipa::path(get, path = "/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path, description = "The DAG id")),
    responses((status = 200, body = DagResponse),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_dag(
    State(state): State<RestState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<DagResponse>> {
    let d = known_dag(&state, &dag_id).await?;
    Ok(Json(dag_response(&state, d).await?))
}

/// Pause or unpause a DAG.
#[utoipa::path(patch, path = "/dags/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path, description = "The DAG id")),
    request_body = DagPatch,
    responses((status = 200, body = DagResponse),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn patch_dag(
    State(state): State<RestState>,
    Path(dag_id): Path<String>,
    JsonBody(patch): JsonBody<DagPatch>,
) -> ApiResult<Json<DagResponse>> {
    let id = DagId::new(dag_id.as_str());
    known_dag(&state, &dag_id).await?;
    state
        .core_store()
        .set_dag_paused(&id, patch.is_paused)
        .await?;
    state.scheduler().poke();
    let d = known_dag(&state, &dag_id).await?;
    Ok(Json(dag_response(&state, d).await?))
}

/// A task of a DAG (Airflow's `TaskResponse`, in part).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskResponse {
    pub task_id: String,
    /// `empty`, `command` or `python`.
    pub kind: String,
    pub trigger_rule: String,
    pub retries: u32,
    pub pool: String,
    pub pool_slots: u32,
    pub priority_weight: i64,
    pub is_mapped: bool,
    /// The task group the task belongs to, if any.
    pub task_group: Option<String>,
    pub upstream_task_ids: Vec<String>,
    pub downstream_task_ids: Vec<String>,
    pub doc: Option<String>,
}

/// The tasks of a DAG.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskCollection {
    pub tasks: Vec<TaskResponse>,
    pub total_entries: u64,
}

/// List the tasks of a DAG's latest version.
#[utoipa::path(get, path = "/dags/{dag_id}/tasks", tag = "DAG",
    params(("dag_id" = String, Path, description = "The DAG id")),
    responses((status = 200, body = TaskCollection),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_tasks(
    State(state): State<RestState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<TaskCollection>> {
    let d = known_dag(&state, &dag_id).await?;
    let version = d
        .latest_version
        .ok_or_else(|| Problem::not_found(format!("DAG `{dag_id}` has no parsed version yet")))?;
    let loaded = state.loaded(version).await?;
    let dag = &loaded.dag;
    let tasks: Vec<TaskResponse> = dag
        .tasks
        .iter()
        .map(|t| TaskResponse {
            task_id: t.task_id.to_string(),
            kind: match &t.kind {
                pave_core::TaskKind::Empty => "empty",
                pave_core::TaskKind::Command { .. } => "command",
                pave_core::TaskKind::Python { .. } => "python",
            }
            .to_owned(),
            trigger_rule: t.trigger_rule.as_str().to_owned(),
            retries: t.retry.retries,
            pool: t.pool.clone(),
            pool_slots: t.pool_slots,
            priority_weight: t.priority_weight,
            is_mapped: t.mapping.is_some(),
            task_group: t.group.clone(),
            upstream_task_ids: t.upstream.iter().map(|u| u.to_string()).collect(),
            downstream_task_ids: dag
                .tasks
                .iter()
                .filter(|o| o.upstream.iter().any(|u| u == &t.task_id))
                .map(|o| o.task_id.to_string())
                .collect(),
            doc: t.doc.clone(),
        })
        .collect();
    Ok(Json(TaskCollection {
        total_entries: tasks.len() as u64,
        tasks,
    }))
}

/// A stored version of a DAG (Airflow's `DagVersionResponse`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DagVersion {
    pub id: i64,
    pub dag_id: String,
    pub version_number: u32,
    /// Hex SHA-256 of the serialized DAG.
    pub spec_hash: String,
    pub created_at: DateTime<Utc>,
    /// The serialized DAG (JSON spec v1); only on `GET .../dagVersions/{n}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
}

/// A page of DAG versions, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DagVersionCollection {
    pub dag_versions: Vec<DagVersion>,
    pub total_entries: u64,
}

/// List the versions of a DAG, newest first.
#[utoipa::path(get, path = "/dags/{dag_id}/dagVersions", tag = "DAG",
    params(("dag_id" = String, Path, description = "The DAG id"),
           ("limit" = Option<u32>, Query, description = "Entries per page (default 100)"),
           ("offset" = Option<u64>, Query, description = "Entries to skip")),
    responses((status = 200, body = DagVersionCollection),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_versions(
    State(state): State<RestState>,
    Path(dag_id): Path<String>,
    q: QueryArgs,
) -> ApiResult<Json<DagVersionCollection>> {
    q.only(&["limit", "offset"])?;
    let page = state
        .store()
        .list_dag_versions(&DagId::new(dag_id.as_str()), params::page(&q)?)
        .await?;
    Ok(Json(DagVersionCollection {
        dag_versions: page
            .items
            .into_iter()
            .map(|v| DagVersion {
                id: v.id.0,
                dag_id: v.dag_id.to_string(),
                version_number: v.version_number,
                spec_hash: v.spec_hash,
                created_at: v.created_at,
                spec: None,
            })
            .collect(),
        total_entries: page.total_entries,
    }))
}

/// Get one version of a DAG with its serialized form.
#[utoipa::path(get, path = "/dags/{dag_id}/dagVersions/{version_number}", tag = "DAG",
    params(("dag_id" = String, Path, description = "The DAG id"),
           ("version_number" = u32, Path, description = "1 for the first version")),
    responses((status = 200, body = DagVersion),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_version(
    State(state): State<RestState>,
    Path((dag_id, number)): Path<(String, String)>,
) -> ApiResult<Json<DagVersion>> {
    let number: u32 = number.parse().map_err(|_| {
        Problem::bad_request(format!(
            "path parameter `version_number`: `{number}` is not a version number (1, 2, ...)"
        ))
        .with_field("version_number")
    })?;
    known_dag(&state, &dag_id).await?;
    let v = state
        .store()
        .get_dag_version_by_number(&DagId::new(dag_id.as_str()), number)
        .await?;
    Ok(Json(DagVersion {
        id: v.id.0,
        dag_id: v.dag_id.to_string(),
        version_number: v.version_number,
        spec_hash: v.spec_hash,
        created_at: v.created_at,
        spec: Some(v.spec),
    }))
}

/// The source of a DAG file (Airflow's `DAGSourceResponse`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DagSource {
    pub dag_id: String,
    pub fileloc: Option<String>,
    /// The file's text as it is on disk now (pave keeps the serialized DAG
    /// of every version, not the file text of every version).
    pub content: String,
    pub version_number: Option<u32>,
}

/// Get the source file of a DAG.
#[utoipa::path(get, path = "/dagSources/{dag_id}", tag = "DAG",
    params(("dag_id" = String, Path, description = "The DAG id")),
    responses((status = 200, body = DagSource),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_source(
    State(state): State<RestState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<DagSource>> {
    let d = known_dag(&state, &dag_id).await?;
    let Some(fileloc) = d.fileloc.clone() else {
        return Err(Problem::not_found(format!(
            "DAG `{dag_id}` has no recorded file"
        )));
    };
    // The file path comes from the DAG processor, never from the request.
    let content = tokio::fs::read_to_string(&fileloc).await.map_err(|e| {
        Problem::not_found(format!(
            "the file of DAG `{dag_id}` ({fileloc}) cannot be read: {e}"
        ))
    })?;
    let version_number = match d.latest_version {
        Some(v) => Some(state.version_number(v).await?),
        None => None,
    };
    Ok(Json(DagSource {
        dag_id: d.dag_id.to_string(),
        fileloc: Some(fileloc),
        content,
        version_number,
    }))
}
