//! Conformance checks for task instances, batches, mapping and attempt history.

use super::*;
use pave_core::run::FlowResult;
use pave_core::{MapIndex, TaskState, TryNumber};
use pave_store::{
    Change, ChangeBatch, Field, NewXcom, PoolRecord, RunChange, TiChange, TiKey, TryRecord,
};
use std::time::Duration;

/// The changes the scheduler makes to queue an attempt, and to start it.
fn queue(key: &TiKey, try_number: u32, at: DateTime<Utc>) -> [Change; 2] {
    [
        TiChange::new(key.clone(), TaskState::Queued)
            .expect(TaskState::Scheduled)
            .try_number(TryNumber(try_number))
            .queued_at(at)
            .into(),
        TryRecord::new(key.clone(), TryNumber(try_number), TaskState::Queued).into(),
    ]
}

fn schedule(key: &TiKey) -> Change {
    TiChange::new(key.clone(), TaskState::Scheduled)
        .expect(TaskState::NoStatus)
        .into()
}

pub async fn ti_transition_sets_fields(h: &dyn Harness) {
    let s = h.open().await;
    let run = dag_with_run(&*s, "etl", "r1", &["a"]).await;
    let key = TiKey::unmapped(run, "a");
    let mut batch = ChangeBatch::new(t(10));
    batch.push(schedule(&key));
    batch.changes.extend(queue(&key, 1, t(10)));
    s.apply(batch).await.unwrap();

    let running = TiChange::new(key.clone(), TaskState::Running)
        .expect_attempt(TaskState::Queued, TryNumber(1))
        .start_date(t(11))
        .hostname("node-1")
        .executor_handle(json!({"pid": 42}))
        .reason("started");
    s.apply(ChangeBatch::one(t(11), running)).await.unwrap();
    let ti = s.get_ti(&key).await.unwrap();
    assert_eq!(ti.state, TaskState::Running);
    assert_eq!(ti.try_number, TryNumber(1));
    assert_eq!(ti.queued_at, Some(t(10)));
    assert_eq!(ti.start_date, Some(t(11)));
    assert_eq!(ti.hostname.as_deref(), Some("node-1"));
    assert_eq!(ti.executor_handle, Some(json!({"pid": 42})));
    assert_eq!(ti.reason.as_deref(), Some("started"));
    assert_eq!(ti.duration, None);
    assert_eq!(ti.updated_at, t(11));

    // Fail with a retry: dates and a retry time; the handle is cleared.
    let mut retry = TiChange::new(key.clone(), TaskState::UpForRetry)
        .expect_attempt(TaskState::Running, TryNumber(1))
        .end_date(t(14) + chrono::Duration::milliseconds(1500))
        .next_retry_at(t(300))
        .flow_result(FlowResult::Branch {
            follow: vec!["b".into()],
        })
        .reason("exit code 1");
    retry.executor_handle = Field::Clear;
    s.apply(ChangeBatch::one(t(15), retry)).await.unwrap();
    let ti = s.get_ti(&key).await.unwrap();
    assert_eq!(ti.state, TaskState::UpForRetry);
    assert_eq!(ti.executor_handle, None);
    assert_eq!(ti.hostname.as_deref(), Some("node-1"));
    assert_eq!(ti.next_retry_at, Some(t(300)));
    assert_eq!(ti.duration, Some(Duration::from_millis(4500)));
    assert_eq!(
        ti.flow_result,
        Some(FlowResult::Branch {
            follow: vec!["b".into()]
        })
    );

    // Timestamps keep microseconds.
    let precise = t(20) + chrono::Duration::microseconds(123_456);
    s.apply(ChangeBatch::one(
        t(20),
        TiChange::new(key.clone(), TaskState::Scheduled).queued_at(precise),
    ))
    .await
    .unwrap();
    assert_eq!(s.get_ti(&key).await.unwrap().queued_at, Some(precise));
}

