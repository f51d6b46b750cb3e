//! Bad input: each gets a clear 4xx problem naming what is wrong, and the
//! store is unchanged afterwards.

use super::{Api, Call};
use axum::http::{Method, StatusCode};
use pave_core::TaskState;
use pave_store::Role;
use serde_json::json;

/// Sends `call` as a user, expects `status` and a detail mentioning
/// `needle`, and checks nothing changed.
async fn refused(api: &Api, call: Call, status: StatusCode, needle: &str) -> super::Reply {
    let before = api.snapshot().await;
    let reply = api.send(call.bearer(api.token(Role::Admin))).await;
    reply.expect(status).mentions(needle);
    assert_eq!(
        api.snapshot().await,
        before,
        "a refused request changed the store"
    );
    reply
}

#[tokio::test]
async fn malformed_json_is_400() {
    let api = Api::new().await;
    api.trigger("r").await;
    for (method, path) in [
        (Method::POST, "/api/v1/dags/etl/dagRuns"),
        (Method::PATCH, "/api/v1/dags/etl"),
        (Method::POST, "/api/v1/pools"),
        (Method::POST, "/api/v1/dags/etl/clearTaskInstances"),
        (Method::PATCH, "/api/v1/dags/etl/dagRuns/r"),
        (
            Method::PATCH,
            "/api/v1/dags/etl/dagRuns/r/taskInstances/extract",
        ),
        (Method::PATCH, "/api/v1/pools/default_pool"),
        (Method::POST, "/api/v1/users"),
        (Method::PATCH, "/api/v1/users/viewer"),
        (Method::POST, "/api/v1/auth/tokens"),
        (Method::POST, "/api/v1/auth/login"),
    ] {
        let call = Call::new(method, path).raw("application/json", "{\"dag_run_id");
        refused(&api, call, StatusCode::BAD_REQUEST, "not valid JSON").await;
    }
    let trailing = Call::new(Method::PATCH, "/api/v1/dags/etl")
        .raw("application/json", "{\"is_paused\": true} trailing");
    refused(&api, trailing, StatusCode::BAD_REQUEST, "not valid JSON").await;
    let not_json = Call::new(Method::PATCH, "/api/v1/dags/etl").raw("text/plain", "is_paused=true");
    refused(
        &api,
        not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    )
    .await;
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_are_422_naming_the_field() {
    let api = Api::new().await;
    api.trigger("r").await;
    let cases = [
        (
            Method::POST,
            "/api/v1/pools",
            json!({"name": "gpu", "slots": "four"}),
            "slots",
        ),
        (
            Method::POST,
            "/api/v1/pools",
            json!({"name": "gpu", "slots": -1}),
            "slots",
        ),
        (Method::POST, "/api/v1/pools", json!({"slots": 1}), "name"),
        (
            Method::PATCH,
            "/api/v1/dags/etl",
            json!({"is_paused": "yes"}),
            "is_paused",
        ),
        (
            Method::PATCH,
            "/api/v1/dags/etl",
            json!({"paused": true}),
            "paused",
        ),
        (
            Method::POST,
            "/api/v1/dags/etl/dagRuns",
            json!({"conf": "x=1"}),
            "conf",
        ),
        (
            Method::POST,
            "/api/v1/dags/etl/dagRuns",
            json!({"logical_date": "yesterday"}),
            "logical_date",
        ),
        (
            Method::PATCH,
            "/api/v1/dags/etl/dagRuns/r",
            json!({"state": "running"}),
            "state",
        ),
        (
            Method::PATCH,
            "/api/v1/dags/etl/dagRuns/r/taskInstances/extract",
            json!({"new_state": "skipped"}),
            "new_state",
        ),
        (
            Method::POST,
            "/api/v1/dags/etl/clearTaskInstances",
            json!({"dag_run_id": "r", "task_ids": ["nope"], "dry_run": false}),
            "nope",
        ),
        (
            Method::POST,
            "/api/v1/users",
            json!({"username": "x y", "role": "user"}),
            "username",
        ),
        (
            Method::POST,
            "/api/v1/users",
            json!({"username": "xy", "role": "god"}),
            "role",
        ),
    ];
    for (method, path, body, field) in cases {
        let reply = refused(
            &api,
            Call::new(method, path).json(&body),
            StatusCode::UNPROCESSABLE_ENTITY,
            field,
        )
        .await;
        assert!(reply.body["detail"].as_str().is_some(), "{reply:?}");
    }
}

#[tokio::test]
async fn unknown_ids_are_404_naming_the_id() {
    let api = Api::new().await;
    api.trigger("r").await;
    let cases = [
        (Method::GET, "/api/v1/dags/nope", "nope"),
        (Method::PATCH, "/api/v1/dags/nope", "nope"),
        (Method::GET, "/api/v1/dags/nope/dagRuns", "nope"),
        (Method::POST, "/api/v1/dags/nope/dagRuns", "nope"),
        (Method::GET, "/api/v1/dags/etl/dagRuns/ghost", "ghost"),
        (Method::PATCH, "/api/v1/dags/etl/dagRuns/ghost", "ghost"),
        (Method::DELETE, "/api/v1/dags/etl/dagRuns/ghost", "ghost"),
        (
            Method::GET,
            "/api/v1/dags/etl/dagRuns/r/taskInstances/phantom",
            "phantom",
        ),
        (
            Method::PATCH,
            "/api/v1/dags/etl/dagRuns/r/taskInstances/phantom",
            "phantom",
        ),
        (
            Method::GET,
            "/api/v1/dags/etl/dagRuns/r/taskInstances/extract?map_index=7",
            "map index 7",
        ),
        (
            Method::GET,
            "/api/v1/dags/etl/dagRuns/r/taskInstances/phantom/logs/1",
            "phantom",
        ),
        (
            Method::GET,
            "/api/v1/dags/etl/dagRuns/r/taskInstances/phantom/xcomEntries",
            "phantom",
        ),
        (Method::GET, "/api/v1/pools/shallow", "shallow"),
        (Method::PATCH, "/api/v1/pools/shallow", "shallow"),
        (Method::DELETE, "/api/v1/pools/shallow", "shallow"),
        (Method::PATCH, "/api/v1/users/ghost", "ghost"),
        (
            Method::GET,
            "/api/v1/no/such/endpoint",
            "/api/v1/no/such/endpoint",
        ),
    ];
    for (method, path, needle) in cases {
        let body = match method {
            Method::PATCH if path.contains("taskInstances") => json!({"new_state": "success"}),
            Method::PATCH if path.contains("dagRuns") => json!({"state": "success"}),
            Method::PATCH if path.contains("pools") => json!({"slots": 1}),
            Method::PATCH if path.contains("users") => json!({"role": "user"}),
            Method::PATCH => json!({"is_paused": true}),
            _ => json!({}),
        };
        let call = Call::new(method.clone(), path);
        let call = if matches!(method, Method::PATCH | Method::POST) {
            call.json(&body)
        } else {
            call
        };
        refused(&api, call, StatusCode::NOT_FOUND, needle).await;
    }
    refused(
        &api,
        Call::new(Method::PUT, "/api/v1/dags/etl"),
        StatusCode::METHOD_NOT_ALLOWED,
        "PUT",
    )
    .await;
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_the_parameter() {
    let api = Api::new().await;
    for (path, needle) in [
        ("/api/v1/dags?limit=abc", "limit"),
        ("/api/v1/dags?limit=0", "limit"),
        ("/api/v1/dags?limit=5000", "limit"),
        ("/api/v1/dags?offset=-1", "offset"),
        ("/api/v1/dags?order_by=colour", "colour"),
        ("/api/v1/dags?paused=maybe", "paused"),
        ("/api/v1/dags?colour=red", "colour"),
        ("/api/v1/dags/etl/dagRuns?state=sleeping", "sleeping"),
        (
            "/api/v1/dags/etl/dagRuns?logical_date_gte=monday",
            "logical_date_gte",
        ),
        (
            "/api/v1/dags/~/dagRuns/~/taskInstances?state=dozing",
            "dozing",
        ),
        (
            "/api/v1/dags/~/dagRuns/~/taskInstances?map_index=x",
            "map_index",
        ),
        ("/api/v1/dags/~/dagRuns/x/taskInstances", "DAG id"),
    ] {
        let reply = api.get(Role::Viewer, path).await;
        reply.expect(StatusCode::BAD_REQUEST).mentions(needle);
    }
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let api = Api::new().await;
    api.trigger("r").await;
    let big = format!(
        "{{\"dag_run_id\": \"big\", \"conf\": {{\"blob\": \"{}\"}}}}",
        "x".repeat(pave_rest::MAX_BODY_BYTES + 1)
    );
    // Every endpoint that takes a body.
    for (method, path) in [
        (Method::POST, "/api/v1/dags/etl/dagRuns"),
        (Method::PATCH, "/api/v1/dags/etl"),
        (Method::PATCH, "/api/v1/dags/etl/dagRuns/r"),
        (
            Method::PATCH,
            "/api/v1/dags/etl/dagRuns/r/taskInstances/extract",
        ),
        (Method::POST, "/api/v1/dags/etl/clearTaskInstances"),
        (Method::POST, "/api/v1/pools"),
        (Method::PATCH, "/api/v1/pools/default_pool"),
        (Method::POST, "/api/v1/users"),
        (Method::PATCH, "/api/v1/users/viewer"),
        (Method::POST, "/api/v1/auth/tokens"),
    ] {
        refused(
            &api,
            Call::new(method, path).raw("application/json", big.clone()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        )
        .await;
    }
    // Also before authentication has a say about the body: the login form.
    let reply = api
        .send(Call::new(Method::POST, "/api/v1/auth/login").raw("application/json", big))
        .await;
    reply.expect(StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn log_requests_cannot_traverse_paths() {
    let api = Api::new().await;
    api.trigger("r").await;
    api.set_ti("r", "extract", TaskState::Success, 1).await;
    let secret = api.logs.path().join("../outside.txt");
    std::fs::write(&secret, "secret").expect("write");
    let base = "/api/v1/dags/etl/dagRuns";
    for (path, status, needle) in [
        (
            format!("{base}/r/taskInstances/..%2F..%2F..%2Foutside.txt/logs/1"),
            StatusCode::NOT_FOUND,
            "../../../outside.txt",
        ),
        (
            format!("{base}/..%2F..%2Fr/taskInstances/extract/logs/1"),
            StatusCode::NOT_FOUND,
            "../../r",
        ),
        (
            format!("{base}/r/taskInstances/extract/logs/..%2F1"),
            StatusCode::BAD_REQUEST,
            "try_number",
        ),
        (
            format!("{base}/r/taskInstances/extract/logs/0"),
            StatusCode::BAD_REQUEST,
            "try_number",
        ),
        (
            format!("{base}/r/taskInstances/extract/logs/1?offset=-5"),
            StatusCode::BAD_REQUEST,
            "offset",
        ),
    ] {
        let reply = api.get(Role::Viewer, &path).await;
        reply.expect(status).mentions(needle);
        assert!(!reply.text.contains("secret"), "{reply:?}");
    }
}
