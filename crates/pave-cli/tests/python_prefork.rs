//! Python tasks through the pre-forked interpreter (the zygote,
//! docs/python-runtime.md), from the real binary: fan-out and chains run in
//! forked children of one zygote, module state never leaks from one task to
//! the next, a timeout kills a forked task, an edited DAG file is imported
//! again, a zygote killed mid-run costs a retry, a forked task's return
//! value goes with its end, and `PAVE_PYTHON_PREFORK=0` (or a DAG file a
//! zygote cannot serve) runs fresh interpreters.
//!
//! Every task appends one JSON line to a record file: its pid, its parent,
//! and whether it runs in a zygote's child (its parent runs `pave.zygote`).

mod common;

use common::{Http, Pave, Running, dags_dir, state_try};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// What every task calls: one line per attempt in `RECORD`.
const PRELUDE: &str = r#"
import json, os, sys, time
from datetime import timedelta
from pave import dag, task, get_current_context

RECORD = "@RECORD@"
STATE = []

def record(**extra):
    ctx = get_current_context()
    STATE.append(ctx["ti"].task_id)
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        forked = b"pave.zygote" in f.read()
    line = {"task": ctx["ti"].task_id, "try": ctx["ti"].try_number, "pid": os.getpid(),
            "ppid": os.getppid(), "forked": forked, "state": list(STATE)}
    line.update(extra)
    with open(RECORD, "a") as f:
        f.write(json.dumps(line) + "\n")
"#;

fn write_dag(dir: &Path, name: &str, record: &Path, body: &str) -> std::path::PathBuf {
    let source = PRELUDE.replace("@RECORD@", &record.display().to_string()) + body;
    let path = dir.join(name);
    std::fs::write(&path, source).expect("write the DAG file");
    path
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l:?}: {e}")))
        .collect()
}