pub async fn ti_compare_and_set_prevents_double_completion(h: &dyn Harness) {
    let s = h.open().await;
    let run = dag_with_run(&*s, "etl", "r1", &["a"]).await;
    let key = TiKey::unmapped(run, "a");
    let mut batch = ChangeBatch::new(t(10));
    batch.push(schedule(&key));
    batch.changes.extend(queue(&key, 1, t(10)));
    batch.push(
        TiChange::new(key.clone(), TaskState::Running)
            .expect_attempt(TaskState::Queued, TryNumber(1)),
    );
    s.apply(batch).await.unwrap();

    let done = |state| {
        TiChange::new(key.clone(), state)
            .expect_attempt(TaskState::Running, TryNumber(1))
            .end_date(t(20))
    };
    s.apply(ChangeBatch::one(t(20), done(TaskState::Success)))
        .await
        .unwrap();
    // A second report of the same attempt (say, from a restarted executor).
    let e = s
        .apply(ChangeBatch::one(t(21), done(TaskState::Failed)))
        .await
        .unwrap_err();
    assert_err(
        e,
        "conflict",
        "expected running (try 1) to move it to failed, found success (try 1)",
    );
    assert_eq!(s.get_ti(&key).await.unwrap().state, TaskState::Success);

    // A report about an older attempt is refused even if the state matches.
    s.apply(ChangeBatch::one(
        t(30),
        TiChange::new(key.clone(), TaskState::Running).try_number(TryNumber(2)),
    ))
    .await
    .unwrap();
    let e = s
        .apply(ChangeBatch::one(t(31), done(TaskState::Success)))
        .await
        .unwrap_err();
    assert_err(e, "conflict", "found running (try 2)");

    // A change without expectation always applies.
    s.apply(ChangeBatch::one(
        t(32),
        TiChange::new(key.clone(), TaskState::Failed),
    ))
    .await
    .unwrap();
    assert_eq!(s.get_ti(&key).await.unwrap().state, TaskState::Failed);
}

pub async fn failed_batch_changes_nothing(h: &dyn Harness) {
    let s = h.open().await;
    let run = dag_with_run(&*s, "etl", "r1", &["a", "b"]).await;
    // The same spec again: hands back the run's version.
    let v = s.upsert_dag(parsed("etl", spec(0), t(0))).await.unwrap();
    let a = TiKey::unmapped(run, "a");
    let b = TiKey::unmapped(run, "b");

    let mut batch = ChangeBatch::new(t(10));
    batch.push(schedule(&a));
    batch.changes.extend(queue(&a, 1, t(10)));
    batch.push(NewXcom {
        ti: a.clone(),
        key: "return_value".into(),
        value: json!(1),
    });
    batch.push(RunChange::new(run, RunState::Running));
    batch.push(new_run(&v, "r2", &["a"], t(10)));
    // Fails: b is in state none, not running.
    batch.push(TiChange::new(b.clone(), TaskState::Success).expect(TaskState::Running));
    let e = s.apply(batch).await.unwrap_err();
    assert_err(e, "conflict", "task instance `b`");

    let ti = s.get_ti(&a).await.unwrap();
    assert_eq!(
        (ti.state, ti.try_number),
        (TaskState::NoStatus, TryNumber(0))
    );
    assert!(s.list_tries(&a).await.unwrap().is_empty());
    assert_err(
        s.get_xcom(&a, "return_value").await.unwrap_err(),
        "not_found",
        "xcom",
    );
    assert_eq!(s.get_run(run).await.unwrap().state, RunState::Queued);
    let e = s
        .find_run(&DagId::new("etl"), &RunId::new("r2"))
        .await
        .unwrap_err();
    assert_err(e, "not_found", "run `r2` of dag `etl`");

    // The store is still usable after the rollback.
    s.apply(ChangeBatch::one(t(11), schedule(&b)))
        .await
        .unwrap();
}

