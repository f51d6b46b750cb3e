//! DAG runs in SQLite: reads, creation with the initial task instances, and
//! state changes.

use super::conv::{
    corrupt_row, is_unique_violation, json, json_text, parse, time, time_opt, ts, ts_opt,
};
use super::dags::version_dag;
use crate::batch::RunChange;
use crate::error::{Result, StoreError};
use crate::records::{DagVersionId, DataInterval, NewRun, RunFilter, RunKey, RunRecord};
use chrono::{DateTime, Utc};
use pave_core::{DagId, RunId, RunState};
use sqlx::{FromRow, SqliteConnection, SqlitePool};
use std::collections::HashSet;

/// The columns of `RunRow`, in a literal so `concat!` can build static SQL.
macro_rules! run_select {
    () => {
        "SELECT id, dag_id, run_id, dag_version_id, state, run_type, logical_date,
                data_interval_start, data_interval_end, run_after, conf, start_date,
                end_date, queued_at, note, created_at, updated_at
         FROM dag_run "
    };
}

#[derive(FromRow)]
pub(super) struct RunRow {
    id: i64,
    dag_id: String,
    run_id: String,
    dag_version_id: i64,
    state: String,
    run_type: String,
    logical_date: Option<i64>,
    data_interval_start: Option<i64>,
    data_interval_end: Option<i64>,
    run_after: i64,
    conf: String,
    start_date: Option<i64>,
    end_date: Option<i64>,
    queued_at: Option<i64>,
    note: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl RunRow {
    pub(super) fn into_record(self) -> Result<RunRecord> {
        let row = format!("run `{}` of dag `{}`", self.run_id, self.dag_id);
        corrupt_row(
            row,
            (|| {
                let data_interval = match (self.data_interval_start, self.data_interval_end) {
                    (Some(s), Some(e)) => Some(DataInterval {
                        start: time("data_interval_start", s)?,
                        end: time("data_interval_end", e)?,
                    }),
                    (None, None) => None,
                    _ => return Err("a data interval with only one end".to_owned()),
                };
                Ok(RunRecord {
                    key: RunKey(self.id),
                    dag_version_id: DagVersionId(self.dag_version_id),
                    state: parse("state", &self.state)?,
                    run_type: parse("run_type", &self.run_type)?,
                    logical_date: time_opt("logical_date", self.logical_date)?,
                    data_interval,
                    run_after: time("run_after", self.run_after)?,
                    conf: json("conf", &self.conf)?,
                    start_date: time_opt("start_date", self.start_date)?,
                    end_date: time_opt("end_date", self.end_date)?,
                    queued_at: time_opt("queued_at", self.queued_at)?,
                    created_at: time("created_at", self.created_at)?,
                    updated_at: time("updated_at", self.updated_at)?,
                    dag_id: DagId(self.dag_id),
                    run_id: RunId(self.run_id),
                    note: self.note,
                })
            })(),
        )
    }
}

pub(super) async fn get_run(pool: &SqlitePool, run: RunKey) -> Result<RunRecord> {
    let row: Option<RunRow> = sqlx::query_as(concat!(run_select!(), "WHERE id = ?1"))
        .bind(run.0)
        .fetch_optional(pool)
        .await?;
    row.ok_or_else(|| StoreError::not_found(run.to_string()))?
        .into_record()
}

pub(super) async fn find_run(
    pool: &SqlitePool,
    dag_id: &DagId,
    run_id: &RunId,
) -> Result<RunRecord> {
    let row: Option<RunRow> =
        sqlx::query_as(concat!(run_select!(), "WHERE dag_id = ?1 AND run_id = ?2"))
            .bind(dag_id.as_str())
            .bind(run_id.as_str())
            .fetch_optional(pool)
            .await?;
    row.ok_or_else(|| StoreError::not_found(format!("run `{run_id}` of dag `{dag_id}`")))?
        .into_record()
}

pub(super) async fn list_runs(pool: &SqlitePool, filter: &RunFilter) -> Result<Vec<RunRecord>> {
    // SQLite treats a negative LIMIT as none.
    let limit = filter.limit.map_or(-1, i64::from);
    let states = json_text(&filter.states.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    // One static statement per shape, so the planner can pick the index.
    let rows: Vec<RunRow> = match (&filter.dag_id, filter.states.is_empty()) {
        (Some(dag), true) => {
            sqlx::query_as(concat!(
                run_select!(),
                "WHERE dag_id = ?1 ORDER BY run_after DESC, id DESC LIMIT ?2"
            ))
            .bind(dag.as_str())
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        (Some(dag), false) => {
            sqlx::query_as(concat!(
                run_select!(),
                "WHERE dag_id = ?1 AND state IN (SELECT value FROM json_each(?2))
                 ORDER BY run_after DESC, id DESC LIMIT ?3"
            ))
            .bind(dag.as_str())
            .bind(states)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        (None, true) => {
            sqlx::query_as(concat!(
                run_select!(),
                "ORDER BY run_after DESC, id DESC LIMIT ?1"
            ))
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        (None, false) => {
            sqlx::query_as(concat!(
                run_select!(),
                "WHERE state IN (SELECT value FROM json_each(?1))
                 ORDER BY run_after DESC, id DESC LIMIT ?2"
            ))
            .bind(states)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
    rows.into_iter().map(RunRow::into_record).collect()
}

/// Inserts the run and one task instance per task (map index -1, state none).
pub(super) async fn create_run(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    run: NewRun,
) -> Result<RunKey> {
    let what = format!("run `{}` of dag `{}`", run.run_id, run.dag_id);
    let version_dag = version_dag(conn, run.dag_version_id).await?;
    if version_dag != run.dag_id {
        return Err(StoreError::invalid(format!(
            "{what}: {} belongs to dag `{version_dag}`",
            run.dag_version_id
        )));
    }
    let mut seen = HashSet::with_capacity(run.tasks.len());
    if let Some(dup) = run.tasks.iter().find(|t| !seen.insert(&t.task_id)) {
        return Err(StoreError::invalid(format!(
            "{what}: task `{}` listed twice",
            dup.task_id
        )));
    }

    let now_us = ts(now);
    let inserted = sqlx::query_scalar(
        "INSERT INTO dag_run (dag_id, run_id, dag_version_id, state, run_type, logical_date,
             data_interval_start, data_interval_end, run_after, conf, start_date, queued_at,
             created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)
         RETURNING id",
    )
    .bind(run.dag_id.as_str())
    .bind(run.run_id.as_str())
    .bind(run.dag_version_id.0)
    .bind(run.state.as_str())
    .bind(run.run_type.as_str())
    .bind(ts_opt(run.logical_date))
    .bind(run.data_interval.map(|d| ts(d.start)))
    .bind(run.data_interval.map(|d| ts(d.end)))
    .bind(ts(run.run_after))
    .bind(json_text(&run.conf))
    .bind((run.state == RunState::Running).then_some(now_us))
    .bind((run.state == RunState::Queued).then_some(now_us))
    .bind(now_us)
    .fetch_one(&mut *conn)
    .await;
    let id: i64 = match inserted {
        Ok(id) => id,
        Err(e) if is_unique_violation(&e) => {
            // Which key is taken? Ask rather than parse the message: when
            // both are, the run id is the better thing to report.
            let same_id: Option<i64> =
                sqlx::query_scalar("SELECT id FROM dag_run WHERE dag_id = ?1 AND run_id = ?2")
                    .bind(run.dag_id.as_str())
                    .bind(run.run_id.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
            return Err(StoreError::conflict(match (same_id, run.logical_date) {
                (None, Some(date)) => format!(
                    "{what}: dag `{}` already has a run with logical date {}",
                    run.dag_id,
                    date.to_rfc3339()
                ),
                _ => format!("{what} already exists"),
            }));
        }
        Err(e) => return Err(e.into()),
    };

    // All task instances in one statement: the tasks travel as one JSON
    // array of [task_id, pool, pool_slots, priority_weight, max_tries].
    let tasks: Vec<(&str, &str, u32, i64, u32)> = run
        .tasks
        .iter()
        .map(|t| {
            (
                t.task_id.as_str(),
                t.pool.as_str(),
                t.pool_slots,
                t.priority_weight,
                t.max_tries,
            )
        })
        .collect();
    sqlx::query(
        "INSERT INTO task_instance (run_pk, task_id, map_index, dag_id, state, try_number,
             max_tries, pool, pool_slots, priority_weight, updated_at)
         SELECT ?1, j.value ->> 0, -1, ?2, 'none', 0, j.value ->> 4, j.value ->> 1,
                j.value ->> 2, j.value ->> 3, ?3
         FROM jsonb_each(?4) AS j",
    )
    .bind(id)
    .bind(run.dag_id.as_str())
    .bind(now_us)
    .bind(json_text(&tasks))
    .execute(&mut *conn)
    .await?;
    Ok(RunKey(id))
}

/// Applies one run state change (see `RunChange` for the dates it sets).
pub(super) async fn set_run_state(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    change: &RunChange,
) -> Result<()> {
    let note = change.note.as_update();
    let done = sqlx::query(
        "UPDATE dag_run SET
             state = ?1,
             start_date = CASE WHEN ?1 = 'running' THEN COALESCE(start_date, ?2)
                               ELSE start_date END,
             end_date = CASE WHEN ?1 IN ('success', 'failed') THEN ?2 ELSE NULL END,
             queued_at = CASE WHEN ?1 = 'queued' THEN ?2 ELSE queued_at END,
             note = CASE WHEN ?3 THEN ?4 ELSE note END,
             updated_at = ?2
         WHERE id = ?5 AND (?6 IS NULL OR state = ?6)",
    )
    .bind(change.state.as_str())
    .bind(ts(now))
    .bind(note.is_some())
    .bind(note.flatten().map(String::as_str))
    .bind(change.run.0)
    .bind(change.expected.map(RunState::as_str))
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    let current: Option<String> = sqlx::query_scalar("SELECT state FROM dag_run WHERE id = ?1")
        .bind(change.run.0)
        .fetch_optional(&mut *conn)
        .await?;
    match (current, change.expected) {
        (None, _) => Err(StoreError::not_found(change.run.to_string())),
        (Some(found), Some(expected)) => Err(StoreError::conflict(format!(
            "{}: expected state {expected} to move it to {}, found {found}",
            change.run, change.state
        ))),
        (Some(found), None) => Err(StoreError::conflict(format!(
            "{}: update to {} did not apply (state {found})",
            change.run, change.state
        ))),
    }
}
