//! XComs in SQLite.

use super::conv::{corrupt_row, is_foreign_key_violation, json, json_text, time, ts, unsigned};
use crate::error::{Result, StoreError};
use crate::records::{NewXcom, RunKey, TaskSelection, TiKey, XcomRecord};
use chrono::{DateTime, Utc};
use pave_core::{MapIndex, TaskId};
use sqlx::{FromRow, SqliteConnection, SqlitePool};

#[derive(FromRow)]
pub(super) struct XcomRow {
    run_pk: i64,
    task_id: String,
    map_index: i32,
    key: String,
    value: String,
    size_bytes: i64,
    updated_at: i64,
}

impl XcomRow {
    pub(super) fn into_record(self) -> Result<XcomRecord> {
        let ti = TiKey {
            run: RunKey(self.run_pk),
            task_id: TaskId(self.task_id),
            map_index: MapIndex(self.map_index),
        };
        let row = format!("xcom `{}` of {ti}", self.key);
        let decoded = (|| {
            Ok(XcomRecord {
                value: json("value", &self.value)?,
                size_bytes: unsigned("size_bytes", self.size_bytes)?,
                updated_at: time("updated_at", self.updated_at)?,
                ti,
                key: self.key,
            })
        })();
        corrupt_row(row, decoded)
    }
}

pub(super) async fn get_xcom(pool: &SqlitePool, ti: &TiKey, key: &str) -> Result<XcomRecord> {
    let row: Option<XcomRow> = sqlx::query_as(
        "SELECT run_pk, task_id, map_index, key, value, size_bytes, updated_at
         FROM xcom WHERE run_pk = ?1 AND task_id = ?2 AND map_index = ?3 AND key = ?4",
    )
    .bind(ti.run.0)
    .bind(ti.task_id.as_str())
    .bind(ti.map_index.0)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::not_found(format!("xcom `{key}` of {ti}")))?
        .into_record()
}

pub(super) async fn list_xcoms(
    pool: &SqlitePool,
    run: RunKey,
    tasks: &TaskSelection,
) -> Result<Vec<XcomRecord>> {
    let rows: Vec<XcomRow> = match tasks {
        TaskSelection::All => {
            sqlx::query_as(
                "SELECT run_pk, task_id, map_index, key, value, size_bytes, updated_at
                 FROM xcom WHERE run_pk = ?1 ORDER BY task_id, map_index, key",
            )
            .bind(run.0)
            .fetch_all(pool)
            .await?
        }
        TaskSelection::Only(ids) => {
            let ids = json_text(&ids.iter().map(TaskId::as_str).collect::<Vec<_>>());
            sqlx::query_as(
                "SELECT run_pk, task_id, map_index, key, value, size_bytes, updated_at
                 FROM xcom
                 WHERE run_pk = ?1 AND task_id IN (SELECT value FROM json_each(?2))
                 ORDER BY task_id, map_index, key",
            )
            .bind(run.0)
            .bind(ids)
            .fetch_all(pool)
            .await?
        }
    };
    rows.into_iter().map(XcomRow::into_record).collect()
}

pub(super) async fn put_xcom(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    xcom: &NewXcom,
) -> Result<()> {
    let value = json_text(&xcom.value);
    let size = i64::try_from(value.len()).unwrap_or(i64::MAX);
    let done = sqlx::query(
        "INSERT INTO xcom (run_pk, task_id, map_index, key, value, size_bytes, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (run_pk, task_id, map_index, key) DO UPDATE
         SET value = excluded.value, size_bytes = excluded.size_bytes,
             updated_at = excluded.updated_at",
    )
    .bind(xcom.ti.run.0)
    .bind(xcom.ti.task_id.as_str())
    .bind(xcom.ti.map_index.0)
    .bind(xcom.key.as_str())
    .bind(value)
    .bind(size)
    .bind(ts(now))
    .execute(&mut *conn)
    .await;
    match done {
        Ok(_) => Ok(()),
        Err(e) if is_foreign_key_violation(&e) => Err(StoreError::not_found(xcom.ti.to_string())),
        Err(e) => Err(e.into()),
    }
}
