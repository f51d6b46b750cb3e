//! The per-run scheduling decision: which task instances to schedule, skip, mark
//! upstream_failed or expand, and when the run is over.
//!
//! This is Airflow 3's `DagRun.update_state` / `task_instance_scheduling_decisions` /
//! `_get_ready_tis` with the dependencies it evaluates (`TriggerRuleDep`,
//! `NotPreviouslySkippedDep`, `MappedTaskUpstreamDep`, `NotInRetryPeriodDep`), the
//! branch and short-circuit skips that Airflow applies from inside the finishing task
//! (`SkipMixin`), the expansion of mapped tasks (`TaskMap.expand_mapped_task`,
//! `DagRun._create_tasks`) and the run timeout (`SchedulerJobRunner._schedule_dag_run`).
//! Everything is computed from the [`RunView`]; nothing is stored between calls.
//!
//! One decision evaluates every undecided task instance against the states in the view,
//! as Airflow's scheduler pass does against its snapshot of finished task instances: a
//! skip decided in this pass reaches the downstream tasks in the next pass. The driver
//! calls `decide` again after applying the commands; the run reaches the same end states
//! as Airflow's, pass for pass.

use crate::ids::{MapIndex, TaskId};
use crate::mapping::{xcom_refs, xcom_sources};
use crate::model::{Dag, Flow, MapSource, Mapping, Task, TaskIdx, TaskRole};
use crate::run::{Command, FlowResult, RunView, TiView, XcomMap};
use crate::state::{RunState, TaskState};
use crate::trigger::{self, EvalContext, Readiness, UpstreamCounts};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

/// Decide what to do next with one DAG run. See the module docs and [`Command`].
///
/// Task instances are visited in `dag.tasks` order (then map index), so the output is
/// deterministic. The work is linear in the run's task instances and the DAG's edges,
/// except for DAGs with setup tasks, where each undecided non-teardown task walks its
/// ancestors once to find the setups it depends on indirectly.
pub fn decide(view: &RunView, now: DateTime<Utc>) -> Vec<Command> {
    if view.run_state.is_finished() {
        return Vec::new();
    }
    let graph = Graph::new(view.dag);
    let tis = TiIndex::new(&graph, view.tis);
    let mut out = Vec::new();

    // A task instance whose task is no longer in the DAG is marked removed (Airflow's
    // `_filter_tis_and_exclude_removed`).
    for ti in &tis.orphans {
        if ti.state != TaskState::Removed {
            out.push(set_state(
                ti,
                TaskState::Removed,
                format!("task `{}` is no longer in the DAG", ti.task_id),
            ));
        }
    }

    if let Some(cmds) = timeout_commands(view, &tis, now) {
        out.extend(cmds);
        return out;
    }

    let mut d = Decider {
        view,
        now,
        g: &graph,
        tis: &tis,
        direct_skips: direct_flow_skips(view.dag, &graph, &tis),
        setup_cache: HashMap::new(),
        out,
        overlay: HashMap::new(),
        progress: false,
        waiting: Vec::new(),
    };
    for idx in 0..view.dag.tasks.len() {
        for ti in &tis.by_task[idx] {
            if is_undecided(ti.state) {
                d.decide_ti(idx, ti);
            }
        }
    }
    d.finish()
}

/// States in which a task instance waits for the scheduler's decision (Airflow's
/// `SCHEDULEABLE_STATES`). `scheduled` has already been decided.
fn is_undecided(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::NoStatus | TaskState::UpForRetry | TaskState::UpForReschedule
    )
}

fn set_state(ti: &TiView, state: TaskState, reason: String) -> Command {
    Command::SetState {
        task_id: ti.task_id.clone(),
        map_index: ti.map_index,
        state,
        reason,
    }
}

/// The DAG's edges as indexes, with the implicit ones made explicit: a mapped task's
/// XCom sources and a teardown's setups are upstream of it, as in Airflow.
struct Graph<'a> {
    dag: &'a Dag,
    index: HashMap<&'a str, TaskIdx>,
    upstream: Vec<Vec<TaskIdx>>,
    downstream: Vec<Vec<TaskIdx>>,
    has_setups: bool,
}

