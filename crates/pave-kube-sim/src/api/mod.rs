//! The HTTP face of the cluster: an axum `Router` speaking the Kubernetes
//! wire protocol for pods and nodes (what kube and kubectl use).

pub(crate) mod discovery;
mod kinds;
mod objects;
mod patch;
mod pods;
mod table;
mod watch;

use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::faults::Verb;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::HashMap;

pub(crate) type Params = Query<HashMap<String, String>>;
pub(crate) type ApiResult = Result<Response, ApiError>;

/// A JSON response with this status.
pub(crate) fn json_response(code: u16, body: &serde_json::Value) -> Response {
    let code = axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Whether the client asked for a `meta.k8s.io` Table (kubectl get does).
pub(crate) fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The Kubernetes API router for `cluster`.
pub fn router(cluster: Cluster) -> Router {
    let pods = get(pod_collection_get)
        .post(pod_create)
        .delete(pod_collection_delete);
    let pod = get(pod_get)
        .put(pod_replace)
        .patch(pod_patch)
        .delete(pod_delete);
    let pod_status = get(pod_get).put(pod_status_replace).patch(pod_status_patch);
    let nodes = get(node_collection_get)
        .post(node_create)
        .delete(node_collection_delete);
    let node = get(node_get)
        .put(node_replace)
        .patch(node_patch)
        .delete(node_delete);
    let node_status = get(node_get)
        .put(node_status_replace)
        .patch(node_status_patch);
    Router::new()
        .route("/api/v1/namespaces/{ns}/pods", pods)
        .route("/api/v1/namespaces/{ns}/pods/{name}", pod)
        .route("/api/v1/namespaces/{ns}/pods/{name}/status", pod_status)
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pods::log))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/eviction",
            axum::routing::post(pods::evict),
        )
        .route("/api/v1/pods", get(all_pods_get))
        .route("/api/v1/nodes", nodes)
        .route("/api/v1/nodes/{name}", node)
        .route("/api/v1/nodes/{name}/status", node_status)
        .merge(discovery::routes())
        .fallback(|| async { ApiError::path_not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(
            cluster.clone(),
            inject_faults,
        ))
        .with_state(cluster)
}

/// Answers with an injected error when one matches the request.
async fn inject_faults(State(cluster): State<Cluster>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/api/v1/") {
        let query = req.uri().query().unwrap_or("");
        let is_watch = query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1");
        let is_collection = path.ends_with("/pods") || path.ends_with("/nodes");
        let verb = match *req.method() {
            Method::GET if is_watch => Verb::Watch,
            Method::GET if is_collection => Verb::List,
            Method::GET => Verb::Get,
            Method::POST => Verb::Create,
            Method::PUT => Verb::Update,
            Method::PATCH => Verb::Patch,
            _ => Verb::Delete,
        };
        let injected = cluster.lock().faults.take_error(verb, &path);
        if let Some(err) = injected {
            return err.into_response();
        }
    }
    next.run(req).await
}

// Thin handlers: the generic logic lives in `objects`, the kind-specific
// rules in `kinds`.

async fn pod_collection_get(
    State(c): State<Cluster>,
    Path(ns): Path<String>,
    q: Params,
    h: HeaderMap,
) -> ApiResult {
    objects::list_or_watch::<Pod>(&c, Some(ns), &q, wants_table(&h))
}
async fn all_pods_get(State(c): State<Cluster>, q: Params, h: HeaderMap) -> ApiResult {
    objects::list_or_watch::<Pod>(&c, None, &q, wants_table(&h))
}
async fn pod_create(State(c): State<Cluster>, Path(ns): Path<String>, body: Bytes) -> ApiResult {
    objects::create::<Pod>(&c, &ns, &body)
}
async fn pod_collection_delete(
    State(c): State<Cluster>,
    Path(ns): Path<String>,
    q: Params,
) -> ApiResult {
    objects::delete_collection::<Pod>(&c, Some(ns), &q)
}
async fn pod_get(
    State(c): State<Cluster>,
    Path((ns, name)): Path<(String, String)>,
    h: HeaderMap,
) -> ApiResult {
    objects::get::<Pod>(&c, (ns, name), wants_table(&h))
}
async fn pod_replace(
    State(c): State<Cluster>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    objects::replace::<Pod>(&c, (ns, name), &body, kinds::Part::Main)
}
async fn pod_status_replace(
    State(c): State<Cluster>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    objects::replace::<Pod>(&c, (ns, name), &body, kinds::Part::Status)
}
async fn pod_patch(
    State(c): State<Cluster>,
    Path((ns, name)): Path<(String, String)>,
    h: HeaderMap,
    body: Bytes,
) -> ApiResult {
    objects::patch::<Pod>(&c, (ns, name), content_type(&h), &body, kinds::Part::Main)
}
async fn pod_status_patch(
    State(c): State<Cluster>,
    Path((ns, name)): Path<(String, String)>,
    h: HeaderMap,
    body: Bytes,
) -> ApiResult {
    objects::patch::<Pod>(&c, (ns, name), content_type(&h), &body, kinds::Part::Status)
}
async fn pod_delete(
    State(c): State<Cluster>,
    Path((ns, name)): Path<(String, String)>,
    q: Params,
    body: Bytes,
) -> ApiResult {
    objects::delete::<Pod>(&c, (ns, name), &q, &body)
}

async fn node_collection_get(State(c): State<Cluster>, q: Params, h: HeaderMap) -> ApiResult {
    objects::list_or_watch::<Node>(&c, None, &q, wants_table(&h))
}
async fn node_create(State(c): State<Cluster>, body: Bytes) -> ApiResult {
    objects::create::<Node>(&c, "", &body)
}
async fn node_collection_delete(State(c): State<Cluster>, q: Params) -> ApiResult {
    objects::delete_collection::<Node>(&c, None, &q)
}
async fn node_get(State(c): State<Cluster>, Path(name): Path<String>, h: HeaderMap) -> ApiResult {
    objects::get::<Node>(&c, (String::new(), name), wants_table(&h))
}
async fn node_replace(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    objects::replace::<Node>(&c, (String::new(), name), &body, kinds::Part::Main)
}
async fn node_status_replace(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    objects::replace::<Node>(&c, (String::new(), name), &body, kinds::Part::Status)
}
async fn node_patch(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> ApiResult {
    objects::patch::<Node>(
        &c,
        (String::new(), name),
        content_type(&h),
        &body,
        kinds::Part::Main,
    )
}
async fn node_status_patch(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> ApiResult {
    objects::patch::<Node>(
        &c,
        (String::new(), name),
        content_type(&h),
        &body,
        kinds::Part::Status,
    )
}
async fn node_delete(
    State(c): State<Cluster>,
    Path(name): Path<String>,
    q: Params,
    body: Bytes,
) -> ApiResult {
    objects::delete::<Node>(&c, (String::new(), name), &q, &body)
}

/// A streaming body from a channel of chunks.
pub(crate) fn channel_body(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Body::from_stream(stream)
}
