//! Turns a DAG as written into the core model: `default_args` and Airflow's
//! defaults fill unset task fields; dependencies implied by XCom references
//! and teardown setups are added; task-group dependencies are expanded into
//! task-level `upstream` edges with Airflow's roots/leaves semantics.
//!
//! Problems that the model-level `validate` can see (unknown upstream
//! tasks, cycles, unknown groups...) are left to it, so each is reported once.

use crate::document::{RawDag, RawGroup, RawTask};
use crate::error::{Diag, Place, did_you_mean};
use crate::wire::{KindSel, TaskFields};
use pave_core::{
    Arg, Dag, MapSource, Mapping, Task, TaskGroup, TaskId, TaskKind, TaskRole, TriggerRule,
};
use std::collections::{BTreeMap, BTreeSet};

/// Converts one DAG; problems go to `diag`, and the result is as complete as
/// the input allows (so that validation can still find further problems).
pub(crate) fn convert(raw: RawDag, diag: &mut Diag) -> Dag {
    let RawDag {
        mut dag,
        defaults,
        tasks,
        groups,
    } = raw;
    let place = Place::dag(dag.dag_id.as_str());
    dag.groups = groups
        .iter()
        .map(|g| TaskGroup {
            group_id: g.group_id.clone(),
            tooltip: g.tooltip.clone(),
            parent: g.parent.clone(),
        })
        .collect();

    let mut written: Vec<Vec<String>> = Vec::new();
    for raw_task in tasks {
        let names = raw_task.upstream.clone();
        dag.tasks
            .push(build_task(raw_task, &defaults, diag, &place));
        written.push(names);
    }

    let graph = Graph::new(&dag, &written);
    for g in &dag.groups {
        if graph.index.contains_key(g.group_id.as_str()) {
            diag.err(
                &place,
                Some(&format!("task_groups.{}", g.group_id)),
                format!("task group id `{}` is also a task id", g.group_id),
                Some(
                    "rename the group or the task: ids of tasks and groups share one namespace"
                        .to_owned(),
                ),
            );
        }
    }

    // Task-level upstream: what was written (a group stands for its leaves),
    // then what XCom references and teardown setups imply.
    let mut upstream: Vec<Vec<TaskId>> = Vec::with_capacity(dag.tasks.len());
    for (i, names) in written.iter().enumerate() {
        let mut up = Vec::new();
        for name in names {
            if graph.index.contains_key(name.as_str()) || !graph.is_group(name) {
                up.push(TaskId::from(name.as_str()));
            } else {
                up.extend(
                    graph
                        .leaves(name)
                        .into_iter()
                        .map(|j| dag.tasks[j].task_id.clone()),
                );
            }
        }
        up.extend(graph.implied[i].iter().cloned());
        upstream.push(up);
    }

    for g in &groups {
        apply_group_deps(g, &graph, &dag, &mut upstream, diag, &place);
    }

    for (task, up) in dag.tasks.iter_mut().zip(upstream) {
        let mut seen = BTreeSet::new();
        task.upstream = up.into_iter().filter(|t| seen.insert(t.clone())).collect();
    }
    dag
}

/// `{group_id: g, upstream: [x]}`: every root of g depends on x (on x's
/// leaves if x is a group). `downstream: [y]`: y (y's roots if a group)
/// depends on every leaf of g.
fn apply_group_deps(
    g: &RawGroup,
    graph: &Graph<'_>,
    dag: &Dag,
    upstream: &mut [Vec<TaskId>],
    diag: &mut Diag,
    place: &Place,
) {
    let id = |j: usize| dag.tasks[j].task_id.clone();
    let resolve = |name: &str, as_upstream: bool, diag: &mut Diag, field: &str| -> Vec<usize> {
        if let Some(&j) = graph.index.get(name) {
            return vec![j];
        }
        if graph.is_group(name) {
            return if as_upstream {
                graph.leaves(name)
            } else {
                graph.roots(name)
            };
        }
        let mut known: Vec<&str> = graph.index.keys().copied().collect();
        known.extend(dag.groups.iter().map(|g| g.group_id.as_str()));
        diag.err(
            place,
            Some(&format!("task_groups.{}.{field}", g.group_id)),
            format!(
                "task group `{}` has `{field}` `{name}`, which is neither a task nor a task group",
                g.group_id
            ),
            did_you_mean(name, &known),
        );
        Vec::new()
    };
    for name in &g.upstream {
        let sources = resolve(name, true, diag, "upstream");
        for r in graph.roots(&g.group_id) {
            upstream[r].extend(sources.iter().map(|&s| id(s)));
        }
    }
    for name in &g.downstream {
        let targets = resolve(name, false, diag, "downstream");
        let leaves = graph.leaves(&g.group_id);
        for t in targets {
            upstream[t].extend(leaves.iter().map(|&l| id(l)));
        }
    }
}