impl<'a> Graph<'a> {
    fn new(dag: &'a Dag) -> Graph<'a> {
        let index: HashMap<&str, TaskIdx> = dag
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.task_id.as_str(), i))
            .collect();
        let mut upstream = vec![Vec::new(); dag.tasks.len()];
        let mut downstream = vec![Vec::new(); dag.tasks.len()];
        for (i, task) in dag.tasks.iter().enumerate() {
            let implicit_setups = match &task.role {
                TaskRole::Teardown { setups, .. } => setups.as_slice(),
                _ => &[],
            };
            let ids = task
                .upstream
                .iter()
                .map(TaskId::as_str)
                .chain(implicit_setups.iter().map(TaskId::as_str))
                .chain(xcom_sources(task).map(|r| r.as_str()));
            for id in ids {
                if let Some(&u) = index.get(id)
                    && u != i
                    && !upstream[i].contains(&u)
                {
                    upstream[i].push(u);
                    downstream[u].push(i);
                }
            }
        }
        let has_setups = dag.tasks.iter().any(|t| t.role.is_setup());
        Graph {
            dag,
            index,
            upstream,
            downstream,
            has_setups,
        }
    }

    fn task(&self, idx: TaskIdx) -> &'a Task {
        &self.dag.tasks[idx]
    }

    /// Every task reachable from `starts` (excluded unless reachable) following `edges`.
    fn reach(&self, starts: &[TaskIdx], edges: &[Vec<TaskIdx>]) -> Vec<bool> {
        let mut seen = vec![false; self.dag.tasks.len()];
        let mut queue: VecDeque<TaskIdx> = starts.iter().copied().collect();
        while let Some(t) = queue.pop_front() {
            for &n in &edges[t] {
                if !seen[n] {
                    seen[n] = true;
                    queue.push_back(n);
                }
            }
        }
        seen
    }

    fn descendants(&self, idx: TaskIdx) -> Vec<bool> {
        self.reach(&[idx], &self.downstream)
    }

    fn ancestors(&self, idx: TaskIdx) -> Vec<bool> {
        self.reach(&[idx], &self.upstream)
    }

    /// Whether `task` is inside group `group` (directly or in a nested group).
    fn in_group(&self, task: &Task, group: &str) -> bool {
        let mut cur = task.group.clone();
        while let Some(g) = cur {
            if g == group {
                return true;
            }
            cur = match self.dag.groups.iter().find(|x| x.group_id == g) {
                Some(x) => x.parent.clone(),
                None => g.rsplit_once('.').map(|(p, _)| p.to_owned()),
            };
        }
        false
    }

    fn is_group(&self, id: &str) -> bool {
        self.dag.groups.iter().any(|g| g.group_id == id)
            || self.dag.tasks.iter().any(|t| self.in_group(t, id))
    }

    /// A group's roots: its tasks with no upstream task inside the group (what Airflow's
    /// branch follows when it is given a group id).
    fn group_roots(&self, group: &str) -> Vec<TaskIdx> {
        (0..self.dag.tasks.len())
            .filter(|&i| self.in_group(self.task(i), group))
            .filter(|&i| {
                !self.upstream[i]
                    .iter()
                    .any(|&u| self.in_group(self.task(u), group))
            })
            .collect()
    }
}

/// The run's task instances grouped by task (in map-index order).
struct TiIndex<'a> {
    by_task: Vec<Vec<&'a TiView>>,
    orphans: Vec<&'a TiView>,
}

impl<'a> TiIndex<'a> {
    fn new(g: &Graph<'_>, tis: &'a [TiView]) -> TiIndex<'a> {
        let mut by_task = vec![Vec::new(); g.dag.tasks.len()];
        let mut orphans = Vec::new();
        for ti in tis {
            match g.index.get(ti.task_id.as_str()) {
                Some(&i) => by_task[i].push(ti),
                None => orphans.push(ti),
            }
        }
        for v in &mut by_task {
            v.sort_by_key(|ti| ti.map_index);
        }
        orphans.sort_by(|a, b| (&a.task_id, a.map_index).cmp(&(&b.task_id, b.map_index)));
        TiIndex { by_task, orphans }
    }

    fn get(&self, task: TaskIdx, map_index: MapIndex) -> Option<&'a TiView> {
        self.by_task[task]
            .iter()
            .find(|ti| ti.map_index == map_index)
            .copied()
    }
}

/// Airflow's dagrun_timeout: once the run has been going for longer than the timeout,
/// every unfinished task instance is set to skipped (running ones too; the driver stops
/// their attempts) and the run fails.
fn timeout_commands(view: &RunView, tis: &TiIndex<'_>, now: DateTime<Utc>) -> Option<Vec<Command>> {
    let timeout = view.dag.dagrun_timeout?;
    let start = view.start_date?;
    let timeout = chrono::Duration::from_std(timeout).ok()?;
    let deadline = start.checked_add_signed(timeout)?;
    if now <= deadline {
        return None;
    }
    let secs = timeout.num_seconds();
    let mut out: Vec<Command> = tis
        .by_task
        .iter()
        .flatten()
        .filter(|ti| !ti.state.is_finished())
        .map(|ti| {
            set_state(
                ti,
                TaskState::Skipped,
                format!("the run exceeded its dagrun_timeout of {secs}s"),
            )
        })
        .collect();
    out.push(Command::FinishRun {
        state: RunState::Failed,
        reason: format!(
            "the run exceeded its dagrun_timeout of {secs}s (started {start}); unfinished task instances were skipped"
        ),
    });
    Some(out)
}

