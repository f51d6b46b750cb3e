//! The grid view as data: one column per run (oldest left), one row per
//! task in declaration order, task groups and mapped tasks collapsed into
//! one summary row until expanded. Pure: built from records, no IO.

use crate::format::{self, summary_state};
use crate::render::segment;
use chrono::{DateTime, Utc};
use pave_core::{Dag, TaskState};
use pave_store::{RunRecord, TiRecord};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// One run's column header.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Column {
    pub run_id: String,
    pub state: String,
    pub href: String,
    /// Short label: the run's start time, or its logical date.
    pub label: String,
    pub title: String,
    /// Height of the run's duration bar, 0 to 100 (relative to the longest run shown).
    pub bar: u32,
}

/// One cell: a task instance, or a summary of several.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Cell {
    /// `none` for a task instance without state; empty for no instance.
    pub state: String,
    pub href: String,
    pub title: String,
    /// For a summary cell: how many instances it stands for (0 otherwise).
    pub count: usize,
}

/// One row: a group, a task, or one map index of a mapped task.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    /// `group`, `task`, `mapped` or `instance`.
    pub kind: &'static str,
    /// The group id, the task id, or `task[3]`.
    pub id: String,
    pub label: String,
    pub depth: usize,
    pub expanded: bool,
    /// The `expand` value that toggles this row (groups and mapped tasks).
    pub toggle: String,
    pub cells: Vec<Cell>,
}

/// The grid.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Grid {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    /// Whether any run shown is still queued or running (poll faster).
    pub active: bool,
}

/// The chain of groups of a task, outermost first.
fn group_chain(dag: &Dag, innermost: Option<&str>) -> Vec<String> {
    let parents: HashMap<&str, Option<&str>> = dag
        .groups
        .iter()
        .map(|g| (g.group_id.as_str(), g.parent.as_deref()))
        .collect();
    let mut chain = Vec::new();
    let mut cur = innermost.map(str::to_owned);
    while let Some(g) = cur {
        if chain.contains(&g) {
            break;
        }
        cur = match parents.get(g.as_str()) {
            Some(p) => p.map(str::to_owned),
            // Not declared: infer the parent from the dotted id.
            None => g.rsplit_once('.').map(|(p, _)| p.to_owned()),
        };
        chain.push(g);
    }
    chain.reverse();
    chain
}

/// The text after the enclosing group's prefix (`grp.task` -> `task`).
fn short(id: &str, parent: Option<&str>) -> String {
    match parent {
        Some(p) => id
            .strip_prefix(p)
            .and_then(|r| r.strip_prefix('.'))
            .unwrap_or(id)
            .to_owned(),
        None => id.to_owned(),
    }
}

/// Toggles `key` in the set of expanded rows, as the `expand` query value.
fn toggled(expanded: &BTreeSet<String>, key: &str) -> String {
    let mut next = expanded.clone();
    if !next.remove(key) {
        next.insert(key.to_owned());
    }
    next.into_iter().collect::<Vec<_>>().join(",")
}

fn ti_href(dag_id: &str, run: &RunRecord, task_id: &str, map_index: Option<i32>) -> String {
    let base = format!(
        "/dags/{}/runs/{}/tasks/{}",
        segment(dag_id),
        segment(run.run_id.as_str()),
        segment(task_id)
    );
    match map_index {
        Some(i) => format!("{base}/{i}"),
        None => base,
    }
}

fn summary_cell(states: &[TaskState], href: String, what: &str) -> Cell {
    match summary_state(states) {
        Some(s) => {
            let mut counts: Vec<(TaskState, usize)> = Vec::new();
            for st in states {
                match counts.iter_mut().find(|(k, _)| k == st) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((*st, 1)),
                }
            }
            let detail = counts
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ");
            Cell {
                state: s.as_str().to_owned(),
                href,
                title: format!("{what}: {detail}"),
                count: states.len(),
            }
        }
        None => Cell {
            state: String::new(),
            href: String::new(),
            title: String::new(),
            count: 0,
        },
    }
}

