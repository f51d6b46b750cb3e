//! Conformance checks for XComs, pools, import errors, the scheduler lease,
//! error naming and durability.

use super::*;
use pave_core::{MapIndex, TaskState};
use pave_store::{
    Change, ChangeBatch, ImportErrorRecord, JobState, LeaseRequest, NewXcom, PoolRecord,
    TaskSelection, TiChange, TiKey,
};
use std::time::Duration;

fn xcom(ti: &TiKey, key: &str, value: Value) -> NewXcom {
    NewXcom {
        ti: ti.clone(),
        key: key.to_owned(),
        value,
    }
}

pub async fn xcom_put_get_list(h: &dyn Harness) {
    let s = h.open().await;
    let run = dag_with_run(&*s, "etl", "r1", &["a", "b", "m"]).await;
    let a = TiKey::unmapped(run, "a");
    let b = TiKey::unmapped(run, "b");
    let mut batch = ChangeBatch::new(t(10));
    batch.push(Change::ExpandMapped {
        run,
        task_id: TaskId::new("m"),
        count: 2,
    });
    batch.push(xcom(&a, "return_value", json!({"rows": 10})));
    batch.push(xcom(&a, "extra", json!("x")));
    batch.push(xcom(&b, "return_value", json!([1, 2, 3])));
    batch.push(xcom(
        &TiKey::new(run, "m", MapIndex(1)),
        "return_value",
        json!(11),
    ));
    batch.push(xcom(
        &TiKey::new(run, "m", MapIndex(0)),
        "return_value",
        json!(10),
    ));
    s.apply(batch).await.unwrap();

    let got = s.get_xcom(&a, "return_value").await.unwrap();
    assert_eq!(got.value, json!({"rows": 10}));
    assert_eq!(got.size_bytes, r#"{"rows":10}"#.len() as u64);
    assert_eq!(got.updated_at, t(10));

    // Replace.
    s.apply(ChangeBatch::one(
        t(20),
        xcom(&a, "return_value", json!(null)),
    ))
    .await
    .unwrap();
    let got = s.get_xcom(&a, "return_value").await.unwrap();
    assert_eq!(
        (got.value, got.size_bytes, got.updated_at),
        (json!(null), 4, t(20))
    );

    let all = s.list_xcoms(run, &TaskSelection::All).await.unwrap();
    let keys: Vec<_> = all
        .iter()
        .map(|x| (x.ti.task_id.as_str(), x.ti.map_index.0, x.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("a", -1, "extra"),
            ("a", -1, "return_value"),
            ("b", -1, "return_value"),
            ("m", 0, "return_value"),
            ("m", 1, "return_value"),
        ]
    );
    let only = s
        .list_xcoms(
            run,
            &TaskSelection::Only(vec![TaskId::new("m"), TaskId::new("zzz")]),
        )
        .await
        .unwrap();
    let values: Vec<_> = only.iter().map(|x| x.value.clone()).collect();
    assert_eq!(values, [json!(10), json!(11)]);

    assert_err(
        s.get_xcom(&b, "nope").await.unwrap_err(),
        "not_found",
        "xcom `nope` of task instance `b`",
    );
    let e = s
        .apply(ChangeBatch::one(
            t(30),
            xcom(&TiKey::unmapped(run, "ghost"), "k", json!(1)),
        ))
        .await
        .unwrap_err();
    assert_err(e, "not_found", "task instance `ghost`");
}

pub async fn pools_crud(h: &dyn Harness) {
    let s = h.open().await;
    let gpu = PoolRecord {
        name: "gpu".into(),
        slots: 8,
        description: Some("A100s".into()),
        include_deferred: false,
    };
    s.put_pool(gpu.clone()).await.unwrap();
    assert_eq!(s.get_pool("gpu").await.unwrap(), gpu);

    let resized = PoolRecord {
        slots: 16,
        include_deferred: true,
        ..gpu
    };
    s.put_pool(resized.clone()).await.unwrap();
    assert_eq!(s.get_pool("gpu").await.unwrap(), resized);
    let names: Vec<_> = s
        .list_pools()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["default_pool", "gpu"]);

    s.delete_pool("gpu").await.unwrap();
    assert_err(
        s.get_pool("gpu").await.unwrap_err(),
        "not_found",
        "pool `gpu`",
    );
    assert_err(
        s.delete_pool("gpu").await.unwrap_err(),
        "not_found",
        "pool `gpu`",
    );
    assert_err(
        s.delete_pool("default_pool").await.unwrap_err(),
        "conflict",
        "`default_pool` cannot be deleted",
    );
    let mut default = s.get_pool("default_pool").await.unwrap();
    default.slots = 32;
    s.put_pool(default).await.unwrap();
    assert_eq!(s.get_pool("default_pool").await.unwrap().slots, 32);
}

pub async fn import_errors_replace_and_clear(h: &dyn Harness) {
    let s = h.open().await;
    let err = |file: &str, at, trace: &str| ImportErrorRecord {
        fileloc: file.into(),
        timestamp: at,
        stacktrace: trace.into(),
    };
    s.put_import_error(err("/dags/b.py", t(1), "SyntaxError"))
        .await
        .unwrap();
    s.put_import_error(err("/dags/a.py", t(2), "ImportError"))
        .await
        .unwrap();
    s.put_import_error(err("/dags/b.py", t(3), "NameError"))
        .await
        .unwrap();
    assert_eq!(
        s.list_import_errors().await.unwrap(),
        [
            err("/dags/a.py", t(2), "ImportError"),
            err("/dags/b.py", t(3), "NameError")
        ]
    );
    s.clear_import_error("/dags/a.py").await.unwrap();
    s.clear_import_error("/dags/never.py").await.unwrap();
    assert_eq!(s.list_import_errors().await.unwrap().len(), 1);
}

