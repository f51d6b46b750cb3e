//! `Store::apply` for SQLite: the changes of a batch on the batch's
//! transaction.
//!
//! Task-instance updates and try rows are the bulk of the traffic (queueing
//! 500 task instances is 1,000 changes), and one statement per change would
//! pay a round trip to SQLite's worker thread each time. So they are
//! gathered and written as one statement per table, their rows travelling
//! as one JSON array that the statement reads with `jsonb_each` (which hands
//! each row over as JSONB, so reading its cells parses nothing again).
//!
//! Gathering must not change what the batch means. Changes to different
//! tables commute: a state change, a try row, an XCom and a run state never
//! depend on each other within a batch. Changes to the same row do not, so
//! a pending group is written out before a second change to a row it holds.
//! Creating a run and expanding a mapped task create (and delete) task
//! instances, so every pending group is written out before them. Every
//! statement is static, prepared once per connection and reused.

use super::conv::{is_foreign_key_violation, is_unique_violation, json_text, ts, ts_opt};
use super::{runs, xcom};
use crate::batch::{BatchOutcome, Change, ChangeBatch, Field, TiChange};
use crate::error::{Result, StoreError};
use crate::records::{RunKey, TiKey, TryRecord};
use chrono::{DateTime, Utc};
use pave_core::{MapIndex, TaskId, TaskState, TryNumber};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::SqliteConnection;
use std::collections::HashSet;

pub(super) async fn apply(conn: &mut SqliteConnection, batch: ChangeBatch) -> Result<BatchOutcome> {
    let now = batch.now;
    let mut outcome = BatchOutcome::default();
    let mut pending = Pending::default();
    for change in batch.changes {
        match change {
            Change::SetTiState(c) => {
                if !pending.ti_keys.insert(c.key.clone()) {
                    pending.flush_tis(conn, now).await?;
                    pending.ti_keys.insert(c.key.clone());
                }
                pending.tis.push(c);
            }
            Change::RecordTry(t) => {
                let key = (t.ti.clone(), t.try_number);
                if !pending.try_keys.insert(key.clone()) {
                    pending.flush_tries(conn, now).await?;
                    pending.try_keys.insert(key);
                }
                pending.tries.push(t);
            }
            Change::PutXcom(x) => xcom::put_xcom(conn, now, &x).await?,
            Change::RequireLive { ti, try_number } => {
                if pending.ti_keys.contains(&ti) {
                    pending.flush_tis(conn, now).await?;
                }
                require_live(conn, &ti, try_number).await?;
            }
            Change::SetRunState(c) => runs::set_run_state(conn, now, &c).await?,
            Change::CreateRun(run) => {
                pending.flush(conn, now).await?;
                let key = runs::create_run(conn, now, run).await?;
                outcome.created_runs.push(key);
            }
            Change::ExpandMapped {
                run,
                task_id,
                count,
            } => {
                pending.flush(conn, now).await?;
                expand_mapped(conn, now, run, &task_id, count).await?;
            }
        }
    }
    pending.flush(conn, now).await?;
    Ok(outcome)
}

/// Gathered changes not yet written, with the rows they touch.
#[derive(Default)]
struct Pending {
    tis: Vec<TiChange>,
    ti_keys: HashSet<TiKey>,
    tries: Vec<TryRecord>,
    try_keys: HashSet<(TiKey, TryNumber)>,
}

impl Pending {
    async fn flush(&mut self, conn: &mut SqliteConnection, now: DateTime<Utc>) -> Result<()> {
        self.flush_tis(conn, now).await?;
        self.flush_tries(conn, now).await
    }
    async fn flush_tis(&mut self, conn: &mut SqliteConnection, now: DateTime<Utc>) -> Result<()> {
        if !self.tis.is_empty() {
            set_ti_states(conn, now, &self.tis).await?;
        }
        self.tis.clear();
        self.ti_keys.clear();
        Ok(())
    }
    async fn flush_tries(&mut self, conn: &mut SqliteConnection, now: DateTime<Utc>) -> Result<()> {
        if !self.tries.is_empty() {
            record_tries(conn, now, &self.tries).await?;
        }
        self.tries.clear();
        self.try_keys.clear();
        Ok(())
    }
}

