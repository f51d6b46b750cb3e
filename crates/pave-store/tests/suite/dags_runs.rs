//! Conformance checks for migrations, DAGs, versions and runs.

use super::*;
use pave_core::{MapIndex, TaskState, TryNumber};
use pave_store::{ChangeBatch, DataInterval, RunChange, RunFilter, TiKey};

pub async fn migrations_are_idempotent(h: &dyn Harness) {
    let s = h.open().await;
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    let default = s.get_pool("default_pool").await.unwrap();
    assert_eq!(default.slots, 128);
    assert_eq!(s.list_pools().await.unwrap().len(), 1);
}

pub async fn dag_upsert_deduplicates_versions(h: &dyn Harness) {
    let s = h.open().await;
    let first = s.upsert_dag(parsed("etl", spec(1), t(0))).await.unwrap();
    assert!(first.is_new_version);
    assert_eq!(first.version.version_number, 1);
    assert_eq!(first.version.spec_hash.len(), 64);

    // The same spec again: a no-op that returns the stored version.
    let again = s.upsert_dag(parsed("etl", spec(1), t(10))).await.unwrap();
    assert!(!again.is_new_version);
    assert_eq!(again.version.id, first.version.id);
    assert_eq!(again.version.created_at, t(0));

    // A changed spec: version 2, and the DAG points at it.
    let second = s.upsert_dag(parsed("etl", spec(2), t(20))).await.unwrap();
    assert!(second.is_new_version);
    assert_eq!(second.version.version_number, 2);
    assert_ne!(second.version.spec_hash, first.version.spec_hash);

    // Going back to the first spec is a new version too (it differs from the latest).
    let third = s.upsert_dag(parsed("etl", spec(1), t(30))).await.unwrap();
    assert_eq!(third.version.version_number, 3);
    assert_eq!(third.version.spec_hash, first.version.spec_hash);

    let dag = s.get_dag(&DagId::new("etl")).await.unwrap();
    assert_eq!(dag.latest_version, Some(third.version.id));
    assert_eq!(dag.last_parsed_at, Some(t(30)));
    assert_eq!(dag.created_at, t(0));
    assert_eq!(dag.fileloc.as_deref(), Some("/dags/etl.py"));

    let v1 = s.get_dag_version(first.version.id).await.unwrap();
    assert_eq!(v1, first.version);
    let v2 = s.get_dag_version(second.version.id).await.unwrap();
    assert_eq!(v2.spec, spec(2));

    // Versions are numbered per DAG.
    let other = s.upsert_dag(parsed("other", spec(1), t(0))).await.unwrap();
    assert_eq!(other.version.version_number, 1);
}

pub async fn dag_pause_and_listing(h: &dyn Harness) {
    let s = h.open().await;
    let mut p = parsed("b_dag", spec(1), t(0));
    p.paused_at_creation = true;
    s.upsert_dag(p).await.unwrap();
    s.upsert_dag(parsed("a_dag", spec(1), t(0))).await.unwrap();

    let dags = s.list_dags().await.unwrap();
    let ids: Vec<_> = dags.iter().map(|d| d.dag_id.as_str()).collect();
    assert_eq!(ids, ["a_dag", "b_dag"]);
    assert!(!dags[0].is_paused);
    assert!(dags[1].is_paused);

    // A re-parse does not change the paused flag.
    s.upsert_dag(parsed("b_dag", spec(2), t(5))).await.unwrap();
    assert!(s.get_dag(&DagId::new("b_dag")).await.unwrap().is_paused);

    s.set_dag_paused(&DagId::new("b_dag"), false).await.unwrap();
    assert!(!s.get_dag(&DagId::new("b_dag")).await.unwrap().is_paused);
    let e = s
        .set_dag_paused(&DagId::new("nope"), true)
        .await
        .unwrap_err();
    assert_err(e, "not_found", "dag `nope`");
}