/// The tasks a finished branch or short-circuit decided to skip, and why.
fn flow_skip_set(g: &Graph<'_>, flow_task: TaskIdx, result: &FlowResult) -> Vec<bool> {
    let n = g.dag.tasks.len();
    let mut skip = vec![false; n];
    let task = g.task(flow_task);
    match (result, &task.flow) {
        (FlowResult::Branch { follow }, _) => {
            // Follow ids may name groups: Airflow follows the group's roots. Every task
            // downstream of a followed task counts as followed, so a task that is both
            // directly downstream of the branch and downstream of a followed task (the
            // classic "join") is not skipped.
            let mut followed: Vec<TaskIdx> = Vec::new();
            for id in follow {
                match g.index.get(id.as_str()) {
                    Some(&i) => followed.push(i),
                    None => followed.extend(g.group_roots(id)),
                }
            }
            let mut extended = g.reach(&followed, &g.downstream);
            for &f in &followed {
                extended[f] = true;
            }
            for &d in &g.downstream[flow_task] {
                if !extended[d] {
                    skip[d] = true;
                }
            }
        }
        (FlowResult::ShortCircuit { proceed: false }, flow) => {
            let ignore = match flow {
                Flow::ShortCircuit {
                    ignore_downstream_trigger_rules,
                } => *ignore_downstream_trigger_rules,
                _ => true,
            };
            let targets: Vec<TaskIdx> = if ignore {
                let all = g.descendants(flow_task);
                (0..n).filter(|&i| all[i]).collect()
            } else {
                g.downstream[flow_task].clone()
            };
            // Teardowns still run after a short circuit (Airflow excludes them).
            for t in targets {
                if !g.task(t).role.is_teardown() {
                    skip[t] = true;
                }
            }
        }
        (FlowResult::ShortCircuit { proceed: true }, _) => {}
    }
    skip
}

