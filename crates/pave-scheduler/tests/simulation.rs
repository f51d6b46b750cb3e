//! Deterministic simulation of the scheduler driver: the real driver and a
//! real (in-memory) SQLite store, a no-op executor that fails attempts by a
//! seeded script, and a manual clock. After every step the invariants are
//! checked: no attempt starts twice, try numbers never go down, a run ends
//! only when all its task instances are finished.

use chrono::{TimeZone, Utc};
use pave_core::model::{MapSource, Mapping, OutputFormat, TaskKind};
use pave_core::{Dag, MapIndex, RunState, Task, TaskState};
use pave_executor::{AttemptKey, AttemptResult, NoopExecutor, NoopOutcome};
use pave_scheduler::{ManualClock, Scheduler, SchedulerConfig, TriggerRequest};
use pave_store::{ParsedDag, SqliteStore, Store};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn command(id: &str, upstream: &[&str], retries: u32) -> Task {
    let mut t = Task::new(
        id,
        TaskKind::Command {
            command: "true".into(),
            cwd: None,
            output: OutputFormat::Text,
            skip_exit_code: None,
        },
    );
    t.upstream = upstream.iter().map(|u| (*u).into()).collect();
    t.retry.retries = retries;
    t.retry.retry_delay = Duration::from_secs(30);
    t
}

/// extract -> {a, b (mapped x4)} -> join(all_done) -> report
fn dag() -> Dag {
    let mut d = Dag::new("sim");
    d.max_active_tasks = Some(3);
    let mut b = command("b", &["extract"], 2);
    b.mapping = Some(Mapping::Expand {
        args: [(
            "x".to_owned(),
            MapSource::Literal {
                values: (0..4).map(serde_json::Value::from).collect(),
            },
        )]
        .into(),
    });
    let mut join = command("join", &["a", "b"], 0);
    join.trigger_rule = pave_core::TriggerRule::AllDone;
    d.tasks = vec![
        command("extract", &[], 1),
        command("a", &["extract"], 1),
        b,
        join,
        command("report", &["join"], 0),
    ];
    d
}

/// Stores `d` as parsed at `at`, unpaused.
async fn store_dag(store: &dyn Store, d: &Dag, at: chrono::DateTime<Utc>) {
    store
        .upsert_dag(ParsedDag {
            dag_id: d.dag_id.clone(),
            fileloc: None,
            spec: pave_scheduler::dags::encode(d),
            parsed_at: at,
            paused_at_creation: false,
        })
        .await
        .expect("dag stored");
}

/// A tiny deterministic hash, so each seed scripts different failures.
fn fails(seed: u64, key: &AttemptKey) -> bool {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in format!("{}{}{}", key.task_id, key.map_index, key.try_number).bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3);
    }
    h.is_multiple_of(3)
}

/// How often each (task, map index, try) was started.
type StartCounts = HashMap<(String, i32, u32), u32>;

async fn simulate(seed: u64) -> Vec<String> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    store.migrate().await.expect("migrate");
    let d = dag();
    store_dag(store.as_ref(), &d, Utc::now()).await;
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let clock = Arc::new(ManualClock::new(start));
    let started: Arc<Mutex<StartCounts>> = Arc::default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = started.clone();
    let exec_clock = clock.clone();
    let executor = NoopExecutor::new(tx)
        .with_clock(move || pave_scheduler::Clock::now(exec_clock.as_ref()))
        .with_outcome(move |key, now| {
            let k = (key.task_id.to_string(), key.map_index.0, key.try_number.0);
            *seen.lock().expect("lock").entry(k).or_default() += 1;
            if fails(seed, key) {
                NoopOutcome::Finished(AttemptResult::exited_at(now, 1, None))
            } else {
                NoopOutcome::Finished(AttemptResult::success_at(now, None))
            }
        });
    let mut cfg = SchedulerConfig::new(std::env::temp_dir().join("pave-sim-logs"));
    cfg.create_scheduled_runs = false;
    // Prove completions drive the loop: no poll ever comes to the rescue.
    cfg.poll_interval = Duration::from_secs(3600);
    let mut s = Scheduler::new(store.clone(), Arc::new(executor), rx, clock.clone(), cfg);
    let run = s
        .trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");

    let mut violations = Vec::new();
    let mut tries: HashMap<(String, MapIndex), u32> = HashMap::new();
    for step in 0..200 {
        let report = s.step().await.expect("step");
        s.drain_events().await.expect("events");
        let tis = store.run_tis(run.key).await.expect("tis");
        for ti in &tis {
            let k = (ti.key.task_id.to_string(), ti.key.map_index);
            let before = tries.insert(k.clone(), ti.try_number.0).unwrap_or(0);
            if ti.try_number.0 < before {
                violations.push(format!("step {step}: try_number of {k:?} went down"));
            }
        }
        let r = store.get_run(run.key).await.expect("run");
        if r.state.is_finished() {
            if let Some(ti) = tis.iter().find(|t| !t.state.is_finished()) {
                violations.push(format!("run finished with {} in {}", ti.key, ti.state));
            }
            break;
        }
        if report.started == 0 && report.finished_runs.is_empty() {
            // Nothing to do now: let retry delays pass.
            clock.advance(chrono::Duration::seconds(31));
        }
    }
    for (k, n) in started.lock().expect("lock").iter() {
        if *n > 1 {
            violations.push(format!("attempt {k:?} started {n} times"));
        }
    }
    let r = store.get_run(run.key).await.expect("run");
    if !r.state.is_finished() {
        violations.push(format!("seed {seed}: run did not finish: {}", r.state));
    }
    // join is all_done and report follows it: the run's outcome is report's.
    let tis = store.run_tis(run.key).await.expect("tis");
    let report = tis.iter().find(|t| t.key.task_id.as_str() == "report");
    let expected = match report.map(|t| t.state) {
        Some(TaskState::Success) => RunState::Success,
        _ => RunState::Failed,
    };
    if r.state != expected {
        violations.push(format!(
            "seed {seed}: run {} but report is {:?}",
            r.state,
            report.map(|t| t.state)
        ));
    }
    let b: HashSet<i32> = tis
        .iter()
        .filter(|t| t.key.task_id.as_str() == "b")
        .map(|t| t.key.map_index.0)
        .collect();
    if tis
        .iter()
        .any(|t| t.key.task_id.as_str() == "extract" && t.state == TaskState::Success)
        && b != HashSet::from([0, 1, 2, 3])
    {
        violations.push(format!("seed {seed}: b expanded to {b:?}"));
    }
    violations
}

