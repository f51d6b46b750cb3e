//! End to end: the real `pave standalone` serves the REST API next to its
//! scheduler. Start it on a temporary home and a free port, read the admin
//! password it prints once, log in with it, create API tokens with the
//! CLI, trigger a DAG over HTTP, poll the run until it succeeds, read a
//! task's log, and see a viewer refused.

mod common;

use common::{Http, Pave, Running, after, copy_fixtures, dags_dir};
use serde_json::{Value, json};
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A minimal HTTP/1.1 client: one request per connection.
#[test]
fn standalone_serves_the_rest_api_end_to_end() {
    let pave = Pave::new();
    let dir = dags_dir();
    copy_fixtures(dir.path(), &["hello.yaml"]);
    let dags = dir.path().to_str().expect("utf-8");
    let mut standalone =
        Running::spawn(pave.command(&["standalone", "--dags", dags, "--port", "0"]));
    let http = Http::of(&mut standalone, START_TIMEOUT);
    let password = after(&standalone.seen, "with password:").to_owned();

    // Only health answers without credentials.
    let health = http.call("GET", "/api/v1/health", &[], None);
    assert_eq!(health.status, 200, "{}", health.raw);
    let anonymous = http.call("GET", "/api/v1/dags", &[], None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.raw);
    assert!(anonymous.raw.contains("application/problem+json"));

    // The printed admin password logs in.
    let login = http.call(
        "POST",
        "/api/v1/auth/login",
        &[],
        Some(&json!({"username": "admin", "password": password})),
    );
    assert_eq!(login.status, 200, "{}", login.raw);
    assert_eq!(login.body["role"], "admin");
    assert!(login.raw.contains("HttpOnly"), "{}", login.raw);

    // A token from the CLI, used over HTTP.
    let token = pave
        .ok(&["tokens", "create", "--username", "admin", "--name", "e2e"])
        .trim()
        .to_owned();
    assert!(token.starts_with("pave_"), "{token}");
    let auth = format!("Bearer {token}");
    let h = [("Authorization", auth.as_str())];
    // The DAG processor parses the folder in the background: wait for it.
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let dags_list = http.call("GET", "/api/v1/dags", &h, None);
        assert_eq!(dags_list.status, 200, "{}", dags_list.raw);
        if dags_list.body["dags"][0]["dag_id"] == "hello" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the DAG was never listed: {}",
            dags_list.raw
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let trigger = http.call(
        "POST",
        "/api/v1/dags/hello/dagRuns",
        &h,
        Some(&json!({"dag_run_id": "e2e_run", "conf": {}})),
    );
    assert_eq!(trigger.status, 200, "{}", trigger.raw);
    let deadline = Instant::now() + RUN_TIMEOUT;
    let run = loop {
        let run = http.call("GET", "/api/v1/dags/hello/dagRuns/e2e_run", &h, None);
        assert_eq!(run.status, 200, "{}", run.raw);
        if run.body["state"] == "success" || run.body["state"] == "failed" {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not finish: {}",
            run.raw
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(run.body["state"], "success", "{}", run.raw);
    let tis = http.call(
        "GET",
        "/api/v1/dags/hello/dagRuns/e2e_run/taskInstances",
        &h,
        None,
    );
    assert_eq!(
        tis.body["task_instances"][0]["state"], "success",
        "{}",
        tis.raw
    );
    let log = http.call(
        "GET",
        "/api/v1/dags/hello/dagRuns/e2e_run/taskInstances/say/logs/1",
        &h,
        None,
    );
    assert_eq!(log.status, 200, "{}", log.raw);
    assert!(
        log.body["content"].as_str().unwrap_or("").contains("hello"),
        "{}",
        log.raw
    );
    assert_eq!(log.body["end_of_log"], true);

    // A viewer created with the CLI may read but not trigger.
    let mut create = pave.command(&[
        "users",
        "create",
        "--username",
        "vic",
        "--role",
        "viewer",
        "--password-stdin",
    ]);
    create.stdin(Stdio::piped());
    let mut child = create.spawn().expect("spawn pave users create");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"a long password\n")
        .expect("write the password");
    let out = common::wait_with_timeout(child, common::COMMAND_TIMEOUT, "pave users create");
    assert!(out.success(), "{out}");
    let viewer_token = pave
        .ok(&[
            "tokens",
            "create",
            "--username",
            "vic",
            "--expires-in",
            "1h",
        ])
        .trim()
        .to_owned();
    let viewer = format!("Bearer {viewer_token}");
    let vh = [("Authorization", viewer.as_str())];
    assert_eq!(
        http.call("GET", "/api/v1/dags/hello/dagRuns", &vh, None)
            .status,
        200
    );
    let refused = http.call("POST", "/api/v1/dags/hello/dagRuns", &vh, Some(&json!({})));
    assert_eq!(refused.status, 403, "{}", refused.raw);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("viewer")
    );
    drop(standalone);
}

