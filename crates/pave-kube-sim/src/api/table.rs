//! `meta.k8s.io/v1` Tables, which `kubectl get` asks for: the columns the
//! real API server prints for pods and nodes.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use std::sync::Arc;

fn column(name: &str, type_: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({ "name": name, "type": type_, "format": format, "description": "", "priority": priority })
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// kubectl's short ages: `45s`, `3m12s`, `25m`, `5h3m`, `2d`.
fn age(created: &str) -> String {
    let Ok(t) = created.parse::<Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = Timestamp::now()
        .as_second()
        .saturating_sub(t.as_second())
        .max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{m}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => format!("{h}h{}m", m % 60),
        s if s < 48 * 3600 => format!("{h}h"),
        _ => format!("{d}d"),
    }
}

fn row(obj: &Value, cells: Vec<Value>, full_object: bool) -> Value {
    let object = if full_object {
        obj.clone()
    } else {
        json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(Value::Null),
        })
    };
    json!({ "cells": cells, "object": object })
}

fn table(columns: Vec<Value>, rows: Vec<Value>, rv: u64) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": rv.to_string() },
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The STATUS column of `kubectl get pods`.
fn pod_status(p: &Value) -> String {
    if !str_at(p, "/metadata/deletionTimestamp").is_empty() {
        return "Terminating".into();
    }
    let reason = str_at(p, "/status/reason");
    if !reason.is_empty() {
        return reason.into();
    }
    for cs in p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let waiting = str_at(cs, "/state/waiting/reason");
        if !waiting.is_empty() && waiting != "ContainerCreating" {
            return waiting.into();
        }
        let term = str_at(cs, "/state/terminated/reason");
        if !term.is_empty() {
            return term.into();
        }
    }
    let phase = str_at(p, "/status/phase");
    if phase == "Pending" && !str_at(p, "/spec/nodeName").is_empty() {
        return "ContainerCreating".into();
    }
    if phase.is_empty() {
        "Pending".into()
    } else {
        phase.into()
    }
}

pub(crate) fn pods(items: &[Arc<Value>], rv: u64, full_object: bool) -> Value {
    let columns = vec![
        column("Name", "string", 0),
        column("Ready", "string", 0),
        column("Status", "string", 0),
        column("Restarts", "string", 0),
        column("Age", "string", 0),
        column("IP", "string", 1),
        column("Node", "string", 1),
        column("Nominated Node", "string", 1),
        column("Readiness Gates", "string", 1),
    ];
    let rows = items
        .iter()
        .map(|p| {
            let statuses = p
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let total = p
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .into_iter()
                .flatten()
                .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let restarts: i64 = statuses
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                .sum();
            let or_none = |s: &str| {
                if s.is_empty() {
                    "<none>".to_string()
                } else {
                    s.to_string()
                }
            };
            let cells = vec![
                json!(str_at(p, "/metadata/name")),
                json!(format!("{ready}/{total}")),
                json!(pod_status(p)),
                json!(restarts.to_string()),
                json!(age(str_at(p, "/metadata/creationTimestamp"))),
                json!(or_none(str_at(p, "/status/podIP"))),
                json!(or_none(str_at(p, "/spec/nodeName"))),
                json!("<none>"),
                json!("<none>"),
            ];
            row(p, cells, full_object)
        })
        .collect();
    table(columns, rows, rv)
}

pub(crate) fn nodes(items: &[Arc<Value>], rv: u64, full_object: bool) -> Value {
    let columns = vec![
        column("Name", "string", 0),
        column("Status", "string", 0),
        column("Roles", "string", 0),
        column("Age", "string", 0),
        column("Version", "string", 0),
        column("Internal-IP", "string", 1),
        column("External-IP", "string", 1),
        column("OS-Image", "string", 1),
        column("Kernel-Version", "string", 1),
        column("Container-Runtime", "string", 1),
    ];
    let rows = items
        .iter()
        .map(|n| {
            let ready = n
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| str_at(c, "/type") == "Ready")
                .is_some_and(|c| str_at(c, "/status") == "True");
            let mut status = if ready { "Ready" } else { "NotReady" }.to_string();
            if n.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let cells = vec![
                json!(str_at(n, "/metadata/name")),
                json!(status),
                json!("<none>"),
                json!(age(str_at(n, "/metadata/creationTimestamp"))),
                json!(str_at(n, "/status/nodeInfo/kubeletVersion")),
                json!("127.0.0.1"),
                json!("<none>"),
                json!(str_at(n, "/status/nodeInfo/osImage")),
                json!(str_at(n, "/status/nodeInfo/kernelVersion")),
                json!(str_at(n, "/status/nodeInfo/containerRuntimeVersion")),
            ];
            row(n, cells, full_object)
        })
        .collect();
    table(columns, rows, rv)
}
