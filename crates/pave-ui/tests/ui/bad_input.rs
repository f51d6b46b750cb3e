//! Bad input to the UI: malformed forms, unknown ids, wrong types,
//! oversized bodies, path traversal in log requests and expired sessions
//! each get a clear 4xx (or, for a lost session, the way back to the login
//! page) and change nothing.

use super::{Ui, enc};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use pave_core::TaskState;
use pave_store::{Role, RunFilter, Store};

/// What the UI can change: DAGs (paused), runs and task instances.
async fn snapshot(ui: &Ui) -> String {
    let dags: Vec<bool> = {
        let mut v = Vec::new();
        for d in ["etl", "hello"] {
            v.push(ui.paused(d).await);
        }
        v
    };
    let runs = ui
        .store
        .list_runs(&RunFilter::default())
        .await
        .expect("runs");
    let mut tis = Vec::new();
    for r in &runs {
        tis.push(ui.store.run_tis(r.key).await.expect("tis"));
    }
    format!("{dags:?}\n{runs:?}\n{tis:?}")
}

#[tokio::test]
async fn malformed_and_ill_typed_forms_are_4xx_and_change_nothing() {
    let ui = Ui::new().await;
    let run = ui.trigger(&[]).await;
    let r = enc(&run);
    let before = snapshot(&ui).await;
    for (path, fields, status, needle) in [
        // Conf that is not JSON, or not an object.
        (
            "/dags/etl/trigger".to_owned(),
            vec![("conf", "{\"epochs\": ")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "conf",
        ),
        (
            "/dags/etl/trigger".to_owned(),
            vec![("conf", "[1, 2]")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "conf",
        ),
        // A param of the wrong type.
        (
            "/dags/etl/trigger".to_owned(),
            vec![("param.epochs", "many")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "epochs",
        ),
        (
            "/dags/etl/trigger".to_owned(),
            vec![("logical_date", "yesterday")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "yesterday",
        ),
        (
            format!("/dags/etl/runs/{r}/mark"),
            vec![("state", "running")],
            StatusCode::BAD_REQUEST,
            "running",
        ),
        (
            format!("/dags/etl/runs/{r}/tasks/report/-1/mark"),
            vec![("state", "sleeping")],
            StatusCode::BAD_REQUEST,
            "sleeping",
        ),
        (
            format!("/dags/etl/runs/{r}/tasks/report/abc/mark"),
            vec![("state", "success")],
            StatusCode::NOT_FOUND,
            "abc",
        ),
        // Unknown DAGs, runs and tasks.
        (
            "/dags/nope/trigger".to_owned(),
            vec![],
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            "/dags/nope/pause".to_owned(),
            vec![("paused", "true")],
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            "/dags/etl/runs/ghost/mark".to_owned(),
            vec![("state", "success")],
            StatusCode::NOT_FOUND,
            "ghost",
        ),
        (
            format!("/dags/etl/runs/{r}/tasks/phantom/-1/clear"),
            vec![],
            StatusCode::NOT_FOUND,
            "phantom",
        ),
    ] {
        let reply = ui.post(Role::Admin, &path, &fields, true).await;
        assert_eq!(reply.status, status, "{path} {fields:?}: {reply:?}");
        assert!(
            reply.text.contains(needle),
            "{path}: `{needle}` not in {reply:?}"
        );
        assert_eq!(
            snapshot(&ui).await,
            before,
            "{path} {fields:?} changed the store"
        );
    }
}

#[tokio::test]
async fn oversized_forms_are_413_and_change_nothing() {
    let ui = Ui::new().await;
    let before = snapshot(&ui).await;
    let big = "x".repeat(300 * 1024);
    let reply = ui
        .post(
            Role::Admin,
            "/dags/etl/trigger",
            &[("conf", &format!("{{\"blob\": \"{big}\"}}"))],
            true,
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{reply:?}");
    assert_eq!(snapshot(&ui).await, before);
}

#[tokio::test]
async fn log_requests_cannot_traverse_paths() {
    let ui = Ui::new().await;
    let run = ui.trigger(&[]).await;
    ui.set_ti(&run, "report", -1, TaskState::Success, 1).await;
    let secret = ui.logs.path().join("../outside.txt");
    std::fs::write(&secret, "secret").expect("write");
    let r = enc(&run);
    let base = format!("/ui/dags/etl/runs/{r}/tasks");
    for (path, status) in [
        (
            format!("{base}/..%2F..%2F..%2Foutside.txt/-1/logs/1?offset=0"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/ui/dags/etl/runs/..%2F..%2F{r}/tasks/report/-1/logs/1"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/ui/dags/..%2F..%2Fetl/runs/{r}/tasks/report/-1/logs/1"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("{base}/report/-1/logs/..%2F1"),
            StatusCode::NOT_FOUND,
        ),
        (format!("{base}/report/-1/logs/0"), StatusCode::NOT_FOUND),
        (
            format!("{base}/report/..%2F-1/logs/1"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("{base}/report/-1/logs/1?offset=-5"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{base}/report/-1/logs/1?offset=abc"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let reply = ui.get(&path).await;
        assert_eq!(reply.status, status, "{path}: {reply:?}");
        assert!(!reply.text.contains("secret"), "{path}: {reply:?}");
    }
    // The real log is readable.
    let ok = ui.get(&format!("{base}/report/-1/logs/1?offset=0")).await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
}

#[tokio::test]
async fn wrong_query_types_are_4xx() {
    let ui = Ui::new().await;
    for path in [
        "/ui/dags/etl/grid?runs=many",
        "/ui/dags/etl/grid?runs=-1",
        "/dags/etl?runs=x",
        "/dags/etl/versions/abc",
        "/dags/etl/versions/99",
        "/ui/dags/nope/grid",
        "/ui/dags/nope/graph",
    ] {
        let reply = ui.get(path).await;
        assert!(
            reply.status.is_client_error(),
            "{path}: {} {reply:?}",
            reply.status
        );
    }
}

#[tokio::test]
async fn an_expired_session_changes_nothing_and_goes_back_to_login() {
    let ui = Ui::new().await;
    let before = snapshot(&ui).await;
    ui.clock.advance(chrono::Duration::hours(13));
    let reply = ui
        .post(Role::Admin, "/dags/etl/pause", &[("paused", "true")], true)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    assert!(reply.location().starts_with("/login?next="), "{reply:?}");
    let trigger = ui.post(Role::Admin, "/dags/etl/trigger", &[], true).await;
    assert!(
        trigger.location().starts_with("/login?next="),
        "{trigger:?}"
    );
    // An htmx request is told to take the page to the login form.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/dags/etl/pause")
        .header(
            header::COOKIE,
            format!("pave_session={}", ui.session(Role::Admin).cookie),
        )
        .header("x-csrf-token", ui.session(Role::Admin).csrf.as_str())
        .header("hx-request", "true")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("paused=true"))
        .expect("a request");
    let htmx = ui.send(req).await;
    assert!(htmx.headers.contains_key("hx-redirect"), "{htmx:?}");
    assert_eq!(
        snapshot(&ui).await,
        before,
        "an expired session changed the store"
    );
}