pub async fn queue_many_with_try_rows_in_one_batch(h: &dyn Harness) {
    let s = h.open().await;
    let names: Vec<String> = (0..50).map(|i| format!("t{i:02}")).collect();
    let tasks: Vec<&str> = names.iter().map(String::as_str).collect();
    let run = dag_with_run(&*s, "wide", "r1", &tasks).await;

    let mut scheduling = ChangeBatch::new(t(5));
    for name in &names {
        scheduling.push(schedule(&TiKey::unmapped(run, name.as_str())));
    }
    s.apply(scheduling).await.unwrap();

    let mut queueing = ChangeBatch::new(t(10));
    for name in &names {
        queueing
            .changes
            .extend(queue(&TiKey::unmapped(run, name.as_str()), 1, t(10)));
    }
    assert_eq!(queueing.len(), 100);
    s.apply(queueing).await.unwrap();

    let tis = s.run_tis(run).await.unwrap();
    assert!(
        tis.iter()
            .all(|ti| ti.state == TaskState::Queued && ti.try_number == TryNumber(1))
    );

    // One stale expectation in the middle of 50 fails the whole batch and is named.
    let mut starting = ChangeBatch::new(t(20));
    for (i, name) in names.iter().enumerate() {
        let expected = if i == 31 {
            TaskState::Scheduled
        } else {
            TaskState::Queued
        };
        starting.push(
            TiChange::new(TiKey::unmapped(run, name.as_str()), TaskState::Running)
                .expect_attempt(expected, TryNumber(1))
                .start_date(t(20)),
        );
    }
    let e = s.apply(starting).await.unwrap_err();
    assert_err(e, "conflict", "task instance `t31` (map index -1)");
    let tis = s.run_tis(run).await.unwrap();
    assert!(
        tis.iter()
            .all(|ti| ti.state == TaskState::Queued && ti.start_date.is_none())
    );
    let tries = s.list_tries(&TiKey::unmapped(run, "t07")).await.unwrap();
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0].state, TaskState::Queued);
}

pub async fn mapped_expansion_replaces_placeholder(h: &dyn Harness) {
    let s = h.open().await;
    let v = s.upsert_dag(parsed("map", spec(0), t(0))).await.unwrap();
    let mut run = new_run(&v, "r1", &["src", "work"], t(1));
    run.tasks[1].pool = "gpu".into();
    run.tasks[1].pool_slots = 2;
    run.tasks[1].priority_weight = 5;
    run.tasks[1].max_tries = 3;
    let run = s.create_run(t(1), run).await.unwrap();
    let work = TaskId::new("work");
    let expand = |count| Change::ExpandMapped {
        run,
        task_id: work.clone(),
        count,
    };

    // Expand and schedule instance 1 in the same batch.
    let mut batch = ChangeBatch::new(t(10));
    batch.push(expand(3));
    batch.push(schedule(&TiKey::new(run, "work", MapIndex(1))));
    s.apply(batch).await.unwrap();

    let tis = s.run_tis(run).await.unwrap();
    let work_tis: Vec<_> = tis.iter().filter(|ti| ti.key.task_id == work).collect();
    let indexes: Vec<_> = work_tis.iter().map(|ti| ti.key.map_index.0).collect();
    assert_eq!(indexes, [0, 1, 2]);
    for ti in &work_tis {
        assert_eq!(
            (
                ti.pool.as_str(),
                ti.pool_slots,
                ti.priority_weight,
                ti.max_tries
            ),
            ("gpu", 2, 5, 3)
        );
    }
    assert_eq!(work_tis[1].state, TaskState::Scheduled);
    assert_eq!(work_tis[0].state, TaskState::NoStatus);
    assert_err(
        s.get_ti(&TiKey::unmapped(run, "work")).await.unwrap_err(),
        "not_found",
        "task instance `work` (map index -1)",
    );

    let e = s
        .apply(ChangeBatch::one(t(11), expand(2)))
        .await
        .unwrap_err();
    assert_err(e, "conflict", "already expanded into 3 instances");
    let e = s
        .apply(ChangeBatch::one(
            t(11),
            Change::ExpandMapped {
                run,
                task_id: TaskId::new("src"),
                count: 0,
            },
        ))
        .await
        .unwrap_err();
    assert_err(e, "invalid", "0 instances");
    let e = s
        .apply(ChangeBatch::one(
            t(11),
            Change::ExpandMapped {
                run,
                task_id: TaskId::new("ghost"),
                count: 2,
            },
        ))
        .await
        .unwrap_err();
    assert_err(e, "not_found", "task instance `ghost`");
}

