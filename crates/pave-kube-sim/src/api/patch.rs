//! The PATCH formats kube and kubectl send: JSON merge patch (RFC 7386),
//! strategic merge patch (merge keys for the lists pods and nodes use),
//! JSON patch (RFC 6902), and server-side apply (treated as a strategic
//! merge of the applied configuration).

use crate::error::ApiError;
use serde_json::{Map, Value};

/// Which patch format a request uses, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Parses a patch body (JSON, or YAML for apply).
pub(crate) fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(e) if kind == PatchKind::Apply => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the patch is not UTF-8"))?;
            serde_saphyr::from_str(text).map_err(|y| {
                ApiError::bad_request(format!("error decoding patch: {e}; as YAML: {y}"))
            })
        }
        Err(e) => Err(ApiError::bad_request(format!("error decoding patch: {e}"))),
    }
}

/// Applies `patch` to `target`.
pub(crate) fn apply(kind: PatchKind, target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    match kind {
        PatchKind::Merge => {
            merge(target, patch);
            Ok(())
        }
        PatchKind::Strategic | PatchKind::Apply => {
            strategic(target, patch, "");
            Ok(())
        }
        PatchKind::Json => json_patch(target, patch),
    }
}

/// RFC 7386: objects merge, `null` deletes, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The merge key of a list field in pods and nodes (`None`: replace the list).
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "volumeMounts"
        | "imagePullSecrets"
        | "containerStatuses"
        | "initContainerStatuses" => Some("name"),
        "conditions" | "addresses" => Some("type"),
        "taints" => Some("key"),
        "ownerReferences" => Some("uid"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

fn strategic(target: &mut Value, patch: &Value, _field: &str) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut v = patch.clone();
        if let Value::Object(m) = &mut v {
            m.remove("$patch");
        }
        *target = v;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Value::Array(del)) = (t.get_mut(list), v) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v, merge_key(k)) {
            (Some(Value::Array(cur)), Value::Array(items), Some(mk)) => {
                for item in items {
                    let id = item.get(mk).cloned();
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    let pos = id
                        .as_ref()
                        .and_then(|id| cur.iter().position(|c| c.get(mk) == Some(id)));
                    match (pos, delete) {
                        (Some(i), true) => {
                            cur.remove(i);
                        }
                        (Some(i), false) => strategic(&mut cur[i], item, k),
                        (None, true) => {}
                        (None, false) => cur.push(item.clone()),
                    }
                }
            }
            (Some(Value::Array(cur)), Value::Array(items), None) if k == "finalizers" => {
                for item in items {
                    if !cur.contains(item) {
                        cur.push(item.clone());
                    }
                }
            }
            (Some(cur), _, _) if v.is_object() && cur.is_object() => strategic(cur, v, k),
            _ => {
                let mut v = v.clone();
                strip_directives(&mut v);
                t.insert(k.clone(), v);
            }
        }
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

fn pointer_parts(path: &str) -> Result<Vec<String>, ApiError> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {path:?}")))?;
    Ok(rest
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_mut<'a>(root: &'a mut Value, parts: &[String]) -> Result<&'a mut Value, ApiError> {
    let mut cur = root;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| ApiError::invalid_patch(format!("path segment {p:?} not found")))?;
    }
    Ok(cur)
}

fn add_at(root: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    let parts = pointer_parts(path)?;
    let Some((last, parents)) = parts.split_last() else {
        *root = value;
        return Ok(());
    };
    match parent_mut(root, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| {
                        ApiError::invalid_patch(format!("index {last:?} out of range"))
                    })?
            };
            a.insert(i, value);
        }
        _ => return Err(ApiError::invalid_patch(format!("cannot add at {path:?}"))),
    }
    Ok(())
}

fn remove_at(root: &mut Value, path: &str) -> Result<Value, ApiError> {
    let parts = pointer_parts(path)?;
    let Some((last, parents)) = parts.split_last() else {
        return Err(ApiError::invalid_patch(
            "cannot remove the whole object".into(),
        ));
    };
    let missing = || ApiError::invalid_patch(format!("path {path:?} not found"));
    match parent_mut(root, parents)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(missing)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let value = || op.get("value").cloned().unwrap_or(Value::Null);
        let from = op.get("from").and_then(Value::as_str).unwrap_or("");
        match name {
            "add" => add_at(target, path, value())?,
            "remove" => {
                remove_at(target, path)?;
            }
            "replace" => {
                remove_at(target, path)?;
                add_at(target, path, value())?;
            }
            "move" => {
                let v = remove_at(target, from)?;
                add_at(target, path, v)?;
            }
            "copy" => {
                let v = target
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| ApiError::invalid_patch(format!("path {from:?} not found")))?;
                add_at(target, path, v)?;
            }
            "test" => {
                if target.pointer(path) != Some(&value()) {
                    return Err(ApiError::invalid_patch(format!("test failed at {path:?}")));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown JSON patch operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

impl ApiError {
    fn invalid_patch(message: String) -> Self {
        let mut e = ApiError::bad_request(format!(
            "the server rejected our request due to an error in our request: {message}"
        ));
        e.code = 422;
        e.reason = "Invalid";
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_formats() {
        let mut v = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        apply(
            PatchKind::Merge,
            &mut v,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
        )
        .expect("merge");
        assert_eq!(v["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        apply(
            PatchKind::Strategic,
            &mut v,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "True"}]}}),
        )
        .expect("smp");
        assert_eq!(v["status"]["conditions"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["status"]["conditions"][0]["status"], "True");
        apply(
            PatchKind::Json,
            &mut v,
            &json!([{"op": "add", "path": "/metadata/labels/d", "value": "4"}, {"op": "remove", "path": "/metadata/labels/b"}]),
        )
        .expect("json patch");
        assert_eq!(v["metadata"]["labels"], json!({"c": "3", "d": "4"}));
        assert!(
            apply(
                PatchKind::Json,
                &mut v,
                &json!([{"op": "remove", "path": "/nope"}])
            )
            .is_err()
        );
    }
}
