//! A `Store` that counts and times every call of the store it wraps, by
//! method: what the control-plane benchmark reports, and how tests prove
//! how often the scheduler reads the store.

use crate::{
    BatchOutcome, ChangeBatch, DagRecord, DagVersionId, DagVersionRecord, ImportErrorRecord, JobId,
    Lease, LeaseRequest, Occupancy, ParsedDag, PoolRecord, Result, RunFilter, RunKey, RunRecord,
    Store, TaskSelection, TiKey, TiRecord, TryRecord, UpsertedDag, XcomRecord,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pave_core::{DagId, RunId, TaskState};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Calls and total time per store method.
#[derive(Default)]
struct Stats {
    by_method: BTreeMap<String, (u64, Duration)>,
}

/// `Arc<dyn Store>` that times every call of the store it wraps.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    stats: Mutex<Stats>,
}

impl TimedStore {
    /// Wraps `inner`; nothing counted yet.
    pub fn new(inner: Arc<dyn Store>) -> TimedStore {
        TimedStore {
            inner,
            stats: Mutex::new(Stats::default()),
        }
    }

    async fn timed<T>(&self, name: &str, fut: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let out = fut.await;
        let d = t.elapsed();
        let mut s = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = s.by_method.entry(name.to_owned()).or_default();
        e.0 += 1;
        e.1 += d;
        out
    }

    /// Calls and total time so far, by method name (`run_ti_views`, ...;
    /// `apply` also as `apply[STATE]`, the state its batch's first task
    /// instance change moves to, or `apply[KIND]`).
    pub fn snapshot(&self) -> BTreeMap<String, (u64, Duration)> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_method
            .clone()
    }
}

#[async_trait]
impl Store for TimedStore {
    async fn migrate(&self) -> Result<()> {
        self.timed("migrate", self.inner.migrate()).await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
    async fn upsert_dag(&self, parsed: ParsedDag) -> Result<UpsertedDag> {
        self.timed("upsert_dag", self.inner.upsert_dag(parsed))
            .await
    }
    async fn get_dag(&self, dag_id: &DagId) -> Result<DagRecord> {
        self.timed("get_dag", self.inner.get_dag(dag_id)).await
    }
    async fn list_dags(&self) -> Result<Vec<DagRecord>> {
        self.timed("list_dags", self.inner.list_dags()).await
    }
    async fn set_dag_paused(&self, dag_id: &DagId, paused: bool) -> Result<()> {
        self.timed("set_dag_paused", self.inner.set_dag_paused(dag_id, paused))
            .await
    }
    async fn get_dag_version(&self, id: DagVersionId) -> Result<DagVersionRecord> {
        self.timed("get_dag_version", self.inner.get_dag_version(id))
            .await
    }
    async fn get_run(&self, run: RunKey) -> Result<RunRecord> {
        self.timed("get_run", self.inner.get_run(run)).await
    }
    async fn find_run(&self, dag_id: &DagId, run_id: &RunId) -> Result<RunRecord> {
        self.timed("find_run", self.inner.find_run(dag_id, run_id))
            .await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.timed("list_runs", self.inner.list_runs(filter)).await
    }
    async fn get_ti(&self, key: &TiKey) -> Result<TiRecord> {
        self.timed("get_ti", self.inner.get_ti(key)).await
    }
    async fn run_tis(&self, run: RunKey) -> Result<Vec<TiRecord>> {
        self.timed("run_tis", self.inner.run_tis(run)).await
    }
    async fn run_ti_views(&self, run: RunKey) -> Result<Vec<pave_core::run::TiView>> {
        self.timed("run_ti_views", self.inner.run_ti_views(run))
            .await
    }
    async fn active_run_tis(&self, states: &[TaskState]) -> Result<Vec<TiRecord>> {
        self.timed("active_run_tis", self.inner.active_run_tis(states))
            .await
    }
    async fn occupancy(&self) -> Result<Occupancy> {
        self.timed("occupancy", self.inner.occupancy()).await
    }
    async fn list_tries(&self, ti: &TiKey) -> Result<Vec<TryRecord>> {
        self.timed("list_tries", self.inner.list_tries(ti)).await
    }
    async fn get_xcom(&self, ti: &TiKey, key: &str) -> Result<XcomRecord> {
        self.timed("get_xcom", self.inner.get_xcom(ti, key)).await
    }
    async fn list_xcoms(&self, run: RunKey, tasks: &TaskSelection) -> Result<Vec<XcomRecord>> {
        self.timed("list_xcoms", self.inner.list_xcoms(run, tasks))
            .await
    }
    async fn apply(&self, batch: ChangeBatch) -> Result<BatchOutcome> {
        // Also by what the batch is for: the state its first task
        // instance change moves to (or its first change's kind).
        let kind = match batch.changes.first() {
            Some(crate::Change::SetTiState(c)) => format!("apply[{}]", c.state),
            Some(crate::Change::RecordTry(_)) => "apply[try]".to_owned(),
            Some(crate::Change::SetRunState(_)) => "apply[run_state]".to_owned(),
            Some(crate::Change::CreateRun(_)) => "apply[create_run]".to_owned(),
            Some(crate::Change::ExpandMapped { .. }) => "apply[expand]".to_owned(),
            Some(crate::Change::PutXcom(_)) => "apply[xcom]".to_owned(),
            Some(crate::Change::RequireLive { .. }) => "apply[require_live]".to_owned(),
            None => "apply[empty]".to_owned(),
        };
        let t = Instant::now();
        let out = self.timed("apply", self.inner.apply(batch)).await;
        let d = t.elapsed();
        let mut s = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = s.by_method.entry(kind).or_default();
        e.0 += 1;
        e.1 += d;
        out
    }
    async fn list_pools(&self) -> Result<Vec<PoolRecord>> {
        self.timed("list_pools", self.inner.list_pools()).await
    }
    async fn get_pool(&self, name: &str) -> Result<PoolRecord> {
        self.timed("get_pool", self.inner.get_pool(name)).await
    }
    async fn put_pool(&self, pool: PoolRecord) -> Result<()> {
        self.timed("put_pool", self.inner.put_pool(pool)).await
    }
    async fn delete_pool(&self, name: &str) -> Result<()> {
        self.timed("delete_pool", self.inner.delete_pool(name))
            .await
    }
    async fn put_import_error(&self, error: ImportErrorRecord) -> Result<()> {
        self.timed("put_import_error", self.inner.put_import_error(error))
            .await
    }
    async fn clear_import_error(&self, fileloc: &str) -> Result<()> {
        self.timed("clear_import_error", self.inner.clear_import_error(fileloc))
            .await
    }
    async fn list_import_errors(&self) -> Result<Vec<ImportErrorRecord>> {
        self.timed("list_import_errors", self.inner.list_import_errors())
            .await
    }
    async fn acquire_scheduler_lease(&self, request: LeaseRequest) -> Result<Lease> {
        self.timed(
            "acquire_scheduler_lease",
            self.inner.acquire_scheduler_lease(request),
        )
        .await
    }
    async fn heartbeat(&self, job: JobId, now: DateTime<Utc>) -> Result<()> {
        self.timed("heartbeat", self.inner.heartbeat(job, now))
            .await
    }
    async fn release_scheduler_lease(&self, job: JobId, now: DateTime<Utc>) -> Result<()> {
        self.timed(
            "release_scheduler_lease",
            self.inner.release_scheduler_lease(job, now),
        )
        .await
    }
}