pub async fn try_history_upserts_and_keeps_attempts(h: &dyn Harness) {
    let s = h.open().await;
    let run = dag_with_run(&*s, "etl", "r1", &["a"]).await;
    let key = TiKey::unmapped(run, "a");

    let mut queued = TryRecord::new(key.clone(), TryNumber(1), TaskState::Queued);
    queued.hostname = Some("node-1".into());
    queued.log_path = Some("logs/etl/r1/a/1.log".into());
    s.apply(ChangeBatch::one(t(10), queued)).await.unwrap();

    let mut ended = TryRecord::new(key.clone(), TryNumber(1), TaskState::Failed);
    ended.start_date = Some(t(11));
    ended.end_date = Some(t(19));
    ended.exit_code = Some(1);
    ended.peak_rss_kb = Some(204_800);
    ended.executor_handle = Some(json!({"pod": "etl-a-1"}));
    ended.reason = Some("exit code 1".into());
    s.apply(ChangeBatch::one(t(19), ended)).await.unwrap();

    let mut second = TryRecord::new(key.clone(), TryNumber(2), TaskState::Success);
    second.exit_code = Some(0);
    s.apply(ChangeBatch::one(t(30), second.clone()))
        .await
        .unwrap();

    let tries = s.list_tries(&key).await.unwrap();
    assert_eq!(tries.len(), 2);
    let first = &tries[0];
    assert_eq!(first.try_number, TryNumber(1));
    assert_eq!(first.state, TaskState::Failed);
    // Fields given at queue time survive the completion.
    assert_eq!(first.hostname.as_deref(), Some("node-1"));
    assert_eq!(first.log_path.as_deref(), Some("logs/etl/r1/a/1.log"));
    assert_eq!(
        (first.start_date, first.end_date),
        (Some(t(11)), Some(t(19)))
    );
    assert_eq!(
        (first.exit_code, first.peak_rss_kb),
        (Some(1), Some(204_800))
    );
    assert_eq!(first.executor_handle, Some(json!({"pod": "etl-a-1"})));
    assert_eq!(tries[1], second);

    // Expanding or changing the task instance never touches its history.
    s.apply(ChangeBatch::one(
        t(40),
        TiChange::new(key.clone(), TaskState::NoStatus),
    ))
    .await
    .unwrap();
    assert_eq!(s.list_tries(&key).await.unwrap().len(), 2);

    let e = s
        .apply(ChangeBatch::one(
            t(50),
            TryRecord::new(
                TiKey::unmapped(RunKey(777), "a"),
                TryNumber(1),
                TaskState::Queued,
            ),
        ))
        .await
        .unwrap_err();
    assert_err(e, "not_found", "dag run #777");
}

