//! The wire form of a task (and of `default_args`, which may carry any task
//! field): read field by field from the document tree into `TaskFields`,
//! whose every field is optional so that a task's own fields can be merged
//! over its DAG's `default_args` before Airflow's defaults fill the rest.

use crate::document::read_date;
use crate::error::Diag;
use crate::node::Node;
use crate::placement;
use crate::quantity;
use crate::read::{Fields, as_map};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use pave_core::{
    Arg, Flow, MapSource, Mapping, OutputFormat, Resources, SpotPolicy, TaskId, TaskRole,
    TriggerRule, WeightRule, XcomRef,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every field a task may have, in the order the docs list them.
pub(crate) const TASK_FIELDS: &[&str] = &[
    "task_id",
    "group",
    "upstream",
    "command",
    "cwd",
    "output",
    "skip_exit_code",
    "python",
    "empty",
    "branch",
    "short_circuit",
    "args",
    "expand",
    "expand_kwargs",
    "trigger_rule",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
    "start_date",
    "end_date",
    "priority_weight",
    "weight_rule",
    "pool",
    "pool_slots",
    "max_active_tis_per_dag",
    "resources",
    "env",
    "executor",
    "image",
    "spot",
    "pod_override",
    "setup",
    "teardown",
    "do_xcom_push",
    "doc",
];

/// Task fields that only make sense on one task, so `default_args` may not carry them.
pub(crate) const PER_TASK_ONLY: &[&str] = &[
    "task_id",
    "group",
    "upstream",
    "expand",
    "expand_kwargs",
    "setup",
    "teardown",
];

/// Names users bring from Airflow, with what to write instead.
pub(crate) const AIRFLOW_TASK_NAMES: &[(&str, &str)] = &[
    ("bash_command", "pave calls it `command`"),
    (
        "python_callable",
        "pave calls it `python` (the callable's dotted name in the DAG file)",
    ),
    ("doc_md", "pave calls it `doc`"),
    ("op_kwargs", "pave calls it `args`"),
    ("skip_on_exit_code", "pave calls it `skip_exit_code`"),
    (
        "downstream",
        "name the dependency on the other side, in that task's `upstream`",
    ),
    ("dependencies", "pave calls it `upstream`"),
    ("depends_on", "pave calls it `upstream`"),
    (
        "on_failure_fail_dagrun",
        "it belongs inside `teardown`: `teardown: {setups: [...], on_failure_fail_dagrun: true}`",
    ),
    ("setups", "write `teardown: {setups: [...]}`"),
    (
        "depends_on_past",
        "`depends_on_past` is not supported by pave (spec v1); remove it",
    ),
    (
        "wait_for_downstream",
        "`wait_for_downstream` is not supported by pave (spec v1); remove it",
    ),
    (
        "owner",
        "`owner` is not supported by pave (spec v1); remove it",
    ),
    (
        "queue",
        "`queue` is not supported by pave; use `pool` to limit concurrency",
    ),
];

/// What a task runs, before its command-only options are attached.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum KindSel {
    Command(String),
    Python(String),
    Empty,
}

/// A task's fields as written (or a DAG's `default_args`); `None` = not set.
#[derive(Clone, Debug, Default)]
pub(crate) struct TaskFields {
    pub kind: Option<KindSel>,
    pub cwd: Option<String>,
    pub output: Option<OutputFormat>,
    pub skip_exit_code: Option<i32>,
    pub flow: Option<Flow>,
    pub args: Option<BTreeMap<String, Arg>>,
    pub mapping: Option<Mapping>,
    pub trigger_rule: Option<TriggerRule>,
    pub retries: Option<u32>,
    pub retry_delay: Option<Duration>,
    pub retry_exponential_backoff: Option<bool>,
    pub max_retry_delay: Option<Duration>,
    pub execution_timeout: Option<Duration>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub priority_weight: Option<i64>,
    pub weight_rule: Option<WeightRule>,
    pub pool: Option<String>,
    pub pool_slots: Option<u32>,
    pub max_active_tis_per_dag: Option<u32>,
    pub resources: Option<Resources>,
    pub env: Option<BTreeMap<String, String>>,
    pub executor: Option<String>,
    pub image: Option<String>,
    pub spot: Option<SpotPolicy>,
    pub pod_override: Option<serde_json::Value>,
    pub role: Option<TaskRole>,
    pub do_xcom_push: Option<bool>,
    pub doc: Option<String>,
}

