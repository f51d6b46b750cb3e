//! Reads a whole document (`{spec_version, dags}` or a single DAG) from the
//! document tree: the DAG-level fields, `default_args`, tasks and task
//! groups. What comes out is still "as written": `convert` applies defaults
//! and expands task-group dependencies.

use crate::error::{Diag, Place, did_you_mean};
use crate::node::Node;
use crate::read::{Fields, as_map, keyed_items};
use crate::wire::{TaskFields, read_task_fields};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use pave_core::{Dag, Param, Schedule};
use std::collections::BTreeMap;
use std::str::FromStr;

/// The spec versions this crate reads.
pub const SUPPORTED_SPEC_VERSIONS: &[u32] = &[1];

pub(crate) const DAG_FIELDS: &[&str] = &[
    "dag_id",
    "description",
    "tags",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "params",
    "default_args",
    "max_active_runs",
    "max_active_tasks",
    "dagrun_timeout",
    "tasks",
    "task_groups",
    "fileloc",
];

const AIRFLOW_DAG_NAMES: &[(&str, &str)] = &[
    ("schedule_interval", "Airflow 3 calls it `schedule`"),
    (
        "timetable",
        "write the schedule as `schedule` (a preset, a cron expression or {interval: SECONDS})",
    ),
    ("concurrency", "Airflow calls it `max_active_tasks`"),
    ("doc_md", "pave calls it `description`"),
    ("tz", "pave calls it `timezone`"),
    ("groups", "pave calls it `task_groups`"),
    (
        "spec_version",
        "`spec_version` belongs at the top of the document, next to `dags`",
    ),
];

const GROUP_FIELDS: &[&str] = &["group_id", "tooltip", "parent", "upstream", "downstream"];
const PARAM_FIELDS: &[&str] = &[
    "default",
    "type",
    "description",
    "enum",
    "minimum",
    "maximum",
];

/// Airflow's cron presets, expanded to the cron expressions Airflow uses.
pub(crate) const CRON_PRESETS: &[(&str, &str)] = &[
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@quarterly", "0 0 1 */3 *"),
    ("@yearly", "0 0 1 1 *"),
];

/// A task as written, before defaults and group expansion.
#[derive(Debug)]
pub(crate) struct RawTask {
    pub task_id: String,
    pub group: Option<String>,
    /// Names of tasks or task groups, as written.
    pub upstream: Vec<String>,
    pub fields: TaskFields,
}

/// A task group as written, with its group-level dependencies.
#[derive(Debug)]
pub(crate) struct RawGroup {
    pub group_id: String,
    pub tooltip: Option<String>,
    pub parent: Option<String>,
    pub upstream: Vec<String>,
    pub downstream: Vec<String>,
}

/// A DAG as written: the DAG-level fields already in the model's form,
/// tasks and groups still raw.
#[derive(Debug)]
pub(crate) struct RawDag {
    pub dag: Dag,
    pub defaults: TaskFields,
    pub tasks: Vec<RawTask>,
    pub groups: Vec<RawGroup>,
}

/// Reads every DAG of a document.
pub(crate) fn read_document(node: &Node, diag: &mut Diag) -> Vec<RawDag> {
    let top = Place::default();
    let Node::Map(entries) = node else {
        diag.err(
            &top,
            None,
            format!("a DAG file must be a mapping, got {}", node.kind()),
            Some(
                "write one DAG (a mapping with `dag_id`) or {spec_version: 1, dags: [...]}"
                    .to_owned(),
            ),
        );
        return Vec::new();
    };
    let is_document = entries
        .iter()
        .any(|(k, _)| k == "spec_version" || k == "dags");
    if !is_document {
        return read_dag(entries, None, diag).into_iter().collect();
    }
    let f = Fields::new(entries, top.clone(), "");
    f.check_keys(
        diag,
        "top-level field",
        &["spec_version", "dags"],
        &[(
            "dag_id",
            "a document with `spec_version` lists its DAGs under `dags`; move the DAG there, or drop `spec_version` and `dags` to write a single DAG",
        )],
    );
    let supported: Vec<String> = SUPPORTED_SPEC_VERSIONS.iter().map(u32::to_string).collect();
    match f.get("spec_version") {
        Some(Node::Int(1)) => {}
        Some(other) => {
            diag.err(
                &top,
                Some("spec_version"),
                format!("unsupported spec_version {}", other.show()),
                Some(format!(
                    "this version of pave reads spec_version {}; upgrade pave or emit a supported version",
                    supported.join(", ")
                )),
            );
            return Vec::new();
        }
        None => diag.err(
            &top,
            Some("spec_version"),
            "missing `spec_version`".to_owned(),
            Some("add `spec_version: 1` next to `dags`".to_owned()),
        ),
    }
    let Some(dags) = f.get("dags") else {
        diag.err(
            &top,
            Some("dags"),
            "missing `dags`".to_owned(),
            Some("list the file's DAGs under `dags`".to_owned()),
        );
        return Vec::new();
    };
    keyed_items(dags, diag, &top, "dags", "dag_id")
        .into_iter()
        .filter_map(|(id, body)| read_dag(body, Some(&id), diag))
        .collect()
}

