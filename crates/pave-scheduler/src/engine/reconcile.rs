//! Restart reconciliation: what a new scheduler makes of the attempts its
//! predecessor left queued or running (adopt, finish, fence, or reset).

use super::*;

impl Scheduler {
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
        self.waiting = None;
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
                    Ok(AdoptStatus::Disrupted { result, reason }) => {
                        let key = handle.key.clone();
                        self.inflight.insert(
                            key.clone(),
                            Inflight {
                                ti: ti.key.clone(),
                                handle,
                            },
                        );
                        self.on_event(ExecutorEvent::Disrupted {
                            key,
                            result,
                            reason,
                        })
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
}
