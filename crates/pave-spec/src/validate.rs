//! Model-level validation: everything that can be checked on `pave_core`'s
//! DAG model, whatever wire form it came from. Every problem is reported,
//! each naming its DAG, task and field.

use crate::ValidateOptions;
use crate::error::{Diag, Place, did_you_mean, one_of};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use pave_core::{
    Arg, DEFAULT_POOL, Dag, Flow, MapSource, Mapping, Param, Schedule, Task, TaskKind, TaskRole,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

const JSON_TYPES: &[&str] = &[
    "string", "integer", "number", "boolean", "array", "object", "null",
];

/// Checks every DAG of one file; problems go to `diag`.
pub(crate) fn validate_dags(dags: &[Dag], opts: &ValidateOptions, diag: &mut Diag) {
    let mut seen = BTreeSet::new();
    for dag in dags {
        if !seen.insert(dag.dag_id.as_str()) {
            diag.err(
                &Place::dag(dag.dag_id.as_str()),
                Some("dag_id"),
                format!(
                    "DAG id `{}` is defined more than once in this file",
                    dag.dag_id
                ),
                Some("give each DAG its own `dag_id`".to_owned()),
            );
        }
        validate_dag(dag, opts, diag);
    }
}

fn check_id(id: &str, what: &str, field: &str, place: &Place, diag: &mut Diag) {
    let ok = !id.is_empty()
        && id.chars().count() <= 250
        && id
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !ok {
        diag.err(
            place,
            Some(field),
            format!("{what} `{id}` is not a valid id"),
            Some("use 1 to 250 letters, digits, `_`, `-` and `.`".to_owned()),
        );
    }
}

/// Checks one DAG.
pub(crate) fn validate_dag(dag: &Dag, opts: &ValidateOptions, diag: &mut Diag) {
    let place = Place::dag(dag.dag_id.as_str());
    check_id(dag.dag_id.as_str(), "DAG id", "dag_id", &place, diag);

    if Tz::from_str(&dag.timezone).is_err() {
        let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect();
        diag.err(
            &place,
            Some("timezone"),
            format!("unknown time zone `{}`", dag.timezone),
            Some(did_you_mean(&dag.timezone, &names).unwrap_or_else(|| {
                "use an IANA time zone name such as \"UTC\" or \"Europe/Paris\"".to_owned()
            })),
        );
    }
    match &dag.schedule {
        Schedule::Cron { expr } => {
            let parser = CronParser::builder()
                .seconds(Seconds::Disallowed)
                .year(Year::Disallowed)
                .build();
            if let Err(e) = parser.parse(expr) {
                diag.err(
                    &place,
                    Some("schedule"),
                    format!("malformed cron expression `{expr}` in `schedule`: {e}"),
                    Some("write 5 fields (minute hour day-of-month month day-of-week), e.g. \"30 2 * * *\", or a preset such as \"@daily\"".to_owned()),
                );
            }
        }
        Schedule::Interval { every } if every.is_zero() => diag.err(
            &place,
            Some("schedule.interval"),
            "`schedule.interval` must be longer than zero".to_owned(),
            None,
        ),
        _ => {}
    }
    check_dates(dag.start_date, dag.end_date, &place, diag);
    for (field, v) in [
        ("max_active_runs", dag.max_active_runs),
        ("max_active_tasks", dag.max_active_tasks),
    ] {
        if v == Some(0) {
            diag.err(
                &place,
                Some(field),
                format!("`{field}` must be at least 1"),
                None,
            );
        }
    }
    for (name, param) in &dag.params {
        validate_param(name, param, &place, diag);
    }
    validate_groups(dag, &place, diag);

    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, task) in dag.tasks.iter().enumerate() {
        if index.insert(task.task_id.as_str(), i).is_some() {
            diag.err(
                &place.task(task.task_id.as_str()),
                Some("task_id"),
                format!("duplicate task id `{}`", task.task_id),
                Some("give each task its own `task_id`".to_owned()),
            );
        }
    }
    for task in &dag.tasks {
        validate_task(dag, task, &index, opts, &place, diag);
    }
    report_cycles(dag, &index, &place, diag);
}

/// A DAG's or a task's `end_date` must not be before its `start_date`
/// (a task's own dates: the DAG's may narrow them further, as in Airflow).
fn check_dates(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    place: &Place,
    diag: &mut Diag,
) {
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        diag.err(
            place,
            Some("end_date"),
            format!("`end_date` {end} is before `start_date` {start}"),
            Some("move `end_date` after `start_date`, or remove it".to_owned()),
        );
    }
}

