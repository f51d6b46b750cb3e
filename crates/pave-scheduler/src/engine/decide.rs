//! Deciding one run: its view from the store through pave-core's `decide`,
//! turned into one batch of changes (and fresh schedules for admission).

use super::*;

/// Where each task instance of a run's view is, by task id and map index.
pub(super) struct TiIndex(HashMap<(TaskId, MapIndex), usize>);

impl TiIndex {
    pub(super) fn new(tis: &[TiView]) -> Self {
        let mut map = HashMap::with_capacity(tis.len());
        for (i, t) in tis.iter().enumerate() {
            // The first one wins, as a linear search would find it.
            map.entry((t.task_id.clone(), t.map_index)).or_insert(i);
        }
        TiIndex(map)
    }

    pub(super) fn get(&self, task_id: &TaskId, map_index: MapIndex) -> Option<usize> {
        self.0.get(&(task_id.clone(), map_index)).copied()
    }
}

impl Scheduler {
    /// Asks pave-core what to do with one run and applies it. Returns the
    /// run's state afterwards.
    pub(super) async fn decide_run(
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
        // The batch may change task instances admission holds as waiting.
        self.waiting = None;
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
}
