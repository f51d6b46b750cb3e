//! What people do to runs and task instances from outside the scheduler
//! (the REST API, the UI, the CLI): clear, mark success or failed.
//!
//! Each action reads the current states, builds one `ChangeBatch` in which
//! every change expects the state it read (compare-and-set), and applies
//! it: if the scheduler or an attempt moved anything meanwhile, the whole
//! action fails with a conflict and changes nothing. Marking a running task
//! instance changes its state while its attempt runs on; when that attempt
//! ends, its report expects `running` and is ignored, so the mark stands.
//! The scheduler sees the result at its next poll (callers poke it).

use crate::error::SchedulerError;
use chrono::{DateTime, Utc};
use pave_core::{Dag, RunState, TaskState};
use pave_store::{
    ChangeBatch, Field, RunChange, RunRecord, Store, StoreError, TiChange, TiRecord, TryRecord,
};
use std::collections::BTreeSet;

/// Which task instances of a run to clear.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClearRequest {
    /// Task ids to clear; empty means every task of the run.
    pub task_ids: Vec<String>,
    /// Also clear the tasks downstream of the selected ones.
    pub include_downstream: bool,
    /// Also clear the tasks upstream of the selected ones.
    pub include_upstream: bool,
    /// Only clear failed and upstream_failed task instances.
    pub only_failed: bool,
    /// Report what would be cleared, change nothing.
    pub dry_run: bool,
}

/// The tasks of `dag` reachable from `selected` downstream and/or upstream,
/// with `selected` itself.
pub fn relatives(
    dag: &Dag,
    selected: &BTreeSet<String>,
    downstream: bool,
    upstream: bool,
) -> BTreeSet<String> {
    let mut out = selected.clone();
    let mut frontier: Vec<String> = selected.iter().cloned().collect();
    while let Some(id) = frontier.pop() {
        for t in &dag.tasks {
            let t_id = t.task_id.as_str();
            let is_down = downstream && t.upstream.iter().any(|u| u.as_str() == id);
            let is_up = upstream
                && dag
                    .task(&id)
                    .is_some_and(|me| me.upstream.iter().any(|u| u.as_str() == t_id));
            if (is_down || is_up) && out.insert(t_id.to_owned()) {
                frontier.push(t_id.to_owned());
            }
        }
    }
    out
}

