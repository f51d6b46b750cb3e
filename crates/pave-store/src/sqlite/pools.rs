//! Pools in SQLite.

use super::conv::{corrupt_row, unsigned};
use crate::error::{Result, StoreError};
use crate::records::PoolRecord;
use pave_core::DEFAULT_POOL;
use sqlx::{FromRow, SqlitePool};

#[derive(FromRow)]
struct PoolRow {
    name: String,
    slots: i64,
    description: Option<String>,
    include_deferred: bool,
}

impl PoolRow {
    fn into_record(self) -> Result<PoolRecord> {
        let slots = corrupt_row(
            format!("pool `{}`", self.name),
            unsigned("slots", self.slots),
        )?;
        Ok(PoolRecord {
            name: self.name,
            slots,
            description: self.description,
            include_deferred: self.include_deferred,
        })
    }
}

pub(super) async fn list_pools(pool: &SqlitePool) -> Result<Vec<PoolRecord>> {
    let rows: Vec<PoolRow> =
        sqlx::query_as("SELECT name, slots, description, include_deferred FROM pool ORDER BY name")
            .fetch_all(pool)
            .await?;
    rows.into_iter().map(PoolRow::into_record).collect()
}

pub(super) async fn get_pool(pool: &SqlitePool, name: &str) -> Result<PoolRecord> {
    let row: Option<PoolRow> = sqlx::query_as(
        "SELECT name, slots, description, include_deferred FROM pool WHERE name = ?1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::not_found(format!("pool `{name}`")))?
        .into_record()
}

pub(super) async fn put_pool(pool: &SqlitePool, record: PoolRecord) -> Result<()> {
    if record.name.is_empty() {
        return Err(StoreError::invalid("a pool needs a name"));
    }
    sqlx::query(
        "INSERT INTO pool (name, slots, description, include_deferred) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET slots = excluded.slots,
             description = excluded.description, include_deferred = excluded.include_deferred",
    )
    .bind(record.name.as_str())
    .bind(i64::from(record.slots))
    .bind(record.description.as_deref())
    .bind(record.include_deferred)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn delete_pool(pool: &SqlitePool, name: &str) -> Result<()> {
    if name == DEFAULT_POOL {
        return Err(StoreError::conflict(format!(
            "pool `{DEFAULT_POOL}` cannot be deleted (set its slots instead)"
        )));
    }
    let done = sqlx::query("DELETE FROM pool WHERE name = ?1")
        .bind(name)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::not_found(format!("pool `{name}`")));
    }
    Ok(())
}
