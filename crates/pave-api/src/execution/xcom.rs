//! `GET /xcom/{task_id}` and `PUT /xcom/{key}`: reading XComs of the
//! attempt's run, and writing XComs of the attempt's own task instance.

use super::{Attempt, ExecutionState, envelope};
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use pave_core::{MapIndex, TaskId};
use pave_store::{Change, ChangeBatch, NewXcom, RunRecord, StoreError, TaskSelection, TiKey};
use serde::Deserialize;
use serde_json::{Value, json};

/// The default key, where a task's return value goes.
const RETURN_VALUE: &str = "return_value";

#[derive(Debug, Deserialize)]
pub(super) struct XcomQuery {
    key: Option<String>,
    map_index: Option<i32>,
}

/// `GET /xcom/{task_id}?key=return_value[&map_index=N]` → `{"value": V}`.
pub(super) async fn get_xcom(
    State(state): State<ExecutionState>,
    attempt: Attempt,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<XcomQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let task_id = TaskId::new(valid_name(name, "task id")?);
    let Query(query) = query.map_err(|e| {
        ApiError::BadRequest(format!(
            "{}; use ?key=KEY&map_index=N (both optional)",
            e.body_text()
        ))
    })?;
    let key = match query.key {
        Some(k) => check_name(k, "XCom key")?,
        None => RETURN_VALUE.to_owned(),
    };
    let run = state.store().get_run(attempt.scope.run).await?;
    let loaded = state.dag(run.dag_version_id).await?;
    let task = loaded.dag.task(task_id.as_str()).ok_or_else(|| {
        ApiError::NotFound(format!(
            "DAG `{}` has no task `{task_id}`",
            loaded.dag.dag_id
        ))
    })?;
    let value = match (query.map_index, task.mapping.is_some()) {
        (Some(index), _) => one_value(&state, &run, &task_id, MapIndex(index), &key).await?,
        (None, false) => one_value(&state, &run, &task_id, MapIndex::UNMAPPED, &key).await?,
        // Airflow's `xcom_pull` of a mapped task: every instance's value.
        (None, true) => {
            let mut found: Vec<(MapIndex, Value)> = state
                .store()
                .list_xcoms(run.key, &TaskSelection::Only(vec![task_id.clone()]))
                .await?
                .into_iter()
                .filter(|x| x.key == key && !x.ti.map_index.is_unmapped())
                .map(|x| (x.ti.map_index, x.value))
                .collect();
            if found.is_empty() {
                return Err(ApiError::NotFound(format!(
                    "no XCom `{key}` of mapped task `{task_id}` in run `{}`: none of its instances pushed one",
                    run.run_id
                )));
            }
            found.sort_by_key(|(index, _)| *index);
            Value::Array(found.into_iter().map(|(_, v)| v).collect())
        }
    };
    Ok(Json(json!({ "value": value })))
}

async fn one_value(
    state: &ExecutionState,
    run: &RunRecord,
    task_id: &TaskId,
    map_index: MapIndex,
    key: &str,
) -> Result<Value, ApiError> {
    let ti = TiKey::new(run.key, task_id.clone(), map_index);
    match state.store().get_xcom(&ti, key).await {
        Ok(x) => Ok(x.value),
        Err(StoreError::NotFound { .. }) => {
            let instance = if map_index.is_unmapped() {
                String::new()
            } else {
                format!(" (map index {map_index})")
            };
            Err(ApiError::NotFound(format!(
                "no XCom `{key}` of task `{task_id}`{instance} in run `{}`",
                run.run_id
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// `PUT /xcom/{key}` with `{"value": V}` → 204.
pub(super) async fn put_xcom(
    State(state): State<ExecutionState>,
    attempt: Attempt,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let key = valid_name(name, "XCom key")?;
    let value = envelope(&state, body, "value", "{\"value\": 42}")?;
    pave_scheduler::result::check_xcom_size(
        attempt.scope.task_id.as_str(),
        &key,
        &value,
        state.limits().xcom_max_bytes,
    )
    .map_err(|e| ApiError::TooLarge(e.to_string()))?;
    if key == RETURN_VALUE && attempt.scope.map_index.is_unmapped() {
        check_mapping_source(&state, &attempt, &value).await?;
    }
    let ti = attempt.scope.ti_key();
    let mut batch = ChangeBatch::new(state.clock().now());
    // Store the value only if the attempt is still live when it commits: a
    // report of its end may have landed since the request was checked. Live
    // is queued or running in the token's try: the scheduler may write
    // `running` a little after the task started (it carries that write
    // with its next transaction), and a task calls only once started.
    batch.push(Change::RequireLive {
        ti: ti.clone(),
        try_number: attempt.scope.try_number,
    });
    batch.push(NewXcom { ti, key, value });
    match state.store().apply(batch).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::Conflict { .. }) => Err(ApiError::Conflict(format!(
            "the attempt is no longer running (it ended while its XCom was being stored; try {})",
            attempt.scope.try_number
        ))),
        Err(e) => Err(e.into()),
    }
}

/// A task that a mapped task expands over must push a list or a dict of at
/// most `max_map_length` items: refuse anything else now, with the reason,
/// rather than fail the mapped task later.
async fn check_mapping_source(
    state: &ExecutionState,
    attempt: &Attempt,
    value: &Value,
) -> Result<(), ApiError> {
    let run = state.store().get_run(attempt.scope.run).await?;
    let loaded = state.dag(run.dag_version_id).await?;
    let Some(task) = loaded.dag.task(attempt.scope.task_id.as_str()) else {
        return Ok(());
    };
    pave_core::decide::check_mapping_source_push(
        &loaded.dag,
        task,
        Some(value),
        state.limits().max_map_length,
    )
    .map_err(ApiError::Unprocessable)
}

/// A path with an empty task id or key.
pub(super) async fn empty_name(_attempt: Attempt, method: Method) -> ApiError {
    let what = if method == Method::PUT {
        "PUT /xcom/{key} needs an XCom key"
    } else {
        "GET /xcom/{task_id} needs a task id"
    };
    ApiError::BadRequest(format!("{what}; the path has none"))
}

fn valid_name(name: Result<Path<String>, PathRejection>, what: &str) -> Result<String, ApiError> {
    let Path(name) =
        name.map_err(|e| ApiError::BadRequest(format!("bad {what}: {}", e.body_text())))?;
    check_name(name, what)
}

fn check_name(name: String, what: &str) -> Result<String, ApiError> {
    match pave_core::ids::xcom_name_problem(&name) {
        Some(p) => Err(ApiError::BadRequest(format!(
            "the {what} `{}` {p}; use a non-empty name without `/`",
            name.escape_debug()
        ))),
        None => Ok(name),
    }
}
