//! The scheduler lease (the `job` table) and DAG import errors in SQLite.

use super::conv::{corrupt_row, parse, time, time_opt, ts, unsigned};
use crate::error::{Result, StoreError};
use crate::records::{ImportErrorRecord, JobId, JobRecord, JobState, Lease, LeaseRequest};
use chrono::{DateTime, Utc};
use sqlx::{FromRow, SqliteConnection, SqlitePool};

const SCHEDULER: &str = "scheduler";

#[derive(FromRow)]
struct JobRow {
    id: i64,
    state: String,
    hostname: String,
    pid: i64,
    start_date: i64,
    end_date: Option<i64>,
    latest_heartbeat: i64,
}

impl JobRow {
    fn into_record(self) -> Result<JobRecord> {
        let id = JobId(self.id);
        let decoded = (|| {
            Ok(JobRecord {
                id,
                state: parse("state", &self.state)?,
                pid: unsigned("pid", self.pid)?,
                start_date: time("start_date", self.start_date)?,
                end_date: time_opt("end_date", self.end_date)?,
                latest_heartbeat: time("latest_heartbeat", self.latest_heartbeat)?,
                hostname: self.hostname,
            })
        })();
        corrupt_row(id, decoded)
    }
}

pub(super) async fn acquire_lease(conn: &mut SqliteConnection, req: LeaseRequest) -> Result<Lease> {
    let holder: Option<JobRow> = sqlx::query_as(
        "SELECT id, state, hostname, pid, start_date, end_date, latest_heartbeat
         FROM job WHERE job_type = ?1 AND state = 'running'",
    )
    .bind(SCHEDULER)
    .fetch_optional(&mut *conn)
    .await?;
    let now = ts(req.now);
    let mut took_over = None;
    if let Some(holder) = holder {
        let holder = holder.into_record()?;
        let stale_after = chrono::Duration::from_std(req.stale_after)
            .map_err(|_| StoreError::invalid("lease stale_after is too large"))?;
        if holder.latest_heartbeat + stale_after > req.now {
            return Err(StoreError::conflict(format!(
                "the scheduler lease is held by {} ({} pid {}), last heartbeat at {}",
                holder.id,
                holder.hostname,
                holder.pid,
                holder.latest_heartbeat.to_rfc3339()
            )));
        }
        sqlx::query("UPDATE job SET state = 'dead', end_date = ?1 WHERE id = ?2")
            .bind(now)
            .bind(holder.id.0)
            .execute(&mut *conn)
            .await?;
        took_over = Some(JobRecord {
            state: JobState::Dead,
            end_date: Some(req.now),
            ..holder
        });
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO job (job_type, state, hostname, pid, start_date, latest_heartbeat)
         VALUES (?1, 'running', ?2, ?3, ?4, ?4) RETURNING id",
    )
    .bind(SCHEDULER)
    .bind(req.hostname.as_str())
    .bind(i64::from(req.pid))
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Lease {
        job: JobRecord {
            id: JobId(id),
            state: JobState::Running,
            hostname: req.hostname,
            pid: req.pid,
            start_date: req.now,
            end_date: None,
            latest_heartbeat: req.now,
        },
        took_over,
    })
}

async fn job_state(pool: &SqlitePool, job: JobId) -> Result<String> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM job WHERE id = ?1")
        .bind(job.0)
        .fetch_optional(pool)
        .await?;
    state.ok_or_else(|| StoreError::not_found(job.to_string()))
}

pub(super) async fn heartbeat(pool: &SqlitePool, job: JobId, now: DateTime<Utc>) -> Result<()> {
    let done =
        sqlx::query("UPDATE job SET latest_heartbeat = ?1 WHERE id = ?2 AND state = 'running'")
            .bind(ts(now))
            .bind(job.0)
            .execute(pool)
            .await?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    let state = job_state(pool, job).await?;
    Err(StoreError::conflict(format!(
        "{job} no longer holds the scheduler lease (it is {state})"
    )))
}

pub(super) async fn release_lease(pool: &SqlitePool, job: JobId, now: DateTime<Utc>) -> Result<()> {
    let done = sqlx::query(
        "UPDATE job SET state = 'ended', end_date = ?1 WHERE id = ?2 AND state = 'running'",
    )
    .bind(ts(now))
    .bind(job.0)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        // Already released or taken over: nothing to give up, but the job must exist.
        job_state(pool, job).await?;
    }
    Ok(())
}

#[derive(FromRow)]
struct ImportErrorRow {
    fileloc: String,
    timestamp: i64,
    stacktrace: String,
}

pub(super) async fn put_import_error(pool: &SqlitePool, error: ImportErrorRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO import_error (fileloc, timestamp, stacktrace) VALUES (?1, ?2, ?3)
         ON CONFLICT (fileloc) DO UPDATE
         SET timestamp = excluded.timestamp, stacktrace = excluded.stacktrace",
    )
    .bind(error.fileloc.as_str())
    .bind(ts(error.timestamp))
    .bind(error.stacktrace.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn clear_import_error(pool: &SqlitePool, fileloc: &str) -> Result<()> {
    sqlx::query("DELETE FROM import_error WHERE fileloc = ?1")
        .bind(fileloc)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn list_import_errors(pool: &SqlitePool) -> Result<Vec<ImportErrorRecord>> {
    let rows: Vec<ImportErrorRow> =
        sqlx::query_as("SELECT fileloc, timestamp, stacktrace FROM import_error ORDER BY fileloc")
            .fetch_all(pool)
            .await?;
    rows.into_iter()
        .map(|r| {
            let timestamp = corrupt_row(
                format!("import error of `{}`", r.fileloc),
                time("timestamp", r.timestamp),
            )?;
            Ok(ImportErrorRecord {
                fileloc: r.fileloc,
                timestamp,
                stacktrace: r.stacktrace,
            })
        })
        .collect()
}
