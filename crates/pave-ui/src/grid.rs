//! The grid view as data: one column per run (oldest left), one row per
//! task in declaration order, task groups and mapped tasks collapsed into
//! one summary row until expanded. Pure: built from records, no IO.
//!
//! [`fingerprint`] digests everything the rendered fragment is made of, so
//! that the fragment can be cached and revalidated (`grid_cache`): equal
//! fingerprints mean equal HTML. Whatever `build` (or the fragment's
//! template) reads must be fed to `fingerprint` too.

use crate::format::{self, summary_state};
use crate::render::segment;
use chrono::{DateTime, Utc};
use pave_core::{Dag, TaskState};
use pave_store::DagVersionId;
use pave_store::query::{GridRun, GridTi};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};

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
#[derive(Clone, Debug)]
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
    #[serde(skip)]
    pub cells: Vec<Cell>,
    /// The row's `<td>` cells as HTML, escaped (see [`cells_html`]).
    pub cells_html: String,
}

/// Escapes text for HTML as the templates' autoescape does.
fn escape_into(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            '/' => out.push_str("&#x2f;"),
            c => out.push(c),
        }
    }
}

/// A row's cells as HTML. Written here rather than in the template: a grid
/// has hundreds of cells, and walking them in the template (a map lookup
/// per field, a value conversion per cell) was most of the cost of
/// rendering the fragment. Every text is escaped.
pub(crate) fn cells_html(cells: &[Cell]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(cells.len() * 160);
    for c in cells {
        out.push_str("<td>");
        if !c.state.is_empty() && !c.href.is_empty() {
            out.push_str("<a class=\"cell st-");
            escape_into(&mut out, &c.state);
            out.push_str("\" href=\"");
            escape_into(&mut out, &c.href);
            out.push_str("\" title=\"");
            escape_into(&mut out, &c.title);
            out.push_str("\" aria-label=\"");
            escape_into(&mut out, &c.title);
            out.push_str("\">");
            if c.count > 1 {
                let _ = write!(
                    out,
                    "<span class=\"n\" aria-hidden=\"true\">{}</span>",
                    c.count
                );
            }
            out.push_str("</a>");
        } else if !c.state.is_empty() {
            out.push_str("<span class=\"cell st-");
            escape_into(&mut out, &c.state);
            out.push_str("\" title=\"");
            escape_into(&mut out, &c.title);
            out.push_str("\" role=\"img\" aria-label=\"");
            escape_into(&mut out, &c.title);
            out.push_str("\"></span>");
        } else {
            out.push_str("<span class=\"cell blank\"></span>");
        }
        out.push_str("</td>");
    }
    out
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

/// A task instance's page: `run_base` is `/dags/{dag}/runs/{run}/tasks/`
/// and `task` the task id, both already percent-encoded (once per run and
/// once per row, not once per cell).
fn ti_href(run_base: &str, task: &str, map_index: Option<i32>) -> String {
    let mut href = String::with_capacity(run_base.len() + task.len() + 6);
    href.push_str(run_base);
    href.push_str(task);
    if let Some(i) = map_index {
        href.push('/');
        href.push_str(&i.to_string());
    }
    href
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

/// The height of each run's duration bar, 0 to 100, relative to the
/// longest run shown; a run still going counts until `now`. (The only
/// part of the grid that depends on the time.)
pub(crate) fn bars(runs: &[GridRun], now: DateTime<Utc>) -> Vec<u32> {
    let seconds = |r: &GridRun| -> i64 {
        r.start_date
            .map(|s| (r.end_date.unwrap_or(now) - s).num_seconds().max(0))
            .unwrap_or(0)
    };
    let longest = runs.iter().map(seconds).max().unwrap_or(0).max(1);
    runs.iter()
        .map(|r| u32::try_from((seconds(r) * 100 / longest).clamp(4, 100)).unwrap_or(100))
        .collect()
}

/// Everything the grid fragment shows: the DAG (by its immutable
/// version), the runs (oldest first) with their bars and task instances
/// (`tis[i]` belongs to `runs[i]`), and the query that asked for it.
#[derive(Clone, Copy)]
pub(crate) struct Inputs<'a> {
    pub dag: &'a Dag,
    pub version: DagVersionId,
    pub runs: &'a [GridRun],
    pub bars: &'a [u32],
    pub tis: &'a [Vec<GridTi>],
    /// The raw `expand` query value (the fragment links repeat it).
    pub expand: &'a str,
    pub run_count: u32,
}

/// A digest of [`Inputs`]: two requests with the same fingerprint get the
/// same fragment, byte for byte. `salt` is per process, so an ETag from
/// another build of pave (whose template may differ) never matches.
pub(crate) fn fingerprint(salt: u64, inputs: &Inputs<'_>) -> [u8; 16] {
    fn text(h: &mut Sha256, s: &str) {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    fn int(h: &mut Sha256, v: i64) {
        h.update(v.to_le_bytes());
    }
    fn when(h: &mut Sha256, t: Option<DateTime<Utc>>) {
        match t {
            Some(t) => {
                h.update([1u8]);
                int(h, t.timestamp_micros());
            }
            None => h.update([0u8]),
        }
    }
    let mut h = Sha256::new();
    h.update(salt.to_le_bytes());
    text(&mut h, inputs.dag.dag_id.as_str());
    int(&mut h, inputs.version.0);
    text(&mut h, inputs.expand);
    int(&mut h, i64::from(inputs.run_count));
    int(&mut h, inputs.runs.len() as i64);
    for (i, r) in inputs.runs.iter().enumerate() {
        int(&mut h, r.key.0);
        text(&mut h, r.run_id.as_str());
        text(&mut h, r.state.as_str());
        when(&mut h, r.logical_date);
        when(&mut h, Some(r.run_after));
        when(&mut h, r.start_date);
        when(&mut h, r.end_date);
        int(&mut h, i64::from(inputs.bars.get(i).copied().unwrap_or(0)));
        let tis = inputs.tis.get(i).map(Vec::as_slice).unwrap_or(&[]);
        int(&mut h, tis.len() as i64);
        for ti in tis {
            int(&mut h, ti.run.0);
            text(&mut h, ti.task_id.as_str());
            int(&mut h, i64::from(ti.map_index.0));
            text(&mut h, ti.state.as_str());
            int(&mut h, i64::from(ti.try_number.0));
            when(&mut h, ti.start_date);
            when(&mut h, ti.end_date);
        }
    }
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Builds the grid from its inputs.
pub(crate) fn build(inputs: &Inputs<'_>) -> Grid {
    let Inputs {
        dag,
        runs,
        bars,
        tis,
        expand,
        ..
    } = *inputs;
    let expanded: BTreeSet<String> = expand
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let expanded = &expanded;
    let dag_id = dag.dag_id.as_str();
    let columns = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
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
                bar: bars.get(i).copied().unwrap_or(4),
            }
        })
        .collect();
    let dag_seg = segment(dag_id);
    let run_bases: Vec<String> = runs
        .iter()
        .map(|r| format!("/dags/{dag_seg}/runs/{}/tasks/", segment(r.run_id.as_str())))
        .collect();
    // Per run: task id -> its instances.
    // Ordered maps: a group's summary lists its states in the order met,
    // and the same inputs must give the same HTML (the fragment is cached
    // and fingerprinted; a HashMap's order changes from map to map).
    let by_task: Vec<BTreeMap<&str, Vec<&GridTi>>> = tis
        .iter()
        .map(|list| {
            let mut m: BTreeMap<&str, Vec<&GridTi>> = BTreeMap::new();
            for ti in list {
                m.entry(ti.task_id.as_str()).or_default().push(ti);
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
                    cells_html: String::new(),
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
        let tid_seg = segment(tid);
        if task.mapping.is_none() {
            let cells = runs
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    match by_task
                        .get(i)
                        .and_then(|m| m.get(tid))
                        .and_then(|v| v.first())
                    {
                        Some(ti) => Cell {
                            state: ti.state.as_str().to_owned(),
                            href: ti_href(&run_bases[i], &tid_seg, None),
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
                cells_html: String::new(),
            });
            continue;
        }
        let cells = runs
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let states = states_of(i, &|t: &str| t == tid);
                summary_cell(
                    &states,
                    ti_href(&run_bases[i], &tid_seg, None),
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
            cells_html: String::new(),
        });
        if !open {
            continue;
        }
        let indexes: BTreeSet<i32> = by_task
            .iter()
            .filter_map(|m| m.get(tid))
            .flat_map(|v| v.iter().map(|ti| ti.map_index.0))
            .filter(|i| *i >= 0)
            .collect();
        for mi in indexes {
            let cells = runs
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    let found = by_task
                        .get(i)
                        .and_then(|m| m.get(tid))
                        .and_then(|v| v.iter().find(|ti| ti.map_index.0 == mi));
                    match found {
                        Some(ti) => Cell {
                            state: ti.state.as_str().to_owned(),
                            href: ti_href(&run_bases[i], &tid_seg, Some(mi)),
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
                cells_html: String::new(),
            });
        }
    }
    for row in &mut rows {
        row.cells_html = cells_html(&row.cells);
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
        let expand = expand.join(",");
        build(&Inputs {
            dag: &dag,
            version: DagVersionId(1),
            runs: &[],
            bars: &[],
            tis: &[],
            expand: &expand,
            run_count: 20,
        })
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

    fn run(key: i64, state: pave_core::RunState) -> GridRun {
        let t = chrono::DateTime::UNIX_EPOCH;
        GridRun {
            key: pave_store::RunKey(key),
            run_id: pave_core::RunId::new(format!("r{key}").as_str()),
            state,
            logical_date: Some(t),
            run_after: t,
            start_date: Some(t),
            end_date: Some(t + chrono::Duration::seconds(60)),
        }
    }

    fn ti(run: i64, task: &str, state: TaskState) -> GridTi {
        GridTi {
            run: pave_store::RunKey(run),
            task_id: pave_core::TaskId::new(task),
            map_index: pave_core::MapIndex(-1),
            state,
            try_number: pave_core::TryNumber(1),
            start_date: None,
            end_date: None,
        }
    }

    /// Every input the fragment shows moves the fingerprint; the same
    /// inputs give the same one.
    #[test]
    fn the_fingerprint_covers_every_input() {
        use pave_core::RunState;
        let dag = pave_spec::load_file("g.yaml", DAG, &Default::default())
            .expect("a valid DAG")
            .remove(0);
        let runs = vec![run(1, RunState::Success), run(2, RunState::Failed)];
        let tis = vec![
            vec![ti(1, "first", TaskState::Success)],
            vec![ti(2, "first", TaskState::Failed)],
        ];
        let bars = vec![100, 50];
        let base = Inputs {
            dag: &dag,
            version: DagVersionId(7),
            runs: &runs,
            bars: &bars,
            tis: &tis,
            expand: "",
            run_count: 20,
        };
        let fp = |i: &Inputs<'_>| fingerprint(42, i);
        let reference = fp(&base);
        assert_eq!(fp(&base), reference, "deterministic");
        assert_ne!(fingerprint(43, &base), reference, "salted per process");

        let mut changed: Vec<(&str, [u8; 16])> = Vec::new();
        changed.push((
            "version",
            fp(&Inputs {
                version: DagVersionId(8),
                ..base
            }),
        ));
        changed.push((
            "expand",
            fp(&Inputs {
                expand: "fan",
                ..base
            }),
        ));
        changed.push((
            "run count",
            fp(&Inputs {
                run_count: 21,
                ..base
            }),
        ));
        let other_bars = vec![100, 51];
        changed.push((
            "bar",
            fp(&Inputs {
                bars: &other_bars,
                ..base
            }),
        ));
        let mut tweak_run = |what: &'static str, f: &dyn Fn(&mut GridRun)| {
            let mut rs = runs.clone();
            f(&mut rs[1]);
            changed.push((what, fp(&Inputs { runs: &rs, ..base })));
        };
        tweak_run("run state", &|r: &mut GridRun| r.state = RunState::Queued);
        tweak_run("run id", &|r: &mut GridRun| {
            r.run_id = pave_core::RunId::new("x")
        });
        tweak_run("run end", &|r: &mut GridRun| r.end_date = None);
        tweak_run("run start", &|r: &mut GridRun| r.start_date = None);
        tweak_run("logical date", &|r: &mut GridRun| r.logical_date = None);
        let mut tweak_ti = |what: &'static str, f: &dyn Fn(&mut Vec<GridTi>)| {
            let mut ts = tis.clone();
            f(&mut ts[1]);
            changed.push((what, fp(&Inputs { tis: &ts, ..base })));
        };
        tweak_ti("ti state (mark)", &|t: &mut Vec<GridTi>| {
            t[0].state = TaskState::Success
        });
        tweak_ti("ti cleared", &|t: &mut Vec<GridTi>| {
            t[0].state = TaskState::NoStatus
        });
        tweak_ti("new attempt", &|t: &mut Vec<GridTi>| {
            t[0].try_number = pave_core::TryNumber(2)
        });
        tweak_ti("ti start", &|t: &mut Vec<GridTi>| {
            t[0].start_date = Some(chrono::DateTime::UNIX_EPOCH)
        });
        tweak_ti("ti end", &|t: &mut Vec<GridTi>| {
            t[0].end_date = Some(chrono::DateTime::UNIX_EPOCH)
        });
        tweak_ti("map index", &|t: &mut Vec<GridTi>| {
            t[0].map_index = pave_core::MapIndex(0)
        });
        tweak_ti("task id", &|t: &mut Vec<GridTi>| {
            t[0].task_id = pave_core::TaskId::new("fan")
        });
        tweak_ti("new ti", &|t: &mut Vec<GridTi>| {
            t.push(ti(2, "fan", TaskState::NoStatus))
        });
        for (what, f) in &changed {
            assert_ne!(*f, reference, "{what} does not move the fingerprint");
        }
        // Moving a task instance from one run to the next is a change too.
        let moved = vec![
            vec![],
            vec![
                ti(1, "first", TaskState::Success),
                ti(2, "first", TaskState::Failed),
            ],
        ];
        assert_ne!(
            fp(&Inputs {
                tis: &moved,
                ..base
            }),
            reference
        );
    }

    /// The cells written in Rust escape exactly as the templates do.
    #[test]
    fn cells_are_escaped_as_the_templates_escape() {
        let nasty = r#"<script>alert('x') & "y" / z</script> · ü"#;
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.add_template("t.html", "{{ s }}").expect("a template");
        let by_template = env
            .get_template("t.html")
            .and_then(|t| t.render(minijinja::context! { s => nasty }))
            .expect("rendered");
        let mut by_rust = String::new();
        escape_into(&mut by_rust, nasty);
        assert_eq!(by_rust, by_template);

        let html = cells_html(&[
            Cell {
                state: "failed".into(),
                href: "/dags/a\"b".into(),
                title: nasty.into(),
                count: 3,
            },
            Cell {
                state: "success".into(),
                href: String::new(),
                title: "<b>".into(),
                count: 0,
            },
            Cell {
                state: String::new(),
                href: String::new(),
                title: String::new(),
                count: 0,
            },
        ]);
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert!(
            html.contains(r#"href="&#x2f;dags&#x2f;a&quot;b""#),
            "{html}"
        );
        assert!(html.contains(r#"<span class="n" aria-hidden="true">3</span>"#));
        assert!(
            html.contains(r#"role="img" aria-label="&lt;b&gt;""#),
            "{html}"
        );
        assert!(html.ends_with(r#"<td><span class="cell blank"></span></td>"#));
    }
}
