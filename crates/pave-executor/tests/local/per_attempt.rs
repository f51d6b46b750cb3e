//! What is particular to a supervisor process per attempt: it can die
//! alone, and its session holds everything its task started.

use crate::common::*;
use pave_executor::{ClaimStatus, Executor, ExecutorEvent, LocalExecutor};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const MODE: Mode = Mode::PerAttempt;

fn fixture(gpus: u32) -> Fixture {
    Fixture::new(MODE, gpus)
}

fn config(gpus: u32, dir: &std::path::Path) -> pave_executor::LocalExecutorConfig {
    config_in(MODE, gpus, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_killed_under_a_live_executor_is_reported_lost() {
    let mut f = fixture(0);
    let handle = f
        .exec
        .start(f.shell("crash", &tree_script(f.dir.path())))
        .await
        .expect("start");
    let gc = pid_from(&f.path("gc.pid")).await;
    let sup = nix::unistd::Pid::from_raw(supervisor_pid(&handle) as i32);
    nix::sys::signal::kill(sup, nix::sys::signal::Signal::SIGKILL).expect("kill -9 the supervisor");
    match f.next().await {
        ExecutorEvent::Lost { reason, .. } => {
            assert!(reason.contains("left no result"), "{reason}")
        }
        other => panic!("expected Lost, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!running(gc));
    assert_eq!(f.exec.running(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_claimed_reports_a_dead_claimant_as_lost() {
    let f = fixture(0);
    let req = f.shell("orphan", &tree_script(f.dir.path()));
    let started = f.exec.start(req.clone()).await.expect("start");
    let gc = pid_from(&f.path("gc.pid")).await;
    wait_for_claim(&req).await;
    drop(f.exec);
    drop(f.events);
    let sup = nix::unistd::Pid::from_raw(supervisor_pid(&started) as i32);
    nix::sys::signal::kill(sup, nix::sys::signal::Signal::SIGKILL).expect("kill -9 the supervisor");
    while running(supervisor_pid(&started)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (tx, _events) = mpsc::unbounded_channel();
    let exec = LocalExecutor::new(config(0, f.dir.path()), tx).expect("executor");
    match exec.adopt_claimed(&query_of(&req)).await.expect("adopt") {
        ClaimStatus::Lost { reason } => assert!(reason.contains("left no result"), "{reason}"),
        other => panic!("expected Lost, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(gc) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!running(gc), "a lost attempt's processes were left running");
    assert_eq!(exec.running(), 0);
}