impl TaskFields {
    /// These fields, with the unset ones taken from `defaults` (`default_args`).
    pub(crate) fn or(self, defaults: &TaskFields) -> TaskFields {
        let d = defaults.clone();
        TaskFields {
            kind: self.kind.or(d.kind),
            cwd: self.cwd.or(d.cwd),
            output: self.output.or(d.output),
            skip_exit_code: self.skip_exit_code.or(d.skip_exit_code),
            flow: self.flow.or(d.flow),
            args: self.args.or(d.args),
            mapping: self.mapping.or(d.mapping),
            trigger_rule: self.trigger_rule.or(d.trigger_rule),
            retries: self.retries.or(d.retries),
            retry_delay: self.retry_delay.or(d.retry_delay),
            retry_exponential_backoff: self
                .retry_exponential_backoff
                .or(d.retry_exponential_backoff),
            max_retry_delay: self.max_retry_delay.or(d.max_retry_delay),
            execution_timeout: self.execution_timeout.or(d.execution_timeout),
            start_date: self.start_date.or(d.start_date),
            end_date: self.end_date.or(d.end_date),
            priority_weight: self.priority_weight.or(d.priority_weight),
            weight_rule: self.weight_rule.or(d.weight_rule),
            pool: self.pool.or(d.pool),
            pool_slots: self.pool_slots.or(d.pool_slots),
            max_active_tis_per_dag: self.max_active_tis_per_dag.or(d.max_active_tis_per_dag),
            resources: self.resources.or(d.resources),
            env: self.env.or(d.env),
            executor: self.executor.or(d.executor),
            image: self.image.or(d.image),
            spot: self.spot.or(d.spot),
            pod_override: self.pod_override.or(d.pod_override),
            role: self.role.or(d.role),
            do_xcom_push: self.do_xcom_push.or(d.do_xcom_push),
            doc: self.doc.or(d.doc),
        }
    }
}

/// Reads the fields of one task, or of `default_args` when `is_defaults`;
/// dates without an offset are read in `tz` (the DAG's time zone).
pub(crate) fn read_task_fields(
    f: &Fields<'_>,
    diag: &mut Diag,
    is_defaults: bool,
    tz: Tz,
) -> TaskFields {
    if is_defaults {
        let allowed: Vec<&str> = TASK_FIELDS
            .iter()
            .copied()
            .filter(|k| !PER_TASK_ONLY.contains(k))
            .collect();
        for (key, _) in f.entries {
            if PER_TASK_ONLY.contains(&key.as_str()) {
                f.err(
                    diag,
                    key,
                    format!("`{key}` cannot be set in `default_args`"),
                    Some("set it on each task that needs it".to_owned()),
                );
            }
        }
        let rest: Vec<(String, Node)> = f
            .entries
            .iter()
            .filter(|(k, _)| !PER_TASK_ONLY.contains(&k.as_str()))
            .cloned()
            .collect();
        Fields::new(&rest, f.place.clone(), &f.prefix).check_keys(
            diag,
            "task field",
            &allowed,
            AIRFLOW_TASK_NAMES,
        );
    } else {
        f.check_keys(diag, "task field", TASK_FIELDS, AIRFLOW_TASK_NAMES);
    }

    TaskFields {
        kind: read_kind(f, diag),
        cwd: f.string(diag, "cwd"),
        output: read_output(f, diag),
        skip_exit_code: read_i32(f, diag, "skip_exit_code"),
        flow: read_flow(f, diag),
        args: read_args(f, diag),
        mapping: read_mapping(f, diag),
        trigger_rule: read_trigger_rule(f, diag),
        retries: f.uint(diag, "retries", 0),
        retry_delay: f.duration(diag, "retry_delay"),
        retry_exponential_backoff: f.boolean(diag, "retry_exponential_backoff"),
        max_retry_delay: f.duration(diag, "max_retry_delay"),
        execution_timeout: f.duration(diag, "execution_timeout"),
        start_date: read_date(f, diag, "start_date", tz),
        end_date: read_date(f, diag, "end_date", tz),
        priority_weight: f.int(diag, "priority_weight"),
        weight_rule: read_weight_rule(f, diag),
        pool: f.string(diag, "pool"),
        pool_slots: f.uint(diag, "pool_slots", 1),
        max_active_tis_per_dag: f.uint(diag, "max_active_tis_per_dag", 1),
        resources: read_resources(f, diag),
        env: read_env(f, diag),
        executor: placement::read_executor(f, diag),
        image: placement::read_image(f, diag),
        spot: placement::read_spot(f, diag),
        pod_override: placement::read_pod_override(f, diag),
        role: read_role(f, diag),
        do_xcom_push: f.boolean(diag, "do_xcom_push"),
        doc: f.string(diag, "doc"),
    }
}

