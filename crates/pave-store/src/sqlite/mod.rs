//! The SQLite backend: pave's embedded default.
//!
//! One database file in WAL mode with `synchronous=NORMAL` (a crash may lose
//! the last transactions but never corrupts the file), foreign keys on, a
//! busy timeout and a small pool; or a private in-memory database on one
//! connection for tests and `pave dags test`. Every write transaction starts
//! with `BEGIN IMMEDIATE`, so it takes the write lock up front and waits
//! under the busy timeout instead of failing when it upgrades from a read.
//!
//! The submodules hold the SQL of one area each; this file wires them into
//! the `Store` trait.

mod apply;
mod auth;
mod conv;
mod dags;
mod jobs;
mod pools;
mod query;
mod runs;
mod tis;
mod xcom;

use crate::batch::{BatchOutcome, ChangeBatch};
use crate::error::Result;
use crate::records::*;
use crate::store::Store;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pave_core::{DagId, RunId, TaskState};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The migrations of this backend, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Where the database lives and how many connections it gets.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub location: SqliteLocation,
    /// Connections in the pool (file only; memory always uses one).
    pub max_connections: u32,
    /// How long a statement waits for another writer before failing.
    pub busy_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqliteLocation {
    /// A database file, created if missing.
    File(PathBuf),
    /// A private database that lives as long as the store.
    Memory,
}

impl SqliteOptions {
    pub fn file(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            location: SqliteLocation::File(path.into()),
            max_connections: 4,
            busy_timeout: Duration::from_secs(10),
        }
    }
    pub fn memory() -> Self {
        SqliteOptions {
            location: SqliteLocation::Memory,
            max_connections: 1,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// The SQLite implementation of `Store`.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`. Call
    /// `migrate` before first use.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::connect(SqliteOptions::file(path.as_ref())).await
    }

    /// A fresh, migrated in-memory database.
    pub async fn open_in_memory() -> Result<Self> {
        let store = Self::connect(SqliteOptions::memory()).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn connect(options: SqliteOptions) -> Result<Self> {
        let base = SqliteConnectOptions::new()
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout)
            .synchronous(SqliteSynchronous::Normal);
        let pool = match &options.location {
            SqliteLocation::File(path) => {
                let connect = base
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal);
                SqlitePoolOptions::new()
                    .max_connections(options.max_connections.max(1))
                    .connect_with(connect)
                    .await?
            }
            // One connection that never retires: the database dies with it.
            SqliteLocation::Memory => {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(base.in_memory(true))
                    .await?
            }
        };
        Ok(SqliteStore { pool })
    }

    /// A transaction that holds the write lock from its first statement.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }
    /// Waits for checked-out connections and closes the pool (with WAL, the
    /// last connection to close checkpoints the file).
    async fn close(&self) {
        self.pool.close().await;
    }

    async fn upsert_dag(&self, parsed: ParsedDag) -> Result<UpsertedDag> {
        let mut tx = self.write_tx().await?;
        let out = dags::upsert_dag(&mut tx, parsed).await?;
        tx.commit().await?;
        Ok(out)
    }
    async fn get_dag(&self, dag_id: &DagId) -> Result<DagRecord> {
        dags::get_dag(&self.pool, dag_id).await
    }
    async fn list_dags(&self) -> Result<Vec<DagRecord>> {
        dags::list_dags(&self.pool).await
    }
    async fn set_dag_paused(&self, dag_id: &DagId, paused: bool) -> Result<()> {
        dags::set_dag_paused(&self.pool, dag_id, paused).await
    }
    async fn get_dag_version(&self, id: DagVersionId) -> Result<DagVersionRecord> {
        dags::get_dag_version(&self.pool, id).await
    }

    async fn get_run(&self, run: RunKey) -> Result<RunRecord> {
        runs::get_run(&self.pool, run).await
    }
    async fn find_run(&self, dag_id: &DagId, run_id: &RunId) -> Result<RunRecord> {
        runs::find_run(&self.pool, dag_id, run_id).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        runs::list_runs(&self.pool, filter).await
    }

    async fn get_ti(&self, key: &TiKey) -> Result<TiRecord> {
        tis::get_ti(&self.pool, key).await
    }
    async fn runs_tis(&self, runs: &[RunKey]) -> Result<Vec<TiRecord>> {
        tis::runs_tis(&self.pool, runs).await
    }
    async fn run_tis(&self, run: RunKey) -> Result<Vec<TiRecord>> {
        tis::run_tis(&self.pool, run).await
    }
    async fn run_ti_views(&self, run: RunKey) -> Result<Vec<pave_core::run::TiView>> {
        tis::run_ti_views(&self.pool, run).await
    }
    async fn active_run_tis(&self, states: &[TaskState]) -> Result<Vec<TiRecord>> {
        tis::active_run_tis(&self.pool, states).await
    }
    async fn occupancy(&self) -> Result<Occupancy> {
        tis::occupancy(&self.pool).await
    }
    async fn list_tries(&self, ti: &TiKey) -> Result<Vec<TryRecord>> {
        tis::list_tries(&self.pool, ti).await
    }

    async fn get_xcom(&self, ti: &TiKey, key: &str) -> Result<XcomRecord> {
        xcom::get_xcom(&self.pool, ti, key).await
    }
    async fn list_xcoms(&self, run: RunKey, tasks: &TaskSelection) -> Result<Vec<XcomRecord>> {
        xcom::list_xcoms(&self.pool, run, tasks).await
    }

    async fn apply(&self, batch: ChangeBatch) -> Result<BatchOutcome> {
        let mut tx = self.write_tx().await?;
        let out = apply::apply(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn list_pools(&self) -> Result<Vec<PoolRecord>> {
        pools::list_pools(&self.pool).await
    }
    async fn get_pool(&self, name: &str) -> Result<PoolRecord> {
        pools::get_pool(&self.pool, name).await
    }
    async fn put_pool(&self, pool: PoolRecord) -> Result<()> {
        pools::put_pool(&self.pool, pool).await
    }
    async fn delete_pool(&self, name: &str) -> Result<()> {
        pools::delete_pool(&self.pool, name).await
    }

    async fn put_import_error(&self, error: ImportErrorRecord) -> Result<()> {
        jobs::put_import_error(&self.pool, error).await
    }
    async fn clear_import_error(&self, fileloc: &str) -> Result<()> {
        jobs::clear_import_error(&self.pool, fileloc).await
    }
    async fn list_import_errors(&self) -> Result<Vec<ImportErrorRecord>> {
        jobs::list_import_errors(&self.pool).await
    }

    async fn acquire_scheduler_lease(&self, request: LeaseRequest) -> Result<Lease> {
        let mut tx = self.write_tx().await?;
        let lease = jobs::acquire_lease(&mut tx, request).await?;
        tx.commit().await?;
        Ok(lease)
    }
    async fn heartbeat(&self, job: JobId, now: DateTime<Utc>) -> Result<()> {
        jobs::heartbeat(&self.pool, job, now).await
    }
    async fn release_scheduler_lease(&self, job: JobId, now: DateTime<Utc>) -> Result<()> {
        jobs::release_lease(&self.pool, job, now).await
    }
}