/// Clears task instances of `run` so they run again (Airflow's clear): each
/// goes back to no state with its try number kept and `max_tries` raised by
/// its retries, and a finished run is queued again. Returns the task
/// instances cleared (as they were). BadRequest for an unknown task id;
/// Conflict if a selected task instance has an attempt in flight.
pub async fn clear(
    store: &dyn Store,
    run: &RunRecord,
    dag: &Dag,
    req: &ClearRequest,
    now: DateTime<Utc>,
) -> Result<Vec<TiRecord>, SchedulerError> {
    let unknown: Vec<&str> = req
        .task_ids
        .iter()
        .filter(|id| dag.task(id).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(SchedulerError::BadRequest(format!(
            "DAG `{}` has no task {}",
            dag.dag_id,
            unknown
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut selected: BTreeSet<String> = if req.task_ids.is_empty() {
        dag.tasks.iter().map(|t| t.task_id.to_string()).collect()
    } else {
        req.task_ids.iter().cloned().collect()
    };
    if req.include_downstream || req.include_upstream {
        selected = relatives(dag, &selected, req.include_downstream, req.include_upstream);
    }
    let tis = store.run_tis(run.key).await?;
    let mut batch = ChangeBatch::new(now);
    let mut cleared = Vec::new();
    for ti in tis
        .into_iter()
        .filter(|t| selected.contains(t.key.task_id.as_str()))
    {
        if req.only_failed && !matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed) {
            continue;
        }
        if ti.state.is_active() {
            return Err(StoreError::conflict(format!(
                "task instance `{}` (map index {}) is {}; wait for it to finish, or mark it, before clearing",
                ti.key.task_id, ti.key.map_index, ti.state
            ))
            .into());
        }
        let retries = dag
            .task(ti.key.task_id.as_str())
            .map_or(0, |t| t.retry.retries);
        let mut change = TiChange::new(ti.key.clone(), TaskState::NoStatus)
            .expect(ti.state)
            .max_tries(ti.try_number.0 + retries)
            .reason("cleared");
        change.end_date = Field::Clear;
        change.next_retry_at = Field::Clear;
        change.flow_result = Field::Clear;
        batch.push(change);
        cleared.push(ti);
    }
    if req.dry_run || cleared.is_empty() {
        return Ok(cleared);
    }
    if run.state.is_finished() {
        batch.push(RunChange::new(run.key, RunState::Queued).expect(run.state));
    }
    store.apply(batch).await?;
    Ok(cleared)
}

/// Sets task instances of one run to success or failed (Airflow's "mark").
///
/// Each change expects the state (and, for an attempt in flight, the try)
/// that was read. Marking success in a finished run also clears the failed
/// and upstream_failed task instances downstream of the marked ones and
/// queues the run again, so the run is decided anew, as Airflow does.
pub async fn mark_tis(
    store: &dyn Store,
    run: &RunRecord,
    dag: &Dag,
    tis: &[TiRecord],
    state: TaskState,
    note: &str,
    now: DateTime<Utc>,
) -> Result<(), SchedulerError> {
    if !matches!(state, TaskState::Success | TaskState::Failed) {
        return Err(SchedulerError::BadRequest(format!(
            "a task instance can be marked success or failed, not {state}"
        )));
    }
    let mut batch = ChangeBatch::new(now);
    for ti in tis {
        push_mark(&mut batch, ti, state, note, now);
    }
    if run.state.is_finished() && state == TaskState::Success {
        let marked: BTreeSet<String> = tis.iter().map(|t| t.key.task_id.to_string()).collect();
        let downstream = relatives(dag, &marked, true, false);
        for ti in store.run_tis(run.key).await? {
            let task = ti.key.task_id.as_str();
            if marked.contains(task) || !downstream.contains(task) {
                continue;
            }
            if matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed) {
                let retries = dag.task(task).map_or(0, |t| t.retry.retries);
                let mut change = TiChange::new(ti.key.clone(), TaskState::NoStatus)
                    .expect(ti.state)
                    .max_tries(ti.try_number.0 + retries)
                    .reason("cleared: an upstream task was marked success");
                change.end_date = Field::Clear;
                change.next_retry_at = Field::Clear;
                change.flow_result = Field::Clear;
                batch.push(change);
            }
        }
        batch.push(RunChange::new(run.key, RunState::Queued).expect(run.state));
    }
    if batch.is_empty() {
        return Ok(());
    }
    store.apply(batch).await?;
    Ok(())
}

/// Sets a whole run to success or failed (Airflow's "mark run"): success
/// marks every unfinished task instance success; failed marks those with an
/// attempt in flight failed and the ones not started skipped. The run's own
/// change expects the state that was read.
pub async fn mark_run(
    store: &dyn Store,
    run: &RunRecord,
    state: RunState,
    note: &str,
    now: DateTime<Utc>,
) -> Result<(), SchedulerError> {
    if !state.is_finished() {
        return Err(SchedulerError::BadRequest(format!(
            "a run can be marked success or failed, not {state}"
        )));
    }
    let mut batch = ChangeBatch::new(now);
    for ti in store.run_tis(run.key).await? {
        if ti.state.is_finished() {
            continue;
        }
        let to = match state {
            RunState::Success => TaskState::Success,
            _ if ti.state.is_active() => TaskState::Failed,
            _ => TaskState::Skipped,
        };
        push_mark(&mut batch, &ti, to, note, now);
    }
    batch.push(RunChange::new(run.key, state).expect(run.state));
    store.apply(batch).await?;
    Ok(())
}

/// The changes that mark one task instance: its state (compare-and-set on
/// what was read) and, for an attempt that has started, the try's row.
fn push_mark(
    batch: &mut ChangeBatch,
    ti: &TiRecord,
    state: TaskState,
    note: &str,
    now: DateTime<Utc>,
) {
    let mut change = if ti.state.is_active() {
        TiChange::new(ti.key.clone(), state).expect_attempt(ti.state, ti.try_number)
    } else {
        TiChange::new(ti.key.clone(), state).expect(ti.state)
    }
    .end_date(now)
    .reason(note);
    change.next_retry_at = Field::Clear;
    if ti.start_date.is_none() {
        change.start_date = Field::Set(now);
    }
    batch.push(change);
    if ti.state.is_active() && ti.try_number.0 > 0 {
        let mut tr = TryRecord::new(ti.key.clone(), ti.try_number, state);
        tr.end_date = Some(now);
        tr.reason = Some(note.to_owned());
        batch.push(tr);
    }
}