fn read_kind(f: &Fields<'_>, diag: &mut Diag) -> Option<KindSel> {
    let mut found: Vec<(&str, KindSel)> = Vec::new();
    if let Some(c) = f.string(diag, "command") {
        if c.trim().is_empty() {
            f.err(
                diag,
                "command",
                format!("`{}` is empty", f.path("command")),
                Some("write the shell command to run, or use `empty: true`".to_owned()),
            );
        }
        found.push(("command", KindSel::Command(c)));
    }
    if let Some(p) = f.string(diag, "python") {
        found.push(("python", KindSel::Python(p)));
    }
    match f.get("empty") {
        None => {}
        Some(Node::Bool(true)) => found.push(("empty", KindSel::Empty)),
        Some(other) => f.err(
            diag,
            "empty",
            format!(
                "`{}` can only be `true`, got {}",
                f.path("empty"),
                other.show()
            ),
            Some("remove it and set `command` or `python` instead".to_owned()),
        ),
    }
    if found.len() > 1 {
        let names: Vec<String> = found.iter().map(|(n, _)| format!("`{n}`")).collect();
        let all = if found.len() == 2 { "both" } else { "all" };
        f.err(
            diag,
            found[1].0,
            format!(
                "a task runs one thing, but {} are {all} set",
                names.join(" and ")
            ),
            Some("keep exactly one of `command`, `python` and `empty: true`".to_owned()),
        );
    }
    // On a conflict, go on with the first so that no follow-on error appears.
    found.into_iter().next().map(|(_, k)| k)
}

fn read_output(f: &Fields<'_>, diag: &mut Diag) -> Option<OutputFormat> {
    match f.get("output")? {
        Node::Str(s) if s == "text" => Some(OutputFormat::Text),
        Node::Str(s) if s == "json" => Some(OutputFormat::Json),
        other => {
            f.err(
                diag,
                "output",
                format!(
                    "`{}` must be `text` or `json`, got {}",
                    f.path("output"),
                    other.show()
                ),
                Some(
                    "`json` parses the last stdout line as JSON; `text` keeps it as a string"
                        .to_owned(),
                ),
            );
            None
        }
    }
}

fn read_i32(f: &Fields<'_>, diag: &mut Diag, key: &str) -> Option<i32> {
    match f.get(key)? {
        Node::Int(i) if i32::try_from(*i).is_ok() => i32::try_from(*i).ok(),
        other => {
            f.wrong(diag, key, "an integer exit code", other);
            None
        }
    }
}

fn read_trigger_rule(f: &Fields<'_>, diag: &mut Diag) -> Option<TriggerRule> {
    let node = f.get("trigger_rule")?;
    if let Node::Str(s) = node
        && let Some(rule) = TriggerRule::parse(s)
    {
        return Some(rule);
    }
    let names: Vec<&str> = TriggerRule::ALL.iter().map(|r| r.as_str()).collect();
    let hint = match node {
        Node::Str(s) => crate::error::did_you_mean(s, &names),
        _ => None,
    }
    .unwrap_or_else(|| format!("valid trigger rules: {}", names.join(", ")));
    f.err(
        diag,
        "trigger_rule",
        format!(
            "unknown trigger rule {} in `{}`",
            node.show(),
            f.path("trigger_rule")
        ),
        Some(hint),
    );
    None
}