fn validate_groups(dag: &Dag, place: &Place, diag: &mut Diag) {
    let mut parents: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for g in &dag.groups {
        let field = format!("task_groups.{}", g.group_id);
        check_id(&g.group_id, "task group id", &field, place, diag);
        if parents.insert(&g.group_id, g.parent.as_deref()).is_some() {
            diag.err(
                place,
                Some(&field),
                format!("duplicate task group id `{}`", g.group_id),
                None,
            );
        }
    }
    let names: Vec<&str> = parents.keys().copied().collect();
    for g in &dag.groups {
        if let Some(parent) = &g.parent
            && !parents.contains_key(parent.as_str())
        {
            diag.err(
                place,
                Some(&format!("task_groups.{}.parent", g.group_id)),
                format!("task group `{}` has unknown parent `{parent}`", g.group_id),
                did_you_mean(parent, &names)
                    .or(Some("declare the parent in `task_groups`".to_owned())),
            );
        }
        let mut cur = g.parent.as_deref();
        for _ in 0..=parents.len() {
            match cur {
                Some(p) if p == g.group_id => {
                    diag.err(
                        place,
                        Some(&format!("task_groups.{}.parent", g.group_id)),
                        format!("task group `{}` is nested inside itself", g.group_id),
                        Some("fix the `parent` chain".to_owned()),
                    );
                    break;
                }
                Some(p) => cur = parents.get(p).copied().flatten(),
                None => break,
            }
        }
    }
}

fn validate_param(name: &str, p: &Param, place: &Place, diag: &mut Diag) {
    let field = |k: &str| format!("params.{name}.{k}");
    let mut types_ok = true;
    for t in p.type_.iter().flatten() {
        if !JSON_TYPES.contains(&t.as_str()) {
            types_ok = false;
            diag.err(
                place,
                Some(&field("type")),
                format!("unknown type `{t}` for param `{name}`"),
                Some(
                    did_you_mean(t, JSON_TYPES)
                        .unwrap_or_else(|| format!("use {}", one_of(JSON_TYPES))),
                ),
            );
        }
    }
    if let (Some(min), Some(max)) = (p.minimum, p.maximum)
        && min > max
    {
        diag.err(
            place,
            Some(&field("minimum")),
            format!("param `{name}` has minimum {min} above maximum {max}"),
            None,
        );
    }
    let Some(default) = &p.default else {
        return;
    };
    if let Some(types) = &p.type_
        && types_ok
        && !types.iter().any(|t| value_has_type(default, t))
    {
        diag.err(
            place,
            Some(&field("default")),
            format!(
                "the default {} of param `{name}` is not of type {}",
                default,
                types.join(" or ")
            ),
            Some("change the default or the type".to_owned()),
        );
    }
    if let Some(allowed) = &p.enum_
        && !allowed.contains(default)
    {
        diag.err(
            place,
            Some(&field("default")),
            format!("the default {default} of param `{name}` is not one of its `enum` values"),
            None,
        );
    }
    if let Some(x) = default.as_f64() {
        if let Some(min) = p.minimum
            && x < min
        {
            diag.err(
                place,
                Some(&field("default")),
                format!("the default {default} of param `{name}` is below its minimum {min}"),
                None,
            );
        }
        if let Some(max) = p.maximum
            && x > max
        {
            diag.err(
                place,
                Some(&field("default")),
                format!("the default {default} of param `{name}` is above its maximum {max}"),
                None,
            );
        }
    }
}

/// JSON Schema's notion of a value's type (an integral float is an integer).
pub(crate) fn value_has_type(v: &Value, t: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => false,
    }
}

