//! `GET /ti/context` and `POST /render`: the attempt's template context, as
//! data and as rendered Jinja.
//!
//! Both are built by the scheduler's own `attempt::context` (params with
//! the run's conf applied, resolved and mapped arguments), so a Python task
//! sees exactly what a command task's template would.

use super::{Attempt, ExecutionState, envelope};
use crate::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use pave_core::TaskId;
use pave_core::model::{Arg, Task};
use pave_core::run::XcomMap;
use pave_core::template::{self, TemplateContext};
use pave_scheduler::attempt;
use pave_scheduler::dags::LoadedDag;
use pave_store::{RunRecord, TaskSelection};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// The body of `GET /ti/context` (built by the scheduler, which also sends
/// it with a Python attempt: `PAVE_TASK_CONTEXT`).
pub use pave_scheduler::attempt::TiContext;

/// `GET /ti/context`.
pub(super) async fn get_context(
    State(state): State<ExecutionState>,
    attempt: Attempt,
) -> Result<Json<TiContext>, ApiError> {
    let (run, loaded) = load(&state, &attempt).await?;
    let task = task_of(&loaded, &attempt)?;
    let xcoms = run_xcoms(&state, &run, attempt::xcom_sources(task)).await?;
    let ctx = template_context(&loaded, task, &run, &attempt, &xcoms)?;
    attempt::ti_context(&loaded.dag, task, &run, ctx, &xcoms)
        .map(Json)
        .map_err(ApiError::Internal)
}

#[derive(Serialize)]
pub(super) struct Rendered {
    rendered: String,
}

/// `POST /render` with `{"template": "..."}`.
pub(super) async fn render(
    State(state): State<ExecutionState>,
    attempt: Attempt,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Rendered>, ApiError> {
    let template = match envelope(&state, body, "template", "{\"template\": \"{{ ds }}\"}")? {
        Value::String(s) => s,
        other => {
            return Err(ApiError::BadRequest(format!(
                "`template` must be a string, got {}",
                kind(&other)
            )));
        }
    };
    let (run, loaded) = load(&state, &attempt).await?;
    let task = task_of(&loaded, &attempt)?;
    // `ti.xcom_pull` may read any task of the run; otherwise only the
    // task's own arguments need XComs (as the scheduler decides it).
    let xcoms = if template.contains("xcom_pull") {
        load_xcoms(&state, &run, TaskSelection::All).await?
    } else {
        run_xcoms(&state, &run, argument_sources(task)).await?
    };
    let ctx = template_context(&loaded, task, &run, &attempt, &xcoms)?;
    let rendered =
        template::render(&template, &ctx).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    Ok(Json(Rendered { rendered }))
}

async fn load(
    state: &ExecutionState,
    attempt: &Attempt,
) -> Result<(RunRecord, Arc<LoadedDag>), ApiError> {
    let run = state.store().get_run(attempt.scope.run).await?;
    let loaded = state.dag(run.dag_version_id).await?;
    Ok((run, loaded))
}

fn task_of<'a>(loaded: &'a LoadedDag, attempt: &Attempt) -> Result<&'a Task, ApiError> {
    loaded
        .dag
        .task(attempt.scope.task_id.as_str())
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "{} of DAG `{}` has no task `{}`",
                loaded.version, loaded.dag.dag_id, attempt.scope.task_id
            ))
        })
}

fn template_context(
    loaded: &LoadedDag,
    task: &Task,
    run: &RunRecord,
    attempt: &Attempt,
    xcoms: &XcomMap,
) -> Result<TemplateContext, ApiError> {
    attempt::context(
        &loaded.dag,
        task,
        run,
        attempt.scope.map_index,
        attempt.scope.try_number.0,
        xcoms,
    )
    .map_err(|e| {
        ApiError::Internal(format!(
            "cannot resolve the arguments of task `{}`: {e}",
            task.task_id
        ))
    })
}

/// Tasks whose XComs the task's arguments (mapped or not) read.
fn argument_sources(task: &Task) -> Vec<TaskId> {
    let mut sources = attempt::xcom_sources(task);
    for arg in task.args.values() {
        if let Arg::Xcom(r) = arg {
            sources.push(r.task_id.clone());
        }
    }
    sources
}

/// The run's XComs of `tasks` (none if there are none).
async fn run_xcoms(
    state: &ExecutionState,
    run: &RunRecord,
    mut tasks: Vec<TaskId>,
) -> Result<XcomMap, ApiError> {
    if tasks.is_empty() {
        return Ok(XcomMap::new());
    }
    tasks.sort();
    tasks.dedup();
    load_xcoms(state, run, TaskSelection::Only(tasks)).await
}

async fn load_xcoms(
    state: &ExecutionState,
    run: &RunRecord,
    selection: TaskSelection,
) -> Result<XcomMap, ApiError> {
    let records = state.store().list_xcoms(run.key, &selection).await?;
    Ok(records
        .into_iter()
        .map(|x| ((x.ti.task_id, x.ti.map_index, x.key), x.value))
        .collect())
}

/// A JSON value's kind, for messages.
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