#[tokio::test]
async fn scheduler_keeps_its_invariants_under_seeded_failures() {
    let mut all = Vec::new();
    for seed in 0..16 {
        all.extend(simulate(seed).await);
    }
    assert!(all.is_empty(), "invariant violations:\n{}", all.join("\n"));
}

/// A scheduled DAG with catchup gets one run per due interval, each with
/// Airflow's logical date, and a restart does not create them twice.
#[tokio::test]
async fn schedules_create_each_due_run_once() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    store.migrate().await.expect("migrate");
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let mut d = Dag::new("hourly");
    d.schedule = pave_core::Schedule::Cron {
        expr: "0 * * * *".into(),
    };
    d.start_date = Some(start);
    d.catchup = true;
    d.tasks = vec![command("only", &[], 0)];
    store_dag(store.as_ref(), &d, start).await;
    let clock = Arc::new(ManualClock::new(
        start + chrono::Duration::minutes(3 * 60 + 30),
    ));
    for life in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut cfg = SchedulerConfig::new(std::env::temp_dir().join("pave-sim-logs"));
        cfg.poll_interval = Duration::ZERO;
        let mut s = Scheduler::new(
            store.clone(),
            Arc::new(NoopExecutor::new(tx)),
            rx,
            clock.clone(),
            cfg,
        );
        for _ in 0..20 {
            s.step().await.expect("step");
            s.drain_events().await.expect("events");
        }
        let runs = store
            .list_runs(&pave_store::RunFilter::dag("hourly"))
            .await
            .expect("runs");
        let mut dates: Vec<String> = runs
            .iter()
            .map(|r| {
                r.logical_date
                    .map(|d| d.format("%H:%M").to_string())
                    .unwrap_or_default()
            })
            .collect();
        dates.sort();
        // Cron trigger timetable (Airflow 3's default): one run per tick
        // from start_date up to now.
        assert_eq!(dates, ["00:00", "01:00", "02:00", "03:00"], "life {life}");
        assert!(
            runs.iter().all(|r| r.state == RunState::Success),
            "life {life}: {runs:?}"
        );
    }
}

/// Completions waiting together are written in one transaction; when one of
/// them is stale (its task instance was changed by someone else meanwhile),
/// that one is ignored and the others still land.
#[tokio::test]
async fn a_stale_report_does_not_block_the_others_of_its_batch() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    store.migrate().await.expect("migrate");
    let mut d = Dag::new("batch");
    d.tasks = vec![
        command("a", &[], 0),
        command("b", &[], 0),
        command("c", &[], 0),
    ];
    store_dag(store.as_ref(), &d, Utc::now()).await;
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date"),
    ));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec_clock = clock.clone();
    let executor =
        NoopExecutor::new(tx).with_clock(move || pave_scheduler::Clock::now(exec_clock.as_ref()));
    let mut cfg = SchedulerConfig::new(std::env::temp_dir().join("pave-sim-logs"));
    cfg.create_scheduled_runs = false;
    cfg.poll_interval = Duration::from_secs(3600);
    let mut s = Scheduler::new(store.clone(), Arc::new(executor), rx, clock.clone(), cfg);
    let run = s
        .trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");

    // All three start; their completions wait in the channel.
    let report = s.step().await.expect("step");
    assert_eq!(report.started, 3);
    // Meanwhile someone else (a CLI) marks `b` failed. (Still `queued`:
    // the running writes wait for the transaction that ends the attempts.)
    let b = pave_store::TiKey::unmapped(run.key, "b");
    store
        .apply(pave_store::ChangeBatch::one(
            pave_scheduler::Clock::now(clock.as_ref()),
            pave_store::TiChange::new(b.clone(), TaskState::Failed)
                .expect(TaskState::Queued)
                .reason("marked failed by hand"),
        ))
        .await
        .expect("mark b failed");
    // The next poll finds b's attempt superseded and kills it.
    s.poke();
    assert_eq!(s.step().await.expect("step").killed, 1);
    s.drain_events().await.expect("events");
    // b's report changed no task instance, but completed b's try row.
    let tries = store.list_tries(&b).await.expect("tries");
    assert_eq!(tries.len(), 1, "{tries:?}");
    assert_eq!(tries[0].state, TaskState::Success);
    assert!(tries[0].end_date.is_some() && tries[0].exit_code == Some(0));

    let tis = store.run_tis(run.key).await.expect("tis");
    let state = |id: &str| {
        tis.iter()
            .find(|t| t.key.task_id.as_str() == id)
            .map(|t| (t.state, t.reason.clone()))
    };
    assert_eq!(state("a").map(|s| s.0), Some(TaskState::Success));
    assert_eq!(state("c").map(|s| s.0), Some(TaskState::Success));
    assert_eq!(
        state("b"),
        Some((TaskState::Failed, Some("marked failed by hand".to_owned())))
    );
    s.step().await.expect("step");
    let r = store.get_run(run.key).await.expect("run");
    assert_eq!(r.state, RunState::Failed);
}