pub async fn scheduler_lease_is_exclusive_until_stale(h: &dyn Harness) {
    let s = h.open().await;
    let req = |host: &str, pid, at| LeaseRequest {
        hostname: host.into(),
        pid,
        now: at,
        stale_after: Duration::from_secs(30),
    };
    let first = s
        .acquire_scheduler_lease(req("host-a", 10, t(0)))
        .await
        .unwrap();
    assert_eq!(first.job.state, JobState::Running);
    assert!(first.took_over.is_none());

    s.heartbeat(first.job.id, t(20)).await.unwrap();
    let e = s
        .acquire_scheduler_lease(req("host-b", 20, t(45)))
        .await
        .unwrap_err();
    assert_err(e, "conflict", "held by scheduler job");

    // The first scheduler stops heartbeating; after 30 s it is taken over.
    let second = s
        .acquire_scheduler_lease(req("host-b", 20, t(51)))
        .await
        .unwrap();
    let old = second.took_over.unwrap();
    assert_eq!(
        (old.id, old.state, old.hostname.as_str(), old.pid),
        (first.job.id, JobState::Dead, "host-a", 10)
    );
    assert_eq!(old.latest_heartbeat, t(20));

    // The old one wakes up: its heartbeat tells it the lease is gone.
    let e = s.heartbeat(first.job.id, t(52)).await.unwrap_err();
    assert_err(e, "conflict", "no longer holds the scheduler lease");

    s.release_scheduler_lease(second.job.id, t(60))
        .await
        .unwrap();
    s.release_scheduler_lease(second.job.id, t(61))
        .await
        .unwrap();
    let third = s
        .acquire_scheduler_lease(req("host-c", 30, t(62)))
        .await
        .unwrap();
    assert!(third.took_over.is_none());
    assert_err(
        s.heartbeat(pave_store::JobId(999), t(63))
            .await
            .unwrap_err(),
        "not_found",
        "scheduler job #999",
    );
}

pub async fn unknown_things_are_not_found_by_name(h: &dyn Harness) {
    let s = h.open().await;
    let run = dag_with_run(&*s, "etl", "r1", &["a"]).await;
    let ghost = RunKey(run.0 + 1000);
    assert_err(
        s.get_run(ghost).await.unwrap_err(),
        "not_found",
        &ghost.to_string(),
    );
    assert_err(
        s.run_tis(ghost).await.unwrap_err(),
        "not_found",
        &ghost.to_string(),
    );
    assert_err(
        s.find_run(&DagId::new("etl"), &RunId::new("nope"))
            .await
            .unwrap_err(),
        "not_found",
        "run `nope` of dag `etl`",
    );
    assert_err(
        s.get_dag(&DagId::new("nope")).await.unwrap_err(),
        "not_found",
        "dag `nope`",
    );
    assert_err(
        s.get_dag_version(DagVersionId(4242)).await.unwrap_err(),
        "not_found",
        "dag version #4242",
    );
    let e = s
        .apply(ChangeBatch::one(
            t(5),
            TiChange::new(TiKey::unmapped(ghost, "a"), TaskState::Queued),
        ))
        .await
        .unwrap_err();
    assert_err(
        e,
        "not_found",
        &format!("task instance `a` (map index -1) of {ghost}"),
    );
    assert_err(
        s.get_ti(&TiKey::new(run, "a", MapIndex(3)))
            .await
            .unwrap_err(),
        "not_found",
        "task instance `a` (map index 3)",
    );
}

pub async fn reopen_keeps_everything(h: &dyn Harness) {
    let s = h.open().await;
    let run = dag_with_run(&*s, "etl", "r1", &["a"]).await;
    let key = TiKey::unmapped(run, "a");
    let mut batch = ChangeBatch::new(t(10));
    batch.push(TiChange::new(key.clone(), TaskState::Running).start_date(t(10)));
    batch.push(xcom(&key, "return_value", json!({"ok": true})));
    s.apply(batch).await.unwrap();
    s.set_dag_paused(&DagId::new("etl"), true).await.unwrap();
    let before = (
        s.list_dags().await.unwrap(),
        s.get_run(run).await.unwrap(),
        s.run_tis(run).await.unwrap(),
        s.list_xcoms(run, &TaskSelection::All).await.unwrap(),
        s.list_pools().await.unwrap(),
    );

    let s = h.reopen(s).await;
    s.migrate().await.unwrap();
    let after = (
        s.list_dags().await.unwrap(),
        s.get_run(run).await.unwrap(),
        s.run_tis(run).await.unwrap(),
        s.list_xcoms(run, &TaskSelection::All).await.unwrap(),
        s.list_pools().await.unwrap(),
    );
    assert_eq!(before, after);
}

pub async fn corrupt_spec_is_reported(h: &dyn Harness) {
    let s = h.open().await;
    let v = s.upsert_dag(parsed("etl", spec(0), t(0))).await.unwrap();
    h.corrupt_spec(v.version.id).await;
    let e = s.get_dag_version(v.version.id).await.unwrap_err();
    assert!(
        e.to_string().contains("column `spec_json`: invalid JSON"),
        "{e}"
    );
    assert_err(
        e,
        "corrupt",
        &format!("dag version #{} of dag `etl`", v.version.id.0),
    );
    // The DAG itself still reads: only the broken record fails.
    let dag = s.get_dag(&DagId::new("etl")).await.unwrap();
    assert_eq!(dag.latest_version, Some(v.version.id));
}
