//! XComs of a task instance: list and get.

use super::runs::known_run;
use crate::extract::QueryArgs;
use crate::params;
use crate::problem::{ApiResult, Problem};
use crate::state::RestState;
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use pave_core::{MapIndex, TaskId};
use pave_store::{RunRecord, StoreError, TiKey, XcomQuery, XcomRecord};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// An XCom entry (Airflow's `XComResponse`; `value` only when getting one).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct XcomEntry {
    pub key: String,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub map_index: i32,
    pub timestamp: DateTime<Utc>,
    /// Bytes of the value's compact JSON.
    pub size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
}

fn entry(run: &RunRecord, x: XcomRecord, with_value: bool) -> XcomEntry {
    XcomEntry {
        dag_id: run.dag_id.to_string(),
        run_id: run.run_id.to_string(),
        task_id: x.ti.task_id.to_string(),
        map_index: x.ti.map_index.0,
        timestamp: x.updated_at,
        size_bytes: x.size_bytes,
        value: with_value.then_some(x.value),
        key: x.key,
    }
}

/// A page of XCom entries.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct XcomCollection {
    pub xcom_entries: Vec<XcomEntry>,
    pub total_entries: u64,
}

/// List the XComs of a task (`~` as task id: of every task of the run).
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries", tag = "XCom",
    params(("dag_id" = String, Path, description = "The DAG id"),
           ("dag_run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id, or `~` for every task"),
           ("map_index" = Option<i32>, Query, description = "Only this map index"),
           ("xcom_key" = Option<String>, Query, description = "Only this key"),
           ("limit" = Option<u32>, Query, description = "Entries per page (default 100)"),
           ("offset" = Option<u64>, Query, description = "Entries to skip")),
    responses((status = 200, body = XcomCollection),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_xcoms(
    State(state): State<RestState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    q: QueryArgs,
) -> ApiResult<Json<XcomCollection>> {
    q.only(&["map_index", "xcom_key", "limit", "offset"])?;
    let run = known_run(&state, &dag_id, &run_id).await?;
    let task = (task_id != "~").then(|| TaskId::new(task_id.as_str()));
    if let Some(t) = &task
        && !state
            .core_store()
            .run_tis(run.key)
            .await?
            .iter()
            .any(|ti| &ti.key.task_id == t)
    {
        return Err(Problem::not_found(format!(
            "run `{run_id}` of DAG `{dag_id}` has no task instance `{task_id}`"
        )));
    }
    let page = state
        .store()
        .query_xcoms(&XcomQuery {
            run: run.key,
            task_id: task,
            map_index: q
                .parse::<i32>("map_index", "a map index (-1, 0, 1, ...)")?
                .map(MapIndex),
            key: q.text("xcom_key")?.map(str::to_owned),
            page: params::page(&q)?,
        })
        .await?;
    Ok(Json(XcomCollection {
        xcom_entries: page
            .items
            .into_iter()
            .map(|x| entry(&run, x, false))
            .collect(),
        total_entries: page.total_entries,
    }))
}

/// Get one XCom with its value.
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}", tag = "XCom",
    params(("dag_id" = String, Path, description = "The DAG id"),
           ("dag_run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id"),
           ("xcom_key" = String, Path, description = "The key, e.g. `return_value`"),
           ("map_index" = Option<i32>, Query, description = "Map index (default -1)")),
    responses((status = 200, body = XcomEntry),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_xcom(
    State(state): State<RestState>,
    Path((dag_id, run_id, task_id, key)): Path<(String, String, String, String)>,
    q: QueryArgs,
) -> ApiResult<Json<XcomEntry>> {
    q.only(&["map_index"])?;
    let map_index = q
        .parse::<i32>("map_index", "a map index (-1, 0, 1, ...)")?
        .map_or(MapIndex::UNMAPPED, MapIndex);
    let run = known_run(&state, &dag_id, &run_id).await?;
    let ti = TiKey::new(run.key, task_id.as_str(), map_index);
    let x = state
        .core_store()
        .get_xcom(&ti, &key)
        .await
        .map_err(|e| match e {
            StoreError::NotFound { .. } => Problem::not_found(format!(
                "task instance `{task_id}` (map index {map_index}) of run `{run_id}` has no XCom `{key}`"
            )),
            other => other.into(),
        })?;
    Ok(Json(entry(&run, x, true)))
}
