//! The everyday CLI flow on one `PAVE_HOME`: list, trigger with conf, let
//! `pave standalone --exit-when-idle` run the queued run, inspect runs, tries
//! and logs, clear a task and run it again, pause and unpause.

mod common;

use common::{Pave, Running, copy_fixtures, dags_dir};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// A standalone run that should finish its queued work and exit 0.
const STANDALONE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `pave standalone --dags DIR --exit-when-idle [EXTRA]` to its end and
/// asserts it exits 0; returns its output lines.
fn standalone_until_idle(pave: &Pave, dags: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "standalone",
        "--dags",
        dags.to_str().expect("utf-8"),
        "--exit-when-idle",
        "--port",
        "0",
    ];
    args.extend_from_slice(extra);
    let (status, lines) = Running::spawn(pave.command(&args)).wait(STANDALONE_TIMEOUT);
    assert!(
        status.success(),
        "standalone exited with {status}:\n{}",
        lines.join("\n")
    );
    lines
}

fn tries_of(list: &Value, task_id: &str) -> Vec<Value> {
    common::ti(list, task_id, -1)["tries"]
        .as_array()
        .unwrap_or_else(|| panic!("no tries for {task_id} in {list:#}"))
        .clone()
}

#[test]
fn trigger_run_inspect_clear_rerun() {
    let pave = Pave::new();
    let dir = dags_dir();
    copy_fixtures(dir.path(), &["flow.yaml", "hello.yaml"]);
    let dags = dir.path().to_str().expect("utf-8");

    // dags list
    let v = pave.json(&["dags", "list", "--json", "--dags", dags]);
    let ids: Vec<&str> = v["dags"]
        .as_array()
        .expect("dags")
        .iter()
        .map(|d| d["dag_id"].as_str().expect("dag_id"))
        .collect();
    assert_eq!(ids, ["flow", "hello"], "{v:#}");
    let flow = &v["dags"][0];
    assert_eq!(flow["tasks"], 3);
    assert_eq!(flow["is_paused"], false);
    assert_eq!(v["import_errors"], serde_json::json!([]));

    // dags trigger with conf: a queued manual run
    let run = pave.json(&[
        "dags",
        "trigger",
        "flow",
        "--conf",
        r#"{"greeting": "bonjour"}"#,
        "--dags",
        dags,
        "--json",
    ]);
    assert_eq!(run["state"], "queued", "{run:#}");
    assert_eq!(run["run_type"], "manual");
    assert_eq!(run["conf"]["greeting"], "bonjour");
    let run_id = run["run_id"].as_str().expect("run_id").to_owned();

    // standalone picks the queued run up, finishes it and exits
    let lines = standalone_until_idle(&pave, dir.path(), &[]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&run_id) && l.contains("success")),
        "standalone should report the run finished:\n{}",
        lines.join("\n")
    );

    // dags runs: exactly that run, now success
    let runs = pave.json(&["dags", "runs", "flow", "--json"]);
    let runs = runs.as_array().expect("runs array");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["state"], "success");
    assert!(runs[0]["end_date"].is_string());
    let failed = pave.json(&["dags", "runs", "flow", "--state", "failed", "--json"]);
    assert_eq!(failed, serde_json::json!([]));

    // tasks list --tries: every try with its exit code
    let list = pave.json(&["tasks", "list", "flow", "--json", "--tries"]);
    assert_eq!(list["state"], "success");
    assert_eq!(list["run_id"], run_id.as_str());
    let greet = tries_of(&list, "greet");
    assert_eq!(greet.len(), 1, "{greet:?}");
    assert_eq!(greet[0]["try_number"], 1);
    assert_eq!(greet[0]["state"], "success");
    assert_eq!(greet[0]["exit_code"], 0);
    let wobbly = tries_of(&list, "wobbly");
    let summary: Vec<(u64, String, i64)> = wobbly
        .iter()
        .map(|t| {
            (
                t["try_number"].as_u64().expect("try_number"),
                t["state"].as_str().expect("state").to_owned(),
                t["exit_code"].as_i64().expect("exit_code"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "failed".to_owned(), 7), (2, "success".to_owned(), 0)],
        "{list:#}"
    );
    assert_eq!(common::state_try(&list, "wobbly", -1).1, 2);

    // tasks logs: the task's stdout, with the conf rendered in
    let log = pave.ok(&["tasks", "logs", "flow", "greet"]);
    assert!(log.contains("log line before the result"), "log:\n{log}");
    assert!(log.contains("bonjour from try 1"), "log:\n{log}");
    let shout = pave.ok(&["tasks", "logs", "flow", "shout"]);
    assert!(shout.contains("BONJOUR FROM TRY 1"), "log:\n{shout}");
    let first_try = pave.ok(&["tasks", "logs", "flow", "wobbly", "--try", "1"]);
    assert!(
        first_try.contains("failing on purpose"),
        "log:\n{first_try}"
    );
    let err = pave.fails(&["tasks", "logs", "flow", "wobbly", "--try", "3"]);
    assert!(err.contains("try 3"), "{err}");
    let err = pave.fails(&["tasks", "logs", "flow", "nope"]);
    assert!(err.contains("nope"), "{err}");

    // tasks clear one task; standalone runs it again with the next try
    let out = pave.ok(&["tasks", "clear", "flow", "-t", "^greet$"]);
    assert!(out.contains("cleared 1"), "{out}");
    let list = pave.json(&["tasks", "list", "flow", "--json"]);
    assert_eq!(list["state"], "queued", "the cleared run is queued again");
    assert_eq!(common::state_try(&list, "greet", -1).0, "none");
    standalone_until_idle(&pave, dir.path(), &[]);
    let list = pave.json(&["tasks", "list", "flow", "--json", "--tries"]);
    assert_eq!(list["state"], "success", "{list:#}");
    assert_eq!(
        common::state_try(&list, "greet", -1),
        ("success".to_owned(), 2)
    );
    let greet = tries_of(&list, "greet");
    assert_eq!(greet.len(), 2, "{greet:?}");
    assert!(greet.iter().all(|t| t["exit_code"] == 0), "{greet:?}");
    // Only the cleared task ran again.
    assert_eq!(common::state_try(&list, "wobbly", -1).1, 2);
    assert_eq!(common::state_try(&list, "shout", -1).1, 1);
    let log = pave.ok(&["tasks", "logs", "flow", "greet"]);
    assert!(log.contains("bonjour from try 2"), "log:\n{log}");
    let log = pave.ok(&["tasks", "logs", "flow", "greet", "--try", "1"]);
    assert!(log.contains("bonjour from try 1"), "log:\n{log}");
    let runs = pave.json(&["dags", "runs", "flow", "--json"]);
    assert_eq!(runs.as_array().expect("runs").len(), 1, "{runs:#}");
}