fn flow_reason(flow_task: &Task, result: &FlowResult) -> String {
    match result {
        FlowResult::Branch { follow } if follow.is_empty() => {
            format!("branch `{}` followed no task", flow_task.task_id)
        }
        FlowResult::Branch { follow } => format!(
            "branch `{}` followed {}",
            flow_task.task_id,
            follow
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        FlowResult::ShortCircuit { .. } => {
            format!(
                "short-circuit task `{}` returned a falsy value",
                flow_task.task_id
            )
        }
    }
}

/// Skips that Airflow applies from inside a finishing *unmapped* branch or
/// short-circuit task: the unexpanded (map index -1) instances of the tasks it skips.
fn direct_flow_skips(dag: &Dag, g: &Graph<'_>, tis: &TiIndex<'_>) -> Vec<Option<String>> {
    let mut skips: Vec<Option<String>> = vec![None; dag.tasks.len()];
    for (f, task) in dag.tasks.iter().enumerate() {
        if task.flow == Flow::Normal || task.mapping.is_some() {
            continue;
        }
        let Some(ti) = tis.get(f, MapIndex::UNMAPPED) else {
            continue;
        };
        let (true, Some(result)) = (ti.state.is_finished(), &ti.flow_result) else {
            continue;
        };
        let set = flow_skip_set(g, f, result);
        for (t, s) in set.into_iter().enumerate() {
            if s && skips[t].is_none() {
                skips[t] = Some(flow_reason(task, result));
            }
        }
    }
    skips
}

/// The length of a mapped task's expansion, or why it cannot be computed.
enum MapLength {
    Known(usize),
    /// An XCom source has not produced its value (it did not succeed).
    Missing(Vec<String>),
    /// A source produced something that cannot be mapped over.
    Invalid(String),
}

struct Decider<'a, 'v> {
    view: &'a RunView<'v>,
    now: DateTime<Utc>,
    g: &'a Graph<'v>,
    tis: &'a TiIndex<'v>,
    direct_skips: Vec<Option<String>>,
    /// Indirect relevant setups per task (Airflow's setup constraint), computed lazily.
    setup_cache: HashMap<TaskIdx, Vec<TaskIdx>>,
    out: Vec<Command>,
    /// States after this decision's SetState commands, to decide whether the run ends.
    overlay: HashMap<(TaskIdx, MapIndex), TaskState>,
    /// Whether any task instance was scheduled, expanded or changed, or may run later
    /// (an up_for_retry instance waiting out its delay).
    progress: bool,
    /// Undecided task instances whose rules are not met yet, with the reason.
    waiting: Vec<(String, String)>,
}

impl Decider<'_, '_> {
    fn emit_state(&mut self, idx: TaskIdx, ti: &TiView, state: TaskState, reason: String) {
        self.overlay.insert((idx, ti.map_index), state);
        self.out.push(set_state(ti, state, reason));
        self.progress = true;
    }

    fn decide_ti(&mut self, idx: TaskIdx, ti: &TiView) {
        let task = self.g.task(idx);
        let placeholder = ti.map_index.is_unmapped() && task.mapping.is_some();

        // A mapping over literals only is expanded when the run is created in Airflow,
        // before any dependency is evaluated; each instance then has its own fate.
        if placeholder
            && is_literal_only(task)
            && let MapLength::Known(n) = self.map_length(task)
            && n > 0
        {
            self.expand(idx, ti, n);
            return;
        }

        if let Some(reason) = self.flow_skip(idx, ti) {
            self.emit_state(idx, ti, TaskState::Skipped, reason);
            return;
        }

        let verdict = self.readiness(idx, ti);
        if let Some(state) = verdict.terminal_state() {
            let reason = verdict.reason().unwrap_or_default().to_owned();
            self.emit_state(idx, ti, state, reason);
            return;
        }
        if task.mapping.is_some()
            && let Some((state, reason)) = self.mapped_upstream_verdict(idx)
        {
            self.emit_state(idx, ti, state, reason);
            return;
        }
        if let Readiness::Wait { reason } = verdict {
            self.waiting.push((label(ti), reason));
            return;
        }

        // The rule is met.
        if matches!(ti.state, TaskState::UpForRetry | TaskState::UpForReschedule)
            && ti.next_retry_at.is_some_and(|at| at > self.now)
        {
            // Runnable, just not yet (Airflow's NotInRetryPeriodDep): not a deadlock.
            self.progress = true;
            return;
        }
        if placeholder {
            match self.map_length(task) {
                MapLength::Known(0) => self.emit_state(
                    idx,
                    ti,
                    TaskState::Skipped,
                    format!(
                        "mapped task `{}` has nothing to map over (zero-length input)",
                        task.task_id
                    ),
                ),
                MapLength::Known(n) => self.expand(idx, ti, n),
                MapLength::Missing(missing) => self.emit_state(
                    idx,
                    ti,
                    TaskState::UpstreamFailed,
                    format!(
                        "cannot expand mapped task `{}`: no value from {} (the task did not succeed)",
                        task.task_id,
                        missing.join(", ")
                    ),
                ),
                MapLength::Invalid(reason) => {
                    self.emit_state(idx, ti, TaskState::Failed, reason)
                }
            }
            return;
        }
        self.out.push(Command::Schedule {
            task_id: ti.task_id.clone(),
            map_index: ti.map_index,
        });
        self.overlay
            .insert((idx, ti.map_index), TaskState::Scheduled);
        self.progress = true;
    }

    fn expand(&mut self, idx: TaskIdx, ti: &TiView, n: usize) {
        let task = self.g.task(idx);
        let cap = self.view.max_map_length;
        if n > cap {
            let reason = format!(
                "mapped task `{}` would expand to {n} instances, more than the limit of {cap}; \
                 map over fewer items or raise the scheduler's max_map_length setting \
                 (Airflow's [core] max_map_length)",
                task.task_id
            );
            self.emit_state(idx, ti, TaskState::Failed, reason);
            return;
        }
        self.out.push(Command::Expand {
            task_id: task.task_id.clone(),
            count: n,
        });
        // The placeholder turns into unfinished instances.
        self.overlay
            .insert((idx, ti.map_index), TaskState::NoStatus);
        self.progress = true;
    }

    /// Airflow's `NotPreviouslySkippedDep` plus the direct skips of `SkipMixin`.
    fn flow_skip(&self, idx: TaskIdx, ti: &TiView) -> Option<String> {
        if ti.map_index.is_unmapped()
            && let Some(reason) = &self.direct_skips[idx]
        {
            return Some(reason.clone());
        }
        for &f in &self.g.upstream[idx] {
            let parent = self.g.task(f);
            if parent.flow == Flow::Normal {
                continue;
            }
            // An unmapped parent decides for every instance of this task; a mapped
            // parent's instance decides for the instance with the same map index.
            let at = if parent.mapping.is_some() {
                ti.map_index
            } else {
                MapIndex::UNMAPPED
            };
            let Some(pti) = self.tis.get(f, at) else {
                continue;
            };
            let (true, Some(result)) = (pti.state.is_finished(), &pti.flow_result) else {
                continue;
            };
            if flow_skip_set(self.g, f, result)[idx] {
                return Some(flow_reason(parent, result));
            }
        }
        None
    }

    /// Counts over every instance of the given upstream tasks. A task with no instance
    /// in the view counts as one unfinished instance, so nothing runs early.
    fn counts(&self, tasks: &[TaskIdx]) -> UpstreamCounts {
        let mut c = UpstreamCounts::default();
        for &u in tasks {
            let is_setup = self.g.task(u).role.is_setup();
            let tis = &self.tis.by_task[u];
            if tis.is_empty() {
                c.add(TaskState::NoStatus, is_setup);
            }
            for ti in tis {
                c.add(ti.state, is_setup);
            }
        }
        c
    }

    /// Airflow's `TriggerRuleDep`, setup constraint included.
    fn readiness(&mut self, idx: TaskIdx, ti: &TiView) -> Readiness {
        let task = self.g.task(idx);
        let ups = &self.g.upstream[idx];
        if ups.is_empty() {
            return Readiness::Ready;
        }
        if task.trigger_rule == crate::model::TriggerRule::Always {
            return Readiness::Ready;
        }
        let ctx = EvalContext {
            map_index: ti.map_index.0,
        };
        let mut setup_wait = None;
        if !task.role.is_teardown() {
            let setups = self.indirect_setups(idx);
            if !setups.is_empty() {
                let verdict = trigger::evaluate_setup_constraint(&self.counts(&setups), ctx);
                if verdict.is_terminal() {
                    return verdict;
                }
                if let Readiness::Wait { .. } = verdict {
                    setup_wait = Some(verdict);
                }
            }
        }
        let verdict = match trigger::evaluate(task.trigger_rule, &self.counts(ups), ctx) {
            Readiness::Wait { reason } => Readiness::Wait {
                reason: self.note_missing(ups, reason),
            },
            v => v,
        };
        match (verdict, setup_wait) {
            (v, _) if v.is_terminal() => v,
            (_, Some(w)) => w,
            (v, None) => v,
        }
    }

    /// A wait `reason` that also names the upstream tasks without any instance
    /// in this run: the run was created without them (their `start_date` or
    /// `end_date` leaves out its logical date), so they will never finish.
    fn note_missing(&self, ups: &[TaskIdx], mut reason: String) -> String {
        let missing: Vec<String> = ups
            .iter()
            .filter(|&&u| self.tis.by_task[u].is_empty())
            .map(|&u| format!("`{}`", self.g.task(u).task_id))
            .collect();
        if !missing.is_empty() {
            let _ = write!(
                reason,
                " ({} {} no task instance in this run: outside its start_date/end_date)",
                missing.join(", "),
                if missing.len() == 1 { "has" } else { "have" }
            );
        }
        reason
    }

    /// The relevant setups of a non-teardown task that are not its direct upstreams
    /// (Airflow's `get_upstreams_only_setups` minus `upstream_task_ids`): ancestor setups
    /// with no teardown, or with a teardown downstream of the task.
    fn indirect_setups(&mut self, idx: TaskIdx) -> Vec<TaskIdx> {
        if !self.g.has_setups {
            return Vec::new();
        }
        if let Some(v) = self.setup_cache.get(&idx) {
            return v.clone();
        }
        let g = self.g;
        let ancestors = g.ancestors(idx);
        let mut descendants: Option<Vec<bool>> = None;
        let mut result = Vec::new();
        for (s, &is_ancestor) in ancestors.iter().enumerate() {
            if !is_ancestor || !g.task(s).role.is_setup() || g.upstream[idx].contains(&s) {
                continue;
            }
            let teardowns: Vec<TaskIdx> = g.downstream[s]
                .iter()
                .copied()
                .filter(|&t| g.task(t).role.is_teardown())
                .collect();
            let relevant = teardowns.is_empty() || {
                let desc = descendants.get_or_insert_with(|| g.descendants(idx));
                teardowns.iter().any(|&t| desc[t])
            };
            if relevant {
                result.push(s);
            }
        }
        self.setup_cache.insert(idx, result.clone());
        result
    }

    /// Airflow's `MappedTaskUpstreamDep`: an unexpanded XCom source of a mapped task that
    /// failed (or was skipped) fails (or skips) the mapped task whatever its trigger rule.
    fn mapped_upstream_verdict(&self, idx: TaskIdx) -> Option<(TaskState, String)> {
        let task = self.g.task(idx);
        let mut skipped_by = None;
        for src in xcom_sources(task) {
            let Some(&s) = self.g.index.get(src.as_str()) else {
                continue;
            };
            let Some(sti) = self.tis.get(s, MapIndex::UNMAPPED) else {
                continue;
            };
            match sti.state {
                TaskState::Failed | TaskState::UpstreamFailed => {
                    return Some((
                        TaskState::UpstreamFailed,
                        format!(
                            "`{src}`, whose value mapped task `{}` expands over, ended {}",
                            task.task_id, sti.state
                        ),
                    ));
                }
                TaskState::Skipped => skipped_by = Some(src),
                _ => {}
            }
        }
        skipped_by.map(|src| {
            (
                TaskState::Skipped,
                format!(
                    "`{src}`, whose value mapped task `{}` expands over, was skipped",
                    task.task_id
                ),
            )
        })
    }

    fn map_length(&self, task: &Task) -> MapLength {
        match &task.mapping {
            None => MapLength::Known(1),
            Some(Mapping::Expand { args }) => {
                let mut total: usize = 1;
                let mut missing = Vec::new();
                for (name, source) in args {
                    match self.source_length(task, name, source, false) {
                        MapLength::Known(n) => total = total.saturating_mul(n),
                        MapLength::Missing(m) => missing.extend(m),
                        invalid @ MapLength::Invalid(_) => return invalid,
                    }
                }
                if missing.is_empty() {
                    MapLength::Known(total)
                } else {
                    MapLength::Missing(missing)
                }
            }
            Some(Mapping::ExpandKwargs { source }) => {
                self.source_length(task, "expand_kwargs", source, true)
            }
        }
    }

    fn source_length(&self, task: &Task, arg: &str, source: &MapSource, kwargs: bool) -> MapLength {
        let values = match source {
            MapSource::Literal { values } => {
                return check_kwargs_items(task, arg, kwargs, values.iter())
                    .unwrap_or(MapLength::Known(values.len()));
            }
            MapSource::Xcom(r) => r,
        };
        let Some(&s) = self.g.index.get(values.task_id.as_str()) else {
            return MapLength::Invalid(format!(
                "mapped task `{}` expands `{arg}` over task `{}`, which is not in the DAG",
                task.task_id, values.task_id
            ));
        };
        let src = self.g.task(s);
        if src.mapping.is_some() {
            // A mapped source contributes one element per instance that pushed a value,
            // once all its instances are finished (Airflow's `get_task_map_length`).
            let tis = &self.tis.by_task[s];
            if tis.is_empty() || tis.iter().any(|t| !t.state.is_finished()) {
                return MapLength::Missing(vec![format!("`{}`", values.task_id)]);
            }
            let items = xcoms_of_mapped(self.view.xcoms, &values.task_id, &values.key);
            return check_kwargs_items(task, arg, kwargs, items.iter().copied())
                .unwrap_or(MapLength::Known(items.len()));
        }
        let succeeded = self
            .tis
            .get(s, MapIndex::UNMAPPED)
            .is_some_and(|t| t.state == TaskState::Success);
        if !succeeded {
            return MapLength::Missing(vec![format!("`{}`", values.task_id)]);
        }
        let key = (
            values.task_id.clone(),
            MapIndex::UNMAPPED,
            values.key.clone(),
        );
        let what = format!(
            "mapped task `{}` expands `{arg}` over the XCom `{}` of `{}`",
            task.task_id, values.key, values.task_id
        );
        match self.view.xcoms.get(&key) {
            None | Some(Value::Null) => MapLength::Invalid(format!(
                "{what}, but that task pushed no value; it must return a list{}",
                if kwargs { " of dicts" } else { " or a dict" }
            )),
            Some(Value::Array(items)) => check_kwargs_items(task, arg, kwargs, items.iter())
                .unwrap_or(MapLength::Known(items.len())),
            Some(Value::Object(map)) if !kwargs => MapLength::Known(map.len()),
            Some(other) => MapLength::Invalid(format!(
                "{what}, but that value is {} ({}); it must be a list{}",
                json_kind(other),
                short(other),
                if kwargs { " of dicts" } else { " or a dict" }
            )),
        }
    }

    /// Close the decision: end the run when every task instance is finished, or when
    /// nothing can ever move again (Airflow's "task deadlock").
    fn finish(mut self) -> Vec<Command> {
        let mut unfinished = false;
        let mut active = false;
        for (idx, tis) in self.tis.by_task.iter().enumerate() {
            for ti in tis {
                let state = self
                    .overlay
                    .get(&(idx, ti.map_index))
                    .copied()
                    .unwrap_or(ti.state);
                if !state.is_finished() {
                    unfinished = true;
                    if !is_undecided(state) {
                        active = true;
                    }
                }
            }
        }
        if !unfinished {
            let (state, reason) = self.run_outcome();
            self.out.push(Command::FinishRun { state, reason });
        } else if !active && !self.progress {
            let mut reason =
                "deadlock: no task instance can run, and none is running; waiting:".to_owned();
            for (who, why) in self.waiting.iter().take(5) {
                let _ = write!(reason, " {who}: {why};");
            }
            if self.waiting.len() > 5 {
                let _ = write!(reason, " and {} more", self.waiting.len() - 5);
            }
            self.out.push(Command::FinishRun {
                state: RunState::Failed,
                reason,
            });
        }
        self.out
    }

    /// Airflow's run state: failed if any "effective leaf" task instance failed or is
    /// upstream_failed, else success. Teardowns without `on_failure_fail_dagrun` are not
    /// leaves, and a task whose only downstream tasks are such teardowns is one.
    fn run_outcome(&self) -> (RunState, String) {
        let g = self.g;
        let ignorable = |t: TaskIdx| match &g.task(t).role {
            TaskRole::Teardown {
                on_failure_fail_dagrun,
                ..
            } => !on_failure_fail_dagrun,
            _ => false,
        };
        let n = g.dag.tasks.len();
        let mut leaves: Vec<TaskIdx> = (0..n)
            .filter(|&t| g.downstream[t].iter().all(|&d| ignorable(d)) && !ignorable(t))
            .collect();
        if leaves.is_empty() {
            // A DAG of only ignorable teardowns: Airflow falls back to the plain leaves.
            leaves = (0..n).filter(|&t| g.downstream[t].is_empty()).collect();
        }
        for &leaf in &leaves {
            for ti in &self.tis.by_task[leaf] {
                let state = self
                    .overlay
                    .get(&(leaf, ti.map_index))
                    .copied()
                    .unwrap_or(ti.state);
                if matches!(state, TaskState::Failed | TaskState::UpstreamFailed) {
                    return (
                        RunState::Failed,
                        format!("leaf task instance {} ended {state}", label(ti)),
                    );
                }
            }
        }
        (
            RunState::Success,
            "every leaf task instance succeeded or was skipped".to_owned(),
        )
    }
}

fn label(ti: &TiView) -> String {
    if ti.map_index.is_unmapped() {
        format!("`{}`", ti.task_id)
    } else {
        format!("`{}`[{}]", ti.task_id, ti.map_index)
    }
}

fn is_literal_only(task: &Task) -> bool {
    task.mapping.is_some() && xcom_sources(task).next().is_none()
}

/// For `expand_kwargs`, every item must be a dict of arguments.
fn check_kwargs_items<'v>(
    task: &Task,
    arg: &str,
    kwargs: bool,
    mut items: impl Iterator<Item = &'v Value>,
) -> Option<MapLength> {
    if !kwargs {
        return None;
    }
    let bad = items.find(|v| !v.is_object())?;
    Some(MapLength::Invalid(format!(
        "mapped task `{}` uses {arg}, whose items must be dicts of arguments, but one is {} ({})",
        task.task_id,
        json_kind(bad),
        short(bad)
    )))
}

