//! What is particular to the supervision server: one process supervises
//! many attempts, starts on demand, idles out, and takes its tasks with it
//! when it dies.

use crate::common::*;
use pave_executor::{
    AdoptStatus, AttemptHandle, Claim, ClaimStatus, Executor, ExecutorEvent, Exit, LocalExecutor,
    LocalExecutorConfig, ProcessRef,
};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const MODE: Mode = Mode::Server;

fn fixture(gpus: u32) -> Fixture {
    Fixture::new(MODE, gpus)
}

fn shared_task_pid(handle: &AttemptHandle) -> Option<u32> {
    match &handle.process {
        ProcessRef::Local(p) => p.shared.as_ref().and_then(|t| t.pid),
        _ => None,
    }
}

/// The sockets in `dir`'s server folder.
fn sockets(dir: &Path) -> Vec<String> {
    std::fs::read_dir(server_dir(dir))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(".sock"))
                .collect()
        })
        .unwrap_or_default()
}

/// The supervision server processes serving `dir`'s sockets.
fn servers(dir: &Path) -> Vec<u32> {
    let needle = server_dir(dir).to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| running(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("--serve") && c.contains(&needle)
            })
        })
        .collect()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_servers_supervise_every_command_attempt() {
    let mut f = fixture(0);
    // More attempts than servers (one per core, at most 8), started
    // together before any server runs: each server is started once.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let attempts = cores.min(8) + 2;
    let mut handles = Vec::new();
    for i in 0..attempts {
        let req = f.shell(&format!("t{i}"), &format!("echo task {i}"));
        handles.push(f.exec.start(req).await.expect("start"));
    }
    for _ in 0..attempts {
        assert!(finished(f.next().await).is_success());
    }
    // One server per core at most, some serving several attempts.
    let supervisors: std::collections::BTreeSet<u32> = handles.iter().map(supervisor_pid).collect();
    assert!(
        supervisors.len() <= cores.min(8) && supervisors.len() < handles.len(),
        "{supervisors:?}"
    );
    let running_servers = servers(f.dir.path());
    assert!(
        supervisors.iter().all(|pid| running_servers.contains(pid)),
        "{supervisors:?} {running_servers:?}"
    );
    for h in &handles {
        let task = shared_task_pid(h).expect("the handle names the task");
        assert_ne!(task, supervisor_pid(h));
    }
    // The claim names the server, as a shared supervisor.
    let claim: Claim = serde_json::from_slice(
        &std::fs::read(pave_executor::claim_path(&handles[0].result_path)).expect("claim"),
    )
    .expect("a claim");
    assert!(
        matches!(claim, Claim::Supervisor { pid, shared: true, .. } if supervisors.contains(&pid)),
        "{claim:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_a_live_executor_takes_its_tasks_and_is_replaced() {
    let mut f = fixture(0);
    let handle = f
        .exec
        .start(f.shell("crash", &tree_script(f.dir.path())))
        .await
        .expect("start");
    let (main, gc) = (
        pid_from(&f.path("main.pid")).await,
        pid_from(&f.path("gc.pid")).await,
    );
    let server = nix::unistd::Pid::from_raw(supervisor_pid(&handle) as i32);
    nix::sys::signal::kill(server, nix::sys::signal::Signal::SIGKILL).expect("kill -9 the server");
    let result = finished(f.next().await);
    assert_eq!(result.exit, Exit::Signal { signal: 9 }, "{result:?}");
    assert!(
        result
            .notes
            .iter()
            .any(|n| n.contains("the supervision server exited")),
        "{result:?}"
    );
    // Nothing of the attempt runs on beside its retry.
    until("the task and its grandchild are gone", || {
        !running(main) && !running(gc)
    })
    .await;
    assert_eq!(f.exec.running(), 0);
    // The next attempt starts a new server.
    let next = f
        .exec
        .start(f.shell("after", "echo again"))
        .await
        .expect("start");
    assert!(finished(f.next().await).is_success());
    assert_ne!(supervisor_pid(&next), supervisor_pid(&handle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_exits_and_a_new_one_starts_on_demand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = Fixture::with_config(dir, |d| LocalExecutorConfig {
        server_idle: Duration::from_millis(300),
        ..config_in(MODE, 0, d)
    });
    let first = f.exec.start(f.shell("one", "echo 1")).await.expect("start");
    assert!(finished(f.next().await).is_success());
    let server = supervisor_pid(&first);
    until("the idle server exits", || !running(server)).await;
    until("the idle servers remove their sockets", || {
        sockets(f.dir.path()).is_empty()
    })
    .await;
    // Every shard's next attempt starts a server again.
    for i in 0..4 {
        let again = f
            .exec
            .start(f.shell(&format!("again{i}"), &format!("echo {i}")))
            .await
            .expect("start");
        let result = finished(f.next().await);
        assert_eq!(result.last_line, Some(i.to_string()));
        assert_ne!(supervisor_pid(&again), server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_finishes_its_attempts_then_exits() {
    let mut f = fixture(0);
    let running_one = f
        .exec
        .start(f.shell("long", "sleep 0.5; echo finished"))
        .await
        .expect("start");
    let server = supervisor_pid(&running_one);
    // What a clean stop of `pave standalone` does.
    assert!(pave_executor::stop_server(&server_dir(f.dir.path())) >= 1);
    assert!(sockets(f.dir.path()).is_empty());
    let result = finished(f.next().await);
    assert_eq!(result.last_line.as_deref(), Some("finished"));
    until("the stopped server exits", || !running(server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_left_in_the_tasks_session_are_killed_when_it_ends() {
    let mut f = fixture(0);
    // `set -m`: the background job gets a process group of its own (still
    // in the task's session); the subshell exits, so it is orphaned to the
    // server. The task then ends: the orphan must not outlive it.
    let pidfile = f.path("orphan.pid");
    let script = format!(
        "(set -m; sleep 100 & echo $! > {}); echo parent done",
        pidfile.display()
    );
    let result = f.run(f.shell("leaver", &script)).await;
    assert!(result.is_success(), "{result:?}");
    let orphan = pid_from(&pidfile).await;
    until("the orphan is killed", || !running(orphan)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_usable_server_attempts_run_under_supervisor_processes() {
    // A supervisor binary from before the server: `--serve` fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let real = env!("CARGO_BIN_EXE_pave-executor-supervise").to_owned();
    let mut f = Fixture::with_config(dir, |d| {
        LocalExecutorConfig {
        supervisor: vec![
            "sh".into(),
            "-c".into(),
            r#"if [ "$1" = --serve ]; then echo "unknown argument --serve" >&2; exit 2; fi; exec "$0" "$@""#
                .into(),
            real,
        ],
        ..config_in(MODE, 0, d)
    }
    });
    let first = f.exec.start(f.shell("a", "echo a")).await.expect("start");
    assert_eq!(finished(f.next().await).last_line.as_deref(), Some("a"));
    let second = f.exec.start(f.shell("b", "echo b")).await.expect("start");
    assert_eq!(finished(f.next().await).last_line.as_deref(), Some("b"));
    // Each had a supervisor of its own.
    for h in [&first, &second] {
        assert!(shared_task_pid(h).is_none(), "{h:?}");
    }
    assert_ne!(supervisor_pid(&first), supervisor_pid(&second));
    let log = std::fs::read_to_string(server_dir(f.dir.path()).join("supervise-0.log"))
        .expect("the failed server's log");
    assert!(log.contains("unknown argument --serve"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_adopted_attempt_of_a_dead_server_is_lost() {
    let f = fixture(0);
    let req = f.shell("orphan", "sleep 100");
    let started = f.exec.start(req.clone()).await.expect("start");
    wait_for_claim(&req).await;
    let task = shared_task_pid(&started).expect("task pid");
    drop(f.exec);
    drop(f.events);
    let server = nix::unistd::Pid::from_raw(supervisor_pid(&started) as i32);
    nix::sys::signal::kill(server, nix::sys::signal::Signal::SIGKILL).expect("kill -9 the server");
    // The task dies with its server (PR_SET_PDEATHSIG).
    until("the task dies with its server", || !running(task)).await;

    let (tx, _events) = mpsc::unbounded_channel();
    let exec = LocalExecutor::new(config_in(MODE, 0, f.dir.path()), tx).expect("executor");
    match exec.adopt_claimed(&query_of(&req)).await.expect("adopt") {
        ClaimStatus::Lost { reason } => assert!(reason.contains("left no result"), "{reason}"),
        other => panic!("expected Lost, got {other:?}"),
    }
    match exec.adopt(&started).await.expect("adopt by handle") {
        AdoptStatus::Lost { reason } => assert!(reason.contains("left no result"), "{reason}"),
        other => panic!("expected Lost, got {other:?}"),
    }
    assert_eq!(exec.running(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_reaches_the_task_never_the_server() {
    let mut f = fixture(0);
    let victim = f
        .exec
        .start(f.shell("victim", "sleep 100"))
        .await
        .expect("start");
    let bystander = f
        .exec
        .start(f.shell("bystander", "sleep 0.5; echo still here"))
        .await
        .expect("start");
    f.exec.kill(&victim).await.expect("kill");
    let mut ends = std::collections::HashMap::new();
    for _ in 0..2 {
        match f.next().await {
            ExecutorEvent::Finished { key, result } => {
                ends.insert(key.task_id.to_string(), result);
            }
            other => panic!("expected Finished, got {other:?}"),
        }
    }
    assert!(ends["victim"].cancelled, "{:?}", ends["victim"]);
    assert_eq!(ends["bystander"].last_line.as_deref(), Some("still here"));
    assert!(running(supervisor_pid(&bystander)), "the server lives on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_does_not_keep_a_server_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = Fixture::with_config(dir, |d| LocalExecutorConfig {
        server_idle: Duration::from_millis(300),
        ..config_in(MODE, 0, d)
    });
    let first = f.exec.start(f.shell("one", "echo 1")).await.expect("start");
    assert!(finished(f.next().await).is_success());
    let server = supervisor_pid(&first);
    // Half a request: a length, then nothing.
    let socket = std::fs::read_dir(server_dir(f.dir.path()))
        .expect("server folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|x| x == "sock")
                && std::os::unix::net::UnixStream::connect(p).is_ok()
        })
        .expect("a listening socket");
    let mut stuck = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    std::io::Write::write_all(&mut stuck, &1000u32.to_be_bytes()).expect("write");
    // It is dropped after its 10 s, then the server idles out.
    let deadline = Instant::now() + Duration::from_secs(20);
    while running(server) {
        assert!(
            Instant::now() < deadline,
            "the server stayed for the stuck client"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut stuck, &mut rest);
    assert!(
        rest.is_empty() && read.is_ok_and(|n| n == 0),
        "no answer to half a request"
    );
}