fn dags_test(pave: &Pave, file: &Path, env: &[(&str, &str)]) -> Value {
    let mut cmd = pave.command(&["dags", "test", "--json", "--parallelism", "8"]);
    cmd.arg(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = pave.run_cmd(cmd, &["dags", "test"]);
    assert!(out.success(), "{out}");
    common::single_json(&out.stdout)
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

fn wait_dead(pid: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

const FAN_OUT_AND_CHAIN: &str = r#"
@dag(dag_id="shape", schedule=None)
def shape():
    @task
    def start():
        record()

    @task
    def leaf():
        record()

    @task
    def hop():
        record()

    s = start()
    leaves = [leaf.override(task_id=f"leaf{i}")() for i in range(12)]
    s >> leaves
    prev = leaves[-1]
    for i in range(4):
        h = hop.override(task_id=f"hop{i}")()
        prev >> h
        prev = h

shape()
"#;

#[test]
fn fan_out_and_chain_run_in_children_of_one_zygote_without_sharing_state() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let file = write_dag(dir.path(), "shape.py", &record, FAN_OUT_AND_CHAIN);
    let v = dags_test(&pave, &file, &[]);
    assert_eq!(v["state"], "success", "{v:#}");
    let lines = records(&record);
    assert_eq!(lines.len(), 17, "{lines:#?}");
    for line in &lines {
        assert_eq!(line["forked"], true, "not pre-forked: {line}");
        // Each task sees the module as the DAG file's import left it.
        assert_eq!(line["state"].as_array().map(Vec::len), Some(1), "{line}");
    }
    let parents: std::collections::BTreeSet<u64> =
        lines.iter().filter_map(|l| l["ppid"].as_u64()).collect();
    assert_eq!(parents.len(), 1, "one zygote serves the run: {lines:#?}");
    let pids: std::collections::BTreeSet<u64> =
        lines.iter().filter_map(|l| l["pid"].as_u64()).collect();
    assert_eq!(pids.len(), lines.len(), "one process per attempt");
}

#[test]
fn dags_test_parses_in_the_zygote_that_then_runs_every_task() {
    // Every import of the file appends a line: `pave dags test` starts the
    // zygote with the tasks' exact environment before the run and lets it
    // parse the file, so one import serves the parse and all attempts.
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let imports = dir.path().join("imports.txt");
    let counted = format!(
        "with open({:?}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n{FAN_OUT_AND_CHAIN}",
        imports.display().to_string()
    );
    let file = write_dag(dir.path(), "counted.py", &record, &counted);
    let v = dags_test(&pave, &file, &[]);
    assert_eq!(v["state"], "success", "{v:#}");
    let lines = records(&record);
    assert_eq!(lines.len(), 17, "{lines:#?}");
    let importers: Vec<String> = std::fs::read_to_string(&imports)
        .expect("imports")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(importers.len(), 1, "imported once: {importers:?}");
    for line in &lines {
        assert_eq!(line["forked"], true, "not pre-forked: {line}");
        assert_eq!(
            line["ppid"].as_u64().map(|p| p.to_string()).as_deref(),
            importers.first().map(String::as_str),
            "forked by the zygote that parsed the file: {line}"
        );
    }

    // With pre-forking off, `pave.parse` parses and every task imports.
    std::fs::remove_file(&imports).expect("rm");
    let v = dags_test(&pave, &file, &[("PAVE_PYTHON_PREFORK", "0")]);
    assert_eq!(v["state"], "success", "{v:#}");
    let n = std::fs::read_to_string(&imports)
        .expect("imports")
        .lines()
        .count();
    assert_eq!(n, 1 + 17, "the parse and each task import the file");
}

#[test]
fn prefork_off_and_unservable_files_run_fresh_interpreters() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let file = write_dag(dir.path(), "shape.py", &record, FAN_OUT_AND_CHAIN);
    let v = dags_test(&pave, &file, &[("PAVE_PYTHON_PREFORK", "0")]);
    assert_eq!(v["state"], "success", "{v:#}");
    let lines = records(&record);
    assert_eq!(lines.len(), 17);
    assert!(lines.iter().all(|l| l["forked"] == false), "{lines:#?}");

    // A file that reads a per-attempt variable at import time cannot be
    // served by a zygote (the zygote does not have the variable).
    std::fs::remove_file(&record).expect("rm");
    let body = format!("TASK_AT_IMPORT = os.environ.get('PAVE_TASK_ID')\n{FAN_OUT_AND_CHAIN}");
    let file = write_dag(dir.path(), "reads_env.py", &record, &body);
    let v = dags_test(&pave, &file, &[]);
    assert_eq!(v["state"], "success", "{v:#}");
    let lines = records(&record);
    assert_eq!(lines.len(), 17);
    assert!(lines.iter().all(|l| l["forked"] == false), "{lines:#?}");
}

#[test]
fn a_timeout_kills_the_forked_task_and_what_it_started() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let body = r#"
@dag(dag_id="slow", schedule=None)
def slow():
    @task(execution_timeout=timedelta(seconds=1), retries=0)
    def sleeper():
        import subprocess
        child = subprocess.Popen(["sleep", "120"], process_group=0)
        record(child=child.pid)
        time.sleep(120)

    sleeper()

slow()
"#;
    let file = write_dag(dir.path(), "slow.py", &record, body);
    let started = Instant::now();
    let mut cmd = pave.command(&["dags", "test", "--json"]);
    cmd.arg(&file);
    let out = pave.run_cmd(cmd, &["dags", "test"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let v = common::single_json(&out.stdout);
    assert_eq!(
        state_try(&v, "sleeper", -1),
        ("failed".to_owned(), 1),
        "{v:#}"
    );
    let lines = records(&record);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["forked"], true);
    for key in ["pid", "child"] {
        let pid = lines[0][key].as_u64().expect("pid");
        assert!(
            wait_dead(pid, Duration::from_secs(10)),
            "{key} {pid} survived the timeout"
        );
    }
}

#[test]
fn a_zygote_killed_mid_run_costs_a_retry_in_a_new_zygote() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let body = r#"
import signal

@dag(dag_id="crash", schedule=None)
def crash():
    @task(retries=1, retry_delay=timedelta(seconds=0))
    def victim():
        record()
        if get_current_context()["ti"].try_number == 1:
            os.kill(os.getppid(), signal.SIGKILL)  # the zygote; this task dies with it
            time.sleep(30)

    victim()

crash()
"#;
    let file = write_dag(dir.path(), "crash.py", &record, body);
    let v = dags_test(&pave, &file, &[]);
    assert_eq!(
        state_try(&v, "victim", -1),
        ("success".to_owned(), 2),
        "{v:#}"
    );
    let lines = records(&record);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines.iter().all(|l| l["forked"] == true), "{lines:#?}");
    assert_ne!(
        lines[0]["ppid"], lines[1]["ppid"],
        "the retry needs a new zygote"
    );
}

