// The local executor's behaviour that does not depend on how command
// attempts are supervised: included by tests/local.rs once per `MODE`
// (a supervisor process per attempt, and the supervision server).

use crate::common::*;
use pave_executor::{
    AdoptStatus, AttemptHandle, Claim, ClaimStatus, CommandLine, EXIT_ALREADY_CLAIMED, Executor,
    ExecutorError, ExecutorEvent, Exit, LocalExecutor, LocalExecutorConfig, ProcessRef, claim_path,
};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn fixture(gpus: u32) -> Fixture {
    Fixture::new(MODE, gpus)
}

fn config(gpus: u32, dir: &Path) -> LocalExecutorConfig {
    config_in(MODE, gpus, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_tees_output_and_captures_the_last_line() {
    let mut f = fixture(0);
    let req = f.shell(
        "ok",
        "echo hello; echo oops >&2; echo '  result 42  '; echo; echo '   '",
    );
    let log = req.log_path.clone();
    let result = f.run(req).await;
    assert_eq!(result.exit, Exit::Code { code: 0 });
    assert!(result.is_success(), "{result:?}");
    assert!(result.pid.is_some());
    assert_eq!(result.last_line.as_deref(), Some("  result 42"));
    assert!(result.ended_at >= result.started_at);
    let log = std::fs::read_to_string(log).expect("log");
    assert!(
        log.contains("hello\n") && log.contains("oops\n") && log.contains("result 42"),
        "{log}"
    );
    assert_eq!(f.exec.running(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_zero_exit_is_reported() {
    let mut f = fixture(0);
    let result = f.run(f.shell("bad", "echo partial; exit 3")).await;
    assert_eq!(result.exit, Exit::Code { code: 3 });
    assert_eq!(result.last_line.as_deref(), Some("partial"));
    assert!(!result.is_success() && !result.timed_out && result.error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_process_group() {
    let mut f = fixture(0);
    let mut req = f.shell("slow", &tree_script(f.dir.path()));
    req.execution_timeout = Some(Duration::from_millis(500));
    let began = Instant::now();
    let result = f.run(req).await;
    assert!(result.timed_out, "{result:?}");
    assert_eq!(result.exit, Exit::Signal { signal: 15 });
    assert!(began.elapsed() < Duration::from_secs(10));
    let (main, gc) = (
        pid_from(&f.path("main.pid")).await,
        pid_from(&f.path("gc.pid")).await,
    );
    assert!(!running(main), "bash {main} survived the timeout");
    assert!(!running(gc), "grandchild {gc} survived the timeout");
    let log = std::fs::read_to_string(f.path("logs/slow.log")).expect("log");
    assert!(log.contains("execution_timeout"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_also_kills_processes_that_left_the_group() {
    let mut f = fixture(0);
    // GNU timeout moves itself into a process group of its own.
    let script = format!(
        "timeout 100 sleep 100 & echo $! > {}; wait",
        f.path("own_group.pid").display()
    );
    let mut req = f.shell("escape", &script);
    req.execution_timeout = Some(Duration::from_millis(500));
    let result = f.run(req).await;
    assert!(result.timed_out, "{result:?}");
    let escaped = pid_from(&f.path("own_group.pid")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(escaped) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !running(escaped),
        "`timeout` ({escaped}) in its own group survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_right_after_start_reports_a_cancelled_attempt() {
    let mut f = fixture(0);
    let handle = f
        .exec
        .start(f.shell("early", "sleep 100"))
        .await
        .expect("start");
    f.exec.kill(&handle).await.expect("kill");
    let result = finished(f.next().await);
    assert!(result.cancelled, "{result:?}");
    assert_eq!(f.exec.running(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_the_whole_tree_and_marks_the_result_cancelled() {
    let mut f = fixture(0);
    let handle = f
        .exec
        .start(f.shell("victim", &tree_script(f.dir.path())))
        .await
        .expect("start");
    let gc = pid_from(&f.path("gc.pid")).await;
    let main = pid_from(&f.path("main.pid")).await;
    assert!(running(gc));
    f.exec.kill(&handle).await.expect("kill");
    let result = finished(f.next().await);
    assert!(result.cancelled && !result.timed_out, "{result:?}");
    assert!(!running(main) && !running(gc));
    // Killing what already ended is fine.
    f.exec.kill(&handle).await.expect("second kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_and_cwd_are_honoured() {
    let mut f = fixture(0);
    let cwd = f.path("work dir");
    std::fs::create_dir_all(&cwd).expect("mkdir");
    let mut req = f.shell("env", r#"echo "$GREETING|$PAVE_TASK_ID|$(pwd)""#);
    req.env.insert("GREETING".into(), "hi there".into());
    req.env.insert("PAVE_TASK_ID".into(), "env".into());
    req.cwd = Some(cwd.clone());
    let result = f.run(req).await;
    let cwd = cwd.canonicalize().expect("canonical");
    assert_eq!(
        result.last_line,
        Some(format!("hi there|env|{}", cwd.display()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpus_are_handed_out_and_never_oversubscribed() {
    let mut f = fixture(2);
    assert_eq!(f.exec.capacity().gpu_count(), 2);
    let gpu_task = |name: &str| {
        let mut req = f.shell(
            name,
            &format!(
                "echo $CUDA_VISIBLE_DEVICES > {}; exec sleep 100",
                f.path(name).display()
            ),
        );
        req.resources.gpu = 1;
        req
    };
    let (a, b, c) = (gpu_task("a"), gpu_task("b"), gpu_task("c"));
    let ha = f.exec.start(a).await.expect("first GPU");
    let hb = f.exec.start(b).await.expect("second GPU");
    assert_eq!((ha.gpu_ids.clone(), hb.gpu_ids.clone()), (vec![0], vec![1]));
    assert_eq!(wait_for_file(&f.path("a")).await, "0");
    assert_eq!(wait_for_file(&f.path("b")).await, "1");
    let err = f.exec.start(c.clone()).await.expect_err("no third GPU");
    assert!(matches!(err, ExecutorError::Busy { .. }), "{err}");
    assert!(
        err.to_string().contains("needs 1 GPU, 0 of 2 free"),
        "{err}"
    );

    let mut too_big = f.shell("big", "true");
    too_big.resources.gpu = 3;
    assert!(matches!(
        f.exec.start(too_big).await,
        Err(ExecutorError::Unsatisfiable { .. })
    ));

    // A task without a GPU request sees no GPU.
    let none = f
        .run(f.shell("cpu", r#"echo "[$CUDA_VISIBLE_DEVICES]""#))
        .await;
    assert_eq!(none.last_line.as_deref(), Some("[]"));

    f.exec.kill(&ha).await.expect("kill a");
    assert!(finished(f.next().await).cancelled);
    let hc = f.exec.start(c).await.expect("GPU 0 is free again");
    assert_eq!(hc.gpu_ids, vec![0]);
    f.exec.kill_all().await;
    for _ in 0..2 {
        assert!(finished(f.next().await).cancelled);
    }
    assert_eq!(f.exec.running(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_rss_is_recorded() {
    let mut f = fixture(0);
    // `tail` keeps the one 60 MB "line" in memory.
    let result = f
        .run(f.shell("rss", "head -c 60000000 /dev/zero | tail | wc -c"))
        .await;
    assert_eq!(result.exit, Exit::Code { code: 0 });
    assert!(
        result.peak_rss_kib >= 40_000,
        "peak RSS {} KiB",
        result.peak_rss_kib
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_executor_adopts_a_running_attempt() {
    let f = fixture(0);
    let stored = {
        let handle = f
            .exec
            .start(f.shell("long", "sleep 1; echo done"))
            .await
            .expect("start");
        serde_json::to_string(&handle).expect("store the handle")
    };
    // The scheduler crashes: its executor and event channel are gone.
    drop(f.exec);
    drop(f.events);

    let (tx, mut events) = mpsc::unbounded_channel();
    let exec = LocalExecutor::new(config(0, f.dir.path()), tx).expect("executor");
    let handle: AttemptHandle = serde_json::from_str(&stored).expect("load the handle");
    assert_eq!(
        exec.adopt(&handle).await.expect("adopt"),
        AdoptStatus::Running
    );
    assert_eq!(exec.running(), 1);
    let result = finished(next_event(&mut events).await);
    assert_eq!(result.last_line.as_deref(), Some("done"));
    assert_eq!(exec.running(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_a_finished_attempt_returns_its_result_at_once() {
    let mut f = fixture(0);
    let handle = f
        .exec
        .start(f.shell("quick", "echo 7"))
        .await
        .expect("start");
    finished(f.next().await);
    let (tx, mut events) = mpsc::unbounded_channel();
    let exec = LocalExecutor::new(config(0, f.dir.path()), tx).expect("executor");
    match exec.adopt(&handle).await.expect("adopt") {
        AdoptStatus::Finished(result) => assert_eq!(result.last_line.as_deref(), Some("7")),
        other => panic!("expected Finished, got {other:?}"),
    }
    assert!(
        events.try_recv().is_err(),
        "no event after a Finished adoption"
    );
    // Starting it again would run it twice.
    let again = f
        .exec
        .start(f.shell("quick", "echo 7"))
        .await
        .expect_err("already ran");
    assert!(
        matches!(again, ExecutorError::AlreadyFinished { .. }),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_supervisor_without_result_is_lost_and_its_tree_killed() {
    let f = fixture(0);
    let handle = f
        .exec
        .start(f.shell("orphan", &tree_script(f.dir.path())))
        .await
        .expect("start");
    let gc = pid_from(&f.path("gc.pid")).await;
    drop(f.exec);
    drop(f.events);
    let sup = nix::unistd::Pid::from_raw(supervisor_pid(&handle) as i32);
    nix::sys::signal::kill(sup, nix::sys::signal::Signal::SIGKILL).expect("kill -9 the supervisor");
    while running(supervisor_pid(&handle)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        running(gc),
        "the task outlives its supervisor until someone notices"
    );

    let (tx, _events) = mpsc::unbounded_channel();
    let exec = LocalExecutor::new(config(0, f.dir.path()), tx).expect("executor");
    match exec.adopt(&handle).await.expect("adopt") {
        AdoptStatus::Lost { reason } => assert!(
            reason.contains("left no result") && reason.contains("killed"),
            "{reason}"
        ),
        other => panic!("expected Lost, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(gc) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !running(gc),
        "a lost attempt's processes must not run on beside its retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_error_in_the_result() {
    let mut f = fixture(0);
    let mut req = f.shell("nocwd", "echo never");
    req.cwd = Some(f.path("does/not/exist"));
    let result = f.run(req).await;
    assert_eq!(result.exit, Exit::NotRun);
    let error = result.error.expect("an error");
    assert!(
        error.contains("working directory") && error.contains("does/not/exist"),
        "{error}"
    );

    let missing = f
        .run(f.request(
            "noprog",
            CommandLine::Argv {
                argv: vec!["/no/such/program".into()],
            },
        ))
        .await;
    assert_eq!(missing.exit, Exit::NotRun);
    assert!(
        missing
            .error
            .as_deref()
            .is_some_and(|e| e.contains("program not found")),
        "{missing:?}"
    );

    let not_exec = f.path("plain.txt");
    std::fs::write(&not_exec, "just text").expect("write");
    let denied = f
        .run(f.request(
            "noexec",
            CommandLine::Argv {
                argv: vec![not_exec.to_string_lossy().into_owned()],
            },
        ))
        .await;
    assert!(
        denied
            .error
            .as_deref()
            .is_some_and(|e| e.contains("permission denied")),
        "{denied:?}"
    );

    // A shell command that does not exist is bash's business: exit 127.
    let unknown = f.run(f.shell("unknown", "no-such-command-xyz")).await;
    assert_eq!(unknown.exit, Exit::Code { code: 127 });

    let empty = f
        .exec
        .start(f.request("empty", CommandLine::Argv { argv: vec![] }))
        .await;
    assert!(matches!(empty, Err(ExecutorError::InvalidRequest { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_attempt_cannot_run_twice_at_once() {
    let mut f = fixture(0);
    let handle = f
        .exec
        .start(f.shell("dup", "sleep 100"))
        .await
        .expect("start");
    let err = f
        .exec
        .start(f.shell("dup", "sleep 100"))
        .await
        .expect_err("duplicate");
    assert!(matches!(err, ExecutorError::AlreadyRunning { .. }), "{err}");
    assert_eq!(
        f.exec.adopt(&handle).await.expect("adopt own"),
        AdoptStatus::Running
    );
    f.exec.kill(&handle).await.expect("kill");
    finished(f.next().await);
}

/// Not an assertion: prints what the supervisor costs per task on this machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_overhead_report() {
    const RUNS: usize = 200;
    let mut f = fixture(0);
    let mut bare = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        let status = tokio::process::Command::new("true")
            .status()
            .await
            .expect("true");
        assert!(status.success());
        bare.push(t.elapsed());
    }
    let mut supervised = Vec::with_capacity(RUNS);
    let mut start_only = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let req = f.request(
            &format!("t{i}"),
            CommandLine::Argv {
                argv: vec!["true".into()],
            },
        );
        let t = Instant::now();
        f.exec.start(req).await.expect("start");
        start_only.push(t.elapsed());
        assert!(finished(f.next().await).is_success());
        supervised.push(t.elapsed());
    }
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        (mean, v[v.len() / 2], v[v.len() * 9 / 10])
    };
    let (bm, b50, b90) = stats(&mut bare);
    let (sm, s50, s90) = stats(&mut supervised);
    let (stm, st50, _) = stats(&mut start_only);
    println!(
        "spawn overhead over {RUNS} runs of `true`: bare spawn+wait mean {bm:?} p50 {b50:?} p90 {b90:?}; \
         supervised start..Finished mean {sm:?} p50 {s50:?} p90 {s90:?}; start() alone mean {stm:?} p50 {st50:?}; \
         overhead per task (p50) {:?}",
        s50.saturating_sub(b50)
    );

    // Throughput with 16 attempts in flight, as a scheduler would run them.
    const IN_FLIGHT: usize = 16;
    let t = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..RUNS {
        if pending.len() == IN_FLIGHT {
            pending.join_next().await;
        }
        pending.spawn(async move {
            let status = tokio::process::Command::new("true").status().await;
            assert!(status.is_ok_and(|s| s.success()), "true {i}");
        });
    }
    while pending.join_next().await.is_some() {}
    let bare_wall = t.elapsed();

    let t = Instant::now();
    let (mut started, mut done) = (0, 0);
    while done < RUNS {
        while started < RUNS && started - done < IN_FLIGHT {
            let req = f.request(
                &format!("p{started}"),
                CommandLine::Argv {
                    argv: vec!["true".into()],
                },
            );
            f.exec.start(req).await.expect("start");
            started += 1;
        }
        assert!(finished(f.next().await).is_success());
        done += 1;
    }
    let supervised_wall = t.elapsed();
    let per = |d: Duration| d / RUNS as u32;
    println!(
        "throughput with {IN_FLIGHT} in flight: bare {:?}/task, supervised {:?}/task, overhead {:?}/task",
        per(bare_wall),
        per(supervised_wall),
        per(supervised_wall).saturating_sub(per(bare_wall))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_started_on_an_existing_claim_refuses_to_run() {
    let mut f = fixture(0);
    let side = f.path("side-effect");
    let req = touching(&f, "fenced", &side, "echo ran");
    // Fence the attempt off, as a restarted scheduler does.
    assert_eq!(
        f.exec.adopt_claimed(&query_of(&req)).await.expect("fence"),
        ClaimStatus::Fenced
    );

    // The supervisor itself, as the executor would start it.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_pave-executor-supervise"))
        .arg("--result")
        .arg(&req.result_path)
        .arg("--log")
        .arg(&req.log_path)
        .arg("--claim")
        .arg(claim_path(&req.result_path))
        .args(["--", "bash", "-c"])
        .arg(format!("touch '{}'", side.display()))
        .status()
        .expect("run pave-executor-supervise");
    assert_eq!(status.code(), Some(EXIT_ALREADY_CLAIMED), "{status}");
    assert!(!side.exists(), "the task ran despite the claim");
    assert!(
        !req.result_path.exists(),
        "a refusing supervisor writes no result"
    );
    let log = std::fs::read_to_string(&req.log_path).expect("log");
    assert!(
        log.contains("already claimed") && log.contains("fenced by the scheduler"),
        "{log}"
    );

    // Through the executor: the start is accepted and reported lost.
    f.exec.start(req.clone()).await.expect("start");
    match f.next().await {
        ExecutorEvent::Lost { reason, .. } => {
            assert!(reason.contains("attempt already claimed"), "{reason}")
        }
        other => panic!("expected Lost, got {other:?}"),
    }
    assert!(!side.exists(), "the task ran despite the claim");
    assert!(!req.result_path.exists());
    assert_eq!(f.exec.running(), 0);
    // Still fenced.
    assert_eq!(
        f.exec.adopt_claimed(&query_of(&req)).await.expect("again"),
        ClaimStatus::Fenced
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_claimed_fences_an_attempt_nobody_claimed() {
    let mut f = fixture(0);
    let side = f.path("side-effect");
    let req = touching(&f, "never", &side, "true");
    assert!(
        !f.path("results").exists(),
        "not even the folder exists yet"
    );
    assert_eq!(
        f.exec.adopt_claimed(&query_of(&req)).await.expect("fence"),
        ClaimStatus::Fenced
    );
    assert!(matches!(
        wait_for_claim(&req).await,
        Claim::Fence { ref note, .. } if note.starts_with("fenced by the scheduler")
    ));
    assert_eq!(f.exec.running(), 0, "a fenced attempt holds no slot");
    // A supervisor started afterwards (a late one) refuses.
    f.exec.start(req.clone()).await.expect("start");
    assert!(matches!(f.next().await, ExecutorEvent::Lost { .. }));
    assert!(!side.exists(), "a fenced attempt ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_claimed_returns_the_result_of_a_finished_attempt() {
    let mut f = fixture(0);
    let req = f.shell("quick", "echo 7");
    f.exec.start(req.clone()).await.expect("start");
    finished(f.next().await);

    let (tx, mut events) = mpsc::unbounded_channel();
    let exec = LocalExecutor::new(config(0, f.dir.path()), tx).expect("executor");
    match exec.adopt_claimed(&query_of(&req)).await.expect("adopt") {
        ClaimStatus::Finished(result) => assert_eq!(result.last_line.as_deref(), Some("7")),
        other => panic!("expected Finished, got {other:?}"),
    }
    assert!(events.try_recv().is_err(), "no event after Finished");
    assert_eq!(exec.running(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_claimed_adopts_a_running_attempt_from_its_claim() {
    let f = fixture(2);
    let side = f.path("side-effect");
    let mut req = touching(&f, "long", &side, "sleep 1; echo done");
    req.resources.gpu = 1;
    req.resources.cpu_millis = 100;
    let started = f.exec.start(req.clone()).await.expect("start");
    // The scheduler dies before storing the handle; the claim has it all.
    let claim = wait_for_claim(&req).await;
    drop(f.exec);
    drop(f.events);
    assert!(
        matches!(claim, Claim::Supervisor { pid, ref gpu_ids, .. }
            if pid == supervisor_pid(&started) && *gpu_ids == started.gpu_ids),
        "{claim:?}"
    );

    let (tx, mut events) = mpsc::unbounded_channel();
    let exec = LocalExecutor::new(config(2, f.dir.path()), tx).expect("executor");
    let handle = match exec.adopt_claimed(&query_of(&req)).await.expect("adopt") {
        ClaimStatus::Running(handle) => handle,
        other => panic!("expected Running, got {other:?}"),
    };
    // The same supervisor; a shared one's task pid is not in its claim.
    let (ProcessRef::Local(found), ProcessRef::Local(known)) = (&handle.process, &started.process)
    else {
        panic!("not local: {handle:?}");
    };
    assert_eq!(
        (found.supervisor_pid, found.supervisor_start_ticks),
        (known.supervisor_pid, known.supervisor_start_ticks)
    );
    assert_eq!(found.shared.is_some(), MODE == Mode::Server, "{found:?}");
    assert_eq!(handle.gpu_ids, started.gpu_ids);
    assert_eq!(handle.resources, req.resources);
    assert_eq!(handle.result_path, started.result_path);
    assert_eq!(exec.running(), 1);
    // Asking again while it runs gives the same handle; nothing is started.
    assert_eq!(
        exec.adopt_claimed(&query_of(&req)).await.expect("again"),
        ClaimStatus::Running(handle.clone())
    );
    let result = finished(next_event(&mut events).await);
    assert_eq!(result.last_line.as_deref(), Some("done"));
    assert_eq!(exec.running(), 0);
    // The handle built from the claim works like a stored one.
    assert!(matches!(
        exec.adopt(&handle).await.expect("adopt by handle"),
        AdoptStatus::Finished(_)
    ));
}
