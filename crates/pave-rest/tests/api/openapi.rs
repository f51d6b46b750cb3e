//! The OpenAPI document: valid in shape, every route in it, and every
//! route in it answers (and demands authentication unless it is health
//! or login).

use super::{Api, Call};
use axum::http::{Method, StatusCode};
use pave_store::Role;
use serde_json::Value;

/// Every endpoint of `/api/v1`, as (method, path relative to the server).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/version"),
    ("get", "/importErrors"),
    ("get", "/dags"),
    ("get", "/dags/{dag_id}"),
    ("patch", "/dags/{dag_id}"),
    ("get", "/dags/{dag_id}/tasks"),
    ("get", "/dags/{dag_id}/dagVersions"),
    ("get", "/dags/{dag_id}/dagVersions/{version_number}"),
    ("get", "/dagSources/{dag_id}"),
    ("get", "/dags/{dag_id}/dagRuns"),
    ("post", "/dags/{dag_id}/dagRuns"),
    ("get", "/dags/{dag_id}/dagRuns/{dag_run_id}"),
    ("patch", "/dags/{dag_id}/dagRuns/{dag_run_id}"),
    ("delete", "/dags/{dag_id}/dagRuns/{dag_run_id}"),
    ("get", "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances"),
    (
        "get",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
    ),
    (
        "patch",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
    ),
    (
        "get",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries",
    ),
    (
        "get",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
    ),
    (
        "get",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
    ),
    (
        "get",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
    ),
    ("post", "/dags/{dag_id}/clearTaskInstances"),
    ("get", "/pools"),
    ("post", "/pools"),
    ("get", "/pools/{pool_name}"),
    ("patch", "/pools/{pool_name}"),
    ("delete", "/pools/{pool_name}"),
    ("get", "/users"),
    ("post", "/users"),
    ("patch", "/users/{username}"),
    ("delete", "/users/{username}"),
    ("post", "/auth/login"),
    ("post", "/auth/logout"),
    ("get", "/auth/me"),
    ("get", "/auth/tokens"),
    ("post", "/auth/tokens"),
    ("delete", "/auth/tokens/{token_id}"),
];

async fn document(api: &Api) -> Value {
    let r = api.get(Role::Viewer, "/api/v1/openapi.json").await;
    r.expect(StatusCode::OK);
    r.body
}

#[tokio::test]
async fn the_document_is_openapi_3_and_lists_every_route() {
    let api = Api::new().await;
    let doc = document(&api).await;
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3."),
        "{doc}"
    );
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let paths = doc["paths"].as_object().expect("paths");
    let mut listed = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("a path item") {
            if !["get", "post", "patch", "put", "delete"].contains(&method.as_str()) {
                continue;
            }
            listed += 1;
            assert!(
                ROUTES.contains(&(method.as_str(), path.as_str())),
                "undocumented in the test: {method} {path}"
            );
            assert!(
                op["responses"].is_object(),
                "{method} {path} has no responses"
            );
            // Every schema reference resolves.
            for reference in refs(op) {
                let name = reference.trim_start_matches("#/components/schemas/");
                assert!(
                    doc["components"]["schemas"][name].is_object(),
                    "{method} {path}: dangling {reference}"
                );
            }
        }
    }
    for (method, path) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "missing from the document: {method} {path}"
        );
    }
    assert_eq!(listed, ROUTES.len());
    // Only health and login are open.
    let open: Vec<&str> = ROUTES
        .iter()
        .filter(|(m, p)| paths[*p][*m]["security"] == serde_json::json!([{}]))
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(open, ["/health", "/auth/login"]);
}

fn refs(v: &Value) -> Vec<String> {
    match v {
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| {
                if k == "$ref" {
                    v.as_str().map(str::to_owned).into_iter().collect()
                } else {
                    refs(v)
                }
            })
            .collect(),
        Value::Array(a) => a.iter().flat_map(refs).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn every_route_answers_and_only_health_and_login_are_open() {
    let api = Api::new().await;
    api.send(Call::new(Method::GET, "/api/v1/openapi.json"))
        .await
        .expect(StatusCode::UNAUTHORIZED);
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{dag_id}", "etl")
            .replace("{dag_run_id}", "r")
            .replace("{task_id}", "extract")
            .replace("{try_number}", "1")
            .replace("{xcom_key}", "k")
            .replace("{version_number}", "1")
            .replace("{pool_name}", "p")
            .replace("{username}", "u")
            .replace("{token_id}", "1");
        let method: Method = method.to_uppercase().parse().expect("a method");
        let reply = api
            .send(Call::new(method.clone(), &format!("/api/v1{concrete}")))
            .await;
        let open = *path == "/health" || *path == "/auth/login";
        if open {
            assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_ne!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        } else {
            reply.expect(StatusCode::UNAUTHORIZED);
        }
    }
}