fn standalone_once(pave: &Pave, dags: &Path) -> Vec<String> {
    let cmd = pave.command(&[
        "standalone",
        "--dags",
        dags.to_str().expect("utf-8"),
        "--port",
        "0",
        "--parallelism",
        "4",
        "--trigger-all",
        "--exit-when-idle",
    ]);
    let (status, lines) = Running::spawn(cmd).wait(Duration::from_secs(90));
    assert!(status.success(), "{}", lines.join("\n"));
    lines
}

/// The `.sock` files under the home's zygote folder.
fn zygote_sockets(pave: &Pave) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(pave.home_path().join("zygote"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_edited_dag_file_is_imported_again_by_a_new_zygote() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let body = |version: u32| {
        format!(
            r#"
VERSION = {version}

@dag(dag_id="versioned", schedule=None)
def versioned():
    @task
    def which():
        record(version=VERSION)

    which()

versioned()
"#
        )
    };
    write_dag(dir.path(), "versioned.py", &record, &body(1));
    // A scheduler that dies without a clean stop leaves its zygote behind
    // (it idles for a minute), keyed by the same interpreter, folder and
    // environment; the file it imported is then edited.
    let mut first = Running::spawn(pave.command(&[
        "standalone",
        "--dags",
        dir.path().to_str().expect("utf-8"),
        "--port",
        "0",
        "--trigger-all",
    ]));
    first.wait_for_line("finished: success", Duration::from_secs(60));
    first.kill9();
    let stale = zygote_sockets(&pave);
    assert_eq!(stale.len(), 1, "{stale:?}");
    std::thread::sleep(Duration::from_millis(20));
    write_dag(dir.path(), "versioned.py", &record, &body(2));
    standalone_once(&pave, dir.path());
    let lines = records(&record);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(lines[0]["version"], 1);
    assert_eq!(
        lines[1]["version"], 2,
        "the edit was not imported: {lines:#?}"
    );
    assert!(lines.iter().all(|l| l["forked"] == true), "{lines:#?}");
    assert_ne!(lines[0]["ppid"], lines[1]["ppid"]);
    // The stale zygote stepped aside for the edit, and the clean exit of
    // the second scheduler stopped its own: no socket is left.
    assert_eq!(zygote_sockets(&pave), Vec::<std::path::PathBuf>::new());
    for line in &lines {
        let zygote = line["ppid"].as_u64().expect("ppid");
        assert!(
            wait_dead(zygote, Duration::from_secs(10)),
            "zygote {zygote} is still running"
        );
    }
}

#[test]
fn standalone_parses_in_the_zygote_its_tasks_use_and_a_clean_stop_ends_it() {
    // Every import of the file appends the importing pid.
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let imports = dir.path().join("imports.txt");
    let body = format!(
        r#"
with open({:?}, "a") as f:
    f.write(f"{{os.getpid()}}\n")

@dag(dag_id="prestarted", schedule=None)
def prestarted():
    @task
    def one():
        record()

    @task
    def two():
        record()

    one() >> two()

prestarted()
"#,
        imports.display().to_string()
    );
    write_dag(dir.path(), "prestarted.py", &record, &body);
    let mut running = Running::spawn(pave.command(&[
        "standalone",
        "--dags",
        dir.path().to_str().expect("utf-8"),
        "--port",
        "0",
        "--trigger-all",
    ]));
    running.wait_for_line("finished: success", Duration::from_secs(60));
    let importers: Vec<u64> = std::fs::read_to_string(&imports)
        .expect("imports")
        .lines()
        .map(|l| l.parse().expect("pid"))
        .collect();
    assert_eq!(
        importers.len(),
        1,
        "parsed and run with one import: {importers:?}"
    );
    let lines = records(&record);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for line in &lines {
        assert_eq!(line["forked"], true, "{line}");
        assert_eq!(
            line["ppid"].as_u64(),
            importers.first().copied(),
            "not forked by the zygote that parsed the file: {line}"
        );
    }
    assert_eq!(zygote_sockets(&pave).len(), 1);

    let pid = nix::unistd::Pid::from_raw(i32::try_from(running.child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let (status, out) = running.wait(Duration::from_secs(30));
    assert!(status.success(), "{}", out.join("\n"));
    assert!(
        out.iter()
            .any(|l| l.contains("stopped 1 pre-forked Python interpreter")),
        "{}",
        out.join("\n")
    );
    assert_eq!(zygote_sockets(&pave), Vec::<std::path::PathBuf>::new());
    assert!(
        wait_dead(importers[0], Duration::from_secs(10)),
        "the zygote outlived a clean stop"
    );
}

#[test]
fn standalone_parsing_in_zygotes_survives_broken_and_hanging_files() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let good = r#"
@dag(dag_id="fine", schedule=None)
def fine():
    @task
    def works():
        record()

    works()

fine()
"#;
    write_dag(dir.path(), "fine.py", &record, good);
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
    let mut cmd = pave.command(&[
        "standalone",
        "--dags",
        dir.path().to_str().expect("utf-8"),
        "--port",
        "0",
        "--trigger-all",
        "--exit-when-idle",
    ]);
    cmd.env("PAVE_DAG_PARSE_TIMEOUT", "2");
    let (status, out) = Running::spawn(cmd).wait(Duration::from_secs(90));
    assert!(status.success(), "{}", out.join("\n"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a hanging DAG file held standalone up for {:?}",
        started.elapsed()
    );
    let lines = records(&record);
    assert_eq!(lines.len(), 1, "{}", out.join("\n"));
    assert_eq!(lines[0]["forked"], true, "{lines:#?}");
    let text = out.join("\n");
    assert!(
        text.contains("syntax.py") && text.contains("line 4"),
        "the syntax error should name file and line: {text}"
    );
    assert!(
        text.contains("hangs.py") && text.contains("longer than 2s"),
        "the hanging file should be reported: {text}"
    );
    let mut cmd = pave.command(&["dags", "import-errors", "--dags"]);
    cmd.arg(dir.path()).env("PAVE_DAG_PARSE_TIMEOUT", "2");
    let out = pave.run_cmd(cmd, &[] as &[&str]);
    assert!(out.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("syntax.py") && out.stdout.contains("hangs.py"),
        "{}",
        out.stdout
    );
    // Neither the hanging import nor the broken file left a zygote behind.
    assert_eq!(zygote_sockets(&pave), Vec::<std::path::PathBuf>::new());
}

#[test]
fn the_parse_memory_limit_holds_for_the_import_and_not_for_the_tasks() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    // 2 GiB of address space, never touched: no real memory is used.
    let tasks_map = r#"
import mmap

@dag(dag_id="mapper", schedule=None)
def mapper():
    @task
    def big():
        m = mmap.mmap(-1, 2 << 30)
        m.close()
        record()

    big()

mapper()
"#;
    let limit = [("PAVE_DAG_PARSE_MEMORY_MB", "1024")];
    let file = write_dag(dir.path(), "mapper.py", &record, tasks_map);
    let v = dags_test(&pave, &file, &limit);
    assert_eq!(
        v["state"], "success",
        "a task inherited the parse limit: {v:#}"
    );
    let lines = records(&record);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["forked"], true, "{lines:#?}");

    let import_maps = format!("import mmap\nBIG = mmap.mmap(-1, 2 << 30)\n{tasks_map}");
    let file = write_dag(dir.path(), "import_maps.py", &record, &import_maps);
    let mut cmd = pave.command(&["dags", "test", "--json"]);
    cmd.arg(&file).env(limit[0].0, limit[0].1);
    let out = pave.run_cmd(cmd, &["dags", "test"]);
    assert!(!out.success(), "the import ignored the limit: {out}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("import_maps.py") && text.contains("mmap"),
        "the error should name the file and what failed: {text}"
    );
}

#[test]
fn a_killed_supervisor_takes_its_forked_task_with_it() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let body = r#"
@dag(dag_id="orphaned", schedule=None)
def orphaned():
    @task(retries=0)
    def long():
        record()
        time.sleep(120)

    long()

orphaned()
"#;
    write_dag(dir.path(), "orphaned.py", &record, body);
    let mut cmd = pave.command(&[
        "standalone",
        "--dags",
        dir.path().to_str().expect("utf-8"),
        "--port",
        "0",
        "--trigger-all",
        "--exit-when-idle",
    ]);
    cmd.env("PAVE_LOG", "info");
    let running = Running::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    let task_pid = loop {
        if let Some(line) = records(&record).first() {
            assert_eq!(line["forked"], true, "{line}");
            break line["pid"].as_u64().expect("pid");
        }
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let claim = find_file(&pave.home_path().join("logs"), "attempt=1.claim").expect("claim");
    let claim: Value =
        serde_json::from_str(&std::fs::read_to_string(claim).expect("read claim")).expect("json");
    let supervisor = claim["pid"].as_i64().expect("supervisor pid");
    let supervisor = nix::unistd::Pid::from_raw(i32::try_from(supervisor).expect("pid"));
    nix::sys::signal::kill(supervisor, nix::sys::signal::Signal::SIGKILL).expect("kill");
    assert!(
        wait_dead(task_pid, Duration::from_secs(10)),
        "the forked task outlived its supervisor"
    );
    let (status, lines) = running.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", lines.join("\n"));
    let list = pave.json(&["tasks", "list", "orphaned", "--json"]);
    assert_eq!(state_try(&list, "long", -1).0, "failed", "{list:#}");
}

fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}

