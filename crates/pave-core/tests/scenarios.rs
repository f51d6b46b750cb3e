//! The scenario suite: every `tests/scenarios/*.json` run through pave's pure scheduling
//! core with a scripted fake executor, compared with what Airflow 3 did
//! (`truth/<name>.json`) or, without a truth file, with the scenario's `expected`.
//!
//! The simulation loops `decide` -> apply commands -> run every scheduled task instance
//! (its scripted outcome through `retry::on_attempt_end`) until the run finishes, and
//! checks invariants after every step. Set `SCENARIO=name` to run one scenario.

use chrono::{DateTime, TimeZone, Utc};
use pave_core::decide::{check_mapping_source_push, decide, flow_result_from_return};
use pave_core::retry::on_attempt_end;
use pave_core::run::{AttemptOutcome, Command, RunView, TiView, XcomMap};
use pave_core::{
    Dag, Flow, MapIndex, MapSource, Mapping, RetryPolicy, RunState, Task, TaskGroup, TaskId,
    TaskKind, TaskRole, TaskState, TriggerRule, XcomRef,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Steps after which a run that has not finished counts as stuck.
const MAX_STEPS: usize = 500;
/// The `max_map_length` the simulated scheduler uses (Airflow's default).
const MAX_MAP_LENGTH: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    name: String,
    #[allow(dead_code)]
    description: Option<String>,
    tasks: Vec<ScenarioTask>,
    expected: Expected,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioTask {
    id: String,
    #[serde(default)]
    upstream: Vec<String>,
    trigger_rule: Option<String>,
    #[serde(default)]
    retries: u32,
    outcomes: Option<Outcomes>,
    returns: Option<Value>,
    branch: Option<Vec<String>>,
    short_circuit: Option<bool>,
    ignore_downstream_trigger_rules: Option<bool>,
    expand: Option<BTreeMap<String, Source>>,
    expand_kwargs: Option<Source>,
    #[serde(default)]
    setup: bool,
    teardown: Option<Teardown>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Outcomes {
    List(Vec<String>),
    PerIndex(BTreeMap<String, Vec<String>>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Source {
    Xcom { xcom: String },
    Literal(Vec<Value>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Teardown {
    setups: Vec<String>,
    #[serde(default)]
    on_failure_fail_dagrun: bool,
}

/// The expected end of a run (`expected`, or a truth file, which adds `airflow_version`).
#[derive(Deserialize)]
struct Expected {
    run_state: String,
    task_instances: Vec<ExpectedTi>,
}

#[derive(Deserialize)]
struct ExpectedTi {
    task_id: String,
    map_index: i32,
    state: String,
    try_number: Option<u32>,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid start time")
}

fn to_source(s: &Source) -> MapSource {
    match s {
        Source::Xcom { xcom } => MapSource::Xcom(XcomRef {
            task_id: TaskId::new(xcom.as_str()),
            key: "return_value".to_owned(),
        }),
        Source::Literal(values) => MapSource::Literal {
            values: values.clone(),
        },
    }
}

/// Build the DAG a scenario describes, as the DAG processor would.
fn build_dag(s: &Scenario) -> Result<Dag, String> {
    let mut dag = Dag::new(s.name.as_str());
    let mut groups = BTreeSet::new();
    for st in &s.tasks {
        let mut task = Task::new(
            st.id.as_str(),
            TaskKind::Python {
                callable: st.id.clone(),
            },
        );
        let mut upstream: Vec<String> = st.upstream.clone();
        if let Some((group, _)) = st.id.rsplit_once('.') {
            task.group = Some(group.to_owned());
            // Register the group and every enclosing group.
            let mut g = group;
            loop {
                groups.insert(g.to_owned());
                match g.rsplit_once('.') {
                    Some((parent, _)) => g = parent,
                    None => break,
                }
            }
        }
        task.retry = RetryPolicy {
            retries: st.retries,
            retry_delay: Duration::ZERO,
            retry_exponential_backoff: false,
            max_retry_delay: None,
        };
        if let Some(rule) = &st.trigger_rule {
            task.trigger_rule = TriggerRule::parse(rule)
                .ok_or_else(|| format!("task `{}`: unknown trigger rule `{rule}`", st.id))?;
        }
        if st.branch.is_some() {
            task.flow = Flow::Branch;
        }
        if st.short_circuit.is_some() {
            task.flow = Flow::ShortCircuit {
                ignore_downstream_trigger_rules: st.ignore_downstream_trigger_rules.unwrap_or(true),
            };
        }
        if let Some(args) = &st.expand {
            for src in args.values() {
                if let Source::Xcom { xcom } = src {
                    upstream.push(xcom.clone());
                }
            }
            task.mapping = Some(Mapping::Expand {
                args: args
                    .iter()
                    .map(|(k, v)| (k.clone(), to_source(v)))
                    .collect(),
            });
        }
        if let Some(src) = &st.expand_kwargs {
            if let Source::Xcom { xcom } = src {
                upstream.push(xcom.clone());
            }
            task.mapping = Some(Mapping::ExpandKwargs {
                source: to_source(src),
            });
        }
        if st.setup {
            task.role = TaskRole::Setup;
        }
        if let Some(td) = &st.teardown {
            upstream.extend(td.setups.iter().cloned());
            task.role = TaskRole::Teardown {
                setups: td.setups.iter().map(|s| TaskId::new(s.as_str())).collect(),
                on_failure_fail_dagrun: td.on_failure_fail_dagrun,
            };
            // `as_teardown()` gives a teardown this rule (Airflow refuses any other).
            if st.trigger_rule.is_none() {
                task.trigger_rule = TriggerRule::AllDoneSetupSuccess;
            }
        }
        let mut seen = BTreeSet::new();
        upstream.retain(|u| seen.insert(u.clone()));
        task.upstream = upstream.iter().map(|u| TaskId::new(u.as_str())).collect();
        dag.tasks.push(task);
    }
    let ids: BTreeSet<&str> = dag.tasks.iter().map(|t| t.task_id.as_str()).collect();
    for t in &dag.tasks {
        for u in &t.upstream {
            if !ids.contains(u.as_str()) {
                return Err(format!("task `{}`: unknown upstream `{u}`", t.task_id));
            }
        }
    }
    dag.groups = groups
        .into_iter()
        .map(|g| TaskGroup {
            parent: g.rsplit_once('.').map(|(p, _)| p.to_owned()),
            group_id: g,
            tooltip: None,
        })
        .collect();
    Ok(dag)
}

/// What attempt `try_number` of a task instance does, per the scenario's script.
fn scripted_outcome(st: &ScenarioTask, map_index: i32, try_number: u32) -> AttemptOutcome {
    let list: &[String] = match &st.outcomes {
        None => &[],
        Some(Outcomes::List(l)) => l,
        Some(Outcomes::PerIndex(m)) => m.get(&map_index.to_string()).map_or(&[], Vec::as_slice),
    };
    let which = list
        .get(try_number.saturating_sub(1) as usize)
        .map_or("success", String::as_str);
    match which {
        "fail" => AttemptOutcome::Failed {
            retryable: true,
            reason: "scripted failure".into(),
        },
        "fail_no_retry" => AttemptOutcome::Failed {
            retryable: false,
            reason: "scripted AirflowFailException".into(),
        },
        "skip" => AttemptOutcome::Skipped,
        _ => AttemptOutcome::Success,
    }
}

struct RunEnd {
    run_state: Option<RunState>,
    tis: Vec<TiView>,
    /// Invariant violations seen along the way.
    violations: Vec<String>,
}

fn find(tis: &[TiView], task_id: &TaskId, map_index: MapIndex) -> Option<usize> {
    tis.iter()
        .position(|t| &t.task_id == task_id && t.map_index == map_index)
}

/// Run one DAG run to its end with a fake executor that plays the script.
fn simulate(s: &Scenario, dag: &Dag) -> RunEnd {
    let script: BTreeMap<&str, &ScenarioTask> =
        s.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut tis: Vec<TiView> = dag
        .tasks
        .iter()
        .map(|t| TiView {
            task_id: t.task_id.clone(),
            map_index: MapIndex::UNMAPPED,
            state: TaskState::NoStatus,
            try_number: 0,
            next_retry_at: None,
            flow_result: None,
        })
        .collect();
    let mut xcoms = XcomMap::new();
    let mut violations = Vec::new();
    let mut now = t0();
    let mut tries: BTreeMap<(TaskId, MapIndex), u32> = BTreeMap::new();

    for step in 0..MAX_STEPS {
        let view = RunView {
            dag,
            run_state: RunState::Running,
            tis: &tis,
            xcoms: &xcoms,
            start_date: Some(t0()),
            max_map_length: MAX_MAP_LENGTH,
        };
        let commands = decide(&view, now);
        let mut touched = BTreeSet::new();
        let mut finished_run = None;
        for (i, cmd) in commands.iter().enumerate() {
            let mut v = |msg: String| violations.push(format!("step {step}: {msg} ({cmd:?})"));
            if finished_run.is_some() {
                v("a command came after FinishRun".into());
            }
            match cmd {
                Command::Schedule { task_id, map_index } => {
                    if !touched.insert((task_id.clone(), *map_index)) {
                        v("task instance got two commands in one decision".into());
                    }
                    match find(&tis, task_id, *map_index) {
                        None => v("scheduled a task instance that does not exist".into()),
                        Some(k) => {
                            let ti = &mut tis[k];
                            let undecided =
                                matches!(ti.state, TaskState::NoStatus | TaskState::UpForRetry);
                            if !undecided {
                                v(format!("scheduled a task instance in state {}", ti.state));
                            }
                            if ti.next_retry_at.is_some_and(|at| at > now) {
                                v("scheduled before its retry delay elapsed".into());
                            }
                            ti.state = TaskState::Scheduled;
                            ti.try_number += 1;
                        }
                    }
                }
                Command::SetState {
                    task_id,
                    map_index,
                    state,
                    ..
                } => {
                    if !touched.insert((task_id.clone(), *map_index)) {
                        v("task instance got two commands in one decision".into());
                    }
                    match find(&tis, task_id, *map_index) {
                        None => v("set the state of a task instance that does not exist".into()),
                        Some(k) => {
                            if tis[k].state.is_finished() {
                                v(format!(
                                    "changed a finished task instance ({})",
                                    tis[k].state
                                ));
                            }
                            tis[k].state = *state;
                        }
                    }
                }
                Command::Expand { task_id, count } => {
                    match find(&tis, task_id, MapIndex::UNMAPPED) {
                        Some(k) if !tis[k].state.is_finished() => {
                            tis.remove(k);
                            for m in 0..*count {
                                tis.push(TiView {
                                    task_id: task_id.clone(),
                                    map_index: MapIndex(m as i32),
                                    state: TaskState::NoStatus,
                                    try_number: 0,
                                    next_retry_at: None,
                                    flow_result: None,
                                });
                            }
                        }
                        _ => v("expanded a task without an unfinished placeholder".into()),
                    }
                    if *count == 0 {
                        v("expanded to zero instances".into());
                    }
                }
                Command::FinishRun { state, .. } => {
                    if let Some(ti) = tis.iter().find(|t| !t.state.is_finished()) {
                        v(format!(
                            "run finished while {}[{}] is {}",
                            ti.task_id, ti.map_index, ti.state
                        ));
                    }
                    if i + 1 != commands.len() {
                        v("FinishRun is not the last command".into());
                    }
                    finished_run = Some(*state);
                }
            }
        }
        if let Some(state) = finished_run {
            return RunEnd {
                run_state: Some(state),
                tis,
                violations,
            };
        }

        // The fake executor: run every scheduled task instance, one attempt each.
        let mut ran = false;
        for ti in tis.iter_mut() {
            if ti.state != TaskState::Scheduled {
                continue;
            }
            ran = true;
            let Some(task) = dag.task(ti.task_id.as_str()) else {
                violations.push(format!("step {step}: ran unknown task {}", ti.task_id));
                continue;
            };
            let Some(st) = script.get(ti.task_id.as_str()) else {
                continue;
            };
            ti.state = TaskState::Running;
            let mut outcome = scripted_outcome(st, ti.map_index.0, ti.try_number);
            if outcome == AttemptOutcome::Success {
                // The task runtime refuses a value its mapped dependants cannot expand
                // over, failing this attempt (as Airflow's task runner does).
                if let Err(reason) =
                    check_mapping_source_push(dag, task, st.returns.as_ref(), MAX_MAP_LENGTH)
                {
                    outcome = AttemptOutcome::Failed {
                        retryable: true,
                        reason,
                    };
                }
            }
            let value = match (&st.branch, st.short_circuit) {
                (Some(follow), _) => Some(Value::from(follow.clone())),
                (None, Some(proceed)) => Some(Value::Bool(proceed)),
                (None, None) => st.returns.clone(),
            };
            let mut flow = None;
            if outcome == AttemptOutcome::Success
                && let Some(value) = &value
            {
                // A branch naming unknown tasks raises inside the task in
                // Airflow: an ordinary, retryable failure of the attempt.
                match flow_result_from_return(dag, task, value) {
                    Ok(f) => flow = f,
                    Err(e) => {
                        outcome = AttemptOutcome::Failed {
                            retryable: true,
                            reason: e.to_string(),
                        }
                    }
                }
            }
            let res = on_attempt_end(task, ti.try_number, &outcome, now);
            ti.state = res.state;
            ti.next_retry_at = res.next_retry_at;
            if res.state == TaskState::Success {
                ti.flow_result = flow;
                if let Some(value) = value
                    && !value.is_null()
                {
                    xcoms.insert(
                        (ti.task_id.clone(), ti.map_index, "return_value".to_owned()),
                        value,
                    );
                }
            }
        }
        for ti in &tis {
            let key = (ti.task_id.clone(), ti.map_index);
            let before = tries.insert(key, ti.try_number).unwrap_or(0);
            if ti.try_number < before {
                violations.push(format!(
                    "step {step}: try_number of {}[{}] went down from {before} to {}",
                    ti.task_id, ti.map_index, ti.try_number
                ));
            }
        }
        if commands.is_empty() && !ran {
            violations.push(format!(
                "step {step}: decide returned nothing and nothing is running, but the run is not finished"
            ));
            break;
        }
        now += chrono::Duration::seconds(1);
    }
    RunEnd {
        run_state: None,
        tis,
        violations,
    }
}

/// Everything that differs between the simulated run and what was expected.
fn compare(end: &RunEnd, expected: &Expected) -> Vec<String> {
    let mut out = end.violations.clone();
    match end.run_state {
        None => out.push(format!(
            "run never finished (expected {}) within {MAX_STEPS} steps",
            expected.run_state
        )),
        Some(state) if state.as_str() != expected.run_state => out.push(format!(
            "run state: got {state}, expected {}",
            expected.run_state
        )),
        Some(_) => {}
    }
    let got: BTreeMap<(String, i32), (&str, u32)> = end
        .tis
        .iter()
        .map(|t| {
            (
                (t.task_id.to_string(), t.map_index.0),
                (t.state.as_str(), t.try_number),
            )
        })
        .collect();
    let mut expected_keys = BTreeSet::new();
    for e in &expected.task_instances {
        let key = (e.task_id.clone(), e.map_index);
        expected_keys.insert(key.clone());
        let name = format!("{}[{}]", e.task_id, e.map_index);
        match got.get(&key) {
            None => out.push(format!("{name}: missing (expected {})", e.state)),
            Some((state, try_number)) => {
                if *state != e.state {
                    out.push(format!("{name}: state {state}, expected {}", e.state));
                }
                if let Some(want) = e.try_number
                    && *try_number != want
                {
                    out.push(format!("{name}: try_number {try_number}, expected {want}"));
                }
            }
        }
    }
    for ((task_id, map_index), (state, _)) in &got {
        if !expected_keys.contains(&(task_id.clone(), *map_index)) {
            out.push(format!(
                "{task_id}[{map_index}]: unexpected task instance ({state})"
            ));
        }
    }
    out
}

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// Run one scenario file; the mismatches, or an error if the file is unusable.
fn run_scenario(path: &Path) -> Result<(bool, Vec<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let scenario: Scenario =
        serde_json::from_str(&text).map_err(|e| format!("bad scenario: {e}"))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if scenario.name != stem {
        return Err(format!(
            "name `{}` differs from the file name",
            scenario.name
        ));
    }
    let dag = build_dag(&scenario)?;
    let truth_path = scenario_dir().join("truth").join(format!("{stem}.json"));
    let (from_truth, expected) = if truth_path.exists() {
        let text = std::fs::read_to_string(&truth_path)
            .map_err(|e| format!("cannot read truth file: {e}"))?;
        let truth: Expected =
            serde_json::from_str(&text).map_err(|e| format!("bad truth file: {e}"))?;
        (true, truth)
    } else {
        (false, scenario.expected)
    };
    let scenario = Scenario {
        expected: Expected {
            run_state: String::new(),
            task_instances: Vec::new(),
        },
        ..scenario
    };
    let end = simulate(&scenario, &dag);
    Ok((from_truth, compare(&end, &expected)))
}

#[test]
fn scenarios_match_airflow() {
    let only = std::env::var("SCENARIO").ok();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .expect("the scenarios folder exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| {
            only.as_deref()
                .is_none_or(|o| p.file_stem().is_some_and(|s| s == o))
        })
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scenario matched");
    let mut failures = Vec::new();
    for path in &paths {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        match run_scenario(path) {
            Ok((_, mismatches)) if mismatches.is_empty() => {}
            Ok((from_truth, mismatches)) => failures.push(format!(
                "{stem} (against {}):\n    {}",
                if from_truth {
                    "Airflow truth"
                } else {
                    "expected"
                },
                mismatches.join("\n    ")
            )),
            Err(e) => failures.push(format!("{stem}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n\n{}\n",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}
