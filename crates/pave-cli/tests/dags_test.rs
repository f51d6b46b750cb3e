//! `pave dags test FILE`: one DAG run of a file, in process, on a throwaway
//! store. Each test runs the real binary on a small DAG and asserts the exact
//! Airflow states and try numbers of every task instance.

mod common;

use common::{Pave, fixture, single_json, state_try, task_instances, ti, workspace_root};
use serde_json::Value;
use std::time::{Duration, Instant};

/// `pave dags test FIXTURE --json [EXTRA...]`, parsed; asserts exit 0.
fn dags_test_json(file: &str, extra: &[&str]) -> Value {
    let path = fixture(file);
    let mut args = vec!["dags", "test", path.to_str().expect("utf-8 path"), "--json"];
    args.extend_from_slice(extra);
    Pave::new().json(&args)
}

fn st(state: &str, try_number: u64) -> (String, u64) {
    (state.to_owned(), try_number)
}

#[test]
fn ml_pipeline_example_prints_one_json_object_with_airflow_states() {
    let example = workspace_root().join("examples/ml_pipeline.yaml");
    let pave = Pave::new();
    let out = pave.run(&["dags", "test", example.to_str().expect("utf-8"), "--json"]);
    assert!(out.success(), "dags test failed:\n{out}");
    // Exactly one JSON object, nothing else on stdout.
    let v = single_json(&out.stdout);
    let obj = v.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["dag_id", "run_id", "state", "task_instances"]);
    assert_eq!(v["dag_id"], "ml_pipeline");
    assert!(
        v["run_id"].as_str().is_some_and(|r| !r.is_empty()),
        "run_id: {}",
        v["run_id"]
    );
    assert_eq!(v["state"], "success", "{v:#}");

    for t in task_instances(&v) {
        let mut keys: Vec<&str> = t
            .as_object()
            .expect("task instance object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "end_date",
                "map_index",
                "start_date",
                "state",
                "task_id",
                "try_number"
            ]
        );
    }

    assert_eq!(state_try(&v, "flaky", -1), st("success", 2));
    let mut train: Vec<i64> = task_instances(&v)
        .iter()
        .filter(|t| t["task_id"] == "train")
        .map(|t| t["map_index"].as_i64().expect("map_index"))
        .collect();
    train.sort_unstable();
    assert_eq!(train, [0, 1, 2], "train is mapped over the 3 shards");
    for i in 0..3 {
        assert_eq!(state_try(&v, "train", i), st("success", 1));
    }
    assert_eq!(state_try(&v, "notify_rejected", -1), st("skipped", 0));
    assert!(ti(&v, "notify_rejected", -1)["start_date"].is_null());
    assert_eq!(state_try(&v, "cleanup", -1), st("success", 1));
    for task in [
        "provision",
        "extract",
        "validate_data",
        "evaluate",
        "choose",
    ] {
        assert_eq!(state_try(&v, task, -1), st("success", 1), "{task}");
    }
    assert_eq!(state_try(&v, "deploy", -1), st("success", 1));
    // A task that ran has RFC 3339 start and end dates, in order.
    let deploy = ti(&v, "deploy", -1);
    let start = deploy["start_date"].as_str().expect("start_date");
    let end = deploy["end_date"].as_str().expect("end_date");
    let start = chrono::DateTime::parse_from_rfc3339(start).expect("RFC 3339 start_date");
    let end = chrono::DateTime::parse_from_rfc3339(end).expect("RFC 3339 end_date");
    assert!(start <= end);
    assert_eq!(task_instances(&v).len(), 12);
}

#[test]
fn retries_exhausted_fail_the_task_and_the_run_and_all_done_still_runs() {
    let v = dags_test_json("retries_exhausted.yaml", &[]);
    assert_eq!(v["state"], "failed", "{v:#}");
    // retries: 2 -> three attempts.
    assert_eq!(state_try(&v, "boom", -1), st("failed", 3));
    assert_eq!(state_try(&v, "after", -1), st("upstream_failed", 0));
    // trigger_rule: all_done runs after a failure.
    assert_eq!(state_try(&v, "report", -1), st("success", 1));
}

#[test]
fn retries_exhausted_reason_says_retries_are_spent() {
    let path = fixture("retries_exhausted.yaml");
    let out = Pave::new().run(&["dags", "test", path.to_str().expect("utf-8")]);
    assert!(out.success(), "a completed (failed) run exits 0:\n{out}");
    assert!(
        out.stderr.contains("boom") && out.stderr.contains("exited with code 3"),
        "{out}"
    );
    assert!(out.stdout.contains("failed"), "{out}");
}