#[test]
fn paused_dags_are_not_triggered_by_trigger_all() {
    let pave = Pave::new();
    let dir = dags_dir();
    copy_fixtures(dir.path(), &["flow.yaml", "hello.yaml"]);
    let dags = dir.path().to_str().expect("utf-8");

    let out = pave.ok(&["dags", "pause", "flow", "--dags", dags]);
    assert!(out.contains("paused"), "{out}");
    let v = pave.json(&["dags", "list", "--json", "--dags", dags]);
    let paused: Vec<(String, bool)> = v["dags"]
        .as_array()
        .expect("dags")
        .iter()
        .map(|d| {
            (
                d["dag_id"].as_str().expect("id").to_owned(),
                d["is_paused"].as_bool().expect("is_paused"),
            )
        })
        .collect();
    assert_eq!(
        paused,
        [("flow".to_owned(), true), ("hello".to_owned(), false)]
    );

    standalone_until_idle(&pave, dir.path(), &["--trigger-all"]);
    let hello = pave.json(&["dags", "runs", "hello", "--json"]);
    assert_eq!(hello.as_array().expect("runs").len(), 1, "{hello:#}");
    assert_eq!(hello[0]["state"], "success");
    let flow = pave.json(&["dags", "runs", "flow", "--json"]);
    assert_eq!(flow, serde_json::json!([]), "a paused DAG got a run");

    let out = pave.ok(&["dags", "unpause", "flow", "--dags", dags]);
    assert!(out.contains("unpaused"), "{out}");
    let v = pave.json(&["dags", "list", "--json", "--dags", dags]);
    assert_eq!(v["dags"][0]["is_paused"], false, "{v:#}");
    standalone_until_idle(&pave, dir.path(), &["--trigger-all"]);
    let flow = pave.json(&["dags", "runs", "flow", "--json"]);
    assert_eq!(flow.as_array().expect("runs").len(), 1, "{flow:#}");
    assert_eq!(flow[0]["state"], "success");

    let err = pave.fails(&["dags", "pause", "nope", "--dags", dags]);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn a_second_standalone_on_the_same_home_is_refused() {
    let pave = Pave::new();
    let dir = dags_dir();
    copy_fixtures(dir.path(), &["hello.yaml"]);
    let dags = dir.path().to_str().expect("utf-8");
    let mut first = Running::spawn(pave.command(&["standalone", "--dags", dags, "--port", "0"]));
    first.wait_for_line("scheduling", Duration::from_secs(30));

    let err = pave.fails(&["standalone", "--dags", dags, "--port", "0"]);
    assert!(err.contains("scheduler.lock"), "{err}");

    // Once the first one is gone (even by kill -9), the home is free again.
    first.kill9();
    standalone_until_idle(&pave, dir.path(), &[]);
}

#[test]
fn version_json() {
    let v = Pave::new().json(&["version", "--json"]);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    let text = Pave::new().ok(&["version"]);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn db_migrate_creates_the_database_and_is_idempotent() {
    let pave = Pave::new();
    let out = pave.ok(&["db", "migrate"]);
    assert!(out.contains("pave.db"), "{out}");
    assert!(pave.home_path().join("pave.db").is_file());
    pave.ok(&["db", "migrate"]);
    // An empty, migrated store answers queries.
    let err = pave.fails(&["dags", "runs", "flow"]);
    assert!(err.contains("flow"), "{err}");
}

#[test]
fn default_dags_folder_is_seeded_with_the_examples() {
    let pave = Pave::new();
    let v = pave.json(&["dags", "list", "--json"]);
    assert!(
        v["dags"]
            .as_array()
            .expect("dags")
            .iter()
            .any(|d| d["dag_id"] == "ml_pipeline"),
        "{v:#}"
    );
    assert!(pave.home_path().join("dags/ml_pipeline.yaml").is_file());
}

#[test]
fn pools_are_set_listed_and_deleted() {
    let pave = Pave::new();
    let pools = pave.json(&["pools", "list", "--json"]);
    assert_eq!(pools[0]["name"], "default_pool", "{pools}");
    assert_eq!(pools[0]["slots"], 128, "{pools}");

    pave.ok(&[
        "pools",
        "set",
        "gpu_pool",
        "4",
        "--description",
        "the GPU box",
    ]);
    pave.ok(&["pools", "set", "gpu_pool", "8"]);
    let pools = pave.json(&["pools", "list", "--json"]);
    let gpu = pools
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "gpu_pool"))
        .unwrap_or_else(|| panic!("no gpu_pool in {pools}"));
    // Slots changed; the description set before is kept.
    assert_eq!(gpu["slots"], 8, "{gpu}");
    assert_eq!(gpu["description"], "the GPU box", "{gpu}");
    assert_eq!(gpu["occupied_slots"], 0, "{gpu}");
    let table = pave.ok(&["pools", "list"]);
    assert!(
        table.contains("gpu_pool") && table.contains("the GPU box"),
        "{table}"
    );

    // Bad input: clear errors, and nothing stored changes.
    let err = pave.fails(&["pools", "delete", "default_pool"]);
    assert!(err.contains("default_pool"), "{err}");
    let err = pave.fails(&["pools", "delete", "no_such_pool"]);
    assert!(
        err.contains("no_such_pool") && err.contains("pools list"),
        "{err}"
    );
    let err = pave.fails(&["pools", "set", " spaced", "3"]);
    assert!(err.contains("pool name"), "{err}");
    let err = pave.fails(&["pools", "set", "gpu_pool", "-1"]);
    assert!(err.contains("-1") || err.contains("SLOTS"), "{err}");
    assert_eq!(
        pave.json(&["pools", "list", "--json"])
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    pave.ok(&["pools", "delete", "gpu_pool"]);
    let pools = pave.json(&["pools", "list", "--json"]);
    assert_eq!(pools.as_array().map(Vec::len), Some(1), "{pools}");
}

/// CLI read commands parse only the DAG files changed since the last one
/// (the processor's memory of what it parsed is kept under $PAVE_HOME), and
/// parse again what another pool set or a lost store could change.
#[test]
fn cli_commands_reparse_only_changed_dag_files() {
    let pave = Pave::new();
    let dir = dags_dir();
    let marker = dir.path().join("parsed.log");
    let file = dir.path().join("counted.py");
    let source = |n: u32| {
        format!(
            "import os\nfrom pave import dag, task\n\
             with open(os.environ['PAVE_TEST_PARSE_LOG'], 'a') as f:\n    f.write('parsed\\n')\n\
             @dag(dag_id='counted', schedule=None, tags=['v{n}'])\ndef counted():\n    @task\n    def t():\n        return {n}\n    t()\ncounted()\n"
        )
    };
    std::fs::write(&file, source(1)).expect("write the DAG file");
    let dags = dir.path().to_str().expect("utf-8");
    let parses = || {
        std::fs::read_to_string(&marker)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let list = || {
        let mut cmd = pave.command(&["dags", "list", "--json", "--dags", dags]);
        cmd.env("PAVE_TEST_PARSE_LOG", &marker);
        let out = pave.run_cmd(cmd, &[] as &[&str]);
        assert!(out.success(), "{out}");
        common::single_json(&out.stdout)
    };
    let v = list();
    assert!(v.to_string().contains("counted"), "{v}");
    assert_eq!(parses(), 1);
    list();
    list();
    assert_eq!(parses(), 1, "an unchanged file was parsed again");

    // An edited file is parsed again (a new mtime, even within the second).
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&file, source(2)).expect("edit the DAG file");
    let v = list();
    assert_eq!(parses(), 2);
    assert_eq!(v["dags"][0]["latest_version"], 2, "{v}");

    // A new pool can change what validation says: everything is parsed again.
    pave.ok(&["pools", "set", "extra", "2"]);
    list();
    assert_eq!(parses(), 3);

    // A store that lost the DAG (a new database) parses it again.
    std::fs::remove_file(pave.home_path().join("pave.db")).expect("remove the database");
    for wal in ["pave.db-wal", "pave.db-shm"] {
        let _ = std::fs::remove_file(pave.home_path().join(wal));
    }
    let v = list();
    assert!(v.to_string().contains("counted"), "{v}");
    assert_eq!(parses(), 4);
}