fn read_weight_rule(f: &Fields<'_>, diag: &mut Diag) -> Option<WeightRule> {
    match f.get("weight_rule")? {
        Node::Str(s) if s == "downstream" => Some(WeightRule::Downstream),
        Node::Str(s) if s == "upstream" => Some(WeightRule::Upstream),
        Node::Str(s) if s == "absolute" => Some(WeightRule::Absolute),
        other => {
            f.err(
                diag,
                "weight_rule",
                format!(
                    "unknown weight rule {} in `{}`",
                    other.show(),
                    f.path("weight_rule")
                ),
                Some("valid weight rules: downstream, upstream, absolute".to_owned()),
            );
            None
        }
    }
}

fn read_flow(f: &Fields<'_>, diag: &mut Diag) -> Option<Flow> {
    let branch = f.boolean(diag, "branch");
    let short = match f.get("short_circuit") {
        None => None,
        Some(Node::Bool(b)) => Some(b.then_some(true)),
        Some(Node::Map(entries)) => {
            let inner = Fields::new(entries, f.place.clone(), &f.path("short_circuit."));
            inner.check_keys(
                diag,
                "short_circuit field",
                &["ignore_downstream_trigger_rules"],
                &[],
            );
            Some(Some(
                inner
                    .boolean(diag, "ignore_downstream_trigger_rules")
                    .unwrap_or(true),
            ))
        }
        Some(other) => {
            f.wrong(
                diag,
                "short_circuit",
                "true, false or {ignore_downstream_trigger_rules: BOOL}",
                other,
            );
            None
        }
    };
    match (branch, short) {
        (None, None) => None,
        (Some(true), Some(Some(_))) => {
            f.err(
                diag,
                "short_circuit",
                "a task cannot be both `branch` and `short_circuit`".to_owned(),
                Some("keep one of them".to_owned()),
            );
            None
        }
        (Some(true), _) => Some(Flow::Branch),
        (_, Some(Some(ignore))) => Some(Flow::ShortCircuit {
            ignore_downstream_trigger_rules: ignore,
        }),
        _ => Some(Flow::Normal),
    }
}

fn read_role(f: &Fields<'_>, diag: &mut Diag) -> Option<TaskRole> {
    let setup = f.boolean(diag, "setup");
    let teardown = match f.get("teardown") {
        None => None,
        Some(Node::Bool(false)) => Some(None),
        Some(Node::Bool(true)) => Some(Some(TaskRole::Teardown {
            setups: Vec::new(),
            on_failure_fail_dagrun: false,
        })),
        Some(Node::Map(entries)) => {
            let inner = Fields::new(entries, f.place.clone(), &f.path("teardown."));
            inner.check_keys(
                diag,
                "teardown field",
                &["setups", "on_failure_fail_dagrun"],
                &[],
            );
            Some(Some(TaskRole::Teardown {
                setups: inner.task_ids(diag, "setups"),
                on_failure_fail_dagrun: inner
                    .boolean(diag, "on_failure_fail_dagrun")
                    .unwrap_or(false),
            }))
        }
        Some(other) => {
            f.wrong(
                diag,
                "teardown",
                "true, false or {setups: [...], on_failure_fail_dagrun: BOOL}",
                other,
            );
            None
        }
    };
    match (setup, teardown) {
        (None, None) => None,
        (Some(true), Some(Some(_))) => {
            f.err(
                diag,
                "teardown",
                "a task cannot be both a setup and a teardown".to_owned(),
                Some("keep one of `setup` and `teardown`".to_owned()),
            );
            None
        }
        (Some(true), _) => Some(TaskRole::Setup),
        (_, Some(Some(role))) => Some(role),
        _ => Some(TaskRole::Normal),
    }
}