/// A `Field` as two JSON row cells: whether to write, and what (null clears).
fn cells<T>(f: &Field<T>, encode: impl Fn(&T) -> Value) -> [Value; 2] {
    match f.as_update() {
        None => [Value::Bool(false), Value::Null],
        Some(v) => [Value::Bool(true), v.map_or(Value::Null, encode)],
    }
}

fn time_cell(t: &DateTime<Utc>) -> Value {
    Value::from(ts(*t))
}

/// A JSON document stored as TEXT travels as a JSON string.
fn json_cell<T: Serialize>(v: &T) -> Value {
    Value::String(json_text(v))
}

/// Applies task-instance changes with distinct keys in one statement.
async fn set_ti_states(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    group: &[TiChange],
) -> Result<()> {
    let rows: Vec<Value> = group
        .iter()
        .map(|c| {
            let mut row = vec![
                json!(c.key.run.0),
                json!(c.key.task_id.as_str()),
                json!(c.key.map_index.0),
                json!(c.state.as_str()),
                json!(c.try_number.map(|t| t.0)),
                json!(c.max_tries),
            ];
            row.extend(cells(&c.next_retry_at, time_cell));
            row.extend(cells(&c.start_date, time_cell));
            row.extend(cells(&c.end_date, time_cell));
            row.extend(cells(&c.queued_at, time_cell));
            row.extend(cells(&c.executor_handle, json_cell));
            row.extend(cells(&c.hostname, |h| json!(h)));
            row.extend(cells(&c.flow_result, json_cell));
            row.extend(cells(&c.reason, |r| json!(r)));
            row.push(json!(c.expected.map(|e| e.state.as_str())));
            row.push(json!(c.expected.and_then(|e| e.try_number).map(|t| t.0)));
            Value::Array(row)
        })
        .collect();
    let updated: Vec<(i64, String, i32)> = sqlx::query_as(
        "WITH c AS MATERIALIZED (
             SELECT j.value ->> 0 AS k_run_pk, j.value ->> 1 AS k_task_id,
                    j.value ->> 2 AS k_map_index, j.value ->> 3 AS n_state,
                    j.value ->> 4 AS n_try_number, j.value ->> 5 AS n_max_tries,
                    j.value ->> 6 AS s_next_retry_at, j.value ->> 7 AS n_next_retry_at,
                    j.value ->> 8 AS s_start_date, j.value ->> 9 AS n_start_date,
                    j.value ->> 10 AS s_end_date, j.value ->> 11 AS n_end_date,
                    j.value ->> 12 AS s_queued_at, j.value ->> 13 AS n_queued_at,
                    j.value ->> 14 AS s_executor_handle, j.value ->> 15 AS n_executor_handle,
                    j.value ->> 16 AS s_hostname, j.value ->> 17 AS n_hostname,
                    j.value ->> 18 AS s_flow_result, j.value ->> 19 AS n_flow_result,
                    j.value ->> 20 AS s_reason, j.value ->> 21 AS n_reason,
                    j.value ->> 22 AS e_state, j.value ->> 23 AS e_try_number
             FROM jsonb_each(?1) AS j)
         UPDATE task_instance AS ti SET
             state = c.n_state,
             try_number = COALESCE(c.n_try_number, ti.try_number),
             max_tries = COALESCE(c.n_max_tries, ti.max_tries),
             next_retry_at = CASE WHEN c.s_next_retry_at THEN c.n_next_retry_at
                                  ELSE ti.next_retry_at END,
             start_date = CASE WHEN c.s_start_date THEN c.n_start_date ELSE ti.start_date END,
             end_date = CASE WHEN c.s_end_date THEN c.n_end_date ELSE ti.end_date END,
             queued_at = CASE WHEN c.s_queued_at THEN c.n_queued_at ELSE ti.queued_at END,
             executor_handle = CASE WHEN c.s_executor_handle THEN c.n_executor_handle
                                    ELSE ti.executor_handle END,
             hostname = CASE WHEN c.s_hostname THEN c.n_hostname ELSE ti.hostname END,
             flow_result = CASE WHEN c.s_flow_result THEN c.n_flow_result
                                ELSE ti.flow_result END,
             reason = CASE WHEN c.s_reason THEN c.n_reason ELSE ti.reason END,
             updated_at = ?2
         FROM c
         WHERE ti.run_pk = c.k_run_pk AND ti.task_id = c.k_task_id
           AND ti.map_index = c.k_map_index
           AND (c.e_state IS NULL OR ti.state = c.e_state)
           AND (c.e_try_number IS NULL OR ti.try_number = c.e_try_number)
         RETURNING run_pk, task_id, map_index",
    )
    .bind(json_text(&rows))
    .bind(ts(now))
    .fetch_all(&mut *conn)
    .await?;
    if updated.len() == group.len() {
        return Ok(());
    }
    let updated: HashSet<(i64, &str, i32)> = updated
        .iter()
        .map(|(run, task, index)| (*run, task.as_str(), *index))
        .collect();
    let failed = group
        .iter()
        .find(|c| !updated.contains(&(c.key.run.0, c.key.task_id.as_str(), c.key.map_index.0)));
    match failed {
        Some(c) => Err(ti_change_failure(conn, c).await),
        None => Err(StoreError::conflict(
            "task instance changes: some did not apply",
        )),
    }
}