/// Marking a running task instance through the API kills its attempt: the
/// mark stands, the run goes on, and the try's row records how it ended.
#[test]
fn marking_a_running_task_kills_its_attempt() {
    let pave = Pave::new();
    let dir = dags_dir();
    std::fs::write(
        dir.path().join("nap.yaml"),
        "dag_id: nap\ntasks:\n  nap: {command: \"sleep 120\"}\n  after: {command: \"echo done\", upstream: nap}\n",
    )
    .expect("write the DAG");
    let dags = dir.path().to_str().expect("utf-8");
    let mut standalone =
        Running::spawn(pave.command(&["standalone", "--dags", dags, "--port", "0"]));
    let http = Http::of(&mut standalone, START_TIMEOUT);
    let auth = pave.admin_bearer();
    let h = [("Authorization", auth.as_str())];
    let wait_for = |what: &str, path: &str, done: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + RUN_TIMEOUT;
        loop {
            let reply = http.call("GET", path, &h, None);
            if reply.status == 200 && done(&reply.body) {
                return reply.body;
            }
            assert!(Instant::now() < deadline, "{what}: {}", reply.raw);
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("the DAG was never listed", "/api/v1/dags", &|b| {
        b["dags"][0]["dag_id"] == "nap"
    });
    let trigger = http.call(
        "POST",
        "/api/v1/dags/nap/dagRuns",
        &h,
        Some(&json!({"dag_run_id": "r1"})),
    );
    assert_eq!(trigger.status, 200, "{}", trigger.raw);
    let ti = "/api/v1/dags/nap/dagRuns/r1/taskInstances/nap";
    wait_for("nap never ran", ti, &|b| b["state"] == "running");

    let marked = http.call(
        "PATCH",
        ti,
        &h,
        Some(&json!({"new_state": "success", "dry_run": false})),
    );
    assert_eq!(marked.status, 200, "{}", marked.raw);
    // Well before `sleep 120` would end: killed, and the run carried on.
    let run = wait_for(
        "the run did not finish",
        "/api/v1/dags/nap/dagRuns/r1",
        &|b| b["state"] == "success" || b["state"] == "failed",
    );
    assert_eq!(run["state"], "success", "{run}");
    let tries = wait_for(
        "the try row was never completed",
        &format!("{ti}/tries"),
        &|b| !b["task_instances"][0]["end_date"].is_null(),
    );
    // The mark stands; the try itself was killed, so it failed.
    let nap = http.call("GET", ti, &h, None);
    assert_eq!(nap.body["state"], "success", "{}", nap.raw);
    assert_eq!(tries["task_instances"][0]["state"], "failed", "{tries}");
    drop(standalone);
}

/// REST writes wake the scheduler up (a poke). A poke that arrives while
/// the scheduler writes the ends of finished attempts must not cut that
/// short: those ends were lost once, and their task instances stayed
/// `running` for ever. Here other DAGs are paused and unpaused without a
/// pause while a 300-task fan-out runs; every task instance must end.
#[test]
fn rest_writes_during_a_fan_out_lose_no_attempt_end() {
    let pave = Pave::new();
    let dir = dags_dir();
    let mut fan = String::from("dag_id: wide\nmax_active_tasks: 1000\ntasks:\n");
    for i in 0..300 {
        fan.push_str(&format!("  t{i:03}: {{command: \"true\"}}\n"));
    }
    std::fs::write(dir.path().join("wide.yaml"), fan).expect("write the DAG");
    copy_fixtures(dir.path(), &["hello.yaml"]);
    let dags = dir.path().to_str().expect("utf-8");
    let mut standalone = Running::spawn(pave.command(&[
        "standalone",
        "--dags",
        dags,
        "--port",
        "0",
        "--parallelism",
        "32",
    ]));
    let http = Http::of(&mut standalone, START_TIMEOUT);
    let auth = pave.admin_bearer();
    let h = [("Authorization", auth.as_str())];
    let listed = Instant::now() + START_TIMEOUT;
    while http.call("GET", "/api/v1/dags/hello", &h, None).status != 200
        || http.call("GET", "/api/v1/dags/wide", &h, None).status != 200
    {
        assert!(Instant::now() < listed, "the DAGs were never listed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let trigger = http.call("POST", "/api/v1/dags/wide/dagRuns", &h, Some(&json!({})));
    assert_eq!(trigger.status, 200, "{}", trigger.raw);
    let run = format!(
        "/api/v1/dags/wide/dagRuns/{}",
        trigger.body["dag_run_id"].as_str().expect("a run id")
    );
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut paused = false;
    let state = loop {
        paused = !paused;
        let poke = http.call(
            "PATCH",
            "/api/v1/dags/hello",
            &h,
            Some(&json!({"is_paused": paused})),
        );
        assert_eq!(poke.status, 200, "{}", poke.raw);
        let reply = http.call("GET", &run, &h, None);
        let state = reply.body["state"].as_str().unwrap_or_default().to_owned();
        if state == "success" || state == "failed" {
            break state;
        }
        assert!(
            Instant::now() < deadline,
            "the run never ended: {}",
            reply.raw
        );
    };
    assert_eq!(state, "success");
    drop(standalone);
}
