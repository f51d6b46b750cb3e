//! DAGs and their versions in SQLite.

use super::conv::{corrupt_row, json, json_text, time, time_opt, ts, unsigned};
use crate::error::{Result, StoreError};
use crate::records::{DagRecord, DagVersionId, DagVersionRecord, ParsedDag, UpsertedDag};
use pave_core::DagId;
use sha2::{Digest, Sha256};
use sqlx::{FromRow, SqliteConnection, SqlitePool};
use std::fmt::Write as _;

#[derive(FromRow)]
pub(super) struct DagRow {
    dag_id: String,
    is_paused: bool,
    fileloc: Option<String>,
    latest_version_id: Option<i64>,
    last_parsed_at: Option<i64>,
    created_at: i64,
}

impl DagRow {
    pub(super) fn into_record(self) -> Result<DagRecord> {
        let row = format!("dag `{}`", self.dag_id);
        corrupt_row(
            row,
            (|| {
                Ok(DagRecord {
                    last_parsed_at: time_opt("last_parsed_at", self.last_parsed_at)?,
                    created_at: time("created_at", self.created_at)?,
                    dag_id: DagId(self.dag_id),
                    is_paused: self.is_paused,
                    fileloc: self.fileloc,
                    latest_version: self.latest_version_id.map(DagVersionId),
                })
            })(),
        )
    }
}

#[derive(FromRow)]
pub(super) struct VersionRow {
    id: i64,
    dag_id: String,
    version_number: i64,
    spec_hash: String,
    spec_json: String,
    created_at: i64,
}

impl VersionRow {
    pub(super) fn into_record(self) -> Result<DagVersionRecord> {
        let row = format!("dag version #{} of dag `{}`", self.id, self.dag_id);
        corrupt_row(
            row,
            (|| {
                Ok(DagVersionRecord {
                    id: DagVersionId(self.id),
                    version_number: unsigned("version_number", self.version_number)?,
                    spec: json("spec_json", &self.spec_json)?,
                    created_at: time("created_at", self.created_at)?,
                    dag_id: DagId(self.dag_id),
                    spec_hash: self.spec_hash,
                })
            })(),
        )
    }
}

/// Hex SHA-256 of the text.
fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub(super) async fn upsert_dag(
    conn: &mut SqliteConnection,
    parsed: ParsedDag,
) -> Result<UpsertedDag> {
    let spec_json = json_text(&parsed.spec);
    let spec_hash = sha256_hex(&spec_json);
    let now = ts(parsed.parsed_at);
    sqlx::query(
        "INSERT INTO dag (dag_id, is_paused, fileloc, last_parsed_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (dag_id) DO UPDATE
         SET fileloc = excluded.fileloc, last_parsed_at = excluded.last_parsed_at",
    )
    .bind(parsed.dag_id.as_str())
    .bind(parsed.paused_at_creation)
    .bind(parsed.fileloc.as_deref())
    .bind(now)
    .execute(&mut *conn)
    .await?;

    let latest: Option<VersionRow> = sqlx::query_as(
        "SELECT id, dag_id, version_number, spec_hash, spec_json, created_at
         FROM dag_version WHERE dag_id = ?1 ORDER BY version_number DESC LIMIT 1",
    )
    .bind(parsed.dag_id.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(latest) = latest.as_ref().filter(|v| v.spec_hash == spec_hash) {
        // Identical spec: keep the version, hand back what is stored.
        let version = DagVersionRecord {
            id: DagVersionId(latest.id),
            dag_id: parsed.dag_id,
            version_number: corrupt_row(
                DagVersionId(latest.id),
                unsigned("version_number", latest.version_number),
            )?,
            spec_hash,
            spec: parsed.spec,
            created_at: corrupt_row(
                DagVersionId(latest.id),
                time("created_at", latest.created_at),
            )?,
        };
        return Ok(UpsertedDag {
            version,
            is_new_version: false,
        });
    }

    let number = latest.map_or(1, |v| v.version_number + 1);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO dag_version (dag_id, version_number, spec_hash, spec_json, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
    )
    .bind(parsed.dag_id.as_str())
    .bind(number)
    .bind(&spec_hash)
    .bind(&spec_json)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("UPDATE dag SET latest_version_id = ?1 WHERE dag_id = ?2")
        .bind(id)
        .bind(parsed.dag_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(UpsertedDag {
        version: DagVersionRecord {
            id: DagVersionId(id),
            dag_id: parsed.dag_id,
            version_number: corrupt_row(DagVersionId(id), unsigned("version_number", number))?,
            spec_hash,
            spec: parsed.spec,
            created_at: parsed.parsed_at,
        },
        is_new_version: true,
    })
}

pub(super) async fn get_dag(pool: &SqlitePool, dag_id: &DagId) -> Result<DagRecord> {
    let row: Option<DagRow> = sqlx::query_as(
        "SELECT dag_id, is_paused, fileloc, latest_version_id, last_parsed_at, created_at
         FROM dag WHERE dag_id = ?1",
    )
    .bind(dag_id.as_str())
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::not_found(format!("dag `{dag_id}`")))?
        .into_record()
}

pub(super) async fn list_dags(pool: &SqlitePool) -> Result<Vec<DagRecord>> {
    let rows: Vec<DagRow> = sqlx::query_as(
        "SELECT dag_id, is_paused, fileloc, latest_version_id, last_parsed_at, created_at
         FROM dag ORDER BY dag_id",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(DagRow::into_record).collect()
}

pub(super) async fn set_dag_paused(pool: &SqlitePool, dag_id: &DagId, paused: bool) -> Result<()> {
    let done = sqlx::query("UPDATE dag SET is_paused = ?1 WHERE dag_id = ?2")
        .bind(paused)
        .bind(dag_id.as_str())
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::not_found(format!("dag `{dag_id}`")));
    }
    Ok(())
}

pub(super) async fn get_dag_version(
    pool: &SqlitePool,
    id: DagVersionId,
) -> Result<DagVersionRecord> {
    let row: Option<VersionRow> = sqlx::query_as(
        "SELECT id, dag_id, version_number, spec_hash, spec_json, created_at
         FROM dag_version WHERE id = ?1",
    )
    .bind(id.0)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::not_found(id.to_string()))?
        .into_record()
}

/// The DAG a version belongs to, or NotFound naming the version.
pub(super) async fn version_dag(conn: &mut SqliteConnection, id: DagVersionId) -> Result<DagId> {
    let dag: Option<String> = sqlx::query_scalar("SELECT dag_id FROM dag_version WHERE id = ?1")
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    dag.map(DagId)
        .ok_or_else(|| StoreError::not_found(id.to_string()))
}
