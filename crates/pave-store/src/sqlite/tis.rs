//! Reading task instances and their attempt history from SQLite.
//! (Their writes are batch changes: see `apply.rs`.)

use super::conv::{corrupt_row, json_opt, json_text, parse, time, time_opt, unsigned};
use crate::error::{Result, StoreError};
use crate::records::{Occupancy, RunKey, TiKey, TiRecord, TryRecord};
use pave_core::run::TiView;
use pave_core::{DagId, MapIndex, RunId, TaskId, TaskState, TryNumber};
use sqlx::{FromRow, SqlitePool};
use std::time::Duration;

/// The columns of `TiRow`, in a literal so `concat!` can build static SQL.
macro_rules! ti_columns {
    () => {
        "SELECT ti.run_pk, ti.task_id, ti.map_index, ti.dag_id, r.run_id, ti.state,
                ti.try_number, ti.max_tries, ti.next_retry_at, ti.start_date, ti.end_date,
                ti.duration_us, ti.pool, ti.pool_slots, ti.priority_weight, ti.queued_at,
                ti.executor_handle, ti.hostname, ti.flow_result, ti.reason, ti.updated_at"
    };
}

/// `TiRow`'s columns with the join they come from.
macro_rules! ti_select {
    () => {
        concat!(
            ti_columns!(),
            " FROM task_instance ti JOIN dag_run r ON r.id = ti.run_pk "
        )
    };
}

/// `TiRow`'s columns, for queries that add their own FROM (the REST
/// API's filtered lists in `query.rs`).
pub(super) const TI_COLUMNS: &str = ti_columns!();

/// A task-instance row with its run id, as every read of task instances
/// returns it.
#[derive(FromRow)]
pub(super) struct TiRow {
    run_pk: i64,
    task_id: String,
    map_index: i32,
    dag_id: String,
    run_id: String,
    state: String,
    try_number: i64,
    max_tries: i64,
    next_retry_at: Option<i64>,
    start_date: Option<i64>,
    end_date: Option<i64>,
    duration_us: Option<i64>,
    pool: String,
    pool_slots: i64,
    priority_weight: i64,
    queued_at: Option<i64>,
    executor_handle: Option<String>,
    hostname: Option<String>,
    flow_result: Option<String>,
    reason: Option<String>,
    updated_at: i64,
}

impl TiRow {
    pub(super) fn into_record(self) -> Result<TiRecord> {
        let key = TiKey {
            run: RunKey(self.run_pk),
            task_id: TaskId(self.task_id),
            map_index: MapIndex(self.map_index),
        };
        let decoded = (|| {
            Ok(TiRecord {
                state: parse("state", &self.state)?,
                try_number: TryNumber(unsigned("try_number", self.try_number)?),
                max_tries: unsigned("max_tries", self.max_tries)?,
                next_retry_at: time_opt("next_retry_at", self.next_retry_at)?,
                start_date: time_opt("start_date", self.start_date)?,
                end_date: time_opt("end_date", self.end_date)?,
                duration: self
                    .duration_us
                    .and_then(|us| u64::try_from(us).ok())
                    .map(Duration::from_micros),
                pool_slots: unsigned("pool_slots", self.pool_slots)?,
                queued_at: time_opt("queued_at", self.queued_at)?,
                executor_handle: json_opt("executor_handle", self.executor_handle.as_deref())?,
                flow_result: json_opt("flow_result", self.flow_result.as_deref())?,
                updated_at: time("updated_at", self.updated_at)?,
                key: key.clone(),
                dag_id: DagId(self.dag_id),
                run_id: RunId(self.run_id),
                pool: self.pool,
                priority_weight: self.priority_weight,
                hostname: self.hostname,
                reason: self.reason,
            })
        })();
        corrupt_row(key, decoded)
    }
}

pub(super) async fn get_ti(pool: &SqlitePool, key: &TiKey) -> Result<TiRecord> {
    let row: Option<TiRow> = sqlx::query_as(concat!(
        ti_select!(),
        "WHERE ti.run_pk = ?1 AND ti.task_id = ?2 AND ti.map_index = ?3"
    ))
    .bind(key.run.0)
    .bind(key.task_id.as_str())
    .bind(key.map_index.0)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::not_found(key.to_string()))?
        .into_record()
}

