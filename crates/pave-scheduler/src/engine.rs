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

/// A task instance admission may take: `scheduled` in the store, or just
/// decided ("fresh": scheduled in memory only, so that admission writes it
/// once, as `queued` when it is taken, as `scheduled` when it must wait).
#[derive(Clone, Debug)]
struct Admissible {
    key: TiKey,
    dag_id: DagId,
    run_id: RunId,
    /// Attempts started so far.
    try_number: u32,
    /// The state the store holds, which the write admission makes expects.
    stored: TaskState,
    priority_weight: i64,
    pool: String,
    pool_slots: u32,
}

impl Admissible {
    fn is_fresh(&self) -> bool {
        self.stored != TaskState::Scheduled
    }
}

impl From<TiRecord> for Admissible {
    fn from(ti: TiRecord) -> Self {
        Admissible {
            key: ti.key,
            dag_id: ti.dag_id,
            run_id: ti.run_id,
            try_number: ti.try_number.0,
            stored: ti.state,
            priority_weight: ti.priority_weight,
            pool: ti.pool,
            pool_slots: ti.pool_slots,
        }
    }
}

/// What one admission did.
struct Admitted {
    started: usize,
    /// Task instances are `scheduled` in the store after it.
    left_scheduled: bool,
}

/// The changes that end one attempt, not yet written.
struct Ending {
    key: AttemptKey,
    run: RunKey,
    batch: ChangeBatch,
}

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

    /// After a restart: find every attempt the store says is queued or
    /// running and adopt it (still running), complete it (its result file is
    /// there) or fail it by policy (its supervisor died without a result).
    ///
    /// A queued attempt without a stored handle of its own try (a retry
    /// keeps the previous try's handle until it runs) was committed as
    /// queued and maybe started, but the scheduler stopped before storing
    /// its handle. The executor's claim for it decides
    /// ([`Executor::adopt_claimed`]): claimed and running, it is watched and
    /// its handle stored; finished or lost, it ends as usual. Claimed by nobody, the executor fences it off
    /// (no late supervisor will run it) and the try is given up: the task
    /// instance goes back to scheduled keeping its try number, so the next
    /// attempt is a new try with fresh files, and `max_tries` is raised by
    /// one so the lost try spends no retry. That try stays in the history as
    /// `removed` (it never had a process; `failed` would count a failure
    /// that did not happen). Executors without claims (`Unclaimed`: the
    /// no-op executor, whose attempts cannot outlive the scheduler) reset the
    /// task instance to scheduled with the previous try number instead, as
    /// Airflow resets orphaned queued task instances.
    pub async fn reconcile(&mut self) -> Result<(), SchedulerError> {
        self.stored_scheduled = true;
        let tis = self
            .store
            .active_run_tis(&[TaskState::Queued, TaskState::Running])
            .await?;
        for ti in tis {
            // The stored handle outlives its try (a retry queued again keeps
            // the last try's handle): only one of the current try counts.
            let handle = ti
                .executor_handle
                .clone()
                .and_then(|h| serde_json::from_value::<AttemptHandle>(h).ok())
                .filter(|h| h.key.try_number == ti.try_number);
            match (ti.state, handle) {
                (_, Some(handle)) => match self.executor.adopt(&handle).await {
                    Ok(AdoptStatus::Running) => {
                        tracing::info!(attempt = %handle.key, "adopted a running attempt");
                        self.inflight.insert(
                            handle.key.clone(),
                            Inflight {
                                ti: ti.key.clone(),
                                handle,
                            },
                        );
                    }
                    Ok(AdoptStatus::Finished(result)) => {
                        let key = handle.key.clone();
                        self.inflight.insert(
                            key.clone(),
                            Inflight {
                                ti: ti.key.clone(),
                                handle,
                            },
                        );
                        self.on_event(ExecutorEvent::Finished { key, result })
                            .await?;
                    }
                    Ok(AdoptStatus::Lost { reason }) => {
                        let key = handle.key.clone();
                        self.inflight.insert(
                            key.clone(),
                            Inflight {
                                ti: ti.key.clone(),
                                handle,
                            },
                        );
                        self.on_event(ExecutorEvent::Lost { key, reason }).await?;
                    }
                    Err(e) => tracing::warn!(ti = %ti.key, "cannot adopt attempt: {e}"),
                },
                (TaskState::Queued, None) => self.reconcile_unhandled(&ti).await?,
                (_, None) => {
                    let res_fail = TiChange::new(ti.key.clone(), TaskState::Failed)
                        .expect(ti.state)
                        .end_date(self.clock.now())
                        .reason("the attempt has no executor handle to adopt");
                    self.apply(ChangeBatch::one(self.clock.now(), res_fail))
                        .await?;
                }
            }
            self.dirty.insert(ti.key.run);
        }
        Ok(())
    }

    /// Reconciles one queued task instance that has no stored handle (see
    /// [`Scheduler::reconcile`]).
    async fn reconcile_unhandled(&mut self, ti: &TiRecord) -> Result<(), SchedulerError> {
        let n = ti.try_number;
        if n.0 == 0 {
            return Ok(());
        }
        let key = AttemptKey {
            dag_id: ti.dag_id.clone(),
            run_id: ti.run_id.clone(),
            task_id: ti.key.task_id.clone(),
            map_index: ti.key.map_index,
            try_number: n,
        };
        let resources = match self.run_record(ti.key.run).await? {
            Some(run) => self
                .dags
                .get(self.store.as_ref(), run.dag_version_id)
                .await?
                .task(ti.key.task_id.as_str())
                .map(|t| attempt::effective_resources(&t.resources, self.cpu_only))
                .unwrap_or_default(),
            None => Resources::default(),
        };
        let logs = &self.cfg.logs_dir;
        let (dag, run, task, map) = (&key.dag_id, &key.run_id, &key.task_id, key.map_index);
        let query = ClaimQuery {
            key: key.clone(),
            resources,
            log_path: paths::log_path(logs, dag, run, task, map, n.0),
            result_path: paths::result_path(logs, dag, run, task, map, n.0),
        };
        let now = self.clock.now();
        match self.executor.adopt_claimed(&query).await {
            Ok(ClaimStatus::Running(handle)) => {
                tracing::info!(attempt = %key, "adopted a running attempt from its claim");
                let handle_json = serde_json::to_value(&handle).unwrap_or_default();
                let mut batch = ChangeBatch::new(now);
                batch.push(
                    TiChange::new(ti.key.clone(), TaskState::Running)
                        .expect_attempt(TaskState::Queued, n)
                        .start_date(handle.started_at)
                        .executor_handle(handle_json.clone())
                        .hostname(self.cfg.hostname.clone())
                        .reason("running (adopted from its claim after a restart)"),
                );
                let mut tr = TryRecord::new(ti.key.clone(), n, TaskState::Running);
                tr.start_date = Some(handle.started_at);
                tr.executor_handle = Some(handle_json);
                batch.push(tr);
                self.apply(batch).await?;
                self.inflight.insert(
                    key,
                    Inflight {
                        ti: ti.key.clone(),
                        handle,
                    },
                );
            }
            Ok(ClaimStatus::Finished(result)) => {
                self.finish_attempt(key, ti.key.clone(), result, TaskState::Queued)
                    .await?;
            }
            Ok(ClaimStatus::Lost { reason }) => {
                let result = attempt::not_started(now, format!("the attempt was lost: {reason}"));
                self.finish_attempt(key, ti.key.clone(), result, TaskState::Queued)
                    .await?;
            }
            Ok(ClaimStatus::Fenced) => {
                let why = "never started: the scheduler stopped before the attempt got a process";
                tracing::info!(attempt = %key, "fenced off an attempt that {why}");
                let mut batch = ChangeBatch::new(now);
                batch.push(
                    TiChange::new(ti.key.clone(), TaskState::Scheduled)
                        .expect_attempt(TaskState::Queued, n)
                        .max_tries(ti.max_tries.saturating_add(1))
                        .reason(format!(
                            "try {n} {why}; the next try does not spend a retry"
                        )),
                );
                let mut tr = TryRecord::new(ti.key.clone(), n, TaskState::Removed);
                tr.end_date = Some(now);
                tr.reason = Some(why.to_owned());
                batch.push(tr);
                self.apply(batch).await?;
                attempt::write_log_line(&query.log_path, why);
            }
            Ok(ClaimStatus::Unclaimed) => {
                let back = TiChange::new(ti.key.clone(), TaskState::Scheduled)
                    .expect_attempt(TaskState::Queued, n)
                    .try_number(TryNumber(n.0.saturating_sub(1)))
                    .reason("reset: the scheduler stopped before this attempt got a process");
                self.apply(ChangeBatch::one(now, back)).await?;
            }
            Err(e) => tracing::warn!(ti = %ti.key, "cannot reconcile queued attempt {key}: {e}"),
        }
        Ok(())
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
    pub async fn wait(&mut self) -> Result<(), SchedulerError> {
        let mut sleep_for = self.cfg.poll_interval;
        if let Some(at) = self.next_wake {
            let until = (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
            sleep_for = sleep_for.min(until);
        }
        if let Some(last) = self.last_poll {
            sleep_for = sleep_for.min(self.cfg.poll_interval.saturating_sub(last.elapsed()));
        }
        let mut first = None;
        tokio::select! {
            ev = self.events.recv() => first = ev,
            _ = tokio::time::sleep(sleep_for) => {}
        }
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
                return Ok(());
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
        Ok(report)
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

    /// Asks pave-core what to do with one run and applies it. Returns the
    /// run's state afterwards.
    async fn decide_run(
        &mut self,
        run: RunKey,
        now: DateTime<Utc>,
    ) -> Result<Option<RunState>, SchedulerError> {
        let record = match self.runs.get(&run) {
            Some(r) => r.clone(),
            None => {
                let r = self.store.get_run(run).await?;
                if !r.state.is_finished() {
                    self.runs.insert(run, r.clone());
                }
                r
            }
        };
        if record.state != RunState::Running {
            return Ok(Some(record.state));
        }
        let loaded = self
            .dags
            .get(self.store.as_ref(), record.dag_version_id)
            .await?;
        let mut tis: Vec<TiView> = self.store.run_ti_views(run).await?;
        let mut index = TiIndex::new(&tis);
        let xcoms = self.mapping_xcoms(&loaded, run, &tis).await?;

        let mut batch = ChangeBatch::new(now);
        let mut to_kill = Vec::new();
        let mut final_state = None;
        let mut fresh = Vec::new();
        // Apply decisions to the in-memory view and decide again until
        // nothing changes: a skip can make its downstream decidable at once.
        for _ in 0..64 {
            let view = RunView {
                dag: &loaded.dag,
                run_state: RunState::Running,
                tis: &tis,
                xcoms: &xcoms,
                start_date: record.start_date,
                max_map_length: self.cfg.max_map_length,
            };
            let commands = pave_core::decide::decide(&view, now);
            if commands.is_empty() {
                break;
            }
            let mut changed = false;
            for cmd in commands {
                changed |= self.command_to_changes(
                    &loaded,
                    &record,
                    cmd,
                    &mut tis,
                    &mut index,
                    &mut batch,
                    &mut fresh,
                    &mut to_kill,
                    &mut final_state,
                    now,
                );
            }
            if !changed || final_state.is_some() {
                break;
            }
        }
        for ti in &tis {
            if ti.state == TaskState::UpForRetry
                && let Some(at) = ti.next_retry_at
            {
                self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
            }
        }
        if let (Some(timeout), Some(start)) = (loaded.dag.dagrun_timeout, record.start_date)
            && final_state.is_none()
            && let Ok(d) = chrono::Duration::from_std(timeout)
        {
            let at = start + d;
            self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
        }
        // Fresh schedules of a run that just finished (a timeout) are dropped.
        if final_state.is_none() {
            self.fresh.append(&mut fresh);
        }
        if batch.is_empty() {
            return Ok(Some(RunState::Running));
        }
        match self.store.apply(batch).await {
            Ok(_) => {}
            Err(StoreError::Conflict { what }) => {
                // Someone else changed the run meanwhile (a CLI clear): look again.
                tracing::debug!(%run, "decision conflicted ({what}); deciding again");
                self.fresh.retain(|a| a.key.run != run);
                self.dirty.insert(run);
                return Ok(Some(RunState::Running));
            }
            Err(e) => return Err(e.into()),
        }
        for ti in to_kill {
            if let Some((k, f)) = self
                .inflight
                .iter()
                .find(|(_, f)| f.ti == ti)
                .map(|(k, f)| (k.clone(), f.clone()))
            {
                let _ = self.executor.kill(&f.handle).await;
                tracing::info!(attempt = %k, "killed: the run timed out");
            }
        }
        if let Some(state) = final_state {
            self.runs.remove(&run);
            tracing::info!(%run, dag_id = %record.dag_id, run_id = %record.run_id, "run finished: {state}");
            return Ok(Some(state));
        }
        Ok(Some(RunState::Running))
    }

    #[allow(clippy::too_many_arguments)]
    fn command_to_changes(
        &self,
        loaded: &LoadedDag,
        record: &RunRecord,
        cmd: Command,
        tis: &mut Vec<TiView>,
        index: &mut TiIndex,
        batch: &mut ChangeBatch,
        fresh: &mut Vec<Admissible>,
        to_kill: &mut Vec<TiKey>,
        final_state: &mut Option<RunState>,
        now: DateTime<Utc>,
    ) -> bool {
        let run = record.key;
        match cmd {
            Command::Schedule { task_id, map_index } => {
                let Some(ti) = index.get(&task_id, map_index).and_then(|i| tis.get_mut(i)) else {
                    return false;
                };
                if ti.state == TaskState::Scheduled {
                    return false;
                }
                let key = TiKey::new(run, task_id.clone(), map_index);
                let is_empty = loaded
                    .task(task_id.as_str())
                    .is_some_and(|t| matches!(t.kind, TaskKind::Empty));
                if is_empty {
                    // Like Airflow's EmptyOperator: done by the scheduler, no
                    // executor, and it counts as a try (`schedule_tis` gives
                    // it the next try number).
                    ti.try_number += 1;
                    batch.push(
                        TiChange::new(key, TaskState::Success)
                            .expect(ti.state)
                            .try_number(TryNumber(ti.try_number))
                            .start_date(now)
                            .end_date(now)
                            .reason("empty task: marked success by the scheduler"),
                    );
                    ti.state = TaskState::Success;
                } else if let Some(task) = loaded.task(task_id.as_str()) {
                    // Written by admission, in this step (see `Admissible`).
                    fresh.push(Admissible {
                        key,
                        dag_id: record.dag_id.clone(),
                        run_id: record.run_id.clone(),
                        try_number: ti.try_number,
                        stored: ti.state,
                        priority_weight: loaded
                            .weight(task_id.as_str())
                            .unwrap_or(task.priority_weight),
                        pool: task.pool.clone(),
                        pool_slots: task.pool_slots,
                    });
                    ti.state = TaskState::Scheduled;
                } else {
                    return false;
                }
                true
            }
            Command::SetState {
                task_id,
                map_index,
                state,
                reason,
            } => {
                let Some(ti) = index.get(&task_id, map_index).and_then(|i| tis.get_mut(i)) else {
                    return false;
                };
                if ti.state == state {
                    return false;
                }
                let key = TiKey::new(run, task_id, map_index);
                if ti.state.is_active() {
                    to_kill.push(key.clone());
                }
                batch.push(
                    TiChange::new(key, state)
                        .expect(ti.state)
                        .end_date(now)
                        .reason(reason),
                );
                ti.state = state;
                true
            }
            Command::Expand { task_id, count } => {
                let Some(pos) = tis
                    .iter()
                    .position(|t| t.task_id == task_id && t.map_index.is_unmapped())
                else {
                    return false;
                };
                let placeholder = tis.remove(pos);
                for i in 0..count {
                    tis.push(TiView {
                        map_index: MapIndex(i32::try_from(i).unwrap_or(i32::MAX)),
                        ..placeholder.clone()
                    });
                }
                batch.push(pave_store::Change::ExpandMapped {
                    run,
                    task_id,
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                });
                *index = TiIndex::new(tis);
                true
            }
            Command::FinishRun { state, reason } => {
                batch.push(
                    RunChange::new(run, state)
                        .expect(RunState::Running)
                        .note(reason),
                );
                *final_state = Some(state);
                true
            }
        }
    }

    /// The XComs `decide` needs: those of the sources of mapped tasks that
    /// are not expanded yet.
    async fn mapping_xcoms(
        &self,
        loaded: &LoadedDag,
        run: RunKey,
        tis: &[TiView],
    ) -> Result<XcomMap, SchedulerError> {
        let mut sources = BTreeSet::new();
        for ti in tis
            .iter()
            .filter(|t| t.map_index.is_unmapped() && t.state == TaskState::NoStatus)
        {
            if let Some(task) = loaded.task(ti.task_id.as_str()) {
                sources.extend(attempt::xcom_sources(task));
            }
        }
        if sources.is_empty() {
            return Ok(XcomMap::new());
        }
        let records = self
            .store
            .list_xcoms(run, &TaskSelection::Only(sources.into_iter().collect()))
            .await?;
        Ok(records
            .into_iter()
            .map(|x| ((x.ti.task_id, x.ti.map_index, x.key), x.value))
            .collect())
    }

    /// Admits scheduled task instances and starts them, in chunks of
    /// `admit_chunk`: each chunk is committed as queued (one transaction)
    /// before any of its processes starts, then started, then recorded as
    /// running (one transaction).
    async fn admit_and_start(&mut self, now: DateTime<Utc>) -> Result<usize, SchedulerError> {
        let fresh = std::mem::take(&mut self.fresh);
        let stored = if self.stored_scheduled {
            self.store.active_run_tis(&[TaskState::Scheduled]).await?
        } else {
            Vec::new()
        };
        if stored.is_empty() && fresh.is_empty() {
            self.stored_scheduled = false;
            return Ok(0);
        }
        // Cleared again below only if this admission leaves none behind.
        self.stored_scheduled = true;
        let fresh_runs: BTreeSet<RunKey> = fresh.iter().map(|a| a.key.run).collect();
        let scheduled: Vec<Admissible> = stored
            .into_iter()
            .map(Admissible::from)
            .chain(fresh)
            .collect();
        match self.admit_candidates(scheduled, now).await {
            Ok(Some(admitted)) => {
                self.stored_scheduled = admitted.left_scheduled;
                Ok(admitted.started)
            }
            outcome => {
                // Not everything fresh was written: decide those runs again.
                self.dirty.extend(fresh_runs);
                outcome.map(|_| 0)
            }
        }
    }

    /// Admission proper (see [`Scheduler::admit_and_start`]). `Ok(None)`
    /// when a write conflicted and the rest was left for the next step.
    async fn admit_candidates(
        &mut self,
        scheduled: Vec<Admissible>,
        now: DateTime<Utc>,
    ) -> Result<Option<Admitted>, SchedulerError> {
        let capacity = self.capacity().await?;
        let offered = scheduled.len();
        let mut candidates = Vec::with_capacity(scheduled.len());
        let mut contexts: HashMap<RunKey, Option<RunContext>> = HashMap::new();
        let mut by_key: HashMap<admit::TiKey, (Admissible, RunContext)> =
            HashMap::with_capacity(scheduled.len());
        for ti in scheduled {
            let context = match contexts.get(&ti.key.run) {
                Some(c) => c.clone(),
                None => {
                    let c = match self.run_record(ti.key.run).await? {
                        Some(run) => {
                            let loaded = self
                                .dags
                                .get(self.store.as_ref(), run.dag_version_id)
                                .await?;
                            Some((Arc::new(run), loaded))
                        }
                        None => None,
                    };
                    contexts.insert(ti.key.run, c.clone());
                    c
                }
            };
            let Some((run, loaded)) = context else {
                continue;
            };
            let Some(task) = loaded.task(ti.key.task_id.as_str()) else {
                continue;
            };
            let key = admit::TiKey {
                dag_id: ti.dag_id.clone(),
                run_id: ti.run_id.clone(),
                task_id: ti.key.task_id.clone(),
                map_index: ti.key.map_index,
            };
            candidates.push(Candidate {
                key: key.clone(),
                priority_weight: ti.priority_weight,
                run_date: run.logical_date.or(Some(run.run_after)),
                pool: ti.pool.clone(),
                pool_slots: ti.pool_slots,
                max_active_tis_per_dag: task.max_active_tis_per_dag,
                dag_max_active_tasks: loaded
                    .dag
                    .max_active_tasks
                    .unwrap_or(self.cfg.default_max_active_tasks),
                resources: attempt::effective_resources(&task.resources, self.cpu_only),
            });
            by_key.insert(key, (ti, (run, loaded)));
        }
        drop(contexts);
        let admission = admit::admit(&candidates, &capacity);
        let mut left_scheduled = candidates.len() < offered || !admission.wait.is_empty();
        drop(candidates);

        let mut batch = ChangeBatch::new(now);
        for (key, reason) in &admission.impossible {
            if let Some((ti, _)) = by_key.remove(key) {
                batch.push(
                    TiChange::new(ti.key.clone(), TaskState::Failed)
                        .expect(ti.stored)
                        .end_date(now)
                        .reason(reason.clone()),
                );
                self.dirty.insert(ti.key.run);
            }
        }
        for (key, reason) in &admission.wait {
            if let Some((ti, _)) = by_key.get(key) {
                let text = reason.to_string();
                if ti.is_fresh() || self.wait_reasons.get(&ti.key) != Some(&text) {
                    self.wait_reasons.insert(ti.key.clone(), text.clone());
                    batch.push(
                        TiChange::new(ti.key.clone(), TaskState::Scheduled)
                            .expect(ti.stored)
                            .reason(text),
                    );
                }
            }
        }
        // A fresh task instance that admission neither takes nor explains
        // is still written as scheduled.
        let queued: std::collections::HashSet<&admit::TiKey> = admission.queue.iter().collect();
        let waiting: std::collections::HashSet<&admit::TiKey> =
            admission.wait.iter().map(|(k, _)| k).collect();
        for (key, (ti, _)) in &by_key {
            if ti.is_fresh() && !queued.contains(key) && !waiting.contains(key) {
                left_scheduled = true;
                batch.push(
                    TiChange::new(ti.key.clone(), TaskState::Scheduled)
                        .expect(ti.stored)
                        .reason("dependencies met"),
                );
            }
        }
        drop((queued, waiting));

        let mut started = 0;
        let mut xcom_cache: HashMap<RunKey, XcomMap> = HashMap::new();
        let chunk_size = self.cfg.admit_chunk.max(1);
        let mut queue = admission.queue.into_iter().peekable();
        // The first chunk's batch also carries the impossible and waiting
        // task instances' changes (and is written even if nothing is queued).
        let mut first = true;
        while first || queue.peek().is_some() {
            first = false;
            // Prepare the chunk: render templates, resolve arguments.
            let mut prepared = Vec::with_capacity(chunk_size);
            for key in queue.by_ref().take(chunk_size) {
                let Some((ti, (run, loaded))) = by_key.remove(&key) else {
                    continue;
                };
                self.wait_reasons.remove(&ti.key);
                let Some(task) = loaded.task(ti.key.task_id.as_str()) else {
                    continue;
                };
                let try_number = ti.try_number + 1;
                let xcoms = if attempt::needs_xcoms(task) {
                    if let std::collections::hash_map::Entry::Vacant(slot) =
                        xcom_cache.entry(run.key)
                    {
                        let all = self.store.list_xcoms(run.key, &TaskSelection::All).await?;
                        slot.insert(
                            all.into_iter()
                                .map(|x| ((x.ti.task_id, x.ti.map_index, x.key), x.value))
                                .collect(),
                        );
                    }
                    xcom_cache.get(&run.key)
                } else {
                    None
                };
                let empty = XcomMap::new();
                let prep = attempt::prepare(
                    &self.cfg,
                    attempt::AttemptInput {
                        dag: &loaded.dag,
                        task,
                        run: &run,
                        ti: &ti.key,
                        try_number,
                        xcoms: xcoms.unwrap_or(&empty),
                        cpu_only: self.cpu_only,
                    },
                );
                batch.push(
                    TiChange::new(ti.key.clone(), TaskState::Queued)
                        .expect(ti.stored)
                        .try_number(TryNumber(try_number))
                        .queued_at(now)
                        .reason("queued"),
                );
                let mut tr =
                    TryRecord::new(ti.key.clone(), TryNumber(try_number), TaskState::Queued);
                tr.log_path = Some(prep.log_path().display().to_string());
                tr.hostname = Some(self.cfg.hostname.clone());
                batch.push(tr);
                prepared.push((ti.key, prep, try_number));
            }
            if batch.is_empty() {
                continue;
            }
            // The queued commit comes before any process of the chunk
            // starts: that is what a restart reconciles from.
            let queued = std::mem::replace(&mut batch, ChangeBatch::new(now));
            if let Err(e) = self.apply_strict(queued).await {
                if matches!(e, SchedulerError::Store(StoreError::Conflict { .. })) {
                    tracing::debug!("admission conflicted; will retry: {e}");
                    return Ok(None);
                }
                return Err(e);
            }
            started += self.start_prepared(prepared, now).await?;
        }
        Ok(Some(Admitted {
            started,
            left_scheduled,
        }))
    }

    /// Starts attempts committed as queued, records the started ones as
    /// running (one transaction) and ends those that could not start.
    async fn start_prepared(
        &mut self,
        prepared: Vec<(TiKey, Prepared, u32)>,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        let mut started = 0;
        let mut batch = ChangeBatch::new(now);
        let mut ended: Vec<(AttemptKey, TiKey, AttemptResult)> = Vec::new();
        for (ti, prep, try_number) in prepared {
            match prep {
                Prepared::Ready(req) => {
                    let akey = req.key.clone();
                    match self.executor.start(*req).await {
                        Ok(handle) => {
                            started += 1;
                            let handle_json = serde_json::to_value(&handle).unwrap_or_default();
                            // Only the task instance: its try row was
                            // written when queued and is completed when the
                            // try ends (with the handle); while it runs, the
                            // task instance holds the try's live state.
                            batch.push(
                                TiChange::new(ti.clone(), TaskState::Running)
                                    .expect_attempt(TaskState::Queued, TryNumber(try_number))
                                    .start_date(handle.started_at)
                                    .executor_handle(handle_json)
                                    .hostname(self.cfg.hostname.clone())
                                    .reason("running"),
                            );
                            self.inflight.insert(akey, Inflight { ti, handle });
                        }
                        Err(e) => {
                            ended.push((
                                akey,
                                ti,
                                attempt::not_started(now, format!("could not start: {e}")),
                            ));
                        }
                    }
                }
                Prepared::Failed {
                    key,
                    log_path,
                    error,
                } => {
                    attempt::write_log_line(&log_path, &error);
                    ended.push((key, ti, attempt::not_started(now, error)));
                }
            }
        }
        if !batch.is_empty() {
            self.apply(batch).await?;
        }
        // Queued but never running: finish those attempts from the queued state.
        let mut endings = Vec::with_capacity(ended.len());
        for (akey, ti, result) in ended {
            if let Some(e) = self
                .attempt_end(akey, ti, result, TaskState::Queued, None)
                .await?
            {
                endings.push(e);
            }
        }
        self.apply_endings(endings).await?;
        Ok(started)
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
    async fn capacity(&self) -> Result<admit::Capacity, SchedulerError> {
        let exec = self.executor.capacity();
        let occupancy = self.store.occupancy().await?;
        let pools = self.store.list_pools().await?;
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

    /// Handles one executor event.
    pub async fn on_event(&mut self, ev: ExecutorEvent) -> Result<(), SchedulerError> {
        self.on_events(vec![ev]).await
    }

    /// Handles executor events together: the changes that end their
    /// attempts are written in one store transaction. Each change is
    /// conditional on its attempt still being current; if one of them is
    /// not (a stale or second report), the transaction fails as a whole and
    /// the attempts are then written one by one, so that report is ignored
    /// and the others still land.
    pub async fn on_events(&mut self, events: Vec<ExecutorEvent>) -> Result<(), SchedulerError> {
        let mut endings = Vec::with_capacity(events.len());
        for ev in events {
            let (key, result) = match ev {
                ExecutorEvent::Finished { key, result } => (key, result),
                ExecutorEvent::Lost { key, reason } => {
                    let now = self.clock.now();
                    (
                        key,
                        attempt::not_started(now, format!("the attempt was lost: {reason}")),
                    )
                }
            };
            let Some(inflight) = self.inflight.remove(&key) else {
                tracing::debug!(attempt = %key, "event for an attempt this scheduler does not watch; ignored");
                continue;
            };
            if let Some(ending) = self
                .attempt_end(
                    key,
                    inflight.ti,
                    result,
                    TaskState::Running,
                    Some(&inflight.handle),
                )
                .await?
            {
                endings.push(ending);
            }
        }
        self.apply_endings(endings).await
    }

    /// Ends one attempt (see [`Scheduler::attempt_end`]).
    async fn finish_attempt(
        &mut self,
        key: AttemptKey,
        ti: TiKey,
        result: AttemptResult,
        expected: TaskState,
    ) -> Result<(), SchedulerError> {
        let ending = self.attempt_end(key, ti, result, expected, None).await?;
        self.apply_endings(ending.into_iter().collect()).await
    }

    /// Writes the endings of attempts: all in one transaction, or, when that
    /// conflicts, each in its own, ignoring those that conflict again. The
    /// runs of all of them are decided again in the next step.
    async fn apply_endings(&mut self, endings: Vec<Ending>) -> Result<(), SchedulerError> {
        if endings.is_empty() {
            return Ok(());
        }
        for e in &endings {
            self.dirty.insert(e.run);
        }
        if endings.len() > 1 {
            let mut all = ChangeBatch::new(self.clock.now());
            all.changes = endings
                .iter()
                .flat_map(|e| e.batch.changes.iter().cloned())
                .collect();
            match self.store.apply(all).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { what }) => {
                    tracing::debug!("attempt reports conflicted together ({what}); one by one");
                }
                Err(e) => return Err(e.into()),
            }
        }
        for e in endings {
            let history: Vec<pave_store::Change> = e
                .batch
                .changes
                .iter()
                .filter(|c| matches!(c, pave_store::Change::RecordTry(_)))
                .cloned()
                .collect();
            match self.store.apply(e.batch).await {
                Ok(_) => {}
                Err(StoreError::Conflict { what }) => {
                    // The task instance moved on (marked, cleared): its
                    // state stands, but the try's row still gets how the
                    // attempt ended.
                    tracing::info!(attempt = %e.key, "attempt report changes no task instance: {what}");
                    let mut batch = ChangeBatch::new(self.clock.now());
                    batch.changes = history;
                    if let Err(err) = self.store.apply(batch).await {
                        tracing::warn!(attempt = %e.key, "try history not completed: {err}");
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// The changes that end one attempt: the task instance's new state by
    /// the retry policy, its result as XCom, its completed try record. The
    /// state change is conditional on the attempt still being current, so a
    /// second report of the same attempt changes nothing. `None` when its
    /// run or task is gone.
    async fn attempt_end(
        &mut self,
        key: AttemptKey,
        ti: TiKey,
        result: AttemptResult,
        expected: TaskState,
        handle: Option<&AttemptHandle>,
    ) -> Result<Option<Ending>, SchedulerError> {
        let now = self.clock.now();
        let Some(run) = self.run_record(ti.run).await? else {
            return Ok(None);
        };
        let loaded = self
            .dags
            .get(self.store.as_ref(), run.dag_version_id)
            .await?;
        let Some(task) = loaded.task(ti.task_id.as_str()) else {
            return Ok(None);
        };
        let is_python = matches!(task.kind, TaskKind::Python { .. });
        let (skip_code, format) = match &task.kind {
            TaskKind::Command {
                skip_exit_code,
                output,
                ..
            } => (*skip_exit_code, *output),
            _ => (None, OutputFormat::Text),
        };
        let mut outcome = result.outcome(skip_code);
        if is_python
            && result.exit
                == (pave_executor::Exit::Code {
                    code: PYTHON_FAIL_NO_RETRY,
                })
        {
            outcome = AttemptOutcome::Failed {
                retryable: false,
                reason: "the task raised AirflowFailException: failed without retry".into(),
            };
        }
        let mut xcom = None;
        let mut flow = None;
        if outcome == AttemptOutcome::Success {
            // A command's result is its last stdout line; a Python task
            // pushed its return value through the execution API.
            let value = if is_python {
                self.store
                    .get_xcom(&ti, "return_value")
                    .await
                    .map(|x| Ok(Some(x.value)))
                    .or_else(|e| match e {
                        StoreError::NotFound { .. } => Ok(Ok(None)),
                        other => Err(other),
                    })
            } else {
                Ok(command_result(
                    ti.task_id.as_str(),
                    result.last_line.as_deref(),
                    format,
                    self.cfg.xcom_max_bytes,
                ))
            }?;
            match value {
                Ok(value) => {
                    let flow_input = if is_python {
                        value.clone().unwrap_or(serde_json::Value::Null)
                    } else {
                        flow_value(&task.flow, value.as_ref())
                    };
                    match flow_result_from_return(&loaded.dag, task, &flow_input) {
                        Ok(f) => flow = f,
                        Err(e) => {
                            outcome = AttemptOutcome::Failed {
                                retryable: true,
                                reason: e.to_string(),
                            }
                        }
                    }
                    if ti.map_index.is_unmapped()
                        && let Err(reason) = pave_core::decide::check_mapping_push(
                            task,
                            loaded.mapping_dependant(task),
                            value.as_ref(),
                            self.cfg.max_map_length,
                        )
                    {
                        outcome = AttemptOutcome::Failed {
                            retryable: true,
                            reason,
                        };
                    }
                    if task.do_xcom_push && !is_python {
                        xcom = value;
                    }
                }
                Err(e) => {
                    outcome = AttemptOutcome::Failed {
                        retryable: true,
                        reason: e.to_string(),
                    }
                }
            }
            if let AttemptOutcome::Failed { reason, .. } = &outcome {
                attempt::write_log_line(&attempt::log_of(&self.cfg, &key), reason);
            }
        }
        // Airflow retries while try_number <= max_tries; pave-core counts
        // tries against `retries`, so subtract the tries that max_tries was
        // raised by (`tasks clear`, fenced-off tries). Only a retryable
        // failure looks at the number.
        let counted_try = if matches!(
            outcome,
            AttemptOutcome::Failed {
                retryable: true,
                ..
            }
        ) {
            self.counted_try(&ti, key.try_number, task.retry.retries)
                .await?
        } else {
            key.try_number.0
        };
        let res = pave_core::retry::on_attempt_end(task, counted_try, &outcome, now);
        let mut change = TiChange::new(ti.clone(), res.state)
            .expect_attempt(expected, key.try_number)
            .end_date(now)
            .reason(res.reason.clone());
        if let Some(at) = res.next_retry_at {
            change = change.next_retry_at(at);
        }
        if let Some(f) = flow {
            change = change.flow_result(f);
        }
        let mut batch = ChangeBatch::new(now);
        batch.push(change);
        let mut tr = TryRecord::new(
            ti.clone(),
            key.try_number,
            if res.state == TaskState::UpForRetry {
                TaskState::Failed
            } else {
                res.state
            },
        );
        tr.end_date = Some(result.ended_at);
        tr.start_date = Some(result.started_at);
        tr.exit_code = match result.exit {
            pave_executor::Exit::Code { code } => Some(code),
            _ => None,
        };
        tr.peak_rss_kb = Some(result.peak_rss_kib);
        tr.reason = Some(res.reason);
        tr.executor_handle = handle.and_then(|h| serde_json::to_value(h).ok());
        batch.push(tr);
        if let Some(value) = xcom {
            batch.push(NewXcom {
                ti: ti.clone(),
                key: "return_value".into(),
                value,
            });
        }
        Ok(Some(Ending {
            key,
            run: ti.run,
            batch,
        }))
    }

    /// The try number of try `try_number` counted against `retries`:
    /// `max_tries` starts at `retries` and every raise of it (`tasks clear`
    /// sets it to `try_number + retries`, a fenced-off try adds one) gives
    /// back that many tries.
    async fn counted_try(
        &self,
        ti: &TiKey,
        try_number: TryNumber,
        retries: u32,
    ) -> Result<u32, SchedulerError> {
        let max_tries = match self.store.get_ti(ti).await {
            Ok(record) => record.max_tries,
            Err(StoreError::NotFound { .. }) => retries,
            Err(e) => return Err(e.into()),
        };
        Ok(counted_try_number(try_number.0, max_tries, retries))
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

/// Airflow retries while `try_number <= max_tries`, pave-core while the
/// try counted against `retries` is `<= retries`: the two agree when the
/// tries that `max_tries` was raised by are not counted.
fn counted_try_number(try_number: u32, max_tries: u32, retries: u32) -> u32 {
    try_number
        .saturating_sub(max_tries.saturating_sub(retries))
        .max(1)
}

/// Where each task instance of a run's view is, by task id and map index.
struct TiIndex(HashMap<(TaskId, MapIndex), usize>);

impl TiIndex {
    fn new(tis: &[TiView]) -> Self {
        let mut map = HashMap::with_capacity(tis.len());
        for (i, t) in tis.iter().enumerate() {
            // The first one wins, as a linear search would find it.
            map.entry((t.task_id.clone(), t.map_index)).or_insert(i);
        }
        TiIndex(map)
    }

    fn get(&self, task_id: &TaskId, map_index: MapIndex) -> Option<usize> {
        self.0.get(&(task_id.clone(), map_index)).copied()
    }
}

/// Keeps `BTreeMap` in scope for callers building conf objects.
pub type Conf = BTreeMap<String, serde_json::Value>;

#[cfg(test)]
mod tests {
    use super::counted_try_number;

    #[test]
    fn tries_count_against_retries_like_airflow_max_tries() {
        // retries: 2, never raised: the try number itself.
        assert_eq!(counted_try_number(1, 2, 2), 1);
        assert_eq!(counted_try_number(3, 2, 2), 3);
        // `tasks clear` after 3 tries sets max_tries = 3 + 2: try 4 is the
        // first of a fresh set of retries, try 6 the last.
        assert_eq!(counted_try_number(4, 5, 2), 1);
        assert_eq!(counted_try_number(6, 5, 2), 3);
        // A fenced-off try raised max_tries by one: it is not counted.
        assert_eq!(counted_try_number(2, 3, 2), 1);
        // Never below 1, even for a max_tries lowered by hand.
        assert_eq!(counted_try_number(1, 9, 2), 1);
        assert_eq!(counted_try_number(2, 0, 2), 2);
    }
}
