//! Admission: which scheduled task instances start now (pools, priorities,
//! limits, resources), their `queued` commit, and their start.

use super::*;

/// A task instance admission may take: `scheduled` in the store, or just
/// decided ("fresh": scheduled in memory only, so that admission writes it
/// once, as `queued` when it is taken, as `scheduled` when it must wait).
#[derive(Clone, Debug)]
pub(super) struct Admissible {
    pub(super) key: TiKey,
    pub(super) dag_id: DagId,
    pub(super) run_id: RunId,
    /// Attempts started so far.
    pub(super) try_number: u32,
    /// The state the store holds, which the write admission makes expects.
    pub(super) stored: TaskState,
    pub(super) priority_weight: i64,
    pub(super) pool: String,
    pub(super) pool_slots: u32,
}

impl Admissible {
    pub(super) fn is_fresh(&self) -> bool {
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
    /// The candidates it neither started nor failed, as the store now holds
    /// them (`scheduled`).
    waiting: Vec<Admissible>,
}

/// How many of the waiting task instances (in admission order) an admission
/// offers at least when nothing was freshly scheduled (see
/// `Scheduler::admit_and_start`); four per free executor slot if that is more.
const ADMISSION_HEAD: usize = 64;

impl Scheduler {
    /// Executor slots not taken by attempts in flight.
    fn free_slots(&self) -> usize {
        self.executor
            .capacity()
            .parallelism
            .saturating_sub(self.inflight.len())
    }