pub(super) async fn run_tis(pool: &SqlitePool, run: RunKey) -> Result<Vec<TiRecord>> {
    let rows: Vec<TiRow> = sqlx::query_as(concat!(
        ti_select!(),
        "WHERE ti.run_pk = ?1 ORDER BY ti.task_id, ti.map_index"
    ))
    .bind(run.0)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM dag_run WHERE id = ?1")
            .bind(run.0)
            .fetch_optional(pool)
            .await?;
        if exists.is_none() {
            return Err(StoreError::not_found(run.to_string()));
        }
    }
    rows.into_iter().map(TiRow::into_record).collect()
}

pub(super) async fn runs_tis(pool: &SqlitePool, runs: &[RunKey]) -> Result<Vec<TiRecord>> {
    let ids: Vec<i64> = runs.iter().map(|r| r.0).collect();
    let rows: Vec<TiRow> = sqlx::query_as(concat!(
        ti_select!(),
        "WHERE ti.run_pk IN (SELECT value FROM json_each(?1))
         ORDER BY ti.run_pk, ti.task_id, ti.map_index"
    ))
    .bind(serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned()))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(TiRow::into_record).collect()
}

/// The columns `decide` reads, without the join and the handle.
#[derive(FromRow)]
struct TiViewRow {
    task_id: String,
    map_index: i32,
    state: String,
    try_number: i64,
    next_retry_at: Option<i64>,
    flow_result: Option<String>,
}

pub(super) async fn run_ti_views(pool: &SqlitePool, run: RunKey) -> Result<Vec<TiView>> {
    let rows: Vec<TiViewRow> = sqlx::query_as(
        "SELECT task_id, map_index, state, try_number, next_retry_at, flow_result
         FROM task_instance WHERE run_pk = ?1 ORDER BY task_id, map_index",
    )
    .bind(run.0)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM dag_run WHERE id = ?1")
            .bind(run.0)
            .fetch_optional(pool)
            .await?;
        if exists.is_none() {
            return Err(StoreError::not_found(run.to_string()));
        }
    }
    rows.into_iter()
        .map(|r| {
            let key = TiKey {
                run,
                task_id: TaskId(r.task_id),
                map_index: MapIndex(r.map_index),
            };
            let decoded = (|| {
                Ok(TiView {
                    state: parse("state", &r.state)?,
                    try_number: unsigned("try_number", r.try_number)?,
                    next_retry_at: time_opt("next_retry_at", r.next_retry_at)?,
                    flow_result: json_opt("flow_result", r.flow_result.as_deref())?,
                    task_id: key.task_id.clone(),
                    map_index: key.map_index,
                })
            })();
            corrupt_row(key, decoded)
        })
        .collect()
}