fn build_task(raw: RawTask, defaults: &TaskFields, diag: &mut Diag, dag_place: &Place) -> Task {
    let place = dag_place.task(&raw.task_id);
    let own = &raw.fields;
    let own_trigger = own.trigger_rule;
    let command_only: Vec<&str> = [
        ("cwd", own.cwd.is_some()),
        ("output", own.output.is_some()),
        ("skip_exit_code", own.skip_exit_code.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| n)
    .collect();
    let f = raw.fields.or(defaults);

    let kind = match f.kind {
        Some(KindSel::Command(command)) => TaskKind::Command {
            command,
            cwd: f.cwd,
            output: f.output.unwrap_or_default(),
            skip_exit_code: f.skip_exit_code,
        },
        other => {
            for name in command_only {
                diag.err(
                    &place,
                    Some(name),
                    format!("`{name}` only applies to command tasks"),
                    Some("remove it, or make the task run a `command`".to_owned()),
                );
            }
            match other {
                Some(KindSel::Python(callable)) => TaskKind::Python { callable },
                Some(KindSel::Empty) => TaskKind::Empty,
                Some(KindSel::Command(_)) | None => {
                    diag.err(
                        &place,
                        None,
                        "the task has nothing to run".to_owned(),
                        Some("set `command: ...` (a shell command), `python: module.callable` or `empty: true`".to_owned()),
                    );
                    TaskKind::Empty
                }
            }
        }
    };

    let mut task = Task::new(raw.task_id.as_str(), kind);
    task.group = raw.group;
    if let Some(v) = f.trigger_rule {
        task.trigger_rule = v;
    }
    if let Some(v) = f.retries {
        task.retry.retries = v;
    }
    if let Some(v) = f.retry_delay {
        task.retry.retry_delay = v;
    }
    if let Some(v) = f.retry_exponential_backoff {
        task.retry.retry_exponential_backoff = v;
    }
    task.retry.max_retry_delay = f.max_retry_delay;
    task.execution_timeout = f.execution_timeout;
    task.start_date = f.start_date;
    task.end_date = f.end_date;
    if let Some(v) = f.priority_weight {
        task.priority_weight = v;
    }
    if let Some(v) = f.weight_rule {
        task.weight_rule = v;
    }
    if let Some(v) = f.pool {
        task.pool = v;
    }
    if let Some(v) = f.pool_slots {
        task.pool_slots = v;
    }
    task.max_active_tis_per_dag = f.max_active_tis_per_dag;
    task.resources = f.resources.unwrap_or_default();
    task.env = f.env.unwrap_or_default();
    task.placement = pave_core::Placement {
        executor: f.executor,
        image: f.image,
        spot: f.spot.unwrap_or_default(),
        pod_override: f.pod_override,
    };
    task.flow = f.flow.unwrap_or_default();
    task.args = f.args.unwrap_or_default();
    task.mapping = f.mapping;
    task.role = f.role.unwrap_or_default();
    if let Some(v) = f.do_xcom_push {
        task.do_xcom_push = v;
    }
    task.doc = f.doc;

    if task.role.is_teardown() {
        // Airflow fixes a teardown's trigger rule; it refuses any other.
        if let Some(rule) = own_trigger
            && rule != TriggerRule::AllDoneSetupSuccess
        {
            diag.err(
                &place,
                Some("trigger_rule"),
                format!(
                    "a teardown task's trigger rule is always `all_done_setup_success`, but `trigger_rule` is `{}`",
                    rule.as_str()
                ),
                Some("remove `trigger_rule` from the teardown".to_owned()),
            );
        }
        task.trigger_rule = TriggerRule::AllDoneSetupSuccess;
    }
    task
}

/// The dependency structure used to find the roots and leaves of groups:
/// task-level edges as written plus implied ones (before group expansion).
struct Graph<'a> {
    index: BTreeMap<&'a str, usize>,
    groups: BTreeMap<&'a str, Option<&'a str>>,
    /// Upstream implied by XCom references and teardown setups, per task.
    implied: Vec<Vec<TaskId>>,
    up: Vec<BTreeSet<usize>>,
    down: Vec<BTreeSet<usize>>,
    tasks: &'a [Task],
}

