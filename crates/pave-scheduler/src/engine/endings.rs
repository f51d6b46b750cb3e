//! The end of an attempt: an executor's report turned into the task
//! instance's next state by the retry policy, its XCom and its try row.

use super::*;

/// The changes that end one attempt, not yet written.
pub(super) struct Ending {
    pub(super) key: AttemptKey,
    pub(super) run: RunKey,
    pub(super) batch: ChangeBatch,
    /// The end may change what else of its run can happen: its task has a
    /// downstream task, or its task instance is not finished (a retry
    /// waits on a timer that deciding sets).
    pub(super) needs_decide: bool,
}

impl Ending {
    /// Merges the attempt's deferred `running` write into its ending: the
    /// task instance gets the start date and host the running state would
    /// have stored (the ending's own change already expects `queued`).
    /// Not the handle: a task instance's handle serves only to adopt its
    /// attempt while queued or running (restart reconciliation), which an
    /// ended attempt is not; the try's row keeps it.
    fn carry_running(&mut self, handle: &AttemptHandle, hostname: &str) {
        for change in &mut self.batch.changes {
            if let pave_store::Change::SetTiState(end) = change {
                end.start_date = pave_store::Field::Set(handle.started_at);
                end.hostname = pave_store::Field::Set(hostname.to_owned());
            }
        }
    }

    /// Only a deferred `running` write, no end of an attempt.
    fn is_running_write(&self) -> bool {
        self.batch.changes.iter().all(
            |c| matches!(c, pave_store::Change::SetTiState(t) if t.state == TaskState::Running),
        )
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

/// Whether a successful Python attempt's return value decides anything the
/// scheduler does: the task branches or short-circuits, or a mapped task
/// expands over it (then its length is checked). Otherwise the value stays
/// in the store, unread by the scheduler: most tasks return nothing that
/// steers the run, and reading it cost a store query per attempt.
fn return_value_decides(loaded: &LoadedDag, task: &pave_core::model::Task, ti: &TiKey) -> bool {
    !matches!(task.flow, pave_core::model::Flow::Normal)
        || (ti.map_index.is_unmapped()
            && task.mapping.is_none()
            && loaded.mapping_dependant(task).is_some())
}

impl Scheduler {
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
            let (key, result, disruption) = match ev {
                ExecutorEvent::Finished { key, result } => (key, result, None),
                ExecutorEvent::Lost { key, reason } => {
                    let now = self.clock.now();
                    (
                        key,
                        attempt::not_started(now, format!("the attempt was lost: {reason}")),
                        None,
                    )
                }
                ExecutorEvent::Disrupted {
                    key,
                    result,
                    reason,
                } => (key, result, Some(AttemptOutcome::Disrupted { reason })),
            };
            let Some(inflight) = self.inflight.remove(&key) else {
                tracing::debug!(attempt = %key, "event for an attempt this scheduler does not watch; ignored");
                continue;
            };
            // An attempt that ends before its `running` write was made
            // goes from queued to its end in one write, which carries what
            // the running write would have.
            let running = self.starting.remove(&key).is_some();
            let expected = if running {
                TaskState::Queued
            } else {
                TaskState::Running
            };
            if let Some(mut ending) = self
                .attempt_end(
                    key,
                    inflight.ti,
                    result,
                    expected,
                    Some(&inflight.handle),
                    disruption,
                )
                .await?
            {
                if running {
                    ending.carry_running(&inflight.handle, &self.cfg.hostname);
                }
                endings.push(ending);
            }
        }
        // The other deferred running writes that are due go in the same
        // transaction, unless more events wait: their endings may carry
        // them. Those not due yet wait for their own attempt's end.
        let now = self.clock.now();
        let leftover = if self.events.is_empty() {
            self.take_due_starting()
        } else {
            Vec::new()
        };
        for key in leftover {
            let Some(change) = self.running_change(&key) else {
                continue;
            };
            endings.push(Ending {
                key,
                run: change.key.run,
                batch: ChangeBatch::one(now, change),
                needs_decide: false,
            });
        }
        self.apply_endings(endings).await
    }

    /// Ends one attempt (see [`Scheduler::attempt_end`]).
    pub(super) async fn finish_attempt(
        &mut self,
        key: AttemptKey,
        ti: TiKey,
        result: AttemptResult,
        expected: TaskState,
    ) -> Result<(), SchedulerError> {
        let ending = self
            .attempt_end(key, ti, result, expected, None, None)
            .await?;
        self.apply_endings(ending.into_iter().collect()).await
    }