/// Builds the grid of `runs` (oldest first) with their task instances
/// (`tis[i]` belongs to `runs[i]`); a run still going counts until `now`.
pub(crate) fn build(
    dag: &Dag,
    runs: &[RunRecord],
    tis: &[Vec<TiRecord>],
    expanded: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Grid {
    let dag_id = dag.dag_id.as_str();
    let seconds = |r: &RunRecord| -> i64 {
        r.start_date
            .map(|s| (r.end_date.unwrap_or(now) - s).num_seconds().max(0))
            .unwrap_or(0)
    };
    let longest = runs.iter().map(seconds).max().unwrap_or(0).max(1);
    let columns = runs
        .iter()
        .map(|r| {
            let secs = seconds(r);
            let when = r.start_date.or(r.logical_date).unwrap_or(r.run_after);
            Column {
                run_id: r.run_id.to_string(),
                state: r.state.as_str().to_owned(),
                href: format!(
                    "/dags/{}/runs/{}",
                    segment(dag_id),
                    segment(r.run_id.as_str())
                ),
                label: when.format("%m-%d %H:%M").to_string(),
                title: format!(
                    "{} · {} · {}",
                    r.run_id,
                    r.state,
                    format::span(r.start_date, r.end_date)
                ),
                bar: u32::try_from((secs * 100 / longest).clamp(4, 100)).unwrap_or(100),
            }
        })
        .collect();
    // Per run: task id -> its instances.
    let by_task: Vec<HashMap<&str, Vec<&TiRecord>>> = tis
        .iter()
        .map(|list| {
            let mut m: HashMap<&str, Vec<&TiRecord>> = HashMap::new();
            for ti in list {
                m.entry(ti.key.task_id.as_str()).or_default().push(ti);
            }
            m
        })
        .collect();
    let states_of = |run_i: usize, pred: &dyn Fn(&str) -> bool| -> Vec<TaskState> {
        by_task
            .get(run_i)
            .map(|m| {
                m.iter()
                    .filter(|(t, _)| pred(t))
                    .flat_map(|(_, v)| v.iter().map(|ti| ti.state))
                    .collect()
            })
            .unwrap_or_default()
    };

    let mut rows = Vec::new();
    let mut seen_groups: BTreeSet<String> = BTreeSet::new();
    for task in &dag.tasks {
        let tid = task.task_id.as_str();
        let chain = group_chain(dag, task.group.as_deref());
        // Emit the group rows met for the first time; stop at a collapsed one.
        let mut visible = true;
        for (depth, g) in chain.iter().enumerate() {
            if seen_groups.insert(g.clone()) {
                let prefix = format!("{g}.");
                let cells = (0..runs.len())
                    .map(|i| {
                        let states = states_of(i, &|t: &str| t.starts_with(&prefix));
                        summary_cell(&states, String::new(), &format!("group {g}"))
                    })
                    .collect();
                rows.push(Row {
                    kind: "group",
                    id: g.clone(),
                    label: short(g, depth.checked_sub(1).map(|d| chain[d].as_str())),
                    depth,
                    expanded: expanded.contains(g),
                    toggle: toggled(expanded, g),
                    cells,
                });
            }
            if !expanded.contains(g) {
                visible = false;
                break;
            }
        }
        if !visible {
            continue;
        }
        let depth = chain.len();
        let label = short(tid, chain.last().map(String::as_str));
        if task.mapping.is_none() {
            let cells = runs
                .iter()
                .enumerate()
                .map(|(i, run)| {
                    match by_task
                        .get(i)
                        .and_then(|m| m.get(tid))
                        .and_then(|v| v.first())
                    {
                        Some(ti) => Cell {
                            state: ti.state.as_str().to_owned(),
                            href: ti_href(dag_id, run, tid, None),
                            title: format!(
                                "{tid} · {} · try {} · {}",
                                ti.state,
                                ti.try_number.0,
                                format::span(ti.start_date, ti.end_date)
                            ),
                            count: 0,
                        },
                        None => summary_cell(&[], String::new(), tid),
                    }
                })
                .collect();
            rows.push(Row {
                kind: "task",
                id: tid.to_owned(),
                label,
                depth,
                expanded: false,
                toggle: String::new(),
                cells,
            });
            continue;
        }
        let cells = runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                let states = states_of(i, &|t: &str| t == tid);
                summary_cell(
                    &states,
                    ti_href(dag_id, run, tid, None),
                    &format!("{tid} (mapped)"),
                )
            })
            .collect();
        let open = expanded.contains(tid);
        rows.push(Row {
            kind: "mapped",
            id: tid.to_owned(),
            label,
            depth,
            expanded: open,
            toggle: toggled(expanded, tid),
            cells,
        });
        if !open {
            continue;
        }
        let indexes: BTreeSet<i32> = by_task
            .iter()
            .filter_map(|m| m.get(tid))
            .flat_map(|v| v.iter().map(|ti| ti.key.map_index.0))
            .filter(|i| *i >= 0)
            .collect();
        for mi in indexes {
            let cells = runs
                .iter()
                .enumerate()
                .map(|(i, run)| {
                    let found = by_task
                        .get(i)
                        .and_then(|m| m.get(tid))
                        .and_then(|v| v.iter().find(|ti| ti.key.map_index.0 == mi));
                    match found {
                        Some(ti) => Cell {
                            state: ti.state.as_str().to_owned(),
                            href: ti_href(dag_id, run, tid, Some(mi)),
                            title: format!("{tid}[{mi}] · {} · try {}", ti.state, ti.try_number.0),
                            count: 0,
                        },
                        None => summary_cell(&[], String::new(), tid),
                    }
                })
                .collect();
            rows.push(Row {
                kind: "instance",
                id: format!("{tid}[{mi}]"),
                label: format!("[{mi}]"),
                depth: depth + 1,
                expanded: false,
                toggle: String::new(),
                cells,
            });
        }
    }
    Grid {
        columns,
        rows,
        active: runs.iter().any(|r| !r.state.is_finished()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAG: &str = "
dag_id: g
task_groups:
  outer: {}
  outer.inner: {parent: outer}
tasks:
  first: {command: 'true'}
  outer.a: {command: 'true', group: outer, upstream: first}
  outer.inner.b: {command: 'true', group: outer.inner, upstream: outer.a}
  fan: {command: 'true', expand: {x: [1, 2]}, upstream: outer.inner.b}
";

    fn rows(expand: &[&str]) -> Vec<(String, &'static str, usize, String)> {
        let dag = pave_spec::load_file("g.yaml", DAG, &Default::default())
            .expect("a valid DAG")
            .remove(0);
        let expanded = expand.iter().map(|s| s.to_string()).collect();
        build(&dag, &[], &[], &expanded, chrono::DateTime::UNIX_EPOCH)
            .rows
            .into_iter()
            .map(|r| (r.label, r.kind, r.depth, r.toggle))
            .collect()
    }

    #[test]
    fn groups_are_collapsed_until_expanded() {
        let collapsed = rows(&[]);
        let labels: Vec<&str> = collapsed.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(labels, ["first", "outer", "fan"]);
        assert_eq!(collapsed[1].1, "group");
        assert_eq!(collapsed[1].3, "outer", "clicking expands `outer`");
        assert_eq!(collapsed[2].1, "mapped");

        let open = rows(&["outer"]);
        let shown: Vec<(&str, usize)> = open.iter().map(|r| (r.0.as_str(), r.2)).collect();
        assert_eq!(
            shown,
            [
                ("first", 0),
                ("outer", 0),
                ("a", 1),
                ("inner", 1),
                ("fan", 0)
            ]
        );
        let all = rows(&["outer", "outer.inner"]);
        let shown: Vec<(&str, usize)> = all.iter().map(|r| (r.0.as_str(), r.2)).collect();
        assert_eq!(
            shown,
            [
                ("first", 0),
                ("outer", 0),
                ("a", 1),
                ("inner", 1),
                ("b", 2),
                ("fan", 0)
            ]
        );
        // The toggle of an open group closes it and keeps the others.
        assert_eq!(all[1].3, "outer.inner");
    }
}
