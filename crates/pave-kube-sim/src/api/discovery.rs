//! Discovery and health endpoints: `/version`, `/api`, `/api/v1`, `/apis`,
//! `/apis/policy/v1`, `/healthz`, `/readyz`, `/livez`.

use super::json_response;
use crate::cluster::Cluster;
use axum::Router;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

/// The version the simulator reports (`kubectl version`, node info).
pub const GIT_VERSION: &str = "v1.33.0-pave-sim";

fn resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str], short: &[&str]) -> Value {
    let mut r = json!({
        "name": name,
        "singularName": if name.contains('/') { "" } else { name.trim_end_matches('s') },
        "namespaced": namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if !short.is_empty() {
        r["shortNames"] = json!(short);
    }
    r
}

fn api_v1() -> Value {
    let all = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": [
            resource("nodes", "Node", false, &all, &["no"]),
            resource("nodes/status", "Node", false, &["get", "patch", "update"], &[]),
            resource("pods", "Pod", true, &all, &["po"]),
            resource("pods/eviction", "Eviction", true, &["create"], &[]),
            resource("pods/log", "Pod", true, &["get"], &[]),
            resource("pods/status", "Pod", true, &["get", "patch", "update"], &[]),
        ]
    })
}

async fn version() -> Response {
    json_response(
        200,
        &json!({
            "major": "1",
            "minor": "33",
            "gitVersion": GIT_VERSION,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.24",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
    )
}

async fn api() -> Response {
    json_response(
        200,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }],
        }),
    )
}

async fn apis() -> Response {
    let policy = json!({ "groupVersion": "policy/v1", "version": "v1" });
    json_response(
        200,
        &json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [{ "name": "policy", "versions": [policy], "preferredVersion": policy }],
        }),
    )
}

async fn policy_v1() -> Response {
    json_response(
        200,
        &json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "policy/v1",
            "resources": [],
        }),
    )
}

/// The discovery routes.
pub(crate) fn routes() -> Router<Cluster> {
    Router::new()
        .route("/version", get(version))
        .route("/api", get(api))
        .route("/api/v1", get(|| async { json_response(200, &api_v1()) }))
        .route("/apis", get(apis))
        .route("/apis/policy/v1", get(policy_v1))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
}