#[test]
fn branch_follows_the_task_named_on_the_last_stdout_line() {
    let v = dags_test_json("branch_on_param.yaml", &[]);
    assert_eq!(v["state"], "success", "{v:#}");
    assert_eq!(state_try(&v, "pick", -1), st("success", 1));
    assert_eq!(state_try(&v, "small", -1), st("success", 1));
    assert_eq!(state_try(&v, "big", -1), st("skipped", 0));
    assert_eq!(state_try(&v, "join", -1), st("success", 1));
}

#[test]
fn conf_reaches_params_in_templates() {
    // params.epochs defaults to 3 (-> small); the conf makes it 5 (-> big).
    let v = dags_test_json("branch_on_param.yaml", &["--conf", r#"{"epochs": 5}"#]);
    assert_eq!(v["state"], "success", "{v:#}");
    assert_eq!(state_try(&v, "big", -1), st("success", 1));
    assert_eq!(state_try(&v, "small", -1), st("skipped", 0));
    assert_eq!(state_try(&v, "join", -1), st("success", 1));
}

#[test]
fn conf_of_the_wrong_type_for_a_param_is_refused() {
    let path = fixture("branch_on_param.yaml");
    let err = Pave::new().fails(&[
        "dags",
        "test",
        path.to_str().expect("utf-8"),
        "--conf",
        r#"{"epochs": "lots"}"#,
    ]);
    assert!(
        err.contains("epochs") && err.contains("integer"),
        "stderr: {err}"
    );
}

#[test]
fn falsy_short_circuit_skips_everything_downstream() {
    let v = dags_test_json("short_circuit.yaml", &[]);
    assert_eq!(v["state"], "success", "{v:#}");
    assert_eq!(state_try(&v, "gate", -1), st("success", 1));
    assert_eq!(state_try(&v, "down", -1), st("skipped", 0));
    // ignore_downstream_trigger_rules (the default) skips even all_done.
    assert_eq!(state_try(&v, "down2", -1), st("skipped", 0));
    assert_eq!(state_try(&v, "open_gate", -1), st("success", 1));
    assert_eq!(state_try(&v, "through", -1), st("success", 1));
}

#[test]
fn exit_code_99_skips_the_task() {
    let v = dags_test_json("skip_exit_code.yaml", &[]);
    assert_eq!(v["state"], "success", "{v:#}");
    // The attempt ran (try 1) and ended skipped, like AirflowSkipException.
    assert_eq!(state_try(&v, "skipper", -1), st("skipped", 1));
    assert_eq!(state_try(&v, "after_skip", -1), st("skipped", 0));
    assert_eq!(state_try(&v, "custom", -1), st("skipped", 1));
}

#[test]
fn execution_timeout_kills_a_long_command() {
    let started = Instant::now();
    let v = dags_test_json("execution_timeout.yaml", &[]);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "sleep 30 with execution_timeout 1 took {took:?}"
    );
    assert_eq!(v["state"], "failed", "{v:#}");
    assert_eq!(state_try(&v, "sleepy", -1), st("failed", 1));
}

#[test]
fn output_json_whose_last_line_is_not_json_fails_naming_the_task() {
    let path = fixture("bad_json_output.yaml");
    let pave = Pave::new();
    let v = pave.json(&["dags", "test", path.to_str().expect("utf-8"), "--json"]);
    assert_eq!(v["state"], "failed", "{v:#}");
    assert_eq!(state_try(&v, "not_json", -1), st("failed", 1));
    assert_eq!(state_try(&v, "consumer", -1), st("upstream_failed", 0));

    let out = pave.run(&["dags", "test", path.to_str().expect("utf-8")]);
    assert!(out.success(), "{out}");
    assert!(
        out.stderr.contains("`not_json`") && out.stderr.contains("not JSON"),
        "the reason names the task and the problem:\n{out}"
    );
}

#[test]
fn xcom_over_the_cap_fails_the_task_and_points_at_object_storage() {
    let path = fixture("big_xcom.yaml");
    let pave = Pave::new();
    let args = ["dags", "test", path.to_str().expect("utf-8"), "--json"];
    let mut cmd = pave.command(&args);
    cmd.env("PAVE_XCOM_MAX_BYTES", "100");
    let out = pave.run_cmd(cmd, &args);
    assert!(out.success(), "{out}");
    let v = single_json(&out.stdout);
    assert_eq!(v["state"], "failed", "{v:#}");
    assert_eq!(state_try(&v, "chatty", -1), st("failed", 1));
    assert_eq!(state_try(&v, "small", -1), st("success", 1));

    let args = ["dags", "test", path.to_str().expect("utf-8")];
    let mut cmd = pave.command(&args);
    cmd.env("PAVE_XCOM_MAX_BYTES", "100");
    let out = pave.run_cmd(cmd, &args);
    assert!(out.success(), "{out}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("chatty") && text.contains("object storage") && text.contains("100 bytes"),
        "the reason names the task, the cap and object storage:\n{out}"
    );
}

#[test]
fn xcom_under_the_default_cap_is_fine() {
    let v = dags_test_json("big_xcom.yaml", &[]);
    assert_eq!(v["state"], "success", "{v:#}");
    assert_eq!(state_try(&v, "chatty", -1), st("success", 1));
}

#[test]
fn undefined_template_variable_fails_the_task_naming_the_variable() {
    let path = fixture("undefined_variable.yaml");
    let pave = Pave::new();
    let v = pave.json(&["dags", "test", path.to_str().expect("utf-8"), "--json"]);
    assert_eq!(v["state"], "failed", "{v:#}");
    let (state, _) = state_try(&v, "typo", -1);
    assert_eq!(state, "failed");
    assert_eq!(state_try(&v, "fine", -1), st("success", 1));

    let out = pave.run(&["dags", "test", path.to_str().expect("utf-8")]);
    assert!(out.success(), "{out}");
    assert!(
        out.stderr.contains("params.epochz") && out.stderr.contains("typo"),
        "the reason names the task and the undefined variable:\n{out}"
    );
    assert!(
        out.stderr.contains("epochs"),
        "the reason lists the params that exist:\n{out}"
    );
}

#[test]
fn mapping_over_a_literal_list_makes_one_instance_per_element() {
    let v = dags_test_json("literal_mapping.yaml", &[]);
    assert_eq!(v["state"], "success", "{v:#}");
    for i in 0..3 {
        assert_eq!(state_try(&v, "square", i), st("success", 1));
    }
    let squares = task_instances(&v)
        .iter()
        .filter(|t| t["task_id"] == "square")
        .count();
    assert_eq!(squares, 3);
    // `total` checks (in its command) that it received [4, 9, 16] in order.
    assert_eq!(state_try(&v, "total", -1), st("success", 1));
}

#[test]
fn dags_test_leaves_pave_home_alone() {
    let pave = Pave::new();
    let path = fixture("literal_mapping.yaml");
    pave.json(&["dags", "test", path.to_str().expect("utf-8"), "--json"]);
    let entries: Vec<_> = std::fs::read_dir(pave.home_path())
        .expect("read PAVE_HOME")
        .collect();
    assert!(
        entries.is_empty(),
        "dags test uses a throwaway store, but PAVE_HOME got {entries:?}"
    );
}

/// `cargo build -p pave-cli` puts the small `pave-supervise` next to `pave`
/// (the local executor prefers it to `pave supervise`), and it supervises
/// an attempt the same way.
#[test]
fn the_stand_alone_supervisor_ships_next_to_pave() {
    let sup = std::path::Path::new(env!("CARGO_BIN_EXE_pave-supervise"));
    assert_eq!(
        sup.parent(),
        std::path::Path::new(common::pave_bin()).parent()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    for program in [
        vec![sup.to_str().expect("utf-8")],
        vec![common::pave_bin(), "supervise"],
    ] {
        let result = dir.path().join(format!("{}.result", program.len()));
        let log = dir.path().join(format!("{}.log", program.len()));
        let status = std::process::Command::new(program[0])
            .args(&program[1..])
            .arg("--result")
            .arg(&result)
            .arg("--log")
            .arg(&log)
            .args(["--", "bash", "-c", "echo out; echo err >&2; exit 3"])
            .status()
            .expect("run the supervisor");
        assert!(status.success(), "{program:?}: {status}");
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(&result).expect("result file"))
                .expect("result JSON");
        assert_eq!(v["exit"]["code"], 3, "{program:?}: {v}");
        assert_eq!(v["last_line"], "out", "{program:?}: {v}");
        let log = std::fs::read_to_string(&log).expect("log file");
        assert!(log.contains("out") && log.contains("err"), "{log}");
    }
}