pub async fn run_creation_makes_task_instances(h: &dyn Harness) {
    let s = h.open().await;
    let v = s.upsert_dag(parsed("etl", spec(0), t(0))).await.unwrap();
    let mut run = new_run(&v, "scheduled__1", &["extract", "transform", "load"], t(5));
    run.run_type = RunType::Scheduled;
    run.logical_date = Some(t(3));
    run.data_interval = Some(DataInterval {
        start: t(2),
        end: t(3),
    });
    run.tasks[1].pool_slots = 3;
    run.tasks[1].priority_weight = 7;
    let key = s.create_run(t(6), run).await.unwrap();

    let r = s.get_run(key).await.unwrap();
    assert_eq!(r.key, key);
    assert_eq!(r.dag_id.as_str(), "etl");
    assert_eq!(r.run_id.as_str(), "scheduled__1");
    assert_eq!(r.dag_version_id, v.version.id);
    assert_eq!(r.state, RunState::Queued);
    assert_eq!(r.run_type, RunType::Scheduled);
    assert_eq!(r.logical_date, Some(t(3)));
    assert_eq!(
        r.data_interval.map(|d| (d.start, d.end)),
        Some((t(2), t(3)))
    );
    assert_eq!(r.run_after, t(5));
    assert_eq!(r.conf, json!({"k": "scheduled__1"}));
    assert_eq!(r.queued_at, Some(t(6)));
    assert_eq!(r.start_date, None);
    assert_eq!(r.created_at, t(6));
    assert_eq!(s.find_run(&r.dag_id, &r.run_id).await.unwrap(), r);

    let tis = s.run_tis(key).await.unwrap();
    let ids: Vec<_> = tis.iter().map(|ti| ti.key.task_id.as_str()).collect();
    assert_eq!(ids, ["extract", "load", "transform"]);
    for ti in &tis {
        assert_eq!(ti.key.map_index, MapIndex::UNMAPPED);
        assert_eq!(ti.state, TaskState::NoStatus);
        assert_eq!(ti.try_number, TryNumber(0));
        assert_eq!(ti.max_tries, 2);
        assert_eq!(ti.run_id.as_str(), "scheduled__1");
        assert_eq!(ti.dag_id.as_str(), "etl");
        assert_eq!(ti.updated_at, t(6));
    }
    assert_eq!(tis[2].pool_slots, 3);
    assert_eq!(tis[2].priority_weight, 7);

    // A run stays pinned to its version when the DAG changes.
    s.upsert_dag(parsed("etl", spec(9), t(7))).await.unwrap();
    assert_eq!(s.get_run(key).await.unwrap().dag_version_id, v.version.id);
}

pub async fn run_creation_rejects_bad_input(h: &dyn Harness) {
    let s = h.open().await;
    let v = s.upsert_dag(parsed("etl", spec(0), t(0))).await.unwrap();
    let other = s.upsert_dag(parsed("other", spec(0), t(0))).await.unwrap();
    let mut first = new_run(&v, "r1", &["a"], t(1));
    first.logical_date = Some(t(1));
    s.create_run(t(1), first.clone()).await.unwrap();

    let e = s.create_run(t(2), first.clone()).await.unwrap_err();
    assert_err(e, "conflict", "run `r1` of dag `etl` already exists");

    let mut same_date = new_run(&v, "r2", &["a"], t(1));
    same_date.logical_date = Some(t(1));
    let e = s.create_run(t(2), same_date).await.unwrap_err();
    assert_err(e, "conflict", "logical date");

    let mut wrong_dag = new_run(&v, "r3", &["a"], t(1));
    wrong_dag.dag_version_id = other.version.id;
    let e = s.create_run(t(2), wrong_dag).await.unwrap_err();
    assert_err(e, "invalid", "belongs to dag `other`");

    let mut no_version = new_run(&v, "r4", &["a"], t(1));
    no_version.dag_version_id = DagVersionId(9999);
    let e = s.create_run(t(2), no_version).await.unwrap_err();
    assert_err(e, "not_found", "dag version #9999");

    let e = s
        .create_run(t(2), new_run(&v, "r5", &["a", "b", "a"], t(1)))
        .await
        .unwrap_err();
    assert_err(e, "invalid", "task `a` listed twice");

    // None of the failed creations left a run behind.
    assert_eq!(s.list_runs(&RunFilter::default()).await.unwrap().len(), 1);
}