/// What `decide` schedules is written once, by admission in the same step:
/// `queued` when it is taken, `scheduled` with the reason when it must wait.
/// A try's row is written when it is queued and completed when it ends;
/// while it runs, `list_tries` reads its live state from the task instance.
#[tokio::test]
async fn decided_task_instances_are_written_once_by_admission() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    store.migrate().await.expect("migrate");
    let mut d = Dag::new("admission");
    d.max_active_tasks = Some(1);
    d.tasks = vec![
        command("a", &[], 0),
        command("b", &[], 0),
        command("c", &[], 0),
    ];
    store_dag(store.as_ref(), &d, Utc::now()).await;
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date"),
    ));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec_clock = clock.clone();
    let executor =
        NoopExecutor::new(tx).with_clock(move || pave_scheduler::Clock::now(exec_clock.as_ref()));
    let mut cfg = SchedulerConfig::new(std::env::temp_dir().join("pave-sim-logs"));
    cfg.create_scheduled_runs = false;
    cfg.poll_interval = Duration::from_secs(3600);
    let mut s = Scheduler::new(store.clone(), Arc::new(executor), rx, clock.clone(), cfg);
    let run = s
        .trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");

    // One step: one task instance taken, two waiting for the DAG's limit.
    // (The taken one's end already waits in the channel, so its `running`
    // write waits for the transaction that ends it.)
    assert_eq!(s.step().await.expect("step").started, 1);
    let tis = store.run_tis(run.key).await.expect("tis");
    let running: Vec<_> = tis
        .iter()
        .filter(|t| t.state == TaskState::Queued)
        .collect();
    let waiting: Vec<_> = tis
        .iter()
        .filter(|t| t.state == TaskState::Scheduled)
        .collect();
    assert_eq!((running.len(), waiting.len()), (1, 2), "{tis:?}");
    for t in &waiting {
        let reason = t.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("max_active_tasks"), "{reason}");
        assert!(store.list_tries(&t.key).await.expect("tries").is_empty());
    }
    let live = store.list_tries(&running[0].key).await.expect("tries");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].state, TaskState::Queued);
    assert!(live[0].log_path.is_some());

    for _ in 0..10 {
        s.drain_events().await.expect("events");
        if s.step()
            .await
            .expect("step")
            .finished_runs
            .contains(&run.key)
        {
            break;
        }
    }
    let r = store.get_run(run.key).await.expect("run");
    assert_eq!(r.state, RunState::Success);
    for t in store.run_tis(run.key).await.expect("tis") {
        let tries = store.list_tries(&t.key).await.expect("tries");
        assert_eq!(tries.len(), 1, "{}: {tries:?}", t.key);
        assert_eq!(tries[0].state, TaskState::Success);
        assert!(tries[0].end_date.is_some());
        assert!(tries[0].executor_handle.is_some(), "{}", t.key);
        // What the `running` write would have stored came with the end.
        assert!(t.start_date.is_some(), "{}", t.key);
        assert_eq!(t.start_date, tries[0].start_date, "{}", t.key);
        assert!(t.hostname.is_some(), "{}", t.key);
    }
}

/// A task instance's state, and whether it has the handle and the start
/// date a `running` write (or an end that carried it) stores.
fn state_of(tis: &[pave_store::TiRecord], task: &str) -> Option<(TaskState, bool, bool)> {
    tis.iter()
        .find(|t| t.key.task_id.as_str() == task)
        .map(|t| (t.state, t.executor_handle.is_some(), t.start_date.is_some()))
}

/// With no `running_write_delay`, a started attempt's `running` write goes
/// with the next transaction the scheduler makes: the one that ends it
/// when its end is already waiting (one write from queued to success),
/// else at the end of the step, or of the handling of the events that
/// waited after it.
#[tokio::test]
async fn a_started_attempt_is_written_running_with_the_next_transaction() {
    let mut d = Dag::new("starting");
    d.tasks = vec![command("a", &[], 0), command("b", &[], 0)];
    let HeldReports {
        timed,
        store,
        mut s,
        tx,
        mut ended,
    } = held_reports_writing_running_after(&d, usize::MAX, Duration::ZERO).await;

    // 1. Nothing waits in the channel at the end of the step: the running
    //    writes are made then, with the handles a restart adopts from.
    let run = s
        .trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");
    assert_eq!(s.step().await.expect("step").started, 2);
    let tis = store.run_tis(run.key).await.expect("tis");
    for task in ["a", "b"] {
        assert_eq!(
            state_of(&tis, task),
            Some((TaskState::Running, true, true)),
            "{tis:?}"
        );
    }
    while let Ok(ev) = ended.try_recv() {
        tx.send(ev).expect("scheduler listens");
    }
    s.drain_events().await.expect("events");
    s.step().await.expect("step");
    assert_eq!(
        store.get_run(run.key).await.expect("run").state,
        RunState::Success
    );

    // 2. An event waits (here one for an attempt nobody watches): the
    //    writes wait too, while more events wait, and go when they have
    //    been handled.
    let run = s
        .trigger(
            &d.dag_id,
            TriggerRequest {
                run_id: Some("second".into()),
                ..Default::default()
            },
        )
        .await
        .expect("trigger");
    let stray = |n: u32| pave_executor::ExecutorEvent::Lost {
        key: pave_executor::AttemptKey {
            dag_id: d.dag_id.clone(),
            run_id: "nobody".into(),
            task_id: "x".into(),
            map_index: pave_core::MapIndex::UNMAPPED,
            try_number: pave_core::TryNumber(n),
        },
        reason: "stray".into(),
    };
    tx.send(stray(1)).expect("send");
    let before = timed.snapshot();
    assert_eq!(s.step().await.expect("step").started, 2);
    let tis = store.run_tis(run.key).await.expect("tis");
    assert_eq!(state_of(&tis, "a"), Some((TaskState::Queued, false, false)));
    // Handling events while the stray one still waits: not yet.
    s.on_events(Vec::new()).await.expect("events");
    let tis = store.run_tis(run.key).await.expect("tis");
    assert_eq!(state_of(&tis, "a"), Some((TaskState::Queued, false, false)));
    s.drain_events().await.expect("events");
    let tis = store.run_tis(run.key).await.expect("tis");
    for task in ["a", "b"] {
        assert_eq!(
            state_of(&tis, task),
            Some((TaskState::Running, true, true)),
            "{tis:?}"
        );
    }
    let after = timed.snapshot();
    let calls = |m: &str| after.get(m).map_or(0, |c| c.0) - before.get(m).map_or(0, |c| c.0);
    assert_eq!(calls("apply[running]"), 1, "{after:?}");
}

