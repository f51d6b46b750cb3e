//! Each endpoint: DAGs, runs, task instances, logs, XComs, pools, import
//! errors, health and version, with paging, filters and ordering.

use super::{Api, Call, t0};
use axum::http::{Method, StatusCode};
use pave_core::{DagId, TaskState, TryNumber};
use pave_store::{
    ChangeBatch, ImportErrorRecord, NewXcom, ParsedDag, Role, Store, TiChange, TiKey,
};
use serde_json::{Value, json};

fn ids(list: &Value, field: &str, key: &str) -> Vec<String> {
    list[field]
        .as_array()
        .unwrap_or_else(|| panic!("no `{field}` in {list}"))
        .iter()
        .map(|v| v[key].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn dags_list_with_paging_filters_and_order() {
    let api = Api::new().await;
    let all = api.get(Role::Viewer, "/api/v1/dags").await;
    all.expect(StatusCode::OK);
    assert_eq!(all.body["total_entries"], 3);
    assert_eq!(ids(&all.body, "dags", "dag_id"), ["etl", "hello", "zeta"]);
    let etl = &all.body["dags"][0];
    assert_eq!(etl["description"], "the test pipeline");
    assert_eq!(etl["tags"], json!([{"name": "ml"}, {"name": "nightly"}]));
    assert_eq!(etl["latest_version_number"], 1);

    let page = api
        .get(
            Role::Viewer,
            "/api/v1/dags?limit=2&offset=1&order_by=-dag_id",
        )
        .await;
    page.expect(StatusCode::OK);
    assert_eq!(page.body["total_entries"], 3);
    assert_eq!(ids(&page.body, "dags", "dag_id"), ["hello", "etl"]);

    let pattern = api
        .get(Role::Viewer, "/api/v1/dags?dag_id_pattern=ell")
        .await;
    assert_eq!(ids(&pattern.body, "dags", "dag_id"), ["hello"]);
    let tagged = api
        .get(Role::Viewer, "/api/v1/dags?tags=demo,nightly")
        .await;
    assert_eq!(ids(&tagged.body, "dags", "dag_id"), ["etl", "hello"]);
    let paused = api.get(Role::Viewer, "/api/v1/dags?paused=true").await;
    assert_eq!(paused.body["total_entries"], 0);
}

#[tokio::test]
async fn dag_get_pause_tasks_versions_and_source() {
    let api = Api::new().await;
    let got = api.get(Role::Viewer, "/api/v1/dags/etl").await;
    got.expect(StatusCode::OK);
    assert_eq!(got.body["is_paused"], false);

    let paused = api
        .with_body(
            Role::User,
            Method::PATCH,
            "/api/v1/dags/etl",
            json!({"is_paused": true}),
        )
        .await;
    paused.expect(StatusCode::OK);
    assert_eq!(paused.body["is_paused"], true);
    assert!(
        api.store
            .get_dag(&DagId::new("etl"))
            .await
            .expect("dag")
            .is_paused
    );
    let unpaused = api
        .with_body(
            Role::User,
            Method::PATCH,
            "/api/v1/dags/etl",
            json!({"is_paused": false}),
        )
        .await;
    assert_eq!(unpaused.body["is_paused"], false);

    let tasks = api.get(Role::Viewer, "/api/v1/dags/etl/tasks").await;
    tasks.expect(StatusCode::OK);
    assert_eq!(
        ids(&tasks.body, "tasks", "task_id"),
        ["extract", "train", "report"]
    );
    assert_eq!(
        tasks.body["tasks"][1]["upstream_task_ids"],
        json!(["extract"])
    );
    assert_eq!(
        tasks.body["tasks"][1]["downstream_task_ids"],
        json!(["report"])
    );

    // A second version of the DAG.
    let mut spec = api
        .store
        .get_dag_version(
            api.store
                .get_dag(&DagId::new("etl"))
                .await
                .expect("dag")
                .latest_version
                .expect("v"),
        )
        .await
        .expect("version")
        .spec;
    spec["dags"][0]["description"] = json!("changed");
    api.store
        .upsert_dag(ParsedDag {
            dag_id: DagId::new("etl"),
            fileloc: None,
            spec,
            parsed_at: t0(),
            paused_at_creation: false,
        })
        .await
        .expect("upsert");
    let versions = api.get(Role::Viewer, "/api/v1/dags/etl/dagVersions").await;
    versions.expect(StatusCode::OK);
    assert_eq!(versions.body["total_entries"], 2);
    assert_eq!(versions.body["dag_versions"][0]["version_number"], 2);
    let v1 = api
        .get(Role::Viewer, "/api/v1/dags/etl/dagVersions/1")
        .await;
    v1.expect(StatusCode::OK);
    assert_eq!(
        v1.body["spec"]["dags"][0]["description"],
        "the test pipeline"
    );
    api.get(Role::Viewer, "/api/v1/dags/etl/dagVersions/9")
        .await
        .expect(StatusCode::NOT_FOUND)
        .mentions("version 9");

    let source = api.get(Role::Viewer, "/api/v1/dagSources/hello").await;
    source.expect(StatusCode::OK);
    assert!(
        source.body["content"]
            .as_str()
            .unwrap_or("")
            .contains("echo hello")
    );
}

#[tokio::test]
async fn runs_trigger_list_get_mark_and_delete() {
    let api = Api::new().await;
    let pokes = api.link.poke_count();
    let r = api
        .with_body(
            Role::User,
            Method::POST,
            "/api/v1/dags/etl/dagRuns",
            json!({"dag_run_id": "r1", "logical_date": "2026-02-01T00:00:00Z",
                   "conf": {"epochs": 3}, "note": "by hand"}),
        )
        .await;
    r.expect(StatusCode::OK);
    assert_eq!(r.body["dag_run_id"], "r1");
    assert_eq!(r.body["state"], "queued");
    assert_eq!(r.body["run_type"], "manual");
    assert_eq!(r.body["conf"], json!({"epochs": 3}));
    assert_eq!(r.body["note"], "by hand");
    assert_eq!(r.body["logical_date"], "2026-02-01T00:00:00Z");
    assert!(
        api.link.poke_count() > pokes,
        "a trigger pokes the scheduler"
    );

    api.trigger("r2").await;
    api.trigger("r3").await;
    let list = api
        .get(
            Role::Viewer,
            "/api/v1/dags/etl/dagRuns?order_by=-dag_run_id&limit=2",
        )
        .await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body["total_entries"], 3);
    assert_eq!(ids(&list.body, "dag_runs", "dag_run_id"), ["r3", "r2"]);
    let everywhere = api
        .get(Role::Viewer, "/api/v1/dags/~/dagRuns?state=queued")
        .await;
    assert_eq!(everywhere.body["total_entries"], 3);
    let dated = api
        .get(
            Role::Viewer,
            "/api/v1/dags/etl/dagRuns?logical_date_gte=2026-02-01T00:00:00Z",
        )
        .await;
    assert_eq!(ids(&dated.body, "dag_runs", "dag_run_id"), ["r1"]);

    let got = api.get(Role::Viewer, "/api/v1/dags/etl/dagRuns/r1").await;
    got.expect(StatusCode::OK);
    assert_eq!(got.body["conf"]["epochs"], 3);

    // Mark failed: the attempt in flight fails, the rest are skipped.
    api.set_ti("r1", "extract", TaskState::Running, 1).await;
    let failed = api
        .with_body(
            Role::User,
            Method::PATCH,
            "/api/v1/dags/etl/dagRuns/r1",
            json!({"state": "failed"}),
        )
        .await;
    failed.expect(StatusCode::OK);
    assert_eq!(failed.body["state"], "failed");
    let tis = api
        .get(Role::Viewer, "/api/v1/dags/etl/dagRuns/r1/taskInstances")
        .await;
    let states: Vec<&str> = tis.body["task_instances"]
        .as_array()
        .expect("tis")
        .iter()
        .map(|t| t["state"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(states, ["failed", "skipped", "skipped"]);

    // Mark success of another run: every task instance succeeds.
    let ok = api
        .with_body(
            Role::User,
            Method::PATCH,
            "/api/v1/dags/etl/dagRuns/r2",
            json!({"state": "success", "note": "fine"}),
        )
        .await;
    assert_eq!(ok.body["state"], "success");
    assert_eq!(ok.body["note"], "fine");

    // Delete: refused while an attempt is in flight, then done.
    api.set_ti("r3", "extract", TaskState::Running, 1).await;
    api.send(
        Call::new(Method::DELETE, "/api/v1/dags/etl/dagRuns/r3").bearer(api.token(Role::User)),
    )
    .await
    .expect(StatusCode::CONFLICT)
    .mentions("extract");
    api.set_ti("r3", "extract", TaskState::Success, 1).await;
    api.send(
        Call::new(Method::DELETE, "/api/v1/dags/etl/dagRuns/r3").bearer(api.token(Role::User)),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    api.get(Role::Viewer, "/api/v1/dags/etl/dagRuns/r3")
        .await
        .expect(StatusCode::NOT_FOUND)
        .mentions("r3");
}

#[tokio::test]
async fn a_conflicting_trigger_is_409_and_changes_nothing() {
    let api = Api::new().await;
    api.trigger("dup").await;
    let before = api.snapshot().await;
    api.with_body(
        Role::User,
        Method::POST,
        "/api/v1/dags/etl/dagRuns",
        json!({"dag_run_id": "dup"}),
    )
    .await
    .expect(StatusCode::CONFLICT)
    .mentions("dup");
    let date = api
        .get(Role::Viewer, "/api/v1/dags/etl/dagRuns/dup")
        .await
        .body["logical_date"]
        .clone();
    api.with_body(
        Role::User,
        Method::POST,
        "/api/v1/dags/etl/dagRuns",
        json!({"dag_run_id": "other", "logical_date": date}),
    )
    .await
    .expect(StatusCode::CONFLICT)
    .mentions("logical date");
    api.with_body(
        Role::User,
        Method::POST,
        "/api/v1/dags/etl/dagRuns",
        json!({"conf": {"epochs": "many"}}),
    )
    .await
    .expect(StatusCode::UNPROCESSABLE_ENTITY)
    .mentions("epochs");
    assert_eq!(api.snapshot().await, before);
}

#[tokio::test]
async fn task_instances_list_get_tries_and_filters() {
    let api = Api::new().await;
    api.trigger("a").await;
    api.trigger("b").await;
    api.set_ti("a", "extract", TaskState::Success, 1).await;
    api.set_ti("a", "train", TaskState::Running, 2).await;

    let list = api
        .get(Role::Viewer, "/api/v1/dags/etl/dagRuns/a/taskInstances")
        .await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body["total_entries"], 3);
    let by_state = api
        .get(
            Role::Viewer,
            "/api/v1/dags/~/dagRuns/~/taskInstances?state=success,running&order_by=-try_number",
        )
        .await;
    assert_eq!(
        ids(&by_state.body, "task_instances", "task_id"),
        ["train", "extract"]
    );
    let none = api
        .get(
            Role::Viewer,
            "/api/v1/dags/etl/dagRuns/~/taskInstances?state=none&task_id=report",
        )
        .await;
    assert_eq!(none.body["total_entries"], 2);
    assert_eq!(none.body["task_instances"][0]["state"], Value::Null);
    let paged = api
        .get(
            Role::Viewer,
            "/api/v1/dags/etl/dagRuns/~/taskInstances?limit=4&offset=4",
        )
        .await;
    assert_eq!(paged.body["total_entries"], 6);
    assert_eq!(
        paged.body["task_instances"].as_array().map(Vec::len),
        Some(2)
    );

    let ti = api
        .get(
            Role::Viewer,
            "/api/v1/dags/etl/dagRuns/a/taskInstances/train?map_index=-1",
        )
        .await;
    ti.expect(StatusCode::OK);
    assert_eq!(ti.body["state"], "running");
    assert_eq!(ti.body["try_number"], 2);
    assert_eq!(ti.body["dag_run_id"], "a");
    let tries = api
        .get(
            Role::Viewer,
            "/api/v1/dags/etl/dagRuns/a/taskInstances/train/tries",
        )
        .await;
    tries.expect(StatusCode::OK);
    assert_eq!(tries.body["task_instances"][0]["try_number"], 2);
}

#[tokio::test]
async fn marking_a_running_task_instance_outlives_its_attempt() {
    let api = Api::new().await;
    api.trigger("m").await;
    api.set_ti("m", "extract", TaskState::Running, 1).await;
    let dry = api
        .with_body(
            Role::User,
            Method::PATCH,
            "/api/v1/dags/etl/dagRuns/m/taskInstances/extract",
            json!({"new_state": "success", "dry_run": true}),
        )
        .await;
    dry.expect(StatusCode::OK);
    assert_eq!(dry.body["task_instances"][0]["state"], "running");
    let marked = api
        .with_body(
            Role::User,
            Method::PATCH,
            "/api/v1/dags/etl/dagRuns/m/taskInstances/extract",
            json!({"new_state": "success"}),
        )
        .await;
    marked.expect(StatusCode::OK);
    assert_eq!(marked.body["task_instances"][0]["state"], "success");
    assert!(
        marked.body["task_instances"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("user")
    );

    // The attempt ends later and reports failure the way the scheduler
    // does (expecting it still running at try 1): the report conflicts.
    let run = api
        .store
        .find_run(&DagId::new("etl"), &"m".into())
        .await
        .expect("run");
    let key = TiKey::unmapped(run.key, "extract");
    let late = TiChange::new(key.clone(), TaskState::Failed)
        .expect_attempt(TaskState::Running, TryNumber(1));
    let err = api.store.apply(ChangeBatch::one(t0(), late)).await;
    assert!(
        matches!(err, Err(pave_store::StoreError::Conflict { .. })),
        "{err:?}"
    );
    assert_eq!(
        api.store.get_ti(&key).await.expect("ti").state,
        TaskState::Success
    );
}

#[tokio::test]
async fn clear_with_downstream_keeps_history_and_requeues_the_run() {
    let api = Api::new().await;
    api.trigger("c").await;
    for task in ["extract", "train", "report"] {
        api.set_ti("c", task, TaskState::Success, 1).await;
    }
    let run = api
        .store
        .find_run(&DagId::new("etl"), &"c".into())
        .await
        .expect("run");
    api.store
        .apply(ChangeBatch::one(
            t0(),
            pave_store::RunChange::new(run.key, pave_core::RunState::Success),
        ))
        .await
        .expect("finish the run");

    let dry = api
        .with_body(
            Role::User,
            Method::POST,
            "/api/v1/dags/etl/clearTaskInstances",
            json!({"dag_run_id": "c", "task_ids": ["train"], "include_downstream": true}),
        )
        .await;
    dry.expect(StatusCode::OK);
    assert_eq!(
        ids(&dry.body, "task_instances", "task_id"),
        ["report", "train"]
    );
    assert_eq!(
        api.store.get_run(run.key).await.expect("run").state,
        pave_core::RunState::Success
    );

    let cleared = api
        .with_body(Role::User, Method::POST, "/api/v1/dags/etl/clearTaskInstances",
            json!({"dag_run_id": "c", "task_ids": ["train"], "include_downstream": true, "dry_run": false}))
        .await;
    cleared.expect(StatusCode::OK);
    assert_eq!(cleared.body["total_entries"], 2);
    let train = api
        .store
        .get_ti(&TiKey::unmapped(run.key, "train"))
        .await
        .expect("ti");
    assert_eq!(train.state, TaskState::NoStatus);
    assert_eq!(train.try_number, TryNumber(1), "the try number is kept");
    assert_eq!(train.max_tries, 3, "one try plus two retries");
    assert_eq!(
        api.store.list_tries(&train.key).await.expect("tries").len(),
        1
    );
    assert_eq!(
        api.store.get_run(run.key).await.expect("run").state,
        pave_core::RunState::Queued
    );
    let extract = api
        .store
        .get_ti(&TiKey::unmapped(run.key, "extract"))
        .await
        .expect("ti");
    assert_eq!(extract.state, TaskState::Success);
}

#[tokio::test]
async fn logs_are_read_by_offset_until_the_try_ends() {
    let api = Api::new().await;
    api.trigger("l").await;
    api.set_ti("l", "extract", TaskState::Running, 1).await;
    let path = api.log_path("l", "extract", 1).await;
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
    std::fs::write(&path, "first line\n").expect("write");
    let url = "/api/v1/dags/etl/dagRuns/l/taskInstances/extract/logs/1";

    let first = api.get(Role::Viewer, url).await;
    first.expect(StatusCode::OK);
    assert_eq!(first.body["content"], "first line\n");
    assert_eq!(first.body["next_offset"], 11);
    assert_eq!(first.body["end_of_log"], false, "the try still runs");

    std::fs::write(&path, "first line\nsecond line\n").expect("append");
    api.set_ti("l", "extract", TaskState::Success, 1).await;
    let next = api.get(Role::Viewer, &format!("{url}?offset=11")).await;
    assert_eq!(next.body["content"], "second line\n");
    assert_eq!(next.body["end_of_log"], true);

    let text = api
        .send(
            Call::new(Method::GET, &format!("{url}?limit=5"))
                .bearer(api.token(Role::Viewer))
                .header("accept", "text/plain"),
        )
        .await;
    assert_eq!(text.text, "first");
    assert_eq!(text.headers["x-pave-next-offset"], "5");

    api.get(
        Role::Viewer,
        "/api/v1/dags/etl/dagRuns/l/taskInstances/extract/logs/2",
    )
    .await
    .expect(StatusCode::NOT_FOUND)
    .mentions("no try 2");
}

#[tokio::test]
async fn xcoms_list_and_get() {
    let api = Api::new().await;
    api.trigger("x").await;
    let run = api
        .store
        .find_run(&DagId::new("etl"), &"x".into())
        .await
        .expect("run");
    let mut batch = ChangeBatch::new(t0());
    for (task, key, value) in [
        ("extract", "return_value", json!({"rows": 10})),
        ("train", "metrics", json!([0.9])),
    ] {
        batch.push(NewXcom {
            ti: TiKey::unmapped(run.key, task),
            key: key.into(),
            value,
        });
    }
    api.store.apply(batch).await.expect("xcoms");
    let all = api
        .get(
            Role::Viewer,
            "/api/v1/dags/etl/dagRuns/x/taskInstances/~/xcomEntries",
        )
        .await;
    all.expect(StatusCode::OK);
    assert_eq!(all.body["total_entries"], 2);
    assert!(all.body["xcom_entries"][0].get("value").is_none());
    let one = api
        .get(
            Role::Viewer,
            "/api/v1/dags/etl/dagRuns/x/taskInstances/extract/xcomEntries/return_value",
        )
        .await;
    one.expect(StatusCode::OK);
    assert_eq!(one.body["value"], json!({"rows": 10}));
    api.get(
        Role::Viewer,
        "/api/v1/dags/etl/dagRuns/x/taskInstances/extract/xcomEntries/nope",
    )
    .await
    .expect(StatusCode::NOT_FOUND)
    .mentions("nope");
}

#[tokio::test]
async fn pools_crud() {
    let api = Api::new().await;
    let created = api
        .with_body(
            Role::Op,
            Method::POST,
            "/api/v1/pools",
            json!({"name": "gpu", "slots": 4, "description": "GPUs"}),
        )
        .await;
    created.expect(StatusCode::CREATED);
    assert_eq!(created.body["open_slots"], 4);
    api.with_body(
        Role::Op,
        Method::POST,
        "/api/v1/pools",
        json!({"name": "gpu", "slots": 1}),
    )
    .await
    .expect(StatusCode::CONFLICT)
    .mentions("gpu");
    let patched = api
        .with_body(
            Role::Op,
            Method::PATCH,
            "/api/v1/pools/gpu",
            json!({"slots": 8}),
        )
        .await;
    assert_eq!(patched.body["slots"], 8);
    assert_eq!(patched.body["description"], "GPUs");
    let list = api
        .get(Role::Viewer, "/api/v1/pools?limit=1&offset=1")
        .await;
    assert_eq!(list.body["total_entries"], 2);
    assert_eq!(ids(&list.body, "pools", "name"), ["gpu"]);
    assert_eq!(
        api.get(Role::Viewer, "/api/v1/pools/gpu").await.body["slots"],
        8
    );
    api.send(Call::new(Method::DELETE, "/api/v1/pools/gpu").bearer(api.token(Role::Op)))
        .await
        .expect(StatusCode::NO_CONTENT);
    api.send(Call::new(Method::DELETE, "/api/v1/pools/default_pool").bearer(api.token(Role::Op)))
        .await
        .expect(StatusCode::CONFLICT)
        .mentions("default_pool");
    api.get(Role::Viewer, "/api/v1/pools/gpu")
        .await
        .expect(StatusCode::NOT_FOUND)
        .mentions("gpu");
}

#[tokio::test]
async fn import_errors_health_and_version() {
    let api = Api::new().await;
    api.store
        .put_import_error(ImportErrorRecord {
            fileloc: "broken.py".into(),
            timestamp: t0(),
            stacktrace: "SyntaxError".into(),
        })
        .await
        .expect("put");
    let errors = api.get(Role::Viewer, "/api/v1/importErrors").await;
    errors.expect(StatusCode::OK);
    assert_eq!(errors.body["import_errors"][0]["filename"], "broken.py");
    assert_eq!(errors.body["total_entries"], 1);

    let health = api.send(Call::new(Method::GET, "/api/v1/health")).await;
    health.expect(StatusCode::OK);
    assert_eq!(health.body["metadatabase"]["status"], "healthy");
    assert_eq!(
        health.body["scheduler"]["status"], "unhealthy",
        "no heartbeat yet"
    );
    api.link.beat(t0());
    let health = api.send(Call::new(Method::GET, "/api/v1/health")).await;
    assert_eq!(health.body["scheduler"]["status"], "healthy");

    let version = api.get(Role::Viewer, "/api/v1/version").await;
    assert_eq!(version.body["version"], env!("CARGO_PKG_VERSION"));
}
