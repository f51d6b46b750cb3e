//! The scheduling driver: a thin async shell around pave-core's pure decisions.
//!
//! One `step` does, in order: (every `poll_interval`) create runs that
//! schedules made due and start queued runs; `decide` every dirty run and
//! apply the commands in one transaction per run; admit scheduled task
//! instances under pools, priorities and resources; record them as queued
//! (one transaction) and only then start them on the executor. Executor
//! events mark their run dirty, so a finished task makes its downstream
//! tasks runnable in the next step, without waiting for a poll.

use crate::attempt::{self, Prepared};
use crate::clock::Clock;
use crate::config::SchedulerConfig;
use crate::dags::{DagCache, LoadedDag};
use crate::error::SchedulerError;
use crate::paths;
use crate::result::{command_result, flow_value};
use crate::runs::{self, TriggerRequest};
use chrono::{DateTime, Utc};
use pave_core::admit::{self, Candidate, PoolSlots};
use pave_core::decide::flow_result_from_return;
use pave_core::model::{OutputFormat, TaskKind};
use pave_core::run::{AttemptOutcome, Command, RunView, TiView, XcomMap};
use pave_core::{DagId, MapIndex, Resources, RunId, RunState, TaskId, TaskState, TryNumber};
use pave_executor::{
    AdoptStatus, AttemptHandle, AttemptKey, AttemptResult, ClaimQuery, ClaimStatus, Executor,
    ExecutorEvent,
};
use pave_store::{
    ChangeBatch, NewXcom, RunChange, RunFilter, RunKey, RunRecord, Store, StoreError,
    TaskSelection, TiChange, TiKey, TiRecord, TryRecord,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

mod admission;
mod decide;
mod endings;
mod reconcile;

use admission::Admissible;

/// The exit status by which pave's Python runtime reports
/// AirflowFailException (docs/execution-api.md).
pub const PYTHON_FAIL_NO_RETRY: i32 = 98;

/// An attempt this scheduler watches.
#[derive(Clone, Debug)]
struct Inflight {
    ti: TiKey,
    handle: AttemptHandle,
}

/// A run and the DAG version it is pinned to.
type RunContext = (Arc<RunRecord>, Arc<LoadedDag>);

/// What one `step` did, for tests and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    pub runs_created: usize,
    pub runs_decided: usize,
    pub started: usize,
    pub finished_runs: Vec<RunKey>,
    /// Attempts killed because their task instance moved on without them
    /// (marked or cleared through the API or CLI, its run marked finished).
    pub killed: usize,
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    executor: Arc<dyn Executor>,
    events: mpsc::UnboundedReceiver<ExecutorEvent>,
    clock: Arc<dyn Clock>,
    cfg: SchedulerConfig,
    dags: DagCache,
    runs: HashMap<RunKey, RunRecord>,
    inflight: HashMap<AttemptKey, Inflight>,
    dirty: BTreeSet<RunKey>,
    /// Earliest retry or run timeout seen while deciding: wake up then.
    next_wake: Option<DateTime<Utc>>,
    last_poll: Option<tokio::time::Instant>,
    /// Wait reasons already written, so a waiting task is not rewritten every step.
    wait_reasons: HashMap<TiKey, String>,
    /// Task instances `decide` scheduled in this step, not written yet:
    /// admission writes them (see [`Admissible`]).
    fresh: Vec<Admissible>,
    /// The store may hold `scheduled` task instances that admission has
    /// not seen: set by anything that writes one (a waiting task instance,
    /// reconciliation) and by every poll (another process may have); cleared
    /// by an admission that leaves none behind. While it is clear,
    /// admission does not read the store for them.
    stored_scheduled: bool,
    /// The `scheduled` task instances the last admission left waiting, as
    /// it wrote them, in admission order: while this is known, admission
    /// takes them (their head, see `Scheduler::admit_and_start`) from here
    /// instead of reading every scheduled task instance again (in a wide
    /// run, each step would read hundreds to admit the few a finished
    /// attempt made room for). Forgotten wherever the store may have
    /// changed under it: every poll (another process may have scheduled
    /// or cleared some), reconciliation, a decision that wrote changes, an
    /// admission that conflicted.
    waiting: Option<Vec<Admissible>>,
    /// The `running` writes of attempts started but not yet recorded as
    /// running, by attempt, with when each is due (`running_write_delay`
    /// after the start): merged into the attempt's own ending when it ends
    /// first; once due, written with the next endings the scheduler writes,
    /// or on their own at the end of a step or of the handling of events
    /// when no executor event is waiting. The store holds those task instances `queued`
    /// with the try number meanwhile, which a restart reconciles from the
    /// attempt's claim. So a short attempt costs one write, not two.
    starting: HashMap<AttemptKey, tokio::time::Instant>,
    /// The pools, read by the first admission after a poll and kept until
    /// the next poll: they change through the REST API (which pokes the
    /// scheduler, so its next step polls) or the CLI (seen at the next
    /// poll, within `poll_interval`), not from one admission to the next.
    pools: Option<Vec<pave_store::PoolRecord>>,
    /// The executor has no GPU and GPU requests fall back to CPU.
    cpu_only: bool,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Store>,
        executor: Arc<dyn Executor>,
        events: mpsc::UnboundedReceiver<ExecutorEvent>,
        clock: Arc<dyn Clock>,
        cfg: SchedulerConfig,
    ) -> Self {
        let cpu_only = cfg.gpu_fallback_to_cpu && executor.capacity().gpu_count() == 0;
        Scheduler {
            cpu_only,
            store,
            executor,
            events,
            clock,
            cfg,
            dags: DagCache::default(),
            runs: HashMap::new(),
            inflight: HashMap::new(),
            dirty: BTreeSet::new(),
            next_wake: None,
            last_poll: None,
            wait_reasons: HashMap::new(),
            fresh: Vec::new(),
            stored_scheduled: true,
            waiting: None,
            starting: HashMap::new(),
            pools: None,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// No active run, nothing running and nothing left to decide.
    pub fn is_idle(&self) -> bool {
        self.runs.is_empty() && self.inflight.is_empty() && self.dirty.is_empty()
    }

    /// Attempts this scheduler is watching now.
    pub fn inflight_count(&self) -> usize {
        self.inflight.len()
    }

    /// Makes the next `step` look at the store at once instead of at the
    /// next poll: another writer in the process (the REST API) created or
    /// changed runs or task instances.
    pub fn poke(&mut self) {
        self.last_poll = None;
    }

    /// Creates a manual run of `dag_id`; it is picked up by the next step.
    pub async fn trigger(
        &mut self,
        dag_id: &DagId,
        req: TriggerRequest,
    ) -> Result<RunRecord, SchedulerError> {
        let now = self.clock.now();
        let run = runs::trigger(
            self.store.as_ref(),
            &mut self.dags,
            dag_id,
            req,
            now,
            &self.cfg.schedule_policy,
        )
        .await?;
        self.runs.insert(run.key, run.clone());
        self.last_poll = None;
        Ok(run)
    }

    /// Runs steps until `done` says so, sleeping until an executor event,
    /// a timer or the next poll.
    pub async fn run_until(
        &mut self,
        mut done: impl FnMut(&StepReport, &Scheduler) -> bool,
    ) -> Result<(), SchedulerError> {
        loop {
            let report = self.step().await?;
            if done(&report, self) {
                return Ok(());
            }
            self.wait().await?;
        }
    }

    /// Runs until the given run has finished; returns its final record.
    pub async fn run_to_completion(&mut self, run: RunKey) -> Result<RunRecord, SchedulerError> {
        self.dirty.insert(run);
        let mut finished = false;
        self.run_until(|r, _| {
            finished |= r.finished_runs.contains(&run);
            finished
        })
        .await?;
        Ok(self.store.get_run(run).await?)
    }

    /// Waits for something to do: an executor event (then drains every
    /// event already waiting), the earliest timer, or the next poll.
    ///
    /// Not cancel-safe: dropped while it handles the events it took, they
    /// are lost (their attempts stay `running` for ever). A caller that
    /// races waiting against something else selects on
    /// [`Scheduler::next_wakeup`] and then calls [`Scheduler::handle_wakeup`].
    pub async fn wait(&mut self) -> Result<(), SchedulerError> {
        let first = self.next_wakeup().await;
        self.handle_wakeup(first).await
    }

    /// The waiting half of [`Scheduler::wait`]: resolves with the first
    /// executor event, or `None` at the earliest timer or the next poll.
    /// Cancel-safe: an event is taken from the channel only when it is
    /// returned.
    pub async fn next_wakeup(&mut self) -> Option<ExecutorEvent> {
        let mut sleep_for = self.cfg.poll_interval;
        if let Some(at) = self.next_wake {
            let until = (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
            sleep_for = sleep_for.min(until);
        }
        if let Some(last) = self.last_poll {
            sleep_for = sleep_for.min(self.cfg.poll_interval.saturating_sub(last.elapsed()));
        }
        if let Some(due) = self.starting.values().min() {
            sleep_for = sleep_for.min(due.saturating_duration_since(tokio::time::Instant::now()));
        }
        tokio::select! {
            ev = self.events.recv() => ev,
            _ = tokio::time::sleep(sleep_for) => None,
        }
    }

    /// The handling half of [`Scheduler::wait`]: `first` (what
    /// [`Scheduler::next_wakeup`] returned) and every event already waiting.
    /// Must run to completion.
    pub async fn handle_wakeup(
        &mut self,
        first: Option<ExecutorEvent>,
    ) -> Result<(), SchedulerError> {
        self.drain_with(first).await
    }

    /// Handles every executor event that is already waiting, in as few
    /// store transactions as possible (see [`Scheduler::on_events`]).
    pub async fn drain_events(&mut self) -> Result<(), SchedulerError> {
        self.drain_with(None).await
    }

    async fn drain_with(&mut self, first: Option<ExecutorEvent>) -> Result<(), SchedulerError> {
        let chunk = self.cfg.admit_chunk.max(1);
        let mut events: Vec<ExecutorEvent> = first.into_iter().collect();
        loop {
            while events.len() < chunk {
                match self.events.try_recv() {
                    Ok(ev) => events.push(ev),
                    Err(_) => break,
                }
            }
            if events.is_empty() {
                return Ok(());
            }
            let full = events.len() >= chunk;
            self.on_events(std::mem::take(&mut events)).await?;
            if !full {
                // Events that came meanwhile wait for the next round; the
                // due running writes the ended attempts did not carry do not.
                return self.write_due_starting().await;
            }
        }
    }

    /// One pass of the loop (see the module docs).
    pub async fn step(&mut self) -> Result<StepReport, SchedulerError> {
        let mut report = StepReport::default();
        let now = self.clock.now();
        if self.next_wake.is_some_and(|t| t <= now) {
            self.next_wake = None;
            self.dirty.extend(self.runs.keys().copied());
        }
        if self
            .last_poll
            .is_none_or(|t| t.elapsed() >= self.cfg.poll_interval)
        {
            self.last_poll = Some(tokio::time::Instant::now());
            self.stored_scheduled = true;
            self.waiting = None;
            self.pools = None;
            report.runs_created = self.poll(now).await?;
            report.killed = self.kill_superseded().await?;
        }
        let dirty = std::mem::take(&mut self.dirty);
        for run in dirty {
            report.runs_decided += 1;
            if let Some(state) = self.decide_run(run, now).await?
                && state.is_finished()
            {
                report.finished_runs.push(run);
            }
        }
        report.started = self.admit_and_start(now).await?;
        // While events wait, the next `wait` handles them, and its
        // transactions carry the `running` writes; otherwise nothing
        // would carry the due ones soon.
        if self.events.is_empty() {
            self.write_due_starting().await?;
        }
        Ok(report)
    }

    /// Makes every deferred `running` write now (see `Scheduler::starting`);
    /// also before a stop, so that a restart finds handles, not claims.
    pub async fn write_starting(&mut self) -> Result<(), SchedulerError> {
        let changes = std::mem::take(&mut self.starting)
            .into_keys()
            .filter_map(|key| self.running_change(&key))
            .collect();
        self.write_running(changes).await
    }

    /// Makes the deferred `running` writes that are due now.
    async fn write_due_starting(&mut self) -> Result<(), SchedulerError> {
        let changes = self
            .take_due_starting()
            .iter()
            .filter_map(|key| self.running_change(key))
            .collect();
        self.write_running(changes).await
    }

    /// Takes the deferred `running` writes that are due now out of
    /// `Scheduler::starting`.
    fn take_due_starting(&mut self) -> Vec<AttemptKey> {
        let now = tokio::time::Instant::now();
        let due: Vec<AttemptKey> = self
            .starting
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &due {
            self.starting.remove(key);
        }
        due
    }

    /// The `running` write of an attempt this scheduler watches.
    fn running_change(&self, key: &AttemptKey) -> Option<TiChange> {
        let f = self.inflight.get(key)?;
        Some(
            TiChange::new(f.ti.clone(), TaskState::Running)
                .expect_attempt(TaskState::Queued, key.try_number)
                .start_date(f.handle.started_at)
                .executor_handle(serde_json::to_value(&f.handle).unwrap_or_default())
                .hostname(self.cfg.hostname.clone())
                .reason("running"),
        )
    }

    /// Writes `running` changes in one transaction; if one of them
    /// conflicts (its task instance was marked or cleared meanwhile), the
    /// others are written one by one.
    async fn write_running(&mut self, changes: Vec<TiChange>) -> Result<(), SchedulerError> {
        if changes.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let mut all = ChangeBatch::new(now);
        all.changes = changes.iter().cloned().map(Into::into).collect();
        match self.store.apply(all).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { what }) if changes.len() > 1 => {
                tracing::debug!("running writes conflicted together ({what}); one by one");
            }
            Err(StoreError::Conflict { what }) => {
                tracing::debug!("running write skipped, state moved on: {what}");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        for change in changes {
            self.apply(ChangeBatch::one(now, change)).await?;
        }
        Ok(())
    }

    /// Looks at the store for what other processes changed: new runs
    /// (triggered from the CLI), runs due by schedule, queued runs to start.
    async fn poll(&mut self, now: DateTime<Utc>) -> Result<usize, SchedulerError> {
        let mut created = 0;
        if self.cfg.create_scheduled_runs {
            created = runs::create_due_runs(
                self.store.as_ref(),
                &mut self.dags,
                now,
                &self.cfg.schedule_policy,
                8,
            )
            .await?
            .len();
        }
        let active = self.store.list_runs(&RunFilter::active()).await?;
        self.runs = active.into_iter().map(|r| (r.key, r)).collect();
        self.start_queued_runs(now).await?;
        let running: Vec<RunKey> = self
            .runs
            .values()
            .filter(|r| r.state == RunState::Running)
            .map(|r| r.key)
            .collect();
        self.dirty.extend(running);
        Ok(created)
    }

    /// Kills the attempts this scheduler watches whose task instance is no
    /// longer queued or running that try: someone marked it, cleared it or
    /// finished its run (as Airflow terminates a task whose state was
    /// changed under it). Their reports, when they come, change no task
    /// instance; they only complete the try's history row.
    async fn kill_superseded(&mut self) -> Result<usize, SchedulerError> {
        if self.inflight.is_empty() {
            return Ok(0);
        }
        let live: std::collections::HashSet<(TiKey, TryNumber)> = self
            .store
            .active_run_tis(&[TaskState::Queued, TaskState::Running])
            .await?
            .into_iter()
            .map(|t| (t.key, t.try_number))
            .collect();
        let superseded: Vec<(AttemptKey, AttemptHandle)> = self
            .inflight
            .iter()
            .filter(|(k, f)| !live.contains(&(f.ti.clone(), k.try_number)))
            .map(|(k, f)| (k.clone(), f.handle.clone()))
            .collect();
        for (key, handle) in &superseded {
            match self.executor.kill(handle).await {
                Ok(()) => tracing::info!(attempt = %key, "killed: its task instance moved on"),
                Err(e) => tracing::warn!(attempt = %key, "cannot kill a superseded attempt: {e}"),
            }
        }
        Ok(superseded.len())
    }

    /// Queued runs become running, oldest first, up to each DAG's max_active_runs.
    async fn start_queued_runs(&mut self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        let mut running_per_dag: HashMap<DagId, u32> = HashMap::new();
        for r in self.runs.values().filter(|r| r.state == RunState::Running) {
            *running_per_dag.entry(r.dag_id.clone()).or_default() += 1;
        }
        let mut queued: Vec<RunRecord> = self
            .runs
            .values()
            .filter(|r| r.state == RunState::Queued)
            .cloned()
            .collect();
        queued.sort_by_key(|r| (r.logical_date.unwrap_or(r.run_after), r.key));
        let mut batch = ChangeBatch::new(now);
        let mut started = Vec::new();
        for r in queued {
            let loaded = self.dags.get(self.store.as_ref(), r.dag_version_id).await?;
            let limit = loaded
                .dag
                .max_active_runs
                .unwrap_or(self.cfg.default_max_active_runs);
            let n = running_per_dag.entry(r.dag_id.clone()).or_default();
            if *n >= limit {
                continue;
            }
            *n += 1;
            batch.push(RunChange::new(r.key, RunState::Running).expect(RunState::Queued));
            started.push(r.key);
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.apply(batch).await?;
        for key in started {
            if let Some(r) = self.runs.get_mut(&key) {
                r.state = RunState::Running;
                r.start_date.get_or_insert(now);
            }
            self.dirty.insert(key);
        }
        Ok(())
    }

    async fn run_record(&mut self, key: RunKey) -> Result<Option<RunRecord>, SchedulerError> {
        if let Some(r) = self.runs.get(&key) {
            return Ok(Some(r.clone()));
        }
        match self.store.get_run(key).await {
            Ok(r) => {
                if !r.state.is_finished() {
                    self.runs.insert(key, r.clone());
                }
                Ok(Some(r))
            }
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What admission may hand out now.
    async fn capacity(&mut self) -> Result<admit::Capacity, SchedulerError> {
        let exec = self.executor.capacity();
        let occupancy = self.store.occupancy().await?;
        if self.pools.is_none() {
            self.pools = Some(self.store.list_pools().await?);
        }
        let pools = self.pools.as_deref().unwrap_or_default();
        let mut cap = admit::Capacity {
            executor_slots_free: u32::try_from(
                exec.parallelism.saturating_sub(self.inflight.len()),
            )
            .unwrap_or(u32::MAX),
            ..Default::default()
        };
        for p in pools {
            let used = occupancy
                .pools
                .get(&p.name)
                .map_or(0, |u| u.occupied(p.include_deferred));
            cap.pools.insert(
                p.name.clone(),
                PoolSlots {
                    total: p.slots,
                    free: u32::try_from(u64::from(p.slots).saturating_sub(used)).unwrap_or(0),
                },
            );
        }
        cap.active_per_dag = occupancy.dags.into_iter().collect();
        cap.active_per_task = occupancy.tasks.into_iter().collect();
        let (mut cpu, mut mem, mut gpu) = (0u64, 0u64, 0u64);
        for f in self.inflight.values() {
            cpu += f.handle.resources.cpu_millis;
            mem += f.handle.resources.memory_bytes;
            gpu += u64::from(f.handle.resources.gpu);
        }
        cap.cpu_millis = Some(admit::Amount {
            total: exec.cpu_millis,
            free: exec.cpu_millis.saturating_sub(cpu),
        });
        cap.memory_bytes = Some(admit::Amount {
            total: exec.memory_bytes,
            free: exec.memory_bytes.saturating_sub(mem),
        });
        let gpus = u64::from(exec.gpu_count());
        cap.gpu = Some(admit::Amount {
            total: gpus,
            free: gpus.saturating_sub(gpu),
        });
        Ok(cap)
    }

    async fn apply(&self, batch: ChangeBatch) -> Result<(), SchedulerError> {
        match self.store.apply(batch).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { what }) => {
                tracing::debug!("change skipped, state moved on: {what}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn apply_strict(&self, batch: ChangeBatch) -> Result<(), SchedulerError> {
        self.store
            .apply(batch)
            .await
            .map(|_| ())
            .map_err(Into::into)
    }
}

/// Keeps `BTreeMap` in scope for callers building conf objects.
pub type Conf = BTreeMap<String, serde_json::Value>;