/// Within `running_write_delay` of its start, an attempt's `running` write
/// waits for its own end (one write from queued to its end) and is not
/// carried by the transactions of other attempts' ends; a stop writes
/// every one left.
#[tokio::test]
async fn a_short_attempt_goes_from_queued_to_its_end_in_one_write() {
    let mut d = Dag::new("short");
    d.tasks = vec![command("a", &[], 0), command("b", &[], 0)];
    let HeldReports {
        timed,
        store,
        mut s,
        tx,
        mut ended,
    } = held_reports_writing_running_after(&d, usize::MAX, Duration::from_secs(3600)).await;
    let run = s
        .trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");
    assert_eq!(s.step().await.expect("step").started, 2);
    // Nothing waits in the channel, but neither write is due.
    let tis = store.run_tis(run.key).await.expect("tis");
    for task in ["a", "b"] {
        assert_eq!(
            state_of(&tis, task),
            Some((TaskState::Queued, false, false))
        );
    }
    // a ends: its end carries what its running write would have stored;
    // b's write, not due, waits (its own end may carry it too).
    let mut reports: Vec<_> = std::iter::from_fn(|| ended.try_recv().ok()).collect();
    let b_at = reports
        .iter()
        .position(|ev| matches!(ev, pave_executor::ExecutorEvent::Finished { key, .. } if key.task_id.as_str() == "b"))
        .expect("b's report");
    let b_report = reports.remove(b_at);
    for ev in reports {
        tx.send(ev).expect("scheduler listens");
    }
    s.drain_events().await.expect("events");
    let tis = store.run_tis(run.key).await.expect("tis");
    let a = tis
        .iter()
        .find(|t| t.key.task_id.as_str() == "a")
        .expect("a");
    assert_eq!(a.state, TaskState::Success);
    assert!(a.start_date.is_some() && a.hostname.is_some(), "{a:?}");
    assert_eq!(state_of(&tis, "b"), Some((TaskState::Queued, false, false)));
    // A stop writes what is left: b is running, with the handle a restart
    // adopts it from.
    s.write_starting().await.expect("running writes");
    let tis = store.run_tis(run.key).await.expect("tis");
    assert_eq!(state_of(&tis, "b"), Some((TaskState::Running, true, true)));
    tx.send(b_report).expect("scheduler listens");
    s.drain_events().await.expect("events");
    s.step().await.expect("step");
    assert_eq!(
        store.get_run(run.key).await.expect("run").state,
        RunState::Success
    );
    let calls = timed.snapshot();
    assert_eq!(
        calls.get("apply[running]").map(|c| c.0),
        Some(1),
        "{calls:?}"
    );
}

/// An attempt that outlasts `running_write_delay` is written running when
/// the write is due: the scheduler wakes up for it (here no event comes and
/// the next poll is an hour away).
#[tokio::test]
async fn a_long_attempt_is_written_running_when_its_write_is_due() {
    let mut d = Dag::new("long");
    d.tasks = vec![command("a", &[], 0)];
    let HeldReports {
        store,
        mut s,
        // Held open, as an executor holds it: a closed channel would wake
        // the scheduler at once.
        tx: _tx,
        ..
    } = held_reports_writing_running_after(&d, usize::MAX, Duration::from_millis(50)).await;
    let run = s
        .trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");
    assert_eq!(s.step().await.expect("step").started, 1);
    tokio::time::timeout(Duration::from_secs(60), s.wait())
        .await
        .expect("the scheduler wakes up for the due write")
        .expect("wait");
    s.step().await.expect("step");
    let tis = store.run_tis(run.key).await.expect("tis");
    assert_eq!(tis[0].state, TaskState::Running, "{tis:?}");
    assert!(tis[0].executor_handle.is_some() && tis[0].start_date.is_some());
}

/// A scheduler over a fresh in-memory store holding `d`, with a manual
/// clock at `now` and a no-op executor whose attempts all succeed.
async fn scheduler_for(
    d: &Dag,
    now: chrono::DateTime<Utc>,
    cfg: impl FnOnce(&mut SchedulerConfig),
) -> (Arc<dyn Store>, Scheduler) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    store.migrate().await.expect("migrate");
    store_dag(store.as_ref(), d, now).await;
    let clock = Arc::new(ManualClock::new(now));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec_clock = clock.clone();
    let executor =
        NoopExecutor::new(tx).with_clock(move || pave_scheduler::Clock::now(exec_clock.as_ref()));
    let mut config = SchedulerConfig::new(std::env::temp_dir().join("pave-sim-logs"));
    config.poll_interval = Duration::ZERO;
    cfg(&mut config);
    let s = Scheduler::new(store.clone(), Arc::new(executor), rx, clock, config);
    (store, s)
}

