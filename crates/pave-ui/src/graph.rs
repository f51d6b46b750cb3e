//! The graph view as data: tasks, edges and task groups of a DAG version
//! with the states of one run, for `static/pave.js` to lay out with dagre
//! and draw as SVG. Pure: built from records, no IO.

use crate::render::segment;
use pave_core::{Dag, TaskKind};
use pave_store::{RunRecord, TiRecord};
use serde::Serialize;
use std::collections::HashMap;

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Node {
    pub id: String,
    pub label: String,
    pub group: Option<String>,
    /// `empty`, `command` or `python`.
    pub kind: &'static str,
    pub mapped: bool,
    /// The run's state of this task (a summary for a mapped task), or "".
    pub state: String,
    /// Instances of a mapped task in this run.
    pub count: usize,
    pub href: String,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct GroupNode {
    pub id: String,
    pub label: String,
    pub parent: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Graph {
    pub nodes: Vec<Node>,
    /// `[upstream, downstream]` task ids.
    pub edges: Vec<[String; 2]>,
    pub groups: Vec<GroupNode>,
    pub run_id: Option<String>,
    pub run_state: Option<String>,
}

/// The graph of `dag` with the states of `run` (if any).
pub(crate) fn build(dag: &Dag, run: Option<(&RunRecord, &[TiRecord])>) -> Graph {
    let mut states: HashMap<&str, Vec<pave_core::TaskState>> = HashMap::new();
    if let Some((_, tis)) = run {
        for ti in tis {
            states
                .entry(ti.key.task_id.as_str())
                .or_default()
                .push(ti.state);
        }
    }
    let nodes = dag
        .tasks
        .iter()
        .map(|t| {
            let id = t.task_id.as_str();
            let st = states.get(id).map(Vec::as_slice).unwrap_or(&[]);
            let label = match &t.group {
                Some(g) => id
                    .strip_prefix(g.as_str())
                    .and_then(|r| r.strip_prefix('.'))
                    .unwrap_or(id),
                None => id,
            };
            Node {
                id: id.to_owned(),
                label: label.to_owned(),
                group: t.group.clone(),
                kind: match t.kind {
                    TaskKind::Empty => "empty",
                    TaskKind::Command { .. } => "command",
                    TaskKind::Python { .. } => "python",
                },
                mapped: t.mapping.is_some(),
                state: crate::format::summary_state(st)
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                count: if t.mapping.is_some() { st.len() } else { 0 },
                href: run
                    .map(|(r, _)| {
                        format!(
                            "/dags/{}/runs/{}/tasks/{}",
                            segment(dag.dag_id.as_str()),
                            segment(r.run_id.as_str()),
                            segment(id)
                        )
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let edges = dag
        .tasks
        .iter()
        .flat_map(|t| {
            t.upstream
                .iter()
                .map(move |u| [u.to_string(), t.task_id.to_string()])
        })
        .collect();
    let groups = dag
        .groups
        .iter()
        .map(|g| GroupNode {
            id: g.group_id.clone(),
            label: g
                .parent
                .as_deref()
                .and_then(|p| g.group_id.strip_prefix(p))
                .and_then(|r| r.strip_prefix('.'))
                .unwrap_or(&g.group_id)
                .to_owned(),
            parent: g.parent.clone(),
        })
        .collect();
    Graph {
        nodes,
        edges,
        groups,
        run_id: run.map(|(r, _)| r.run_id.to_string()),
        run_state: run.map(|(r, _)| r.state.as_str().to_owned()),
    }
}
