//! Targeted checks of error messages and of semantics that the golden
//! reports show only in bulk: one `check` per concern.

use crate::opts;
use pave_core::{Dag, Task, TaskKind, TaskRole};
use pave_spec::{SpecErrors, parse_json, parse_yaml, validate};

fn errors(yaml: &str) -> SpecErrors {
    match parse_yaml(yaml, "x.yaml", &opts()) {
        Ok(d) => panic!("expected errors, got {d:?}"),
        Err(e) => e,
    }
}

/// Every expected line appears among the errors' Display texts.
fn check(yaml: &str, expected: &[&str]) {
    let errs = errors(yaml);
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    for want in expected {
        assert!(
            lines.iter().any(|l| l.contains(want)),
            "missing {want:?} in:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn unknown_task_field_reads_as_the_brief_asks() {
    let errs = errors("dag_id: ml\ntasks:\n  train: {command: echo, retires: 2}\n");
    assert_eq!(errs.len(), 1);
    let e = &errs.0[0];
    assert_eq!(
        (
            e.dag_id.as_deref(),
            e.task_id.as_deref(),
            e.field.as_deref()
        ),
        (Some("ml"), Some("train"), Some("retires"))
    );
    assert_eq!(
        e.to_string(),
        "unknown task field `retires` in task `train` of DAG `ml` (file x.yaml); did you mean `retries`?"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let errs = errors(
        "dag_id: ml\nschedule: '* * *'\ntasks:\n  a: {command: echo, retries: -1}\n  b: {command: echo, upstream: zz, pool_slots: 0}\n",
    );
    assert_eq!(errs.len(), 4, "{errs}");
    assert!(errs.to_string().starts_with("4 problems:\n  - "));
}

#[test]
fn cycles_print_their_path() {
    check(
        "dag_id: c\ntasks:\n  a: {command: x, upstream: c}\n  b: {command: x, upstream: a}\n  c: {command: x, upstream: b}\n",
        &["dependency cycle: a -> b -> c -> a in DAG `c`"],
    );
}

#[test]
fn unknown_trigger_rule_lists_the_valid_ones() {
    check(
        "dag_id: t\ntasks:\n  a: {command: x, trigger_rule: whenever}\n",
        &[
            "unknown trigger rule \"whenever\"",
            "valid trigger rules: all_success, all_failed, all_done, all_done_min_one_success",
        ],
    );
}

#[test]
fn spec_version_names_the_supported_ones() {
    let e = parse_json(r#"{"spec_version": 7, "dags": []}"#, "x.json", &opts()).unwrap_err();
    assert!(e.to_string().contains("unsupported spec_version 7"), "{e}");
    assert!(e.to_string().contains("reads spec_version 1"), "{e}");
    let e = parse_json(r#"{"dags": []}"#, "x.json", &opts()).unwrap_err();
    assert!(e.to_string().contains("missing `spec_version`"), "{e}");
}

#[test]
fn yaml_syntax_errors_carry_a_location() {
    let e = parse_yaml("dag_id: x\ntasks: [\n", "x.yaml", &opts()).unwrap_err();
    assert!(e.to_string().contains("invalid YAML"), "{e}");
    assert!(e.to_string().contains("line"), "{e}");
}

#[test]
fn yaml_booleans_are_yaml_1_2() {
    // `on` and `no` are task ids here, not booleans.
    let dags = parse_yaml(
        "dag_id: b\ntasks:\n  'on': {command: x}\n  'no': {command: x, upstream: on}\n",
        "x.yaml",
        &opts(),
    )
    .unwrap();
    assert_eq!(dags[0].tasks[1].upstream[0].as_str(), "on");
}

#[test]
fn tasks_may_be_a_list_and_upstream_a_string() {
    let dags = parse_yaml(
        "dag_id: l\ntasks:\n  - {task_id: a, command: x}\n  - {task_id: b, upstream: a, command: x}\n",
        "x.yaml",
        &opts(),
    )
    .unwrap();
    assert_eq!(dags[0].tasks[1].upstream[0].as_str(), "a");
}

#[test]
fn default_args_fill_what_tasks_leave_unset() {
    let dags = parse_yaml(
        "dag_id: d\ndefault_args: {retries: 3, pool: gpu, trigger_rule: all_done}\ntasks:\n  a: {command: x}\n  b: {command: x, retries: 0}\n  s: {command: x, setup: true}\n  t: {command: x, teardown: {setups: s}}\n",
        "x.yaml",
        &opts(),
    )
    .unwrap();
    let t = &dags[0].tasks;
    assert_eq!((t[0].retry.retries, t[0].pool.as_str()), (3, "gpu"));
    assert_eq!(t[1].retry.retries, 0);
    // A teardown's trigger rule is Airflow's, whatever default_args say.
    assert_eq!(
        t[3].trigger_rule,
        pave_core::TriggerRule::AllDoneSetupSuccess
    );
    assert_eq!(t[3].upstream[0].as_str(), "s");
}

#[test]
fn airflow_defaults_apply() {
    let dags = parse_yaml("dag_id: d\ntasks:\n  a: {command: x}\n", "x.yaml", &opts()).unwrap();
    let expected = Task::new(
        "a",
        TaskKind::Command {
            command: "x".into(),
            cwd: None,
            output: Default::default(),
            skip_exit_code: None,
        },
    );
    assert_eq!(dags[0].tasks[0], expected);
    let mut dag = Dag::new("d");
    dag.fileloc = Some("x.yaml".into());
    dag.tasks = vec![expected];
    assert_eq!(dags[0], dag);
}

#[test]
fn group_dependencies_follow_airflow_roots_and_leaves() {
    let yaml = "dag_id: g\ntask_groups:\n  g: {upstream: start, downstream: end}\ntasks:\n  start: {empty: true}\n  g.a: {group: g, command: x}\n  g.b: {group: g, command: x, upstream: g.a}\n  g.c: {group: g, command: x}\n  end: {empty: true}\n  after: {empty: true, upstream: g}\n";
    let dags = parse_yaml(yaml, "x.yaml", &opts()).unwrap();
    let up = |id: &str| -> Vec<String> {
        dags[0]
            .task(id)
            .unwrap()
            .upstream
            .iter()
            .map(|u| u.to_string())
            .collect()
    };
    assert_eq!(up("g.a"), ["start"]); // a root
    assert_eq!(up("g.b"), ["g.a"]); // not a root
    assert_eq!(up("g.c"), ["start"]); // a root
    assert_eq!(up("end"), ["g.b", "g.c"]); // the leaves
    assert_eq!(up("after"), ["g.b", "g.c"]);
}

#[test]
fn teardown_leaves_are_replaced_by_their_work() {
    // Airflow's get_leaves: a teardown leaf stands for the last non-teardown
    // task before it, not for the teardown or its setup.
    let yaml = "dag_id: g\ntask_groups: [{group_id: g}]\ntasks:\n  g.up: {group: g, command: x, setup: true}\n  g.work: {group: g, command: x, upstream: g.up}\n  g.down: {group: g, command: x, upstream: g.work, teardown: {setups: g.up}}\n  next: {command: x, upstream: g}\n";
    let dags = parse_yaml(yaml, "x.yaml", &opts()).unwrap();
    let next: Vec<&str> = dags[0]
        .task("next")
        .unwrap()
        .upstream
        .iter()
        .map(|u| u.as_str())
        .collect();
    assert_eq!(next, ["g.work"]);
}

#[test]
fn validate_checks_models_built_in_code() {
    let mut dag = Dag::new("code");
    let mut a = Task::new("a", TaskKind::Empty);
    a.upstream = vec!["b".into()];
    let mut t = Task::new("t", TaskKind::Empty);
    t.role = TaskRole::Teardown {
        setups: vec!["a".into()],
        on_failure_fail_dagrun: false,
    };
    dag.tasks = vec![a, t];
    dag.timezone = "Nowhere/City".into();
    let errs = validate(&[dag.clone(), dag], &opts());
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let all = text.join("\n");
    for want in [
        "DAG id `code` is defined more than once",
        "unknown upstream `b`",
        "`a` is not a setup task",
        "unknown time zone `Nowhere/City`",
        "(file <unknown file>)",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
}

#[test]
fn quantities_and_durations_in_several_spellings() {
    let dags = parse_yaml(
        "dag_id: q\ntasks:\n  a: {command: x, retry_delay: 1h30m, execution_timeout: 0.25, resources: {cpu: 1.5, memory: 1073741824}}\n  b: {command: x, retry_delay: '90s', resources: {cpu: 250m, memory: 512Mi, gpu: 2}}\n",
        "x.yaml",
        &opts(),
    )
    .unwrap();
    let t = &dags[0].tasks;
    assert_eq!(t[0].retry.retry_delay.as_secs(), 5400);
    assert_eq!(t[0].execution_timeout.unwrap().as_millis(), 250);
    assert_eq!(
        (t[0].resources.cpu_millis, t[0].resources.memory_bytes),
        (1500, 1 << 30)
    );
    assert_eq!(t[1].retry.retry_delay.as_secs(), 90);
    assert_eq!(
        (
            t[1].resources.cpu_millis,
            t[1].resources.memory_bytes,
            t[1].resources.gpu
        ),
        (250, 512 << 20, 2)
    );
}

#[test]
fn dates_without_offset_are_in_the_dag_time_zone() {
    let dags = parse_yaml(
        "dag_id: z\ntimezone: Europe/Paris\nstart_date: '2025-06-01'\ntasks: {}\n",
        "x.yaml",
        &opts(),
    )
    .unwrap();
    assert_eq!(
        dags[0].start_date.unwrap().to_rfc3339(),
        "2025-05-31T22:00:00+00:00"
    );
}

#[test]
fn task_dates_read_like_the_dag_dates() {
    let dags = parse_yaml(
        "dag_id: z\ntimezone: Europe/Paris\nstart_date: '2025-01-01'\n\
         default_args: {start_date: '2025-06-01'}\n\
         tasks:\n  \
           a: {command: x}\n  \
           b: {command: x, start_date: '2025-02-01T12:00:00+05:00', end_date: '2025-12-31T23:30'}\n",
        "x.yaml",
        &opts(),
    )
    .unwrap();
    let t = &dags[0].tasks;
    let show = |d: Option<chrono::DateTime<chrono::Utc>>| d.map(|d| d.to_rfc3339());
    // default_args carry a start_date to every task that has none, read in the DAG's zone.
    assert_eq!(
        show(t[0].start_date).as_deref(),
        Some("2025-05-31T22:00:00+00:00")
    );
    assert_eq!(t[0].end_date, None);
    assert_eq!(
        show(t[1].start_date).as_deref(),
        Some("2025-02-01T07:00:00+00:00")
    );
    assert_eq!(
        show(t[1].end_date).as_deref(),
        Some("2025-12-31T22:30:00+00:00")
    );
    // The DAG keeps its own start_date.
    assert_eq!(
        show(dags[0].start_date).as_deref(),
        Some("2024-12-31T23:00:00+00:00")
    );
}

#[test]
fn a_dag_without_start_date_takes_the_one_in_default_args() {
    let dags = parse_yaml(
        "dag_id: z\ndefault_args: {start_date: '2025-06-01'}\ntasks:\n  a: {command: x, start_date: '2020-01-01'}\n",
        "x.yaml",
        &opts(),
    )
    .unwrap();
    assert_eq!(
        dags[0].start_date.map(|d| d.to_rfc3339()).as_deref(),
        Some("2025-06-01T00:00:00+00:00")
    );
    // The task keeps its own; the DAG's later one bounds it when runs are made.
    assert_eq!(
        dags[0].tasks[0]
            .start_date
            .map(|d| d.to_rfc3339())
            .as_deref(),
        Some("2020-01-01T00:00:00+00:00")
    );
}

#[test]
fn task_dates_are_checked_and_named() {
    check(
        "dag_id: z\ndefault_args: {end_date: 2025-01-01}\ntasks:\n  \
           a: {command: x, start_date: '2025-03-01', end_date: '2025-02-01'}\n  \
           b: {command: x, start_date: '2025-03-01'}\n  \
           c: {command: x, end_date: someday}\n",
        &[
            "`end_date` 2025-02-01 00:00:00 UTC is before `start_date` 2025-03-01 00:00:00 UTC in task `a` of DAG `z` (file x.yaml)",
            // default_args' end_date applies to `b`, whose start is later.
            "`end_date` 2025-01-01 00:00:00 UTC is before `start_date` 2025-03-01 00:00:00 UTC in task `b` of DAG `z` (file x.yaml)",
            "`end_date` `someday` is not a date",
        ],
    );
    check(
        "dag_id: z\ndefault_args: {start_date: [1]}\ntasks: {}\n",
        &["`default_args.start_date` must be"],
    );
    let errs = errors(
        "dag_id: z\ntasks:\n  a: {command: x, start_date: '2025-03-01', end_date: '2025-02-01'}\n",
    );
    let e = errs.iter().next().expect("one error");
    assert_eq!(
        (
            e.file.as_str(),
            e.dag_id.as_deref(),
            e.task_id.as_deref(),
            e.field.as_deref()
        ),
        ("x.yaml", Some("z"), Some("a"), Some("end_date"))
    );
}