/// Whether `name` can be a Python keyword argument and a template variable.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An XCom reference `{xcom: TASK, key: KEY}` if `node` is one; `Err` if it
/// looks like one but is malformed.
fn xcom_ref(node: &Node) -> Result<Option<XcomRef>, String> {
    let Node::Map(entries) = node else {
        return Ok(None);
    };
    if !entries.iter().any(|(k, _)| k == "xcom")
        || !entries.iter().all(|(k, _)| k == "xcom" || k == "key")
    {
        return Ok(None);
    }
    let task = match node.get("xcom") {
        Some(Node::Str(t)) if !t.is_empty() => t.clone(),
        Some(other) => {
            return Err(format!("`xcom` must name a task id, got {}", other.show()));
        }
        None => return Ok(None),
    };
    let key = match node.get("key") {
        None => "return_value".to_owned(),
        Some(Node::Str(k)) if !k.is_empty() => k.clone(),
        Some(other) => {
            return Err(format!(
                "`key` must be a non-empty string, got {}",
                other.show()
            ));
        }
    };
    Ok(Some(XcomRef {
        task_id: TaskId::from(task),
        key,
    }))
}

/// An argument: an XCom reference, `{literal: VALUE}`, or any other value as a literal.
fn read_arg(node: &Node) -> Result<Arg, String> {
    if let Some(r) = xcom_ref(node)? {
        return Ok(Arg::Xcom(r));
    }
    if let Node::Map(entries) = node
        && let [(k, inner)] = entries.as_slice()
        && k == "literal"
    {
        return Ok(Arg::Literal {
            value: inner.to_value(),
        });
    }
    Ok(Arg::Literal {
        value: node.to_value(),
    })
}

fn arg_names_ok(f: &Fields<'_>, diag: &mut Diag, key: &str, name: &str) -> bool {
    if is_identifier(name) {
        return true;
    }
    f.err(
        diag,
        key,
        format!(
            "argument name `{name}` in `{}` is not an identifier",
            f.path(key)
        ),
        Some("use letters, digits and `_`, not starting with a digit".to_owned()),
    );
    false
}

fn read_args(f: &Fields<'_>, diag: &mut Diag) -> Option<BTreeMap<String, Arg>> {
    let node = f.get("args")?;
    let Node::Map(entries) = node else {
        f.wrong(diag, "args", "a mapping from argument name to value", node);
        return None;
    };
    let mut out = BTreeMap::new();
    for (name, value) in entries {
        if !arg_names_ok(f, diag, "args", name) {
            continue;
        }
        match read_arg(value) {
            Ok(arg) => {
                out.insert(name.clone(), arg);
            }
            Err(msg) => f.err(
                diag,
                &format!("args.{name}"),
                format!("`{}`: {msg}", f.path(&format!("args.{name}"))),
                None,
            ),
        }
    }
    Some(out)
}

fn map_source(node: &Node, what: &str) -> Result<MapSource, String> {
    if let Some(r) = xcom_ref(node)? {
        return Ok(MapSource::Xcom(r));
    }
    match node {
        Node::Seq(items) => Ok(MapSource::Literal {
            values: items.iter().map(Node::to_value).collect(),
        }),
        other => Err(format!(
            "{what} must be a list of values or an XCom reference such as {{xcom: extract}}, got {} {}",
            other.kind(),
            other.show()
        )),
    }
}