/// The values pushed under `key` by the expanded instances of a mapped task, in
/// map-index order.
fn xcoms_of_mapped<'x>(xcoms: &'x XcomMap, task_id: &TaskId, key: &str) -> Vec<&'x Value> {
    let from = (task_id.clone(), MapIndex(0), String::new());
    xcoms
        .range(from..)
        .take_while(|((t, _, _), _)| t == task_id)
        .filter(|((_, _, k), v)| k == key && !v.is_null())
        .map(|(_, v)| v)
        .collect()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let head: String = s.chars().take(57).collect();
        format!("{head}...")
    } else {
        s
    }
}

/// Check, when an unmapped task succeeds, that the value it returned can be mapped over
/// by the mapped tasks that expand over it; `Err` says why not, and the attempt should
/// then end as a (retryable) failure of *this* task.
///
/// This is where Airflow catches a bad mapping source: its task runner (and the
/// execution API, for the length) fails the producing task with
/// `XComForMappingNotPushed`, `UnmappableXComTypePushed` or
/// `UnmappableXComLengthPushed`, so the mapped task downstream ends upstream_failed.
/// `decide` still fails the placeholder if a bad value gets through (a driver that does
/// not call this), so nothing expands from it either way.
pub fn check_mapping_source_push(
    dag: &Dag,
    task: &Task,
    value: Option<&Value>,
    max_map_length: usize,
) -> Result<(), String> {
    // A mapped task's instances each contribute one element; Airflow checks nothing.
    if task.mapping.is_some() {
        return Ok(());
    }
    check_mapping_push(task, mapping_dependant(dag, task), value, max_map_length)
}