pub async fn active_run_tis_and_occupancy(h: &dyn Harness) {
    let s = h.open().await;
    s.put_pool(PoolRecord {
        name: "gpu".into(),
        slots: 4,
        description: None,
        include_deferred: true,
    })
    .await
    .unwrap();
    let v = s.upsert_dag(parsed("etl", spec(0), t(0))).await.unwrap();
    let mut r = new_run(&v, "r1", &["a", "b", "c", "d"], t(1));
    r.tasks[2].pool = "gpu".into();
    r.tasks[2].pool_slots = 2;
    r.tasks[3].pool = "gpu".into();
    let r1 = s.create_run(t(1), r).await.unwrap();
    let r2 = s
        .create_run(t(2), new_run(&v, "r2", &["a", "b"], t(2)))
        .await
        .unwrap();
    let done = s
        .create_run(t(3), new_run(&v, "r3", &["a"], t(3)))
        .await
        .unwrap();

    let set = |run, task: &str, state| TiChange::new(TiKey::unmapped(run, task), state);
    let mut batch = ChangeBatch::new(t(10));
    batch.push(set(r1, "a", TaskState::Running));
    batch.push(set(r1, "b", TaskState::Queued));
    batch.push(set(r1, "c", TaskState::Running));
    batch.push(set(r1, "d", TaskState::Deferred));
    batch.push(set(r2, "a", TaskState::Running));
    batch.push(set(r2, "b", TaskState::Scheduled));
    // A run that ended while its task still runs: the slot is still taken.
    batch.push(set(done, "a", TaskState::Running));
    batch.push(RunChange::new(done, RunState::Failed));
    s.apply(batch).await.unwrap();

    let active = s
        .active_run_tis(&[TaskState::Queued, TaskState::Running, TaskState::Scheduled])
        .await
        .unwrap();
    let got: Vec<_> = active
        .iter()
        .map(|ti| (ti.run_id.as_str(), ti.key.task_id.as_str(), ti.state))
        .collect();
    assert_eq!(
        got,
        [
            ("r1", "a", TaskState::Running),
            ("r1", "b", TaskState::Queued),
            ("r1", "c", TaskState::Running),
            ("r2", "a", TaskState::Running),
            ("r2", "b", TaskState::Scheduled),
        ]
    );
    assert!(s.active_run_tis(&[]).await.unwrap().is_empty());

    let occ = s.occupancy().await.unwrap();
    let default = occ.pools["default_pool"];
    assert_eq!((default.queued_slots, default.running_slots), (1, 3));
    let gpu = occ.pools["gpu"];
    assert_eq!((gpu.running_slots, gpu.deferred_slots), (2, 1));
    assert_eq!(gpu.occupied(true), 3);
    assert_eq!(gpu.occupied(false), 2);
    assert_eq!(occ.dags[&DagId::new("etl")], 5);
    assert_eq!(occ.tasks[&(DagId::new("etl"), TaskId::new("a"))], 3);
    assert_eq!(occ.tasks[&(DagId::new("etl"), TaskId::new("c"))], 1);
    assert!(
        !occ.tasks
            .contains_key(&(DagId::new("etl"), TaskId::new("d")))
    );
}

pub async fn concurrent_reports_complete_once(h: &dyn Harness) {
    let s = h.open().await;
    let names: Vec<String> = (0..20).map(|i| format!("t{i:02}")).collect();
    let tasks: Vec<&str> = names.iter().map(String::as_str).collect();
    let run = dag_with_run(&*s, "etl", "r1", &tasks).await;
    let mut start = ChangeBatch::new(t(10));
    for name in &names {
        start.push(
            TiChange::new(TiKey::unmapped(run, name.as_str()), TaskState::Running)
                .try_number(TryNumber(1)),
        );
    }
    s.apply(start).await.unwrap();

    // Every attempt is reported twice, from two writers racing each other.
    let report = |state| {
        let mut batch = ChangeBatch::new(t(20));
        for name in &names {
            batch.push(
                TiChange::new(TiKey::unmapped(run, name.as_str()), state)
                    .expect_attempt(TaskState::Running, TryNumber(1)),
            );
        }
        batch
    };
    let mut handles = Vec::new();
    for state in [TaskState::Success, TaskState::Failed] {
        for name in &names {
            let s = s.clone();
            let one = ChangeBatch::one(
                t(20),
                TiChange::new(TiKey::unmapped(run, name.as_str()), state)
                    .expect_attempt(TaskState::Running, TryNumber(1)),
            );
            handles.push(tokio::spawn(async move { s.apply(one).await }));
        }
    }
    let mut applied = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => applied += 1,
            // The loser of each race sees the winner's state, never a lock error.
            Err(e) => assert_err(e, "conflict", "expected running (try 1)"),
        }
    }
    assert_eq!(applied, names.len(), "each attempt completes exactly once");
    let tis = s.run_tis(run).await.unwrap();
    assert!(tis.iter().all(|ti| ti.state.is_finished()));
    // A whole batch of late duplicates is refused.
    let e = s.apply(report(TaskState::Success)).await.unwrap_err();
    assert_err(e, "conflict", "expected running (try 1)");
}