fn read_mapping(f: &Fields<'_>, diag: &mut Diag) -> Option<Mapping> {
    let expand = f.get("expand");
    let kwargs = f.get("expand_kwargs");
    if expand.is_some() && kwargs.is_some() {
        f.err(
            diag,
            "expand_kwargs",
            "a task cannot have both `expand` and `expand_kwargs`".to_owned(),
            Some("keep one: `expand` maps over argument lists, `expand_kwargs` over a list of argument mappings".to_owned()),
        );
        return None;
    }
    if let Some(node) = expand {
        let Node::Map(entries) = node else {
            f.wrong(
                diag,
                "expand",
                "a mapping from argument name to list or XCom reference",
                node,
            );
            return None;
        };
        let mut args = BTreeMap::new();
        let mut ok = true;
        for (name, value) in entries {
            if !arg_names_ok(f, diag, "expand", name) {
                ok = false;
                continue;
            }
            let path = f.path(&format!("expand.{name}"));
            match map_source(value, &format!("`{path}`")) {
                Ok(src) => {
                    args.insert(name.clone(), src);
                }
                Err(msg) => {
                    ok = false;
                    f.err(diag, &format!("expand.{name}"), msg, None);
                }
            }
        }
        // A half-read mapping would only cause follow-on errors.
        return ok.then_some(Mapping::Expand { args });
    }
    if let Some(node) = kwargs {
        let path = f.path("expand_kwargs");
        return match map_source(node, &format!("`{path}`")) {
            Ok(source) => Some(Mapping::ExpandKwargs { source }),
            Err(msg) => {
                f.err(diag, "expand_kwargs", msg, None);
                None
            }
        };
    }
    None
}

fn read_resources(f: &Fields<'_>, diag: &mut Diag) -> Option<Resources> {
    let node = f.get("resources")?;
    let entries = as_map(
        node,
        diag,
        &f.place,
        Some(&f.path("resources")),
        &format!("`{}`", f.path("resources")),
    )?;
    let inner = Fields::new(entries, f.place.clone(), &f.path("resources."));
    inner.check_keys(
        diag,
        "resources field",
        &["cpu", "memory", "gpu", "gpu_type", "mig"],
        &[("gpus", "pave calls it `gpu`")],
    );
    let mut res = Resources::default();
    let report = |key: &str, msg: String, diag: &mut Diag| {
        let path = inner.path(key);
        inner.err(diag, key, format!("`{path}` {msg}"), None);
    };
    if let Some(n) = inner.get("cpu") {
        match quantity::parse_cpu(n) {
            Ok(v) => res.cpu_millis = v,
            Err(m) => report("cpu", m, diag),
        }
    }
    if let Some(n) = inner.get("memory") {
        match quantity::parse_memory(n) {
            Ok(v) => res.memory_bytes = v,
            Err(m) => report("memory", m, diag),
        }
    }
    if let Some(g) = inner.uint(diag, "gpu", 0) {
        res.gpu = g;
    }
    res.gpu_type = inner.string(diag, "gpu_type");
    if let Some(t) = &res.gpu_type
        && t.trim().is_empty()
    {
        report(
            "gpu_type",
            "is empty; name a GPU product such as H100".into(),
            diag,
        );
    }
    if let Some(profile) = inner.string(diag, "mig") {
        match placement::check_mig(&profile) {
            Ok(()) => res.mig = Some(profile),
            Err(m) => report("mig", m, diag),
        }
    }
    if res.mig.is_some() && res.gpu > 0 {
        report(
            "mig",
            "asks for a MIG slice while `gpu` asks for whole GPUs; set one of them".into(),
            diag,
        );
    }
    if res.gpu_type.is_some() && res.gpu == 0 && inner.get("mig").is_none() {
        report(
            "gpu_type",
            "needs `gpu` (how many GPUs of that type) or `mig`".into(),
            diag,
        );
    }
    Some(res)
}

fn read_env(f: &Fields<'_>, diag: &mut Diag) -> Option<BTreeMap<String, String>> {
    let node = f.get("env")?;
    let Node::Map(entries) = node else {
        f.wrong(diag, "env", "a mapping from variable name to string", node);
        return None;
    };
    let mut out = BTreeMap::new();
    for (name, value) in entries {
        let text = match value {
            Node::Str(s) => s.clone(),
            Node::Int(_) | Node::Float(_) | Node::Bool(_) => value.to_value().to_string(),
            other => {
                f.wrong(diag, &format!("env.{name}"), "a string", other);
                continue;
            }
        };
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            f.err(
                diag,
                &format!("env.{name}"),
                format!("`{name}` is not a valid environment variable name"),
                None,
            );
            continue;
        }
        out.insert(name.clone(), text);
    }
    Some(out)
}
