//! The `Store` trait: everything the rest of pave may ask of persistence.
//!
//! Backends implement it over their own SQL; callers never see SQL. Reads
//! take plain keys and filters; writes of run and task state go through
//! `apply`, one transaction per `ChangeBatch`. The conformance suite in
//! `tests/suite/` holds every backend to the same behaviour.

use crate::batch::{BatchOutcome, Change, ChangeBatch};
use crate::error::{Result, StoreError};
use crate::records::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pave_core::run::TiView;
use pave_core::{DagId, RunId, TaskState};

/// Persistent state of a pave installation. Object safe: share it as
/// `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync {
    /// Applies the backend's pending migrations. Idempotent.
    async fn migrate(&self) -> Result<()>;
    /// Closes the store's connections on a clean shutdown; later calls fail.
    async fn close(&self);

    // ------------------------------------------------------------ DAGs

    /// Records one parse of a DAG: creates the DAG (paused or not, per
    /// `paused_at_creation`) or updates its file location and parse time,
    /// and stores the spec as a new version unless it is identical to the
    /// latest one.
    async fn upsert_dag(&self, parsed: ParsedDag) -> Result<UpsertedDag>;
    /// NotFound if the DAG was never parsed.
    async fn get_dag(&self, dag_id: &DagId) -> Result<DagRecord>;
    /// Every DAG, by id.
    async fn list_dags(&self) -> Result<Vec<DagRecord>>;
    async fn set_dag_paused(&self, dag_id: &DagId, paused: bool) -> Result<()>;
    /// Corrupt if the stored spec is not valid JSON.
    async fn get_dag_version(&self, id: DagVersionId) -> Result<DagVersionRecord>;

    // ------------------------------------------------------------ runs

    async fn get_run(&self, run: RunKey) -> Result<RunRecord>;
    async fn find_run(&self, dag_id: &DagId, run_id: &RunId) -> Result<RunRecord>;
    /// Runs matching the filter, newest `run_after` first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;

    // ------------------------------------------------------------ task instances

    async fn get_ti(&self, key: &TiKey) -> Result<TiRecord>;
    /// Every task instance of a run, by task id then map index.
    /// NotFound if the run does not exist.
    async fn run_tis(&self, run: RunKey) -> Result<Vec<TiRecord>>;
    /// Every task instance of several runs in one read (a UI grid), by run
    /// then task id then map index; runs that do not exist are left out.
    async fn runs_tis(&self, runs: &[RunKey]) -> Result<Vec<TiRecord>> {
        let mut out = Vec::new();
        for run in runs {
            match self.run_tis(*run).await {
                Ok(tis) => out.extend(tis),
                Err(crate::StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
    /// What `pave_core::decide` needs of every task instance of a run, in
    /// the order of [`Store::run_tis`]: a lighter read of the same rows
    /// (the scheduler's hot path). NotFound if the run does not exist.
    async fn run_ti_views(&self, run: RunKey) -> Result<Vec<TiView>> {
        Ok(self
            .run_tis(run)
            .await?
            .into_iter()
            .map(|r| TiView {
                task_id: r.key.task_id,
                map_index: r.key.map_index,
                state: r.state,
                try_number: r.try_number.0,
                next_retry_at: r.next_retry_at,
                flow_result: r.flow_result,
            })
            .collect())
    }
    /// Task instances in any of `states`, in queued or running runs of every
    /// DAG: what admission and restart reconciliation work from.
    async fn active_run_tis(&self, states: &[TaskState]) -> Result<Vec<TiRecord>>;
    /// Slots and counts taken by active task instances.
    async fn occupancy(&self) -> Result<Occupancy>;
    /// The attempts of one task instance, by try number. The scheduler writes
    /// a try row when the try is queued and completes it when the try ends;
    /// a queued row whose task instance is now running that try reads as
    /// running, with the task instance's start date, hostname and handle.
    async fn list_tries(&self, ti: &TiKey) -> Result<Vec<TryRecord>>;

    // ------------------------------------------------------------ XComs

    async fn get_xcom(&self, ti: &TiKey, key: &str) -> Result<XcomRecord>;
    /// XComs of a run (or of some of its tasks), by task, map index and key.
    async fn list_xcoms(&self, run: RunKey, tasks: &TaskSelection) -> Result<Vec<XcomRecord>>;

    // ------------------------------------------------------------ the write path

    /// Applies every change of the batch in one transaction, or none of them.
    /// Conflict if an expectation fails or a key is taken; NotFound if a
    /// change names something that does not exist.
    async fn apply(&self, batch: ChangeBatch) -> Result<BatchOutcome>;

    // ------------------------------------------------------------ pools

    async fn list_pools(&self) -> Result<Vec<PoolRecord>>;
    async fn get_pool(&self, name: &str) -> Result<PoolRecord>;
    /// Creates the pool or replaces its settings.
    async fn put_pool(&self, pool: PoolRecord) -> Result<()>;
    /// Conflict for `default_pool`; NotFound for an unknown pool.
    async fn delete_pool(&self, name: &str) -> Result<()>;

    // ------------------------------------------------------------ import errors

    /// Records the error of the latest parse of a file, replacing an older one.
    async fn put_import_error(&self, error: ImportErrorRecord) -> Result<()>;
    /// Forgets the file's import error (it parsed cleanly); no-op if none.
    async fn clear_import_error(&self, fileloc: &str) -> Result<()>;
    async fn list_import_errors(&self) -> Result<Vec<ImportErrorRecord>>;

    // ------------------------------------------------------------ scheduler lease

    /// Takes the single-scheduler lease. Conflict if a live scheduler holds
    /// it (heartbeat newer than `stale_after`); a stale holder is marked
    /// dead and reported in `Lease::took_over`.
    async fn acquire_scheduler_lease(&self, request: LeaseRequest) -> Result<Lease>;
    /// Proves the holder is alive. Conflict if the lease was lost (taken
    /// over or released): the caller must stop scheduling.
    async fn heartbeat(&self, job: JobId, now: DateTime<Utc>) -> Result<()>;
    /// Gives the lease up on a clean shutdown. No-op if not held.
    async fn release_scheduler_lease(&self, job: JobId, now: DateTime<Utc>) -> Result<()>;

    // ------------------------------------------------------------ conveniences over `apply`

    /// Creates one run with its task instances; `apply` with one `CreateRun`.
    async fn create_run(&self, now: DateTime<Utc>, run: NewRun) -> Result<RunKey> {
        let outcome = self
            .apply(ChangeBatch::one(now, Change::CreateRun(run)))
            .await?;
        outcome
            .created_runs
            .first()
            .copied()
            .ok_or_else(|| StoreError::corrupt("create_run: the backend reported no run key"))
    }
}