#[test]
fn a_forked_task_outlives_a_kill_9_of_the_scheduler_and_is_adopted() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let body = r#"
@dag(dag_id="survivor", schedule=None)
def survivor():
    @task(retries=0)
    def slow():
        record(phase="start")
        time.sleep(2)
        record(phase="end")

    slow()

survivor()
"#;
    write_dag(dir.path(), "survivor.py", &record, body);
    let args = |extra: &'static str| {
        vec![
            "standalone".to_owned(),
            "--dags".to_owned(),
            dir.path().display().to_string(),
            "--port".to_owned(),
            "0".to_owned(),
            extra.to_owned(),
        ]
    };
    let first = Running::spawn(pave.command(&args("--trigger-all")));
    let deadline = Instant::now() + Duration::from_secs(60);
    while records(&record).is_empty() {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = first.kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    while records(&record).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the task died with the scheduler"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, lines) =
        Running::spawn(pave.command(&args("--exit-when-idle"))).wait(Duration::from_secs(60));
    assert!(status.success(), "{}", lines.join("\n"));
    let lines = records(&record);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines.iter().all(|l| l["forked"] == true), "{lines:#?}");
    let list = pave.json(&["tasks", "list", "survivor", "--json"]);
    assert_eq!(
        state_try(&list, "slow", -1),
        ("success".to_owned(), 1),
        "{list:#}"
    );
}