/// `run_ti_views` is a lighter read of exactly what `run_tis` returns.
pub async fn run_ti_views_match_run_tis(h: &dyn Harness) {
    let s = h.open().await;
    let v = s.upsert_dag(parsed("views", spec(0), t(0))).await.unwrap();
    let run = new_run(&v, "r1", &["a", "b", "work", "z"], t(1));
    let run = s.create_run(t(1), run).await.unwrap();
    let (a, b) = (TiKey::unmapped(run, "a"), TiKey::unmapped(run, "b"));
    let mut batch = ChangeBatch::new(t(10));
    batch.push(Change::ExpandMapped {
        run,
        task_id: TaskId::new("work"),
        count: 3,
    });
    batch.push(schedule(&a));
    batch.push(schedule(&b));
    batch.changes.extend(queue(&a, 1, t(10)));
    batch.changes.extend(queue(&b, 1, t(10)));
    s.apply(batch).await.unwrap();
    let mut batch = ChangeBatch::new(t(20));
    batch.push(
        TiChange::new(a.clone(), TaskState::Success)
            .expect_attempt(TaskState::Queued, TryNumber(1))
            .flow_result(FlowResult::Branch {
                follow: vec!["z".into()],
            }),
    );
    batch.push(
        TiChange::new(b.clone(), TaskState::UpForRetry)
            .expect_attempt(TaskState::Queued, TryNumber(1))
            .next_retry_at(t(50)),
    );
    s.apply(batch).await.unwrap();

    let views = s.run_ti_views(run).await.unwrap();
    let expected: Vec<_> = s
        .run_tis(run)
        .await
        .unwrap()
        .into_iter()
        .map(|r| pave_core::run::TiView {
            task_id: r.key.task_id,
            map_index: r.key.map_index,
            state: r.state,
            try_number: r.try_number.0,
            next_retry_at: r.next_retry_at,
            flow_result: r.flow_result,
        })
        .collect();
    assert_eq!(views, expected);
    assert_eq!(views.len(), 6);
    assert_eq!(
        views[0].flow_result,
        Some(FlowResult::Branch {
            follow: vec!["z".into()]
        })
    );
    assert_eq!(views[1].next_retry_at, Some(t(50)));

    let ghost = RunKey(run.0 + 1000);
    assert_err(
        s.run_ti_views(ghost).await.unwrap_err(),
        "not_found",
        &ghost.to_string(),
    );
}

pub async fn runs_tis_reads_several_runs_at_once(h: &dyn Harness) {
    let s = h.open().await;
    let v = s.upsert_dag(parsed("grid", spec(0), t(0))).await.unwrap();
    let r1 = s
        .create_run(t(1), new_run(&v, "r1", &["b", "a"], t(1)))
        .await
        .unwrap();
    let r2 = s
        .create_run(t(2), new_run(&v, "r2", &["b", "a"], t(2)))
        .await
        .unwrap();
    let mut expected = s.run_tis(r2).await.unwrap();
    expected.extend(s.run_tis(r1).await.unwrap());
    expected.sort_by_key(|ti| (ti.key.run.0, ti.key.task_id.to_string(), ti.key.map_index.0));
    // Order of the request does not matter; an unknown run is left out.
    let got = s.runs_tis(&[r2, RunKey(9_999), r1]).await.unwrap();
    assert_eq!(got, expected);
    assert_eq!(got.len(), 4);
    assert!(s.runs_tis(&[]).await.unwrap().is_empty());
}