/// The first task of `dag` (in task order) that expands over `task`'s
/// `return_value`: the one [`check_mapping_source_push`] names in its errors.
pub fn mapping_dependant<'a>(dag: &'a Dag, task: &Task) -> Option<&'a Task> {
    dag.tasks
        .iter()
        .find(|t| mapping_sources(t).any(|id| *id == task.task_id))
}

/// The tasks whose `return_value` `task` expands over (none for an unmapped
/// task), so a driver can precompute [`mapping_dependant`] once per DAG.
pub fn mapping_sources(task: &Task) -> impl Iterator<Item = &TaskId> {
    xcom_refs(task)
        .filter(|r| r.key == "return_value")
        .map(|r| &r.task_id)
}

/// [`check_mapping_source_push`] with the dependant already found (by
/// [`mapping_dependant`], or from an index of it).
pub fn check_mapping_push(
    task: &Task,
    dependant: Option<&Task>,
    value: Option<&Value>,
    max_map_length: usize,
) -> Result<(), String> {
    if task.mapping.is_some() {
        return Ok(());
    }
    let Some(dependant) = dependant else {
        return Ok(());
    };
    let len = match value {
        None | Some(Value::Null) => {
            return Err(format!(
                "task `{}` returned no value, but mapped task `{}` expands over it; return a list or a dict",
                task.task_id, dependant.task_id
            ));
        }
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(o)) => o.len(),
        Some(other) => {
            return Err(format!(
                "task `{}` returned {} ({}), but mapped task `{}` expands over it; return a list or a dict",
                task.task_id,
                json_kind(other),
                short(other),
                dependant.task_id
            ));
        }
    };
    if len > max_map_length {
        return Err(format!(
            "task `{}` returned {len} items for mapped task `{}`, more than the limit of {max_map_length}; \
             return fewer items or raise the scheduler's max_map_length setting (Airflow's [core] max_map_length)",
            task.task_id, dependant.task_id
        ));
    }
    Ok(())
}