fn validate_task(
    dag: &Dag,
    task: &Task,
    index: &BTreeMap<&str, usize>,
    opts: &ValidateOptions,
    dag_place: &Place,
    diag: &mut Diag,
) {
    let id = task.task_id.as_str();
    let place = dag_place.task(id);
    check_id(id, "task id", "task_id", &place, diag);
    check_dates(task.start_date, task.end_date, &place, diag);
    let task_names: Vec<&str> = index.keys().copied().collect();
    let group_names: Vec<&str> = dag.groups.iter().map(|g| g.group_id.as_str()).collect();

    if let Some(group) = &task.group
        && !group_names.contains(&group.as_str())
    {
        diag.err(
            &place,
            Some("group"),
            format!("unknown task group `{group}`"),
            did_you_mean(group, &group_names)
                .or_else(|| Some(format!("declare `{group}` in the DAG's `task_groups`"))),
        );
    }
    // Tasks named by XCom references and teardown setups get their own,
    // more specific message below.
    let mut referenced: BTreeSet<&str> = BTreeSet::new();
    for arg in task.args.values() {
        if let Arg::Xcom(r) = arg {
            referenced.insert(r.task_id.as_str());
        }
    }
    match &task.mapping {
        Some(Mapping::Expand { args }) => {
            for src in args.values() {
                if let MapSource::Xcom(r) = src {
                    referenced.insert(r.task_id.as_str());
                }
            }
        }
        Some(Mapping::ExpandKwargs {
            source: MapSource::Xcom(r),
        }) => {
            referenced.insert(r.task_id.as_str());
        }
        _ => {}
    }
    if let TaskRole::Teardown { setups, .. } = &task.role {
        referenced.extend(setups.iter().map(|s| s.as_str()));
    }
    for up in &task.upstream {
        if referenced.contains(up.as_str()) {
            continue;
        }
        if up.as_str() == id {
            diag.err(
                &place,
                Some("upstream"),
                format!("task `{id}` lists itself as upstream"),
                Some("remove it from `upstream`".to_owned()),
            );
        } else if !index.contains_key(up.as_str()) {
            let mut known = task_names.clone();
            known.extend(group_names.iter().copied());
            diag.err(
                &place,
                Some("upstream"),
                format!("unknown upstream `{up}`: no task or task group has that id"),
                did_you_mean(up.as_str(), &known),
            );
        }
    }
    match &task.kind {
        TaskKind::Command { command, .. } if command.trim().is_empty() => diag.err(
            &place,
            Some("command"),
            "`command` is empty".to_owned(),
            Some("write the shell command to run, or use `empty: true`".to_owned()),
        ),
        TaskKind::Python { callable } if callable.trim().is_empty() => diag.err(
            &place,
            Some("python"),
            "`python` is empty".to_owned(),
            Some("name the callable, e.g. `python: train_model`".to_owned()),
        ),
        TaskKind::Empty if task.flow != Flow::Normal => diag.err(
            &place,
            Some(if task.flow == Flow::Branch {
                "branch"
            } else {
                "short_circuit"
            }),
            "an empty task has no result to branch or short-circuit on".to_owned(),
            Some("make it a `command` or `python` task".to_owned()),
        ),
        _ => {}
    }
    if task.pool_slots < 1 {
        diag.err(
            &place,
            Some("pool_slots"),
            format!("`pool_slots` must be at least 1, got {}", task.pool_slots),
            None,
        );
    }
    if task.max_active_tis_per_dag == Some(0) {
        diag.err(
            &place,
            Some("max_active_tis_per_dag"),
            "`max_active_tis_per_dag` must be at least 1".to_owned(),
            None,
        );
    }
    if let Some(pools) = &opts.known_pools
        && task.pool != DEFAULT_POOL
        && !pools.contains(&task.pool)
    {
        let mut names: Vec<&str> = pools.iter().map(String::as_str).collect();
        names.push(DEFAULT_POOL);
        diag.err(
            &place,
            Some("pool"),
            format!("unknown pool `{}`", task.pool),
            Some(did_you_mean(&task.pool, &names).unwrap_or_else(|| {
                format!(
                    "create the pool first (`pave pools set {} SLOTS`), or use one of: {}",
                    task.pool,
                    names.join(", ")
                )
            })),
        );
    }
    let xcom_target = |target: &str, field: &str, diag: &mut Diag| {
        if target == id {
            diag.err(
                &place,
                Some(field),
                format!("`{field}` refers to the XCom of the task itself"),
                Some("refer to an upstream task".to_owned()),
            );
        } else if !index.contains_key(target) {
            diag.err(
                &place,
                Some(field),
                format!(
                    "`{field}` refers to the XCom of `{target}`, which is not a task in this DAG"
                ),
                did_you_mean(target, &task_names),
            );
        }
    };
    for (name, arg) in &task.args {
        if let Arg::Xcom(r) = arg {
            xcom_target(r.task_id.as_str(), &format!("args.{name}"), diag);
        }
    }
    match &task.mapping {
        None => {}
        Some(Mapping::Expand { args }) => {
            if args.is_empty() {
                diag.err(
                    &place,
                    Some("expand"),
                    "`expand` has no arguments to map over".to_owned(),
                    Some(
                        "name at least one argument and its values, e.g. `expand: {shard: [0, 1]}`"
                            .to_owned(),
                    ),
                );
            }
            for (name, src) in args {
                let field = format!("expand.{name}");
                if task.args.contains_key(name) {
                    diag.err(
                        &place,
                        Some(&field),
                        format!("argument `{name}` is in both `args` and `expand`"),
                        Some(
                            "an argument is either fixed (`args`) or mapped (`expand`); remove one"
                                .to_owned(),
                        ),
                    );
                }
                if let MapSource::Xcom(r) = src {
                    xcom_target(r.task_id.as_str(), &field, diag);
                }
            }
        }
        Some(Mapping::ExpandKwargs { source }) => {
            match source {
                MapSource::Xcom(r) => xcom_target(r.task_id.as_str(), "expand_kwargs", diag),
                MapSource::Literal { values } => {
                    for (i, v) in values.iter().enumerate() {
                        if !v.is_object() {
                            diag.err(
                            &place,
                            Some(&format!("expand_kwargs[{i}]")),
                            format!("`expand_kwargs[{i}]` must be a mapping of arguments, got {v}"),
                            Some("`expand_kwargs` takes a list of mappings, one per mapped instance".to_owned()),
                        );
                        }
                    }
                }
            }
        }
    }
    if let TaskRole::Teardown { setups, .. } = &task.role {
        for s in setups {
            match index.get(s.as_str()).map(|&j| &dag.tasks[j]) {
                None => diag.err(
                    &place,
                    Some("teardown.setups"),
                    format!("teardown names setup `{s}`, which is not a task in this DAG"),
                    did_you_mean(s.as_str(), &task_names),
                ),
                Some(t) if !t.role.is_setup() => diag.err(
                    &place,
                    Some("teardown.setups"),
                    format!("teardown names `{s}` as its setup, but `{s}` is not a setup task"),
                    Some(format!(
                        "mark `{s}` with `setup: true`, or remove it from `setups`"
                    )),
                ),
                Some(_) => {}
            }
        }
    }
    // Airflow's DAG.validate_setup_teardown: a setup's direct downstream
    // tasks (other than teardowns) must use all_success.
    if !task.role.is_teardown() && task.trigger_rule != pave_core::TriggerRule::AllSuccess {
        let setups: Vec<&str> = task
            .upstream
            .iter()
            .filter(|u| {
                index
                    .get(u.as_str())
                    .is_some_and(|&j| dag.tasks[j].role.is_setup())
            })
            .map(|u| u.as_str())
            .collect();
        if !setups.is_empty() {
            diag.err(
                &place,
                Some("trigger_rule"),
                format!(
                    "task follows setup task `{}` with trigger rule `{}`; tasks right after a setup must use `all_success` (as Airflow requires)",
                    setups.join("`, `"),
                    task.trigger_rule.as_str()
                ),
                Some("use `trigger_rule: all_success`, or put another task between the setup and this one".to_owned()),
            );
        }
    }
}