/// Steps `s` until nothing is left to do (at most `steps` times).
async fn settle(s: &mut Scheduler, steps: usize) {
    for _ in 0..steps {
        s.step().await.expect("step");
        s.drain_events().await.expect("events");
    }
}

/// A scheduler whose executor's reports are held back: they go to `ended`,
/// and the test hands them on through `tx`, when it chooses. The store is
/// wrapped in a `TimedStore` that counts its calls.
struct HeldReports {
    timed: Arc<pave_store::TimedStore>,
    store: Arc<dyn Store>,
    s: Scheduler,
    tx: tokio::sync::mpsc::UnboundedSender<pave_executor::ExecutorEvent>,
    ended: tokio::sync::mpsc::UnboundedReceiver<pave_executor::ExecutorEvent>,
}

async fn held_reports(d: &Dag, parallelism: usize) -> HeldReports {
    let delay = SchedulerConfig::new("unused").running_write_delay;
    held_reports_writing_running_after(d, parallelism, delay).await
}

/// [`held_reports`] with the scheduler's `running_write_delay` given.
async fn held_reports_writing_running_after(
    d: &Dag,
    parallelism: usize,
    running_write_delay: Duration,
) -> HeldReports {
    let sqlite = SqliteStore::open_in_memory().await.expect("store");
    sqlite.migrate().await.expect("migrate");
    let timed = Arc::new(pave_store::TimedStore::new(Arc::new(sqlite)));
    let store: Arc<dyn Store> = timed.clone();
    store_dag(store.as_ref(), d, Utc::now()).await;
    let clock = Arc::new(ManualClock::new(day(2026, 1, 1)));
    let (ended_tx, ended) = tokio::sync::mpsc::unbounded_channel();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec_clock = clock.clone();
    let executor = NoopExecutor::new(ended_tx)
        .with_clock(move || pave_scheduler::Clock::now(exec_clock.as_ref()))
        .with_capacity(pave_executor::Capacity {
            parallelism,
            cpu_millis: u64::MAX,
            memory_bytes: u64::MAX,
            gpus: Vec::new(),
        });
    let mut cfg = SchedulerConfig::new(std::env::temp_dir().join("pave-sim-logs"));
    cfg.create_scheduled_runs = false;
    cfg.poll_interval = Duration::from_secs(3600);
    cfg.running_write_delay = running_write_delay;
    let s = Scheduler::new(store.clone(), Arc::new(executor), rx, clock, cfg);
    HeldReports {
        timed,
        store,
        s,
        tx,
        ended,
    }
}

fn day(y: i32, m: u32, d: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
        .single()
        .expect("date")
}