    /// Admits scheduled task instances and starts them, in chunks of
    /// `admit_chunk`: each chunk is committed as queued (one transaction)
    /// before any of its processes starts, then started; their `running`
    /// writes go with the next transaction (`Scheduler::starting`).
    pub(super) async fn admit_and_start(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        let fresh = std::mem::take(&mut self.fresh);
        // Behind the head of what waits (in admission order), the rest is
        // not offered this time: only the head can take the room there is,
        // and offering every waiting task instance each time attempts end
        // costs a wide run (thousands waiting) quadratic time.
        let mut behind = Vec::new();
        let free_before = self.free_slots();
        let stored: Vec<Admissible> = match (self.stored_scheduled, self.waiting.take()) {
            (false, _) => Vec::new(),
            (true, Some(mut waiting)) => {
                if fresh.is_empty() {
                    let head = ADMISSION_HEAD.max(free_before.saturating_mul(4));
                    if waiting.len() > head {
                        behind = waiting.split_off(head);
                    }
                }
                waiting
            }
            (true, None) => self
                .store
                .active_run_tis(&[TaskState::Scheduled])
                .await?
                .into_iter()
                .map(Admissible::from)
                .collect(),
        };
        if stored.is_empty() && fresh.is_empty() {
            self.stored_scheduled = false;
            return Ok(0);
        }
        // Cleared again below only if this admission leaves none behind.
        self.stored_scheduled = true;
        let fresh_runs: BTreeSet<RunKey> = fresh.iter().map(|a| a.key.run).collect();
        let scheduled: Vec<Admissible> = stored.into_iter().chain(fresh).collect();
        match self.admit_candidates(scheduled, now).await {
            Ok(Some(mut admitted)) => {
                if !behind.is_empty() && admitted.started < free_before {
                    // The head could not take all the room (pools, limits,
                    // resources): offer everything that waits.
                    let mut rest = std::mem::take(&mut admitted.waiting);
                    rest.append(&mut behind);
                    let started = admitted.started;
                    return match self.admit_candidates(rest, now).await? {
                        Some(all) => {
                            self.stored_scheduled = all.left_scheduled;
                            self.waiting = Some(all.waiting);
                            Ok(started + all.started)
                        }
                        None => Ok(started),
                    };
                }
                self.stored_scheduled = admitted.left_scheduled || !behind.is_empty();
                admitted.waiting.append(&mut behind);
                self.waiting = Some(admitted.waiting);
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
        // What waits, in admission order (the next admission offers its head).
        let wait_order: Vec<admit::TiKey> = admission.wait.into_iter().map(|(k, _)| k).collect();

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
                prepared.push((ti.key, prep));
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
        // What is left was neither queued nor failed: it is `scheduled` in
        // the store now, fresh or not; what waits comes first, in order.
        let mut waiting = Vec::with_capacity(by_key.len());
        for key in &wait_order {
            if let Some((mut ti, _)) = by_key.remove(key) {
                ti.stored = TaskState::Scheduled;
                waiting.push(ti);
            }
        }
        waiting.extend(by_key.into_values().map(|(mut ti, _)| {
            ti.stored = TaskState::Scheduled;
            ti
        }));
        Ok(Some(Admitted {
            started,
            left_scheduled,
            waiting,
        }))
    }

    /// Starts attempts committed as queued, keeps the `running` writes of
    /// the started ones for the next transaction (`Scheduler::starting`)
    /// and ends those that could not start.
    async fn start_prepared(
        &mut self,
        prepared: Vec<(TiKey, Prepared)>,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        let mut started = 0;
        let mut ended: Vec<(AttemptKey, TiKey, AttemptResult, Option<AttemptOutcome>)> = Vec::new();
        // The chunk's attempts start together: a start may wait for its
        // supervisor's answer (a zygote's or the supervision server's),
        // and the supervisors answer in parallel.
        let executor = Arc::clone(&self.executor);
        let starts = prepared.into_iter().map(|(ti, prep)| {
            let executor = Arc::clone(&executor);
            async move {
                let outcome = match prep {
                    Prepared::Ready(req) => {
                        let akey = req.key.clone();
                        let log_path = req.log_path.clone();
                        Ok((akey, log_path, executor.start(*req).await))
                    }
                    Prepared::Failed {
                        key,
                        log_path,
                        error,
                    } => Err((key, log_path, error)),
                };
                (ti, outcome)
            }
        });
        for (ti, outcome) in futures_util::future::join_all(starts).await {
            match outcome {
                Ok((akey, log_path, start)) => {
                    match start {
                        Ok(handle) => {
                            started += 1;
                            // Its `running` write (only the task instance:
                            // the try row was written when queued and is
                            // completed when the try ends, with the handle)
                            // goes with the next transaction (see
                            // `Scheduler::starting`).
                            self.starting.insert(
                                akey.clone(),
                                tokio::time::Instant::now() + self.cfg.running_write_delay,
                            );
                            self.inflight.insert(akey, Inflight { ti, handle });
                        }
                        Err(e) => {
                            let error = format!("could not start: {e}");
                            attempt::write_log_line(&log_path, &error);
                            // A request the executor can never hold, or one it
                            // refuses as invalid (a malformed pod_override, an
                            // executor this installation does not run, a 422
                            // from the API server), fails at once without
                            // spending retries (Airflow's fail-without-retry):
                            // trying the same request again cannot help.
                            let forced = matches!(
                                e,
                                pave_executor::ExecutorError::Unsatisfiable { .. }
                                    | pave_executor::ExecutorError::InvalidRequest { .. }
                            )
                            .then(|| AttemptOutcome::Failed {
                                retryable: false,
                                reason: error.clone(),
                            });
                            ended.push((akey, ti, attempt::not_started(now, error), forced));
                        }
                    }
                }
                Err((key, log_path, error)) => {
                    attempt::write_log_line(&log_path, &error);
                    ended.push((key, ti, attempt::not_started(now, error), None));
                }
            }
        }
        // Queued but never running: finish those attempts from the queued state.
        let mut endings = Vec::with_capacity(ended.len());
        for (akey, ti, result, forced) in ended {
            if let Some(e) = self
                .attempt_end(akey, ti, result, TaskState::Queued, None, forced)
                .await?
            {
                endings.push(e);
            }
        }
        self.apply_endings(endings).await?;
        Ok(started)
    }
}