/// Why a task-instance change touched no row: the task instance is missing,
/// or it is not in the expected state. (The failed statement left that row
/// alone, so what is read here is what the change found.)
async fn ti_change_failure(conn: &mut SqliteConnection, c: &TiChange) -> StoreError {
    let found: std::result::Result<Option<(String, i64)>, _> = sqlx::query_as(
        "SELECT state, try_number FROM task_instance
         WHERE run_pk = ?1 AND task_id = ?2 AND map_index = ?3",
    )
    .bind(c.key.run.0)
    .bind(c.key.task_id.as_str())
    .bind(c.key.map_index.0)
    .fetch_optional(&mut *conn)
    .await;
    match found {
        Err(e) => e.into(),
        Ok(None) => StoreError::not_found(c.key.to_string()),
        Ok(Some((state, try_number))) => {
            let expected = match c.expected {
                Some(e) => match e.try_number {
                    Some(t) => format!("{} (try {t})", e.state),
                    None => e.state.to_string(),
                },
                None => "any state".to_owned(),
            };
            StoreError::conflict(format!(
                "{}: expected {expected} to move it to {}, found {state} (try {try_number})",
                c.key, c.state
            ))
        }
    }
}

/// `Change::RequireLive`: a conflict unless `ti` is queued or running in
/// try `try_number`.
async fn require_live(
    conn: &mut SqliteConnection,
    ti: &TiKey,
    try_number: TryNumber,
) -> Result<()> {
    let found: Option<(String, i64)> = sqlx::query_as(
        "SELECT state, try_number FROM task_instance
         WHERE run_pk = ?1 AND task_id = ?2 AND map_index = ?3",
    )
    .bind(ti.run.0)
    .bind(ti.task_id.as_str())
    .bind(ti.map_index.0)
    .fetch_optional(&mut *conn)
    .await?;
    match found {
        None => Err(StoreError::not_found(ti.to_string())),
        Some((state, n))
            if (state == TaskState::Queued.as_str() || state == TaskState::Running.as_str())
                && n == i64::from(try_number.0) =>
        {
            Ok(())
        }
        Some((state, n)) => Err(StoreError::conflict(format!(
            "{ti}: expected it queued or running in try {try_number}, found {state} (try {n})"
        ))),
    }
}