pub(super) async fn active_run_tis(
    pool: &SqlitePool,
    states: &[TaskState],
) -> Result<Vec<TiRecord>> {
    let states = json_text(&states.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let rows: Vec<TiRow> = sqlx::query_as(concat!(
        ti_select!(),
        "WHERE ti.state IN (SELECT value FROM json_each(?1))
           AND r.state IN ('queued', 'running')
         ORDER BY ti.run_pk, ti.task_id, ti.map_index"
    ))
    .bind(states)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(TiRow::into_record).collect()
}

#[derive(FromRow)]
struct OccupancyRow {
    pool: String,
    dag_id: String,
    task_id: String,
    state: String,
    n: i64,
    slots: i64,
}

pub(super) async fn occupancy(pool: &SqlitePool) -> Result<Occupancy> {
    // The WHERE clause matches the partial index `task_instance_occupying`.
    let rows: Vec<OccupancyRow> = sqlx::query_as(
        "SELECT pool, dag_id, task_id, state, COUNT(*) AS n, SUM(pool_slots) AS slots
         FROM task_instance
         WHERE state IN ('queued', 'running', 'restarting', 'deferred')
         GROUP BY pool, dag_id, task_id, state",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Occupancy::default();
    for row in rows {
        let what = format!("occupancy of pool `{}`", row.pool);
        let state: TaskState = corrupt_row(&what, parse("state", &row.state))?;
        let n: u32 = corrupt_row(&what, unsigned("count", row.n))?;
        let slots: u64 = corrupt_row(&what, unsigned("pool_slots", row.slots))?;
        let pool_use = out.pools.entry(row.pool).or_default();
        match state {
            TaskState::Queued => pool_use.queued_slots += slots,
            TaskState::Deferred => pool_use.deferred_slots += slots,
            _ => pool_use.running_slots += slots,
        }
        if state.is_active() {
            *out.dags.entry(DagId(row.dag_id.clone())).or_default() += n;
            *out.tasks
                .entry((DagId(row.dag_id), TaskId(row.task_id)))
                .or_default() += n;
        }
    }
    Ok(out)
}

#[derive(FromRow)]
struct TryRow {
    run_pk: i64,
    task_id: String,
    map_index: i32,
    try_number: i64,
    state: String,
    start_date: Option<i64>,
    end_date: Option<i64>,
    exit_code: Option<i32>,
    peak_rss_kb: Option<i64>,
    hostname: Option<String>,
    executor_handle: Option<String>,
    reason: Option<String>,
    log_path: Option<String>,
}

impl TryRow {
    fn into_record(self) -> Result<TryRecord> {
        let ti = TiKey {
            run: RunKey(self.run_pk),
            task_id: TaskId(self.task_id),
            map_index: MapIndex(self.map_index),
        };
        let row = format!("try {} of {ti}", self.try_number);
        let decoded = (|| {
            Ok(TryRecord {
                try_number: TryNumber(unsigned("try_number", self.try_number)?),
                state: parse("state", &self.state)?,
                start_date: time_opt("start_date", self.start_date)?,
                end_date: time_opt("end_date", self.end_date)?,
                peak_rss_kb: self
                    .peak_rss_kb
                    .map(|v| unsigned("peak_rss_kb", v))
                    .transpose()?,
                executor_handle: json_opt("executor_handle", self.executor_handle.as_deref())?,
                ti,
                exit_code: self.exit_code,
                hostname: self.hostname,
                reason: self.reason,
                log_path: self.log_path,
            })
        })();
        corrupt_row(row, decoded)
    }
}

pub(super) async fn list_tries(pool: &SqlitePool, ti: &TiKey) -> Result<Vec<TryRecord>> {
    let rows: Vec<TryRow> = sqlx::query_as(
        // A try row is written when the try is queued and completed when it
        // ends; in between, the task instance holds the live state of its
        // current try (running, its start and handle), read through here.
        "SELECT t.run_pk, t.task_id, t.map_index, t.try_number,
                CASE WHEN live.id IS NOT NULL THEN live.state ELSE t.state END AS state,
                COALESCE(t.start_date, live.start_date) AS start_date, t.end_date,
                t.exit_code, t.peak_rss_kb, COALESCE(t.hostname, live.hostname) AS hostname,
                COALESCE(t.executor_handle, live.executor_handle) AS executor_handle,
                CASE WHEN live.id IS NOT NULL THEN live.reason ELSE t.reason END AS reason,
                t.log_path
         FROM task_instance_try AS t
         LEFT JOIN task_instance AS live
           ON live.run_pk = t.run_pk AND live.task_id = t.task_id
          AND live.map_index = t.map_index AND live.try_number = t.try_number
          AND t.end_date IS NULL AND t.state = 'queued'
          AND live.state IN ('running', 'restarting', 'deferred')
         WHERE t.run_pk = ?1 AND t.task_id = ?2 AND t.map_index = ?3
         ORDER BY t.try_number",
    )
    .bind(ti.run.0)
    .bind(ti.task_id.as_str())
    .bind(ti.map_index.0)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(TryRow::into_record).collect()
}