fn read_dag(entries: &[(String, Node)], key_id: Option<&str>, diag: &mut Diag) -> Option<RawDag> {
    let dag_id = match (
        key_id,
        entries.iter().find(|(k, _)| k == "dag_id").map(|(_, v)| v),
    ) {
        (Some(id), _) => id.to_owned(),
        (None, Some(Node::Str(id))) if !id.is_empty() => id.clone(),
        (None, other) => {
            diag.err(
                &Place::default(),
                Some("dag_id"),
                match other {
                    Some(n) => format!("`dag_id` must be a non-empty string, got {}", n.show()),
                    None => "the DAG has no `dag_id`".to_owned(),
                },
                Some("add `dag_id: NAME` (letters, digits, `_`, `-`, `.`)".to_owned()),
            );
            return None;
        }
    };
    let place = Place::dag(&dag_id);
    let f = Fields::new(entries, place.clone(), "");
    f.check_keys(diag, "DAG field", DAG_FIELDS, AIRFLOW_DAG_NAMES);

    let mut dag = Dag::new(dag_id.as_str());
    dag.description = f.string(diag, "description");
    dag.tags = f.names(diag, "tags");
    if let Some(tz) = f.string(diag, "timezone") {
        dag.timezone = tz;
    }
    let tz = Tz::from_str(&dag.timezone).unwrap_or(Tz::UTC);
    dag.start_date = read_date(&f, diag, "start_date", tz);
    dag.end_date = read_date(&f, diag, "end_date", tz);
    dag.schedule = read_schedule(&f, diag).unwrap_or(Schedule::None);
    dag.catchup = f.boolean(diag, "catchup").unwrap_or(false);
    dag.params = read_params(&f, diag);
    dag.max_active_runs = f.uint(diag, "max_active_runs", 1);
    dag.max_active_tasks = f.uint(diag, "max_active_tasks", 1);
    dag.dagrun_timeout = f.duration(diag, "dagrun_timeout");
    dag.fileloc = if f.has("fileloc") {
        f.string(diag, "fileloc")
    } else {
        Some(diag.file.clone())
    };

    let defaults = match f.get("default_args") {
        None => TaskFields::default(),
        Some(node) => match as_map(node, diag, &place, Some("default_args"), "`default_args`") {
            Some(d) => read_task_fields(
                &Fields::new(d, place.clone(), "default_args."),
                diag,
                true,
                tz,
            ),
            None => TaskFields::default(),
        },
    };

    // Airflow's DAG takes `default_args.start_date` when it has no start_date
    // of its own (`_default_start_date`); its tasks get it as theirs as well.
    if dag.start_date.is_none() {
        dag.start_date = defaults.start_date;
    }

    let mut tasks = Vec::new();
    if let Some(node) = f.get("tasks") {
        for (task_id, body) in keyed_items(node, diag, &place, "tasks", "task_id") {
            let tf = Fields::new(body, place.task(&task_id), "");
            tasks.push(RawTask {
                group: tf.string(diag, "group"),
                upstream: tf.names(diag, "upstream"),
                fields: read_task_fields(&tf, diag, false, tz),
                task_id,
            });
        }
    }

    let mut groups = Vec::new();
    if let Some(node) = f.get("task_groups") {
        for (group_id, body) in keyed_items(node, diag, &place, "task_groups", "group_id") {
            let gf = Fields::new(body, place.clone(), &format!("task_groups.{group_id}."));
            gf.check_keys(
                diag,
                "task group field",
                GROUP_FIELDS,
                &[(
                    "prefix_group_id",
                    "pave task ids are always written in full (`group.task`)",
                )],
            );
            groups.push(RawGroup {
                tooltip: gf.string(diag, "tooltip"),
                parent: gf.string(diag, "parent"),
                upstream: gf.names(diag, "upstream"),
                downstream: gf.names(diag, "downstream"),
                group_id,
            });
        }
    }

    Some(RawDag {
        dag,
        defaults,
        tasks,
        groups,
    })
}

/// Reads an RFC 3339 timestamp; a date or a time without offset is read in
/// the DAG's time zone. The same for the DAG's dates and its tasks'.
pub(crate) fn read_date(
    f: &Fields<'_>,
    diag: &mut Diag,
    key: &str,
    tz: Tz,
) -> Option<DateTime<Utc>> {
    let text = f.string(diag, key)?;
    match parse_date(&text, tz) {
        Ok(d) => Some(d),
        Err(msg) => {
            f.err(diag, key, format!("`{}` {msg}", f.path(key)), None);
            None
        }
    }
}