async fn expand_mapped(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    run: RunKey,
    task_id: &TaskId,
    count: u32,
) -> Result<()> {
    let placeholder = TiKey::new(run, task_id.clone(), MapIndex::UNMAPPED);
    if count == 0 {
        return Err(StoreError::invalid(format!(
            "expanding {placeholder} to 0 instances: an empty expansion skips the placeholder"
        )));
    }
    let inserted = sqlx::query(
        "INSERT INTO task_instance (run_pk, task_id, map_index, dag_id, state, try_number,
             max_tries, pool, pool_slots, priority_weight, updated_at)
         WITH RECURSIVE idx (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM idx WHERE i + 1 < ?3)
         SELECT p.run_pk, p.task_id, idx.i, p.dag_id, 'none', 0, p.max_tries, p.pool,
                p.pool_slots, p.priority_weight, ?4
         FROM task_instance p, idx
         WHERE p.run_pk = ?1 AND p.task_id = ?2 AND p.map_index = -1",
    )
    .bind(run.0)
    .bind(task_id.as_str())
    .bind(i64::from(count))
    .bind(ts(now))
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(done) if done.rows_affected() == u64::from(count) => {}
        Ok(_) => {
            // No placeholder. Either it was expanded already, or it never existed.
            let mapped: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM task_instance WHERE run_pk = ?1 AND task_id = ?2",
            )
            .bind(run.0)
            .bind(task_id.as_str())
            .fetch_one(&mut *conn)
            .await?;
            return Err(if mapped > 0 {
                StoreError::conflict(format!(
                    "{placeholder}: already expanded into {mapped} instances"
                ))
            } else {
                StoreError::not_found(placeholder.to_string())
            });
        }
        // Instances 0..n exist next to the placeholder (a bug upstream).
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::conflict(format!(
                "{placeholder}: mapped instances exist already"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    sqlx::query("DELETE FROM task_instance WHERE run_pk = ?1 AND task_id = ?2 AND map_index = -1")
        .bind(run.0)
        .bind(task_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts or completes try rows with distinct keys in one statement.
async fn record_tries(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    group: &[TryRecord],
) -> Result<()> {
    let mut rows = Vec::with_capacity(group.len());
    for t in group {
        let peak = t.peak_rss_kb.map(i64::try_from).transpose().map_err(|_| {
            StoreError::invalid(format!(
                "try {} of {}: peak_rss_kb out of range",
                t.try_number, t.ti
            ))
        })?;
        rows.push(json!([
            t.ti.run.0,
            t.ti.task_id.as_str(),
            t.ti.map_index.0,
            t.try_number.0,
            t.state.as_str(),
            ts_opt(t.start_date),
            ts_opt(t.end_date),
            t.exit_code,
            peak,
            t.hostname,
            t.executor_handle.as_ref().map(json_text),
            t.reason,
            t.log_path,
        ]));
    }
    // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT.
    let done = sqlx::query(
        "INSERT INTO task_instance_try (run_pk, task_id, map_index, try_number, state,
             start_date, end_date, exit_code, peak_rss_kb, hostname, executor_handle, reason,
             log_path, updated_at)
         SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4,
                j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9,
                j.value ->> 10, j.value ->> 11, j.value ->> 12, ?2
         FROM jsonb_each(?1) AS j WHERE true
         ON CONFLICT (run_pk, task_id, map_index, try_number) DO UPDATE SET
             state = excluded.state,
             start_date = COALESCE(excluded.start_date, start_date),
             end_date = COALESCE(excluded.end_date, end_date),
             exit_code = COALESCE(excluded.exit_code, exit_code),
             peak_rss_kb = COALESCE(excluded.peak_rss_kb, peak_rss_kb),
             hostname = COALESCE(excluded.hostname, hostname),
             executor_handle = COALESCE(excluded.executor_handle, executor_handle),
             reason = COALESCE(excluded.reason, reason),
             log_path = COALESCE(excluded.log_path, log_path),
             updated_at = excluded.updated_at",
    )
    .bind(json_text(&rows))
    .bind(ts(now))
    .execute(&mut *conn)
    .await;
    match done {
        Ok(_) => Ok(()),
        Err(e) if is_foreign_key_violation(&e) => {
            // Which run is missing?
            for t in group {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM dag_run WHERE id = ?1")
                        .bind(t.ti.run.0)
                        .fetch_optional(&mut *conn)
                        .await?;
                if exists.is_none() {
                    return Err(StoreError::not_found(t.ti.run.to_string()));
                }
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}