/// Reports each dependency cycle once, as a path `a -> b -> c -> a`
/// (`a -> b`: b runs after a).
fn report_cycles(dag: &Dag, index: &BTreeMap<&str, usize>, place: &Place, diag: &mut Diag) {
    let n = dag.tasks.len();
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, t) in dag.tasks.iter().enumerate() {
        for up in &t.upstream {
            if let Some(&j) = index.get(up.as_str())
                && j != i
            {
                down[j].push(i);
            }
        }
    }
    // 0 = unvisited, 1 = on the stack, 2 = done. Iterative so that deep DAGs cannot overflow.
    let mut color = vec![0u8; n];
    let mut reported: BTreeSet<Vec<usize>> = BTreeSet::new();
    for start in 0..n {
        if color[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        color[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&child) = down[node].get(*next) {
                *next += 1;
                match color[child] {
                    0 => {
                        color[child] = 1;
                        stack.push((child, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|(v, _)| *v == child).unwrap_or(0);
                        let cycle: Vec<usize> = stack[from..].iter().map(|(v, _)| *v).collect();
                        let mut key = cycle.clone();
                        key.sort_unstable();
                        if reported.insert(key) && reported.len() <= 10 {
                            let mut path: Vec<&str> = cycle
                                .iter()
                                .map(|&v| dag.tasks[v].task_id.as_str())
                                .collect();
                            path.push(dag.tasks[child].task_id.as_str());
                            diag.err(
                                place,
                                Some("upstream"),
                                format!("dependency cycle: {}", path.join(" -> ")),
                                Some(
                                    "remove one of these dependencies (a DAG cannot loop)"
                                        .to_owned(),
                                ),
                            );
                        }
                    }
                    _ => {}
                }
            } else {
                color[node] = 2;
                stack.pop();
            }
        }
    }
}