impl<'a> Graph<'a> {
    fn new(dag: &'a Dag, written: &[Vec<String>]) -> Graph<'a> {
        let mut index = BTreeMap::new();
        for (i, t) in dag.tasks.iter().enumerate() {
            index.entry(t.task_id.as_str()).or_insert(i);
        }
        let groups = dag
            .groups
            .iter()
            .map(|g| (g.group_id.as_str(), g.parent.as_deref()))
            .collect();
        let implied: Vec<Vec<TaskId>> = dag.tasks.iter().map(implied_upstream).collect();
        let n = dag.tasks.len();
        let mut up = vec![BTreeSet::new(); n];
        let mut down = vec![BTreeSet::new(); n];
        for i in 0..n {
            let explicit = written.get(i).into_iter().flatten().map(String::as_str);
            let implied_names = implied[i].iter().map(TaskId::as_str);
            for name in explicit.chain(implied_names) {
                if let Some(&j) = index.get(name) {
                    up[i].insert(j);
                    down[j].insert(i);
                }
            }
        }
        Graph {
            index,
            groups,
            implied,
            up,
            down,
            tasks: &dag.tasks,
        }
    }

    fn is_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// Whether `group` is `target` or nested inside it.
    fn within(&self, group: &str, target: &str) -> bool {
        let mut cur = Some(group);
        for _ in 0..=self.groups.len() {
            match cur {
                Some(g) if g == target => return true,
                Some(g) => cur = self.groups.get(g).copied().flatten(),
                None => return false,
            }
        }
        false
    }

    fn members(&self, group: &str) -> BTreeSet<usize> {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.group.as_deref().is_some_and(|g| self.within(g, group)))
            .map(|(i, _)| i)
            .collect()
    }

    /// Airflow's `TaskGroup.get_roots`: members with no upstream in the group.
    fn roots(&self, group: &str) -> Vec<usize> {
        let ids = self.members(group);
        ids.iter()
            .copied()
            .filter(|&i| self.up[i].is_disjoint(&ids))
            .collect()
    }

    /// Airflow's `TaskGroup.get_leaves`: members with no downstream in the
    /// group; a teardown leaf is replaced by the nearest non-teardown tasks
    /// upstream of it (not going through its setups).
    fn leaves(&self, group: &str) -> Vec<usize> {
        let ids = self.members(group);
        let mut out: Vec<usize> = Vec::new();
        for &i in &ids {
            if !self.down[i].is_disjoint(&ids) {
                continue;
            }
            if self.tasks[i].role.is_teardown() {
                let mut seen = BTreeSet::new();
                self.first_non_teardown(i, &ids, &mut seen, &mut out);
            } else {
                out.push(i);
            }
        }
        let mut seen = BTreeSet::new();
        out.retain(|i| seen.insert(*i));
        out
    }

    fn first_non_teardown(
        &self,
        task: usize,
        ids: &BTreeSet<usize>,
        seen: &mut BTreeSet<usize>,
        out: &mut Vec<usize>,
    ) {
        if !seen.insert(task) {
            return;
        }
        for &u in &self.up[task] {
            if !ids.contains(&u) {
                continue;
            }
            if self.tasks[u].role.is_teardown() {
                self.first_non_teardown(u, ids, seen, out);
            } else if self.tasks[task].role.is_teardown() && self.tasks[u].role.is_setup() {
                continue;
            } else if !self.has_non_teardown_downstream(u, task, ids) {
                out.push(u);
            }
        }
    }

    fn has_non_teardown_downstream(
        &self,
        task: usize,
        exclude: usize,
        ids: &BTreeSet<usize>,
    ) -> bool {
        self.down[task]
            .iter()
            .any(|&d| d != exclude && ids.contains(&d) && !self.tasks[d].role.is_teardown())
    }
}

/// Upstream tasks that a task's XCom references and teardown setups imply
/// (Airflow adds these dependencies itself).
fn implied_upstream(task: &Task) -> Vec<TaskId> {
    let mut out = Vec::new();
    for arg in task.args.values() {
        if let Arg::Xcom(r) = arg {
            out.push(r.task_id.clone());
        }
    }
    match &task.mapping {
        Some(Mapping::Expand { args }) => {
            for src in args.values() {
                if let MapSource::Xcom(r) = src {
                    out.push(r.task_id.clone());
                }
            }
        }
        Some(Mapping::ExpandKwargs {
            source: MapSource::Xcom(r),
        }) => out.push(r.task_id.clone()),
        _ => {}
    }
    if let TaskRole::Teardown { setups, .. } = &task.role {
        out.extend(setups.iter().cloned());
    }
    out
}
