//! Pod subresources: `log` (with `follow`, `tailLines`, `container`,
//! `timestamps`, `limitBytes`) and `eviction` (policy/v1, 429 when blocked).

use super::{ApiResult, Params, channel_body, json_response};
use crate::cluster::Cluster;
use crate::error::{ApiError, status_body};
use crate::lifecycle::{self, DisruptionReason};
use crate::logs::PodLog;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use std::sync::Arc;

fn format_lines(lines: &[(Timestamp, String)], timestamps: bool) -> String {
    let mut out = String::new();
    for (t, l) in lines {
        if timestamps {
            out.push_str(&format!("{} ", t.strftime("%Y-%m-%dT%H:%M:%S%.9fZ")));
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

pub(crate) async fn log(
    State(cluster): State<Cluster>,
    Path((ns, name)): Path<(String, String)>,
    q: Params,
) -> ApiResult {
    let key = (ns, name.clone());
    let flag = |k: &str| matches!(q.get(k).map(String::as_str), Some("true" | "1"));
    let (log, is_first): (Option<Arc<PodLog>>, bool) = {
        let st = cluster.lock();
        let pod = &st
            .get::<Pod>(&key)
            .ok_or_else(|| ApiError::not_found("pods", &name))?
            .obj;
        let names: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| c.name.clone())
            .collect();
        let container = match q.get("container").filter(|c| !c.is_empty()) {
            Some(c) if names.contains(c) => c.clone(),
            Some(c) => {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            None if names.len() == 1 => names[0].clone(),
            None => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                )));
            }
        };
        if flag("previous") {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let log = st.logs.get(&uid).cloned();
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.waiting.is_none());
        if log.is_none() || !started {
            let reason = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.clone())
                .unwrap_or_else(|| "ContainerCreating".into());
            if !lifecycle::is_terminal(pod) {
                return Err(ApiError::bad_request(format!(
                    "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
                )));
            }
        }
        (log, names.first() == Some(&container))
    };
    let timestamps = flag("timestamps");
    let tail: Option<usize> = q.get("tailLines").and_then(|t| t.parse().ok());
    let limit: Option<usize> = q.get("limitBytes").and_then(|t| t.parse().ok());
    let Some(log) = log.filter(|_| is_first) else {
        return Ok(([(header::CONTENT_TYPE, "text/plain")], String::new()).into_response());
    };
    let mut rx = log.subscribe();
    let total = log.len();
    let start = tail.map_or(0, |t| total.saturating_sub(t));
    if !flag("follow") {
        let mut text = format_lines(&log.lines_from(start), timestamps);
        if let Some(l) = limit {
            let mut cut = l.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        return Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response());
    }
    let (tx, body_rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut next = start;
        loop {
            let lines = log.lines_from(next);
            next += lines.len();
            if !lines.is_empty()
                && tx
                    .send(Bytes::from(format_lines(&lines, timestamps)))
                    .await
                    .is_err()
            {
                return;
            }
            if log.is_finished() && log.len() == next {
                return;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain")],
        channel_body(body_rx),
    )
        .into_response())
}

pub(crate) async fn evict(
    State(cluster): State<Cluster>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let eviction: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("error decoding the eviction: {e}")))?
    };
    if let Some(n) = eviction.pointer("/metadata/name").and_then(Value::as_str)
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object: {name} != {n}"
        )));
    }
    let grace = eviction
        .pointer("/deleteOptions/gracePeriodSeconds")
        .and_then(Value::as_i64);
    let key = (ns, name.clone());
    let mut st = cluster.lock();
    let pod = st
        .get::<Pod>(&key)
        .ok_or_else(|| ApiError::not_found("pods", &name))?
        .obj
        .clone();
    let blocked = st.faults.blocked_evictions.iter().any(|m| m.matches(&pod));
    if blocked && !lifecycle::is_terminal(&pod) {
        let mut err = ApiError::too_many_requests(
            "Cannot evict pod as it would violate the pod's disruption budget.",
        );
        err.retry_after = None;
        err.details = Some(json!({
            "causes": [{
                "reason": "DisruptionBudget",
                "message": "The disruption budget pave-sim-pdb needs 1 healthy pods and has 1 currently",
            }]
        }));
        return Err(err);
    }
    if !lifecycle::is_terminal(&pod) {
        lifecycle::mark_disrupted(&mut st, &key, DisruptionReason::EvictionByEvictionAPI);
    }
    lifecycle::delete_pod(&mut st, &key, grace)?;
    Ok(json_response(201, &status_body(201, "", "", None)))
}
