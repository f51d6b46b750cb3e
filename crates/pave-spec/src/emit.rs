//! The reverse direction: the canonical JSON spec v1 of model DAGs, so a
//! stored DAG version can be written out and read back to the same model.
//!
//! The canonical form is explicit: every task lists its full task-level
//! `upstream` (group dependencies already expanded), groups carry no
//! dependencies, and there are no `default_args`.

use crate::quantity::{cpu_value, duration_value, memory_value};
use chrono::SecondsFormat;
use pave_core::{
    Arg, Dag, Flow, MapSource, Mapping, OutputFormat, Param, Schedule, Task, TaskKind, TaskRole,
    XcomRef,
};
use serde_json::{Map, Value, json};

/// `{"spec_version": 1, "dags": [...]}` for these DAGs.
pub fn to_spec_json(dags: &[Dag]) -> Value {
    json!({
        "spec_version": 1,
        "dags": dags.iter().map(dag_value).collect::<Vec<_>>(),
    })
}

fn put(m: &mut Map<String, Value>, key: &str, v: impl Into<Value>) {
    m.insert(key.to_owned(), v.into());
}

fn dag_value(dag: &Dag) -> Value {
    let mut m = Map::new();
    put(&mut m, "dag_id", dag.dag_id.as_str());
    if let Some(d) = &dag.description {
        put(&mut m, "description", d.as_str());
    }
    if !dag.tags.is_empty() {
        put(&mut m, "tags", dag.tags.clone());
    }
    put(
        &mut m,
        "schedule",
        match &dag.schedule {
            Schedule::None => Value::Null,
            Schedule::Once => Value::from("@once"),
            Schedule::Cron { expr } => Value::from(expr.as_str()),
            Schedule::Interval { every } => json!({ "interval": duration_value(*every) }),
        },
    );
    put(&mut m, "timezone", dag.timezone.as_str());
    for (key, date) in [("start_date", dag.start_date), ("end_date", dag.end_date)] {
        if let Some(d) = date {
            put(&mut m, key, d.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
    }
    put(&mut m, "catchup", dag.catchup);
    if !dag.params.is_empty() {
        let params: Map<String, Value> = dag
            .params
            .iter()
            .map(|(k, p)| (k.clone(), param_value(p)))
            .collect();
        put(&mut m, "params", params);
    }
    if let Some(v) = dag.max_active_runs {
        put(&mut m, "max_active_runs", v);
    }
    if let Some(v) = dag.max_active_tasks {
        put(&mut m, "max_active_tasks", v);
    }
    if let Some(d) = dag.dagrun_timeout {
        put(&mut m, "dagrun_timeout", duration_value(d));
    }
    if !dag.groups.is_empty() {
        let groups: Vec<Value> = dag
            .groups
            .iter()
            .map(|g| {
                let mut gm = Map::new();
                put(&mut gm, "group_id", g.group_id.as_str());
                if let Some(t) = &g.tooltip {
                    put(&mut gm, "tooltip", t.as_str());
                }
                if let Some(p) = &g.parent {
                    put(&mut gm, "parent", p.as_str());
                }
                Value::Object(gm)
            })
            .collect();
        put(&mut m, "task_groups", groups);
    }
    put(
        &mut m,
        "tasks",
        dag.tasks.iter().map(task_value).collect::<Vec<_>>(),
    );
    put(
        &mut m,
        "fileloc",
        dag.fileloc.as_deref().map_or(Value::Null, Value::from),
    );
    Value::Object(m)
}

fn param_value(p: &Param) -> Value {
    let mut m = Map::new();
    if let Some(d) = &p.default {
        put(&mut m, "default", d.clone());
    }
    if let Some(t) = &p.type_ {
        put(&mut m, "type", t.clone());
    }
    if let Some(d) = &p.description {
        put(&mut m, "description", d.as_str());
    }
    if let Some(e) = &p.enum_ {
        put(&mut m, "enum", e.clone());
    }
    for (key, v) in [("minimum", p.minimum), ("maximum", p.maximum)] {
        match v {
            // Integral bounds print as integers (`1`, not `1.0`); both read back the same.
            Some(x) if x.fract() == 0.0 && x.abs() < 9e15 => put(&mut m, key, x as i64),
            Some(x) => {
                if let Some(n) = serde_json::Number::from_f64(x) {
                    put(&mut m, key, n);
                }
            }
            None => {}
        }
    }
    Value::Object(m)
}

fn xcom_value(r: &XcomRef) -> Value {
    if r.key == "return_value" {
        json!({ "xcom": r.task_id.as_str() })
    } else {
        json!({ "xcom": r.task_id.as_str(), "key": r.key })
    }
}

/// A literal argument, wrapped in `{"literal": ...}` when it would otherwise
/// read as an XCom reference (or as such a wrapper).
fn literal_value(v: &Value) -> Value {
    let ambiguous = v.as_object().is_some_and(|o| {
        (o.contains_key("xcom") && o.keys().all(|k| k == "xcom" || k == "key"))
            || (o.len() == 1 && o.contains_key("literal"))
    });
    if ambiguous {
        json!({ "literal": v })
    } else {
        v.clone()
    }
}

fn source_value(s: &MapSource) -> Value {
    match s {
        MapSource::Literal { values } => Value::from(values.clone()),
        MapSource::Xcom(r) => xcom_value(r),
    }
}

fn task_value(t: &Task) -> Value {
    let mut m = Map::new();
    put(&mut m, "task_id", t.task_id.as_str());
    if let Some(g) = &t.group {
        put(&mut m, "group", g.as_str());
    }
    if !t.upstream.is_empty() {
        let up: Vec<&str> = t.upstream.iter().map(|u| u.as_str()).collect();
        put(&mut m, "upstream", up);
    }
    match &t.kind {
        TaskKind::Empty => put(&mut m, "empty", true),
        TaskKind::Python { callable } => put(&mut m, "python", callable.as_str()),
        TaskKind::Command {
            command,
            cwd,
            output,
            skip_exit_code,
        } => {
            put(&mut m, "command", command.as_str());
            if let Some(c) = cwd {
                put(&mut m, "cwd", c.as_str());
            }
            put(
                &mut m,
                "output",
                match output {
                    OutputFormat::Text => "text",
                    OutputFormat::Json => "json",
                },
            );
            if let Some(code) = skip_exit_code {
                put(&mut m, "skip_exit_code", *code);
            }
        }
    }
    match &t.flow {
        Flow::Normal => {}
        Flow::Branch => put(&mut m, "branch", true),
        Flow::ShortCircuit {
            ignore_downstream_trigger_rules,
        } => put(
            &mut m,
            "short_circuit",
            json!({ "ignore_downstream_trigger_rules": ignore_downstream_trigger_rules }),
        ),
    }
    if !t.args.is_empty() {
        let args: Map<String, Value> = t
            .args
            .iter()
            .map(|(k, a)| {
                let v = match a {
                    Arg::Literal { value } => literal_value(value),
                    Arg::Xcom(r) => xcom_value(r),
                };
                (k.clone(), v)
            })
            .collect();
        put(&mut m, "args", args);
    }
    match &t.mapping {
        None => {}
        Some(Mapping::Expand { args }) => {
            let args: Map<String, Value> = args
                .iter()
                .map(|(k, s)| (k.clone(), source_value(s)))
                .collect();
            put(&mut m, "expand", args);
        }
        Some(Mapping::ExpandKwargs { source }) => {
            put(&mut m, "expand_kwargs", source_value(source))
        }
    }
    put(&mut m, "trigger_rule", t.trigger_rule.as_str());
    put(&mut m, "retries", t.retry.retries);
    put(&mut m, "retry_delay", duration_value(t.retry.retry_delay));
    put(
        &mut m,
        "retry_exponential_backoff",
        t.retry.retry_exponential_backoff,
    );
    if let Some(d) = t.retry.max_retry_delay {
        put(&mut m, "max_retry_delay", duration_value(d));
    }
    if let Some(d) = t.execution_timeout {
        put(&mut m, "execution_timeout", duration_value(d));
    }
    for (key, date) in [("start_date", t.start_date), ("end_date", t.end_date)] {
        if let Some(d) = date {
            put(&mut m, key, d.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
    }
    put(&mut m, "priority_weight", t.priority_weight);
    put(
        &mut m,
        "weight_rule",
        match t.weight_rule {
            pave_core::WeightRule::Downstream => "downstream",
            pave_core::WeightRule::Upstream => "upstream",
            pave_core::WeightRule::Absolute => "absolute",
        },
    );
    put(&mut m, "pool", t.pool.as_str());
    put(&mut m, "pool_slots", t.pool_slots);
    if let Some(v) = t.max_active_tis_per_dag {
        put(&mut m, "max_active_tis_per_dag", v);
    }
    let r = &t.resources;
    if r.cpu_millis > 0
        || r.memory_bytes > 0
        || r.gpu > 0
        || r.gpu_type.is_some()
        || r.mig.is_some()
    {
        let mut rm = Map::new();
        if r.cpu_millis > 0 {
            put(&mut rm, "cpu", cpu_value(r.cpu_millis));
        }
        if r.memory_bytes > 0 {
            put(&mut rm, "memory", memory_value(r.memory_bytes));
        }
        if r.gpu > 0 {
            put(&mut rm, "gpu", r.gpu);
        }
        if let Some(t) = &r.gpu_type {
            put(&mut rm, "gpu_type", t.as_str());
        }
        if let Some(p) = &r.mig {
            put(&mut rm, "mig", p.as_str());
        }
        put(&mut m, "resources", rm);
    }
    let p = &t.placement;
    if let Some(e) = &p.executor {
        put(&mut m, "executor", e.as_str());
    }
    if let Some(i) = &p.image {
        put(&mut m, "image", i.as_str());
    }
    if p.spot != pave_core::SpotPolicy::Never {
        put(&mut m, "spot", p.spot.as_str());
    }
    if let Some(o) = &p.pod_override {
        put(&mut m, "pod_override", o.clone());
    }
    if !t.env.is_empty() {
        put(
            &mut m,
            "env",
            serde_json::to_value(&t.env).unwrap_or(Value::Null),
        );
    }
    match &t.role {
        TaskRole::Normal => {}
        TaskRole::Setup => put(&mut m, "setup", true),
        TaskRole::Teardown {
            setups,
            on_failure_fail_dagrun,
        } => {
            let setups: Vec<&str> = setups.iter().map(|s| s.as_str()).collect();
            put(
                &mut m,
                "teardown",
                json!({ "setups": setups, "on_failure_fail_dagrun": on_failure_fail_dagrun }),
            );
        }
    }
    put(&mut m, "do_xcom_push", t.do_xcom_push);
    if let Some(d) = &t.doc {
        put(&mut m, "doc", d.as_str());
    }
    Value::Object(m)
}