pub async fn run_listing_filters_and_orders(h: &dyn Harness) {
    let s = h.open().await;
    let a = s.upsert_dag(parsed("a", spec(0), t(0))).await.unwrap();
    let b = s.upsert_dag(parsed("b", spec(0), t(0))).await.unwrap();
    let a1 = s
        .create_run(t(1), new_run(&a, "a1", &["x"], t(10)))
        .await
        .unwrap();
    let a2 = s
        .create_run(t(2), new_run(&a, "a2", &["x"], t(30)))
        .await
        .unwrap();
    let b1 = s
        .create_run(t(3), new_run(&b, "b1", &["x"], t(20)))
        .await
        .unwrap();
    s.apply(ChangeBatch::one(
        t(4),
        RunChange::new(a1, RunState::Running),
    ))
    .await
    .unwrap();
    s.apply(ChangeBatch::one(
        t(5),
        RunChange::new(a2, RunState::Success),
    ))
    .await
    .unwrap();

    let keys =
        |runs: Vec<pave_store::RunRecord>| runs.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list_runs(&RunFilter::default()).await.unwrap()),
        [a2, b1, a1]
    );
    assert_eq!(
        keys(s.list_runs(&RunFilter::dag("a")).await.unwrap()),
        [a2, a1]
    );
    assert_eq!(
        keys(s.list_runs(&RunFilter::active()).await.unwrap()),
        [b1, a1]
    );
    let filter = RunFilter {
        dag_id: Some(DagId::new("a")),
        states: vec![RunState::Running, RunState::Queued],
        limit: None,
    };
    assert_eq!(keys(s.list_runs(&filter).await.unwrap()), [a1]);
    let limited = RunFilter {
        limit: Some(2),
        ..RunFilter::default()
    };
    assert_eq!(keys(s.list_runs(&limited).await.unwrap()), [a2, b1]);
    assert!(
        s.list_runs(&RunFilter::dag("none"))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn run_state_changes_set_dates_and_check_expectations(h: &dyn Harness) {
    let s = h.open().await;
    let run = dag_with_run(&*s, "etl", "r1", &["a"]).await;

    let start = RunChange::new(run, RunState::Running).expect(RunState::Queued);
    s.apply(ChangeBatch::one(t(10), start.clone()))
        .await
        .unwrap();
    let r = s.get_run(run).await.unwrap();
    assert_eq!(
        (r.state, r.start_date, r.end_date),
        (RunState::Running, Some(t(10)), None)
    );
    assert_eq!(r.updated_at, t(10));

    // The same transition again: the run is no longer queued.
    let e = s.apply(ChangeBatch::one(t(11), start)).await.unwrap_err();
    assert_err(e, "conflict", "expected state queued");

    let finish = RunChange::new(run, RunState::Failed)
        .expect(RunState::Running)
        .note("task a failed");
    s.apply(ChangeBatch::one(t(20), finish)).await.unwrap();
    let r = s.get_run(run).await.unwrap();
    assert_eq!(
        (r.state, r.start_date, r.end_date),
        (RunState::Failed, Some(t(10)), Some(t(20)))
    );
    assert_eq!(r.note.as_deref(), Some("task a failed"));

    // Cleared and rerun: queued again, end date gone, start date kept until it runs.
    s.apply(ChangeBatch::one(
        t(30),
        RunChange::new(run, RunState::Queued),
    ))
    .await
    .unwrap();
    let r = s.get_run(run).await.unwrap();
    assert_eq!(
        (r.state, r.end_date, r.queued_at),
        (RunState::Queued, None, Some(t(30)))
    );
    assert_eq!(r.note.as_deref(), Some("task a failed"));

    let e = s
        .apply(ChangeBatch::one(
            t(40),
            RunChange::new(RunKey(9999), RunState::Running),
        ))
        .await
        .unwrap_err();
    assert_err(e, "not_found", "dag run #9999");

    // TIs are untouched by run state changes.
    let ti = s.get_ti(&TiKey::unmapped(run, "a")).await.unwrap();
    assert_eq!(ti.state, TaskState::NoStatus);
}