/// A Python attempt handed to a listening zygote has no supervisor process:
/// the zygote takes its claim (naming itself), supervises it and writes its
/// result. Marking the task instance while it runs kills that attempt: the
/// executor signals the task, not the zygote, which serves other attempts.
#[test]
fn the_zygote_supervises_the_attempts_handed_to_it_and_a_kill_reaches_only_the_task() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let body = r#"
@dag(dag_id="handed", schedule=None)
def handed():
    @task(retries=0)
    def first():
        record()

    @task(retries=0)
    def second():
        record()
        time.sleep(120)

    @task(retries=0)
    def third():
        record()

    first() >> second() >> third()

handed()
"#;
    write_dag(dir.path(), "handed.py", &record, body);
    let mut running = Running::spawn(pave.command(&[
        "standalone",
        "--dags",
        dir.path().to_str().expect("utf-8"),
        "--port",
        "0",
        "--trigger-all",
        "--exit-when-idle",
    ]));
    let http = Http::of(&mut running, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    let (first, sleeper) = loop {
        let lines = records(&record);
        if let [first, second, ..] = lines.as_slice() {
            break (first.clone(), second.clone());
        }
        assert!(Instant::now() < deadline, "the second task never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(sleeper["task"], "second", "{sleeper}");
    assert_eq!(sleeper["forked"], true, "{sleeper}");
    let zygote = sleeper["ppid"].as_u64().expect("ppid");
    assert_eq!(first["ppid"].as_u64(), Some(zygote), "{first}");
    // The claim names the zygote, which supervises the attempt.
    let run_dir = std::fs::read_dir(pave.home_path().join("logs").join("dag_id=handed"))
        .expect("run folders")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .expect("a run folder");
    let second = run_dir.join("task_id=second");
    let read = |name: &str| -> Value {
        let text =
            std::fs::read_to_string(second.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"))
    };
    let claim = read("attempt=1.claim");
    assert_eq!(claim["claimed_by"], "supervisor", "{claim}");
    assert_eq!(claim["zygote"], true, "{claim}");
    assert_eq!(claim["pid"].as_u64(), Some(zygote), "{claim}");

    let auth = pave.admin_bearer();
    let run_id = run_dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("run_id="))
        .expect("run id")
        .to_owned();
    let marked = http.call(
        "PATCH",
        &format!("/api/v1/dags/handed/dagRuns/{run_id}/taskInstances/second"),
        &[("Authorization", auth.as_str())],
        Some(&serde_json::json!({"new_state": "success", "dry_run": false})),
    );
    assert_eq!(marked.status, 200, "{}", marked.raw);
    let pid = sleeper["pid"].as_u64().expect("pid");
    assert!(
        wait_dead(pid, Duration::from_secs(20)),
        "the marked attempt was not killed"
    );
    // The zygote lives on and serves the next attempt. (Checked through that
    // attempt, not by the zygote's pid: once the run is done the
    // standalone exits and stops its zygotes.)
    let deadline = Instant::now() + Duration::from_secs(60);
    let third = loop {
        if let Some(third) = records(&record).into_iter().find(|r| r["task"] == "third") {
            break third;
        }
        assert!(Instant::now() < deadline, "the third task never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        third["ppid"].as_u64(),
        Some(zygote),
        "killing the attempt killed its zygote: {third}"
    );
    let (status, lines) = running.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", lines.join("\n"));
    let list = pave.json(&["tasks", "list", "handed", "--json"]);
    assert_eq!(
        state_try(&list, "second", -1),
        ("success".to_owned(), 1),
        "{list:#}"
    );
    // The zygote wrote the attempt's result: killed by the SIGTERM.
    let killed = read("attempt=1.result.json");
    assert_eq!(
        killed["exit"],
        serde_json::json!({"type": "signal", "signal": 15}),
        "{killed}"
    );
    assert_eq!(killed["pid"].as_u64(), Some(pid), "{killed}");
}

/// The pids of the zygotes serving this home (their command line names its
/// zygote folder), not their children (a spare has the same command line).
fn zygote_pids(pave: &Pave) -> Vec<i32> {
    let folder = pave.home_path().join("zygote").display().to_string();
    let all: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                        let c = String::from_utf8_lossy(&c);
                        c.contains("pave.zygote") && c.contains(&folder)
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let parent = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        rest.split_whitespace().nth(1)?.parse().ok()
    };
    all.iter()
        .copied()
        .filter(|&pid| parent(pid).is_none_or(|pp| !all.contains(&pp)))
        .collect()
}

/// A zygote that does not answer a hand-over in time (here: stopped) costs
/// the scheduler a bounded wait, not a stall: the executor fences the
/// attempt off before the zygote can claim it, so it never runs, and the
/// retry runs once the zygote answers again.
#[test]
fn a_zygote_that_does_not_answer_costs_a_fenced_attempt_never_a_second_run() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let body = r#"
@dag(dag_id="stalled", schedule=None)
def stalled():
    @task(retries=1, retry_delay=timedelta(seconds=0))
    def once():
        record()

    once()

stalled()
"#;
    write_dag(dir.path(), "stalled.py", &record, body);
    let dags = dir.path().to_str().expect("utf-8");
    let running = Running::spawn(pave.command(&["standalone", "--dags", dags, "--port", "0"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let zygote = loop {
        if let [pid] = zygote_pids(&pave).as_slice()
            && !zygote_sockets(&pave).is_empty()
        {
            break nix::unistd::Pid::from_raw(*pid);
        }
        assert!(Instant::now() < deadline, "no zygote started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let dags_listed = Instant::now() + Duration::from_secs(60);
    while !pave
        .run(&["dags", "list", "--json"])
        .stdout
        .contains("stalled")
    {
        assert!(Instant::now() < dags_listed, "the DAG was never parsed");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(zygote, nix::sys::signal::Signal::SIGSTOP).expect("stop the zygote");
    pave.ok(&["dags", "trigger", "stalled"]);
    let state = || -> Option<(String, u64)> {
        let out = pave.run(&["tasks", "list", "stalled", "--json"]);
        if !out.success() {
            return None;
        }
        let list = common::single_json(&out.stdout);
        common::task_instances(&list)
            .iter()
            .any(|t| t["task_id"] == "once")
            .then(|| state_try(&list, "once", -1))
    };
    // The first hand-over waits 5 s for an answer, then fences the attempt.
    let deadline = Instant::now() + Duration::from_secs(60);
    while state().is_none_or(|(_, tries)| tries < 2) {
        assert!(
            Instant::now() < deadline,
            "the first try never ended: {:?}",
            state()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(zygote, nix::sys::signal::Signal::SIGCONT).expect("resume it");
    let deadline = Instant::now() + Duration::from_secs(60);
    while state().is_none_or(|(s, _)| s != "success") {
        assert!(
            Instant::now() < deadline,
            "the retry never succeeded: {:?}",
            state()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = pave.json(&["tasks", "list", "stalled", "--json"]);
    let _ = running.kill9();
    assert_eq!(state_try(&list, "once", -1).1, 2, "{list:#}");
    // Only the retry ran: the fenced first try never did.
    let lines = records(&record);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["try"], 2, "{lines:#?}");
}

/// The result file of `task`'s first attempt in the only run of `dag_id`.
fn first_result(pave: &Pave, dag_id: &str, task: &str) -> Value {
    let logs = pave
        .home_path()
        .join("logs")
        .join(format!("dag_id={dag_id}"));
    let run_dir = std::fs::read_dir(&logs)
        .expect("run folders")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .expect("a run folder");
    let path = run_dir
        .join(format!("task_id={task}"))
        .join("attempt=1.result.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}: {text}"))
}

/// A forked task's return value goes with its end (docs/python-runtime.md):
/// the zygote puts it in the result file and the scheduler stores it with
/// the end, and the downstream tasks, a mapped task among them, read it as
/// before; so do the keys of `multiple_outputs`. A value too long to go with the end is pushed through the API.
#[test]
fn a_forked_tasks_return_value_goes_with_its_end() {
    let pave = Pave::new();
    let dir = dags_dir();
    let record = dir.path().join("record.jsonl");
    let body = r#"
@dag(dag_id="ended", schedule=None)
def ended():
    @task
    def produce():
        return {"loss": 0.25, "tags": ["a", "é"]}

    @task
    def consume(value):
        record(value=value)

    @task
    def source():
        return [1, 2, 3]

    @task
    def each(x):
        record(x=x)

    @task(multiple_outputs=True)
    def split():
        return {"a": 1, "b": "two"}

    @task
    def use_key(a):
        record(a=a)

    @task
    def long():
        return "x" * 61000

    @task
    def measure(text):
        record(length=len(text))

    consume(produce())
    use_key(split()["a"])
    each.expand(x=source())
    measure(long())

ended()
"#;
    write_dag(dir.path(), "ended.py", &record, body);
    standalone_once(&pave, dir.path());
    let lines = records(&record);
    assert!(
        lines.iter().all(|l| l["forked"] == true),
        "not every task ran in a zygote's child: {lines:?}"
    );
    let find = |task: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["task"] == task)
            .cloned()
            .collect()
    };
    assert_eq!(
        find("consume")[0]["value"],
        serde_json::json!({"loss": 0.25, "tags": ["a", "é"]})
    );
    let mut xs: Vec<i64> = find("each")
        .iter()
        .filter_map(|l| l["x"].as_i64())
        .collect();
    xs.sort_unstable();
    assert_eq!(xs, [1, 2, 3]);
    assert_eq!(find("measure")[0]["length"], 61000);
    assert_eq!(find("use_key")[0]["a"], 1);
    // The values came with the ends, except the long one (pushed).
    let produced = first_result(&pave, "ended", "produce");
    assert_eq!(
        produced["xcoms"],
        serde_json::json!({"return_value": {"loss": 0.25, "tags": ["a", "é"]}}),
        "{produced}"
    );
    let sourced = first_result(&pave, "ended", "source");
    assert_eq!(
        sourced["xcoms"],
        serde_json::json!({"return_value": [1, 2, 3]}),
        "{sourced}"
    );
    let split = first_result(&pave, "ended", "split");
    assert_eq!(
        split["xcoms"],
        serde_json::json!({"a": 1, "b": "two", "return_value": {"a": 1, "b": "two"}}),
        "{split}"
    );
    let long = first_result(&pave, "ended", "long");
    assert!(long.get("xcoms").is_none(), "{long}");
    let consumed = first_result(&pave, "ended", "consume");
    assert!(
        consumed.get("xcoms").is_none(),
        "None goes nowhere: {consumed}"
    );
}
