//! Python DAG files through the real binary: a broken or hanging file is an
//! import error that names the file and line, and never hides the good DAGs.

mod common;

use common::{Pave, dags_dir};
use std::time::{Duration, Instant};

fn import_errors(v: &serde_json::Value) -> Vec<(String, String)> {
    v["import_errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["fileloc"].as_str().unwrap_or_default().to_owned(),
                        e["error"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

const GOOD: &str = r#"
from pave import dag, task

@dag(schedule=None)
def good_py():
    @task
    def hello():
        return "hi"
    hello()

good_py()
"#;

#[test]
fn broken_and_hanging_python_files_are_import_errors_and_good_dags_still_load() {
    let pave = Pave::new();
    let dir = dags_dir();
    std::fs::write(dir.path().join("good.py"), GOOD).expect("write");
    std::fs::write(
        dir.path().join("syntax.py"),
        "from pave import dag\n\n@dag(schedule=None)\ndef broken(:\n    pass\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("hangs.py"),
        "import time\nfrom pave import dag\ntime.sleep(600)\n",
    )
    .expect("write");
    let started = Instant::now();
    let mut cmd = pave.command(&["dags", "list", "--json", "--dags"]);
    cmd.arg(dir.path()).env("PAVE_DAG_PARSE_TIMEOUT", "2");
    let out = pave.run_cmd(cmd, &[] as &[&str]);
    assert!(out.success(), "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a hanging DAG file held up the listing for {:?}",
        started.elapsed()
    );
    let v = common::single_json(&out.stdout);
    let ids: Vec<&str> = v["dags"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["dag_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["good_py"], "{v:#}");
    let errors = import_errors(&v);
    let syntax = errors
        .iter()
        .find(|(f, _)| f.ends_with("syntax.py"))
        .unwrap_or_else(|| panic!("no import error for syntax.py: {v:#}"));
    assert!(syntax.1.contains("line 4"), "{}", syntax.1);
    let hangs = errors
        .iter()
        .find(|(f, _)| f.ends_with("hangs.py"))
        .unwrap_or_else(|| panic!("no import error for hangs.py: {v:#}"));
    assert!(hangs.1.contains("longer than 2s"), "{}", hangs.1);

    let mut cmd = pave.command(&["dags", "import-errors", "--dags"]);
    cmd.arg(dir.path()).env("PAVE_DAG_PARSE_TIMEOUT", "2");
    let out = pave.run_cmd(cmd, &[] as &[&str]);
    assert!(out.success(), "{}", out.stderr);
    let text = out.stdout;
    assert!(
        text.contains("syntax.py") && text.contains("hangs.py"),
        "{text}"
    );
}

#[test]
fn an_unsupported_airflow_argument_fails_at_parse_time_naming_it() {
    let pave = Pave::new();
    let dir = dags_dir();
    let file = dir.path().join("callback.py");
    std::fs::write(
        &file,
        r#"
from airflow.sdk import dag, task

@dag(schedule=None)
def with_callback():
    @task(on_failure_callback=lambda ctx: None)
    def t():
        pass
    t()

with_callback()
"#,
    )
    .expect("write");
    let err = pave.fails(&["dags", "test", file.to_str().expect("utf-8")]);
    assert!(err.contains("on_failure_callback"), "{err}");
}

#[test]
fn a_dag_airflow_rejects_is_rejected_too() {
    // Airflow: "Setup tasks must be followed with trigger rule ALL_SUCCESS."
    let pave = Pave::new();
    let file = common::workspace_root()
        .join("tests/airflow_compat/rejected_by_airflow/setup_followed_by_all_done.py");
    let err = pave.fails(&["dags", "test", file.to_str().expect("utf-8")]);
    assert!(
        err.contains("all_success") && err.contains("setup"),
        "{err}"
    );
}

/// A Python task's return value that is not plain JSON (a datetime, a
/// tuple) is stored in Airflow's serde envelope; a template of a Bash task
/// that pulls it sees the value, not the envelope.
#[test]
fn templates_see_python_values_not_their_serde_envelopes() {
    let dir = dags_dir();
    let file = dir.path().join("serde_values.py");
    std::fs::write(
        &file,
        r#"
import datetime
from pave import dag, task
from pave.operators import BashOperator

@dag(schedule=None)
def serde_values():
    @task
    def make():
        at = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        return {"at": at, "pair": (1, 2), "wait": datetime.timedelta(hours=1)}

    check = BashOperator(
        task_id="check",
        bash_command=(
            'test "{{ ti.xcom_pull(task_ids=\'make\')[\'at\'] }}" = "2026-01-02 03:04:05+00:00" '
            '&& test "{{ ti.xcom_pull(task_ids=\'make\')[\'pair\'] | join(\',\') }}" = "1,2" '
            '&& test "{{ ti.xcom_pull(task_ids=\'make\')[\'wait\'] }}" = "1:00:00"'
        ),
    )
    make() >> check

serde_values()
"#,
    )
    .expect("write the DAG file");
    let pave = Pave::new();
    let out = pave.run(&["dags", "test", file.to_str().expect("utf-8"), "--json"]);
    assert!(out.success(), "{out}");
    let v = common::single_json(&out.stdout);
    assert_eq!(v["state"], "success", "{v}");
}