/// Why a branch or short-circuit task's return value cannot steer the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowResultError {
    #[error(
        "branch task `{task}` returned {value}; it must return a task id, a list of task ids, or None"
    )]
    NotTaskIds { task: TaskId, value: String },
    #[error(
        "branch task `{task}` returned {ids:?}, which are neither task ids nor task group ids of DAG `{dag}`"
    )]
    UnknownIds {
        task: TaskId,
        dag: String,
        ids: Vec<String>,
    },
}

/// Turn what a finished branch or short-circuit task returned into the [`FlowResult`]
/// that `decide` reads from its [`TiView`]; `Ok(None)` for an ordinary task.
///
/// A branch returns a task id, a list of them, or None (follow nothing); ids may be task
/// group ids. Anything else, or an id the DAG does not have, fails the branch task, as in
/// Airflow. A short circuit proceeds when its value is truthy in Python's sense.
pub fn flow_result_from_return(
    dag: &Dag,
    task: &Task,
    value: &Value,
) -> Result<Option<FlowResult>, FlowResultError> {
    match task.flow {
        Flow::Normal => Ok(None),
        Flow::ShortCircuit { .. } => Ok(Some(FlowResult::ShortCircuit {
            proceed: truthy(value),
        })),
        Flow::Branch => {
            let follow: Vec<String> = match value {
                Value::Null => Vec::new(),
                Value::String(s) => vec![s.clone()],
                Value::Array(items) if items.iter().all(Value::is_string) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                other => {
                    return Err(FlowResultError::NotTaskIds {
                        task: task.task_id.clone(),
                        value: short(other),
                    });
                }
            };
            let g = Graph::new(dag);
            let unknown: Vec<String> = follow
                .iter()
                .filter(|id| !g.index.contains_key(id.as_str()) && !g.is_group(id))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Err(FlowResultError::UnknownIds {
                    task: task.task_id.clone(),
                    dag: dag.dag_id.to_string(),
                    ids: unknown,
                });
            }
            Ok(Some(FlowResult::Branch { follow }))
        }
    }
}

/// Python truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}