pub(crate) fn parse_date(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let s = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Ok(d.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    });
    let Some(naive) = naive else {
        return Err(format!(
            "`{text}` is not a date; write RFC 3339 such as \"2025-01-01T00:00:00Z\" or a date such as \"2025-01-01\""
        ));
    };
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|d| d.with_timezone(&Utc))
        .ok_or_else(|| format!("`{text}` does not exist in time zone {tz} (a daylight-saving gap)"))
}

fn read_schedule(f: &Fields<'_>, diag: &mut Diag) -> Option<Schedule> {
    let node = f.get("schedule")?;
    match node {
        Node::Str(s) => {
            let s = s.trim();
            if s == "@once" {
                return Some(Schedule::Once);
            }
            if let Some((_, expr)) = CRON_PRESETS.iter().find(|(p, _)| *p == s) {
                return Some(Schedule::Cron {
                    expr: (*expr).to_owned(),
                });
            }
            if s.starts_with('@') {
                let mut names: Vec<&str> = CRON_PRESETS.iter().map(|(p, _)| *p).collect();
                names.push("@once");
                let hint = if s == "@continuous" {
                    "continuous schedules are not supported by pave (spec v1); use a cron expression or {interval: SECONDS}".to_owned()
                } else {
                    did_you_mean(s, &names)
                        .unwrap_or_else(|| format!("the presets are {}", names.join(", ")))
                };
                f.err(
                    diag,
                    "schedule",
                    format!("unknown schedule preset `{s}`"),
                    Some(hint),
                );
                return None;
            }
            Some(Schedule::Cron { expr: s.to_owned() })
        }
        Node::Map(entries) => {
            let inner = Fields::new(entries, f.place.clone(), "schedule.");
            inner.check_keys(diag, "schedule field", &["interval"], &[]);
            match inner.duration(diag, "interval") {
                Some(every) => Some(Schedule::Interval { every }),
                None => {
                    if inner.get("interval").is_none() {
                        f.err(
                            diag,
                            "schedule",
                            "`schedule` as a mapping needs `interval`".to_owned(),
                            Some("write {interval: SECONDS}".to_owned()),
                        );
                    }
                    None
                }
            }
        }
        other => {
            f.wrong(
                diag,
                "schedule",
                "null, a preset such as \"@daily\", a cron expression or {interval: SECONDS}",
                other,
            );
            None
        }
    }
}

fn read_params(f: &Fields<'_>, diag: &mut Diag) -> BTreeMap<String, Param> {
    let mut out = BTreeMap::new();
    let Some(node) = f.get("params") else {
        return out;
    };
    let Node::Map(entries) = node else {
        f.wrong(
            diag,
            "params",
            "a mapping from parameter name to default or spec",
            node,
        );
        return out;
    };
    for (name, value) in entries {
        let mut param = Param {
            default: None,
            type_: None,
            description: None,
            enum_: None,
            minimum: None,
            maximum: None,
        };
        let Node::Map(spec) = value else {
            // A bare default value.
            param.default = Some(value.to_value());
            out.insert(name.clone(), param);
            continue;
        };
        let p = Fields::new(spec, f.place.clone(), &format!("params.{name}."));
        p.check_keys(
            diag,
            "param field",
            PARAM_FIELDS,
            &[(
                "title",
                "`title` is not supported by pave (spec v1); use `description`",
            )],
        );
        if p.has("default") {
            param.default = spec
                .iter()
                .find(|(k, _)| k == "default")
                .map(|(_, v)| v.to_value());
        }
        param.type_ = match p.get("type") {
            None => None,
            Some(Node::Str(t)) => Some(vec![t.clone()]),
            Some(Node::Seq(items)) if items.iter().all(|i| matches!(i, Node::Str(_))) => Some(
                items
                    .iter()
                    .filter_map(|i| match i {
                        Node::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            Some(other) => {
                p.wrong(diag, "type", "a JSON type name or a list of them", other);
                None
            }
        };
        param.description = p.string(diag, "description");
        param.enum_ = match p.get("enum") {
            None => None,
            Some(Node::Seq(items)) => Some(items.iter().map(Node::to_value).collect()),
            Some(other) => {
                p.wrong(diag, "enum", "a list of allowed values", other);
                None
            }
        };
        param.minimum = read_number(&p, diag, "minimum");
        param.maximum = read_number(&p, diag, "maximum");
        out.insert(name.clone(), param);
    }
    out
}

fn read_number(f: &Fields<'_>, diag: &mut Diag, key: &str) -> Option<f64> {
    match f.get(key)? {
        Node::Int(i) => Some(*i as f64),
        Node::Float(x) if x.is_finite() => Some(*x),
        other => {
            f.wrong(diag, key, "a finite number", other);
            None
        }
    }
}