    /// Writes the endings of attempts: all in one transaction, or, when that
    /// conflicts, each in its own, ignoring those that conflict again. Their
    /// runs are decided again in the next step, except where nothing can
    /// come of it (see `Ending::needs_decide`).
    pub(super) async fn apply_endings(
        &mut self,
        endings: Vec<Ending>,
    ) -> Result<(), SchedulerError> {
        if endings.is_empty() {
            return Ok(());
        }
        let mut busy: HashMap<RunKey, bool> = HashMap::new();
        for e in &endings {
            // The end of a leaf whose run still has an attempt in flight,
            // or task instances admission left waiting, schedules nothing
            // and cannot finish the run: deciding it again (a read of
            // every task instance of the run) would find nothing to do.
            // In a wide run the attempts of a batch often all end
            // together, so "in flight" alone would decide the run at every
            // batch. The run's last end, or any end that can make a
            // downstream task runnable, is decided as always.
            let run_busy = *busy.entry(e.run).or_insert_with(|| {
                self.inflight.values().any(|f| f.ti.run == e.run)
                    || self
                        .waiting
                        .as_ref()
                        .is_some_and(|w| w.iter().any(|a| a.key.run == e.run))
            });
            if e.needs_decide || !run_busy {
                self.dirty.insert(e.run);
            }
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
            let running_write = e.is_running_write();
            match self.store.apply(e.batch).await {
                Ok(_) => {}
                Err(StoreError::Conflict { what }) if running_write => {
                    tracing::debug!(attempt = %e.key, "running write skipped, state moved on: {what}");
                }
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
    /// run or task is gone. `forced` is an outcome the executor decided
    /// rather than the exit code: `Disrupted` (killed from outside the task:
    /// retried at once, `max_tries` raised by one, so it spends no retry) or
    /// a failure without retry (a request no node can ever hold).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn attempt_end(
        &mut self,
        key: AttemptKey,
        ti: TiKey,
        mut result: AttemptResult,
        expected: TaskState,
        handle: Option<&AttemptHandle>,
        forced: Option<AttemptOutcome>,
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
        if let Some(forced) = forced {
            outcome = forced;
        }
        let mut xcoms: Vec<(String, serde_json::Value)> = Vec::new();
        let mut flow = None;
        if outcome == AttemptOutcome::Success {
            // A command's result is its last stdout line. A Python task
            // pushed its return value through the execution API, which the
            // scheduler reads only when it decides something (a branch, a
            // short circuit, or the source of a mapped task's expansion),
            // or its zygote brought the value with the end: stored here,
            // with the end.
            let ended = if is_python { result.xcoms.take() } else { None };
            let value = if let Some(ended) = &ended {
                Ok(crate::result::check_ended_xcoms(
                    ti.task_id.as_str(),
                    ended,
                    self.cfg.xcom_max_bytes,
                )
                .map(|()| ended.get("return_value").cloned()))
            } else if is_python && !return_value_decides(&loaded, task, &ti) {
                Ok(Ok(None))
            } else if is_python {
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
                    if let Some(ended) = ended {
                        xcoms.extend(ended);
                    } else if task.do_xcom_push
                        && !is_python
                        && let Some(value) = value
                    {
                        xcoms.push(("return_value".into(), value));
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
        if !res.retry_spent && res.state == TaskState::UpForRetry {
            // A disruption: give the try back, as a fenced-off try does.
            let max_tries = match self.store.get_ti(&ti).await {
                Ok(record) => record.max_tries,
                Err(StoreError::NotFound { .. }) => task.retry.retries,
                Err(e) => return Err(e.into()),
            };
            change = change.max_tries(max_tries.saturating_add(1));
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
        // Stored even when the value then failed the attempt (a branch to no
        // task, a mapped task's source that is no list), as a push is.
        for (key, value) in xcoms {
            batch.push(NewXcom {
                ti: ti.clone(),
                key,
                value,
            });
        }
        Ok(Some(Ending {
            key,
            run: ti.run,
            batch,
            needs_decide: !res.state.is_finished() || loaded.has_downstream(task),
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
}

#[cfg(test)]
mod tests {
    use super::{counted_try_number, return_value_decides};
    use crate::dags::LoadedDag;
    use pave_core::model::{Flow, MapSource, Mapping, Task, TaskKind, XcomRef};
    use pave_core::{Dag, MapIndex};
    use pave_store::{DagVersionId, RunKey, TiKey};

    fn python(id: &str) -> Task {
        Task::new(
            id,
            TaskKind::Python {
                callable: id.to_owned(),
            },
        )
    }

    #[test]
    fn only_a_return_value_that_steers_the_run_is_read_back() {
        let mut d = Dag::new("steer");
        let mut choose = python("choose");
        choose.flow = Flow::Branch;
        let mut gate = python("gate");
        gate.flow = Flow::ShortCircuit {
            ignore_downstream_trigger_rules: true,
        };
        let mut each = python("each");
        each.mapping = Some(Mapping::Expand {
            args: [(
                "x".to_owned(),
                MapSource::Xcom(XcomRef {
                    task_id: "src".into(),
                    key: "return_value".into(),
                }),
            )]
            .into(),
        });
        let mut then = python("then");
        then.upstream = vec!["each".into()];
        d.tasks = vec![python("plain"), choose, gate, python("src"), each, then];
        let loaded = LoadedDag::new(DagVersionId(1), d);
        let decides = |id: &str, map_index: MapIndex| {
            let task = loaded.task(id).expect("task");
            return_value_decides(&loaded, task, &TiKey::new(RunKey(1), id, map_index))
        };
        assert!(decides("choose", MapIndex::UNMAPPED));
        assert!(decides("gate", MapIndex::UNMAPPED));
        // The source of an expansion: its length is checked at its end.
        assert!(decides("src", MapIndex::UNMAPPED));
        // Neither a plain task, nor a mapped instance, nor the downstream
        // of a mapped task needs its value read.
        assert!(!decides("plain", MapIndex::UNMAPPED));
        assert!(!decides("each", MapIndex(3)));
        assert!(!decides("then", MapIndex::UNMAPPED));
    }

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
