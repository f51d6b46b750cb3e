//! "Why is this not running yet?": what a task instance that has not
//! started waits for, from the scheduler's recorded `reason`, the DAG's
//! pause switch, the run's state, retry timing, upstream states under the
//! task's trigger rule, and its pool's occupancy.

use crate::UiState;
use crate::error::UiError;
use crate::format;
use pave_core::{Task, TaskState, TriggerRule};
use pave_store::{RunRecord, TiRecord};
use serde::Serialize;

/// One thing a task instance waits for.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Blocker {
    /// `paused`, `run`, `reason`, `retry`, `upstream`, `pool` or `queued`.
    pub kind: &'static str,
    pub text: String,
}

fn waiting(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::NoStatus
            | TaskState::Scheduled
            | TaskState::Queued
            | TaskState::UpForRetry
            | TaskState::UpForReschedule
            | TaskState::Deferred
    )
}

/// The blockers of `ti` (empty once it runs or has finished).
pub(crate) async fn explain(
    state: &UiState,
    run: &RunRecord,
    ti: &TiRecord,
    task: Option<&Task>,
) -> Result<Vec<Blocker>, UiError> {
    if !waiting(ti.state) {
        return Ok(Vec::new());
    }
    let store = state.rest.core_store();
    let now = state.rest.now();
    let mut out = Vec::new();
    if store.get_dag(&run.dag_id).await?.is_paused {
        out.push(Blocker {
            kind: "paused",
            text: format!(
                "DAG `{}` is paused: nothing of it is scheduled until it is unpaused",
                run.dag_id
            ),
        });
    }
    if run.state == pave_core::RunState::Queued {
        out.push(Blocker {
            kind: "run",
            text: "the run is queued: it starts when the DAG has fewer than `max_active_runs` runs running"
                .into(),
        });
    }
    if let Some(r) = ti.reason.as_deref().filter(|r| !r.is_empty()) {
        out.push(Blocker {
            kind: "reason",
            text: format!("scheduler: {r}"),
        });
    }
    if ti.state == TaskState::UpForRetry
        && let Some(at) = ti.next_retry_at
    {
        out.push(Blocker {
            kind: "retry",
            text: format!(
                "try {} failed; the next try is due at {} ({})",
                ti.try_number.0,
                format::time(Some(at)),
                format::relative(at, now)
            ),
        });
    }
    if ti.state == TaskState::Queued {
        out.push(Blocker {
            kind: "queued",
            text: "queued: handed to the executor, waiting for its process to start".into(),
        });
    }
    if let Some(task) = task
        && !task.upstream.is_empty()
        && matches!(ti.state, TaskState::NoStatus | TaskState::Scheduled)
    {
        let tis = store.run_tis(run.key).await?;
        let mut pending = Vec::new();
        for up in &task.upstream {
            let states: Vec<TaskState> = tis
                .iter()
                .filter(|t| t.key.task_id == *up)
                .map(|t| t.state)
                .collect();
            let done = !states.is_empty() && states.iter().all(|s| s.is_finished());
            let ok = match task.trigger_rule {
                TriggerRule::AllSuccess => states.iter().all(|s| *s == TaskState::Success),
                _ => done,
            } && !states.is_empty();
            if !ok {
                let shown = format::summary_state(&states)
                    .map(|s| s.as_str())
                    .unwrap_or("none");
                pending.push(format!("`{up}` ({shown})"));
            }
        }
        if !pending.is_empty() {
            out.push(Blocker {
                kind: "upstream",
                text: format!(
                    "trigger rule `{}`: waiting for upstream {}",
                    task.trigger_rule.as_str(),
                    pending.join(", ")
                ),
            });
        }
    }
    if let Ok(pool) = store.get_pool(&ti.pool).await {
        let occupancy = store.occupancy().await?;
        let used = occupancy
            .pools
            .get(&pool.name)
            .map(|u| u.occupied(pool.include_deferred))
            .unwrap_or(0);
        if used + u64::from(ti.pool_slots) > u64::from(pool.slots) {
            out.push(Blocker {
                kind: "pool",
                text: format!(
                    "pool `{}` is full: {used} of {} slots taken, this task needs {}",
                    pool.name, pool.slots, ti.pool_slots
                ),
            });
        }
    }
    Ok(out)
}