/// Airflow's `verify_integrity`: a run gets no instance of a task whose
/// start_date is after (or whose end_date is before) its logical date. A
/// downstream all_success task then waits for it forever and the run
/// deadlocks (failed); one_success and always do not need it; a leaf
/// without an instance does not change the run's state. Recorded from
/// Airflow 3.3.2 in tests/airflow_compat (task_start_date_blocks_downstream,
/// task_end_date_before_logical_date).
#[tokio::test]
async fn a_run_has_no_instance_of_a_task_outside_its_dates() {
    let mut d = Dag::new("dated");
    d.start_date = Some(day(2025, 1, 1));
    let mut future = command("future", &["first"], 0);
    future.start_date = Some(day(2030, 1, 1));
    let mut join = command("join_one_success", &["first", "future"], 0);
    join.trigger_rule = pave_core::TriggerRule::OneSuccess;
    let mut always = command("after_future_always", &["future"], 0);
    always.trigger_rule = pave_core::TriggerRule::Always;
    let mut expired = command("expired", &[], 0);
    expired.end_date = Some(day(2024, 6, 1));
    d.tasks = vec![
        command("first", &[], 0),
        future,
        command("after_future", &["future"], 0),
        join,
        always,
        expired,
    ];
    let (store, mut s) =
        scheduler_for(&d, day(2031, 1, 1), |c| c.create_scheduled_runs = false).await;

    let states = |tis: &[pave_store::TiRecord]| -> Vec<(String, TaskState)> {
        let mut v: Vec<_> = tis
            .iter()
            .map(|t| (t.key.task_id.to_string(), t.state))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let at = |date| TriggerRequest {
        run_id: None,
        logical_date: Some(date),
        conf: serde_json::Value::Null,
    };

    // Logical date 2025-01-01: neither `future` nor `expired` is in the run.
    let run = s
        .trigger(&d.dag_id, at(day(2025, 1, 1)))
        .await
        .expect("trigger");
    settle(&mut s, 10).await;
    let tis = store.run_tis(run.key).await.expect("tis");
    assert_eq!(
        states(&tis),
        [
            ("after_future".to_owned(), TaskState::NoStatus),
            ("after_future_always".to_owned(), TaskState::Success),
            ("first".to_owned(), TaskState::Success),
            ("join_one_success".to_owned(), TaskState::Success),
        ]
    );
    let r = store.get_run(run.key).await.expect("run");
    assert_eq!(r.state, RunState::Failed);

    // On the task's start_date itself it is in the run, and everything runs;
    // `expired` (a leaf) has no instance and the run still succeeds.
    let run = s
        .trigger(&d.dag_id, at(day(2030, 1, 1)))
        .await
        .expect("trigger");
    settle(&mut s, 10).await;
    let tis = store.run_tis(run.key).await.expect("tis");
    assert_eq!(
        states(&tis),
        [
            ("after_future".to_owned(), TaskState::Success),
            ("after_future_always".to_owned(), TaskState::Success),
            ("first".to_owned(), TaskState::Success),
            ("future".to_owned(), TaskState::Success),
            ("join_one_success".to_owned(), TaskState::Success),
        ]
    );
    let r = store.get_run(run.key).await.expect("run");
    assert_eq!(r.state, RunState::Success);

    // Without a logical date every task is in the run (Airflow's filter
    // lets them all through).
    let run = s
        .trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");
    let tis = store.run_tis(run.key).await.expect("tis");
    assert_eq!(tis.len(), d.tasks.len(), "{tis:?}");
}

/// Scheduled runs are filtered the same way: an hourly DAG whose task starts
/// at 02:00 has no instance of it in the 00:00 and 01:00 runs, which
/// succeed without it.
#[tokio::test]
async fn scheduled_runs_before_a_task_start_date_do_without_it() {
    let start = day(2026, 1, 1);
    let mut d = Dag::new("hourly_dated");
    d.schedule = pave_core::Schedule::Cron {
        expr: "0 * * * *".into(),
    };
    d.start_date = Some(start);
    d.catchup = true;
    let mut late = command("late", &[], 0);
    late.start_date = Some(start + chrono::Duration::hours(2));
    d.tasks = vec![command("always", &[], 0), late];
    let (store, mut s) =
        scheduler_for(&d, start + chrono::Duration::minutes(3 * 60 + 30), |_| {}).await;
    settle(&mut s, 20).await;

    let runs = store
        .list_runs(&pave_store::RunFilter::dag("hourly_dated"))
        .await
        .expect("runs");
    let mut seen = Vec::new();
    for r in &runs {
        let mut ids: Vec<String> = store
            .run_tis(r.key)
            .await
            .expect("tis")
            .iter()
            .map(|t| t.key.task_id.to_string())
            .collect();
        ids.sort();
        let hour = r
            .logical_date
            .map(|d| d.format("%H:%M").to_string())
            .unwrap_or_default();
        seen.push((hour, ids.join(","), r.state));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let ok = RunState::Success;
    assert_eq!(
        seen,
        [
            ("00:00".to_owned(), "always".to_owned(), ok),
            ("01:00".to_owned(), "always".to_owned(), ok),
            ("02:00".to_owned(), "always,late".to_owned(), ok),
            ("03:00".to_owned(), "always,late".to_owned(), ok),
        ]
    );
}

/// A run of 100 independent tasks on 10 slots, the attempts' reports handed
/// to the scheduler one at a time (`whole_batches` false: attempts that end
/// one after another) or all those in flight at once (true: a batch that
/// ends together). Returns how often the store read the run's task
/// instances (`run_ti_views`) and the waiting ones (`active_run_tis`).
async fn wide_run_reads(whole_batches: bool) -> (u64, u64) {
    const WIDTH: usize = 100;
    let mut d = Dag::new("wide");
    d.max_active_tasks = Some(10_000);
    d.tasks = (0..WIDTH)
        .map(|i| command(&format!("t{i:03}"), &[], 0))
        .collect();
    let HeldReports {
        timed,
        store,
        mut s,
        tx,
        mut ended,
    } = held_reports(&d, 10).await;
    let run = s
        .trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");
    let before = timed.snapshot();

    let mut finished = false;
    for _ in 0..(WIDTH * 3) {
        let report = s.step().await.expect("step");
        if report.finished_runs.contains(&run.key) {
            finished = true;
            break;
        }
        let mut handed = 0;
        while let Ok(ev) = ended.try_recv() {
            tx.send(ev).expect("scheduler listens");
            handed += 1;
            if !whole_batches {
                break;
            }
        }
        if handed == 0 {
            break;
        }
        s.drain_events().await.expect("events");
    }
    assert!(finished, "the run did not finish");
    let r = store.get_run(run.key).await.expect("run");
    assert_eq!(r.state, RunState::Success);
    let tis = store.run_tis(run.key).await.expect("tis");
    assert_eq!(tis.len(), WIDTH);
    assert!(tis.iter().all(|t| t.state == TaskState::Success), "{tis:?}");

    let after = timed.snapshot();
    let calls = |m: &str| after.get(m).map_or(0, |c| c.0) - before.get(m).map_or(0, |c| c.0);
    (calls("run_ti_views"), calls("active_run_tis"))
}

/// In a wide run, the end of one leaf among many in flight makes no task
/// runnable and cannot end the run, so it is not decided again, and the
/// task instances left waiting are known from the last admission: the
/// store is read a bounded number of times, not once or twice per task
/// instance (the fan-out of 1000 read 1000 task instances per ending).
#[tokio::test]
async fn a_wide_run_is_not_read_again_for_every_leaf_that_ends() {
    let (views, waiting) = wide_run_reads(false).await;
    // Decided when the run starts and when its last attempt ends.
    assert!(views <= 3, "run_ti_views: {views}");
    // The waiting ones read once, at the first step's poll.
    assert!(waiting <= 2, "active_run_tis: {waiting}");
}

/// The attempts of a wide run often end together, a whole batch at once,
/// leaving nothing in flight for a moment; while admission still holds
/// task instances of the run waiting, those ends cannot finish the run
/// either, so the run is not read again for them (ten batches of ten read
/// it eleven times before).
#[tokio::test]
async fn a_wide_run_is_not_read_again_when_a_whole_batch_ends_together() {
    let (views, waiting) = wide_run_reads(true).await;
    assert!(views <= 3, "run_ti_views: {views}");
    assert!(waiting <= 2, "active_run_tis: {waiting}");
}

/// The attempt an executor event is about.
/// Admission reads the pools once per poll, not at every admission; a
/// change made in the store (as the CLI makes it) counts from the next
/// poll, which a poke (what the REST API does after a change) brings on.
#[tokio::test]
async fn pools_are_read_once_per_poll_and_a_poke_sees_a_change() {
    let mut d = Dag::new("pooled");
    d.tasks = (0..4)
        .map(|i| {
            let mut t = command(&format!("p{i}"), &[], 0);
            t.pool = "narrow".into();
            t
        })
        .collect();
    let HeldReports {
        timed,
        store,
        mut s,
        tx,
        mut ended,
    } = held_reports(&d, usize::MAX).await;
    let narrow = |slots: u32| pave_store::PoolRecord {
        name: "narrow".into(),
        slots,
        description: None,
        include_deferred: false,
    };
    store.put_pool(narrow(1)).await.expect("pool");
    s.trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");
    let list_pools = || timed.snapshot().get("list_pools").map_or(0, |c| c.0);
    assert_eq!(s.step().await.expect("step").started, 1);
    let mut end_one = async |s: &mut Scheduler| {
        let ev = ended.try_recv().expect("a report");
        tx.send(ev).expect("scheduler listens");
        s.drain_events().await.expect("events");
    };
    end_one(&mut s).await;
    assert_eq!(s.step().await.expect("step").started, 1);
    assert_eq!(list_pools(), 1, "one read for two admissions");
    // Widened as the CLI does it: no poke, so the pool read at the poll stands.
    store.put_pool(narrow(4)).await.expect("pool");
    end_one(&mut s).await;
    assert_eq!(s.step().await.expect("step").started, 1);
    // p2 runs and holds the one slot the old size had; after a poke the
    // new size lets p3 start beside it.
    s.poke();
    assert_eq!(s.step().await.expect("step").started, 1);
    assert_eq!(list_pools(), 2);
}

fn event_task(ev: &pave_executor::ExecutorEvent) -> String {
    match ev {
        pave_executor::ExecutorEvent::Finished { key, .. }
        | pave_executor::ExecutorEvent::Lost { key, .. }
        | pave_executor::ExecutorEvent::Disrupted { key, .. } => key.task_id.to_string(),
    }
}

/// Admission offers only the head of what waits (in admission order) once
/// nothing is freshly scheduled; the order stays Airflow's: with far more
/// task instances waiting than the head holds, they still start by
/// priority weight, highest first, one after another as room is made.
#[tokio::test]
async fn a_wide_run_starts_what_waits_by_priority_through_the_head() {
    const WIDTH: i64 = 300;
    let mut d = Dag::new("by_priority");
    d.max_active_tasks = Some(10_000);
    d.tasks = (0..WIDTH)
        .map(|i| {
            let mut t = command(&format!("t{i:03}"), &[], 0);
            t.priority_weight = (i * 7) % WIDTH; // not in task id order
            t
        })
        .collect();
    let weight: HashMap<String, i64> = d
        .tasks
        .iter()
        .map(|t| (t.task_id.to_string(), t.priority_weight))
        .collect();
    let HeldReports {
        store,
        mut s,
        tx,
        mut ended,
        ..
    } = held_reports(&d, 3).await;
    let run = s
        .trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");
    // Each step ends the oldest attempt in flight, so one starts per step.
    let mut order = Vec::new();
    let mut held = std::collections::VecDeque::new();
    for _ in 0..(WIDTH * 3) {
        if s.step()
            .await
            .expect("step")
            .finished_runs
            .contains(&run.key)
        {
            break;
        }
        while let Ok(ev) = ended.try_recv() {
            order.push(event_task(&ev));
            held.push_back(ev);
        }
        if let Some(ev) = held.pop_front() {
            tx.send(ev).expect("scheduler listens");
        }
        s.drain_events().await.expect("events");
    }
    assert_eq!(
        store.get_run(run.key).await.expect("run").state,
        RunState::Success
    );
    // Always the heaviest of those still waiting.
    let weights: Vec<i64> = order.iter().map(|t| weight[t]).collect();
    let mut expected: Vec<i64> = (0..WIDTH).collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(weights.len(), expected.len());
    assert_eq!(weights, expected);
}

/// When the head of what waits cannot take the room there is (here every
/// one of them waits for a pool's only slot), admission offers everything
/// that waits: a task instance behind the head, in another pool, starts at
/// once instead of waiting for the pool.
#[tokio::test]
async fn room_the_head_cannot_take_goes_to_what_waits_behind_it() {
    let mut d = Dag::new("behind");
    d.max_active_tasks = Some(10_000);
    d.tasks = (0..100)
        .map(|i| {
            let mut t = command(&format!("p{i:03}"), &[], 0);
            t.pool = "narrow".into();
            t.priority_weight = 10;
            t
        })
        .chain((0..3).map(|i| command(&format!("q{i}"), &[], 0)))
        .collect();
    let HeldReports {
        store,
        mut s,
        tx,
        mut ended,
        ..
    } = held_reports(&d, 3).await;
    store
        .put_pool(pave_store::PoolRecord {
            name: "narrow".into(),
            slots: 1,
            description: None,
            include_deferred: false,
        })
        .await
        .expect("pool");
    let run = s
        .trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");
    // Three executor slots: the pool's one task, then q0 and q1; q2 waits
    // for the executor, behind the 99 that wait for the pool.
    assert_eq!(s.step().await.expect("step").started, 3);
    let mut running: Vec<_> = std::iter::from_fn(|| ended.try_recv().ok()).collect();
    let names: Vec<String> = running.iter().map(event_task).collect();
    assert_eq!(names, ["p000", "q0", "q1"]);
    // q0 ends; p000 still holds the pool.
    let q0 = running.remove(1);
    tx.send(q0).expect("scheduler listens");
    s.drain_events().await.expect("events");
    assert_eq!(s.step().await.expect("step").started, 1);
    let next: Vec<String> = std::iter::from_fn(|| ended.try_recv().ok())
        .map(|ev| event_task(&ev))
        .collect();
    assert_eq!(next, ["q2"]);
    let tis = store.run_tis(run.key).await.expect("tis");
    let p001 = tis
        .iter()
        .find(|t| t.key.task_id.as_str() == "p001")
        .expect("p001");
    assert_eq!(p001.state, TaskState::Scheduled);
    assert!(
        p001.reason
            .as_deref()
            .unwrap_or_default()
            .contains("narrow"),
        "{:?}",
        p001.reason
    );
}

fn python_task(id: &str, upstream: &[&str]) -> Task {
    let mut t = Task::new(
        id,
        TaskKind::Python {
            callable: id.to_owned(),
        },
    );
    t.upstream = upstream.iter().map(|u| (*u).into()).collect();
    t
}

/// A Python task's return value can come with its end (a zygote's result
/// file, `AttemptResult::xcoms`) instead of through the execution API: it
/// is stored with the end (with the keys of `multiple_outputs`), steers a
/// branch, feeds a mapped task, and is checked as a push is (the limit, a
/// key the API would take).
#[tokio::test]
async fn a_return_value_that_comes_with_the_end_is_stored_and_read_with_it() {
    let now = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let mut d = Dag::new("ended");
    d.fileloc = Some("/dags/ended.py".into());
    let mut choose = python_task("choose", &[]);
    choose.flow = pave_core::model::Flow::Branch;
    let mut each = python_task("each", &[]);
    each.mapping = Some(Mapping::Expand {
        args: [(
            "x".to_owned(),
            MapSource::Xcom(pave_core::model::XcomRef {
                task_id: "src".into(),
                key: "return_value".into(),
            }),
        )]
        .into(),
    });
    d.tasks = vec![
        choose,
        python_task("left", &["choose"]),
        python_task("right", &["choose"]),
        python_task("src", &[]),
        each,
        python_task("plain", &[]),
        python_task("big", &[]),
        python_task("stray", &[]),
    ];
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    store.migrate().await.expect("migrate");
    store_dag(store.as_ref(), &d, now).await;
    let clock = Arc::new(ManualClock::new(now));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec_clock = clock.clone();
    let executor = NoopExecutor::new(tx)
        .with_clock(move || pave_scheduler::Clock::now(exec_clock.as_ref()))
        .with_outcome(|key, now| {
            let value = match key.task_id.as_str() {
                "choose" => Some(serde_json::json!(["left"])),
                "src" => Some(serde_json::json!([10, 20, 30])),
                "plain" => Some(serde_json::json!({"loss": 0.25})),
                "big" => Some(serde_json::json!("x".repeat(200))),
                _ => None,
            };
            let mut result = AttemptResult::success_at(now, None);
            result.xcoms = value.map(|v| [("return_value".to_owned(), v)].into());
            if key.task_id.as_str() == "plain" {
                // multiple_outputs: each key of the value, and the value.
                if let Some(x) = result.xcoms.as_mut() {
                    x.insert("loss".to_owned(), serde_json::json!(0.25));
                }
            }
            if key.task_id.as_str() == "stray" {
                result.xcoms = Some([("a/b".to_owned(), serde_json::json!(1))].into());
            }
            NoopOutcome::Finished(result)
        });
    let mut cfg = SchedulerConfig::new(std::env::temp_dir().join("pave-sim-logs"));
    cfg.poll_interval = Duration::ZERO;
    cfg.xcom_max_bytes = 100;
    cfg.python = Some(pave_scheduler::PythonTasks {
        python: "python3".into(),
        sdk_path: "/nonexistent".into(),
        api_url: "http://127.0.0.1:9/execution/v1".into(),
        issue_token: Arc::new(|_, _| "token".to_owned()),
        zygote_dir: None,
    });
    let mut s = Scheduler::new(store.clone(), Arc::new(executor), rx, clock, cfg);
    let run = s
        .trigger(&d.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");
    settle(&mut s, 20).await;
    let tis = store.run_tis(run.key).await.expect("tis");
    let state = |id: &str| -> Vec<TaskState> {
        tis.iter()
            .filter(|t| t.key.task_id.as_str() == id)
            .map(|t| t.state)
            .collect()
    };
    assert_eq!(state("left"), [TaskState::Success]);
    assert_eq!(state("right"), [TaskState::Skipped]);
    assert_eq!(
        state("each"),
        [TaskState::Success; 3],
        "expanded over src's value"
    );
    assert_eq!(state("plain"), [TaskState::Success]);
    let plain = tis
        .iter()
        .find(|t| t.key.task_id.as_str() == "plain")
        .expect("plain");
    let stored = store
        .get_xcom(&plain.key, "return_value")
        .await
        .expect("plain's value stored with its end");
    assert_eq!(stored.value, serde_json::json!({"loss": 0.25}));
    let key = store
        .get_xcom(&plain.key, "loss")
        .await
        .expect("a key of plain's value stored with its end");
    assert_eq!(key.value, serde_json::json!(0.25));
    for (id, says) in [
        ("big", "over the limit of 100 bytes"),
        ("stray", "contains `/`"),
    ] {
        let ti = tis
            .iter()
            .find(|t| t.key.task_id.as_str() == id)
            .expect("task");
        assert_eq!(ti.state, TaskState::Failed, "{id}");
        assert!(
            ti.reason.as_deref().is_some_and(|r| r.contains(says)),
            "{id}: {:?}",
            ti.reason
        );
        assert!(
            store.get_xcom(&ti.key, "return_value").await.is_err(),
            "{id}: a refused value was stored"
        );
    }
}
