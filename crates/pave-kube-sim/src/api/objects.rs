//! The generic verbs for any stored kind: list (with limit/continue and
//! selectors), get, create, replace, patch, delete and delete-collection,
//! with resourceVersion checks and `v1 Status` errors.

use super::kinds::{ApiKind, Part};
use super::patch::{self, PatchKind};
use super::{ApiResult, json_response, watch};
use crate::cluster::Cluster;
use crate::error::{ApiError, FieldError};
use crate::lifecycle;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{EventType, Key, ObjKind};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Selectors and scope of a list or watch request.
pub(crate) struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn parse<K: ApiKind>(
        namespace: Option<String>,
        q: &HashMap<String, String>,
    ) -> Result<Self, ApiError> {
        Ok(Filter {
            namespace,
            labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
            fields: FieldSelector::parse(
                q.get("fieldSelector").map(String::as_str).unwrap_or(""),
                K::FIELDS,
            )?,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let ns_ok = self.namespace.as_deref().is_none_or(|ns| {
            obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
        });
        ns_ok && self.labels.matches_object(obj) && self.fields.matches_object(obj)
    }
}

fn bad_body(e: serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("error decoding the request body: {e}"))
}

pub(crate) fn list_or_watch<K: ApiKind>(
    cluster: &Cluster,
    namespace: Option<String>,
    q: &HashMap<String, String>,
    table: bool,
) -> ApiResult {
    let filter = Filter::parse::<K>(namespace, q)?;
    if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
        return watch::serve::<K>(cluster, filter, q, table);
    }
    let limit: usize = match q.get("limit").map(String::as_str) {
        None | Some("") | Some("0") => usize::MAX,
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
    };
    let st = cluster.lock();
    let (list_rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        None => (st.rv, None),
        Some(token) => decode_continue(token)?,
    };
    let mut items: Vec<Arc<Value>> = Vec::new();
    let mut remaining = 0usize;
    let mut last_key: Option<Key> = None;
    for (key, stored) in K::table(&st) {
        if after.as_ref().is_some_and(|a| key <= a) || !filter.matches(&stored.json) {
            continue;
        }
        if items.len() < limit {
            items.push(stored.json.clone());
            last_key = Some(key.clone());
        } else {
            remaining += 1;
        }
    }
    drop(st);
    if table {
        let full = q.get("includeObject").map(String::as_str) == Some("Object");
        return Ok(json_response(200, &K::to_table(&items, list_rv, full)));
    }
    let mut meta = json!({ "resourceVersion": list_rv.to_string() });
    if remaining > 0
        && let Some((ns, name)) = last_key
    {
        meta["continue"] = json!(URL_SAFE_NO_PAD.encode(format!("{list_rv}\n{ns}\n{name}")));
        meta["remainingItemCount"] = json!(remaining);
    }
    let mut out = format!(
        "{{\"kind\":\"{}\",\"apiVersion\":\"v1\",\"metadata\":{},\"items\":[",
        <K as k8s_openapi::ListableResource>::LIST_KIND,
        meta
    );
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item.to_string());
    }
    out.push_str("]}");
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}

fn decode_continue(token: &str) -> Result<(u64, Option<Key>), ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '\n');
    let rv = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
    let ns = parts.next().ok_or_else(bad)?.to_string();
    let name = parts.next().ok_or_else(bad)?.to_string();
    Ok((rv, Some((ns, name))))
}

pub(crate) fn get<K: ApiKind>(cluster: &Cluster, key: Key, table: bool) -> ApiResult {
    let st = cluster.lock();
    let stored = st
        .get::<K>(&key)
        .ok_or_else(|| ApiError::not_found(K::URL_PATH_SEGMENT, &key.1))?;
    if table {
        return Ok(json_response(
            200,
            &K::to_table(std::slice::from_ref(&stored.json), st.rv, false),
        ));
    }
    Ok(json_response(200, &stored.json))
}

fn generated_suffix(n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % 27) as usize] as char;
            x /= 27;
            c
        })
        .collect()
}

pub(crate) fn create<K: ApiKind>(cluster: &Cluster, namespace: &str, body: &[u8]) -> ApiResult {
    let obj: K = serde_json::from_slice(body).map_err(bad_body)?;
    let mut st = cluster.lock();
    let created = create_locked(&mut st, namespace, obj)?;
    Ok(json_response(201, &created))
}

fn create_locked<K: ApiKind>(
    st: &mut crate::store::State,
    namespace: &str,
    mut obj: K,
) -> Result<Arc<Value>, ApiError> {
    let meta = obj.metadata_mut();
    if K::NAMESPACED {
        match meta.namespace.as_deref() {
            None | Some("") => meta.namespace = Some(namespace.to_string()),
            Some(ns) if ns == namespace => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    } else {
        meta.namespace = None;
    }
    if meta.name.as_deref().is_none_or(str::is_empty) {
        match meta.generate_name.clone().filter(|g| !g.is_empty()) {
            Some(prefix) => {
                let uid = st.next_uid();
                let n = u64::from_str_radix(uid.rsplit('-').next().unwrap_or("0"), 16).unwrap_or(0);
                obj.metadata_mut().name = Some(format!("{prefix}{}", generated_suffix(n)));
            }
            None => {
                return Err(ApiError::invalid(
                    K::KIND,
                    "",
                    &[FieldError::required(
                        "metadata.name",
                        "name or generateName is required",
                    )],
                ));
            }
        }
    }
    let key = crate::store::key_of(&obj);
    if st.get::<K>(&key).is_some() {
        return Err(ApiError::already_exists(K::URL_PATH_SEGMENT, &key.1));
    }
    let uid = st.next_uid();
    let meta = obj.metadata_mut();
    meta.uid = Some(uid);
    meta.creation_timestamp = Some(lifecycle::now());
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    meta.generation = Some(1);
    K::prepare_create(st, &mut obj)?;
    Ok(st.put(obj, EventType::Added))
}

pub(crate) fn replace<K: ApiKind>(
    cluster: &Cluster,
    key: Key,
    body: &[u8],
    part: Part,
) -> ApiResult {
    let new: K = serde_json::from_slice(body).map_err(bad_body)?;
    let mut st = cluster.lock();
    let json = update_locked(&mut st, &key, new, part, true)?;
    Ok(json_response(200, &json))
}

/// Replaces the stored object with `new` after the concurrency and field rules.
fn update_locked<K: ApiKind>(
    st: &mut crate::store::State,
    key: &Key,
    mut new: K,
    part: Part,
    check_rv: bool,
) -> Result<Arc<Value>, ApiError> {
    let old = st
        .get::<K>(key)
        .ok_or_else(|| ApiError::not_found(K::URL_PATH_SEGMENT, &key.1))?
        .obj
        .clone();
    let plural = K::URL_PATH_SEGMENT;
    let new_meta = new.metadata();
    if new_meta.name.as_deref().is_some_and(|n| n != key.1) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            new_meta.name.as_deref().unwrap_or(""),
            key.1
        )));
    }
    let old_rv = old.metadata().resource_version.clone();
    if check_rv
        && let Some(rv) = new_meta
            .resource_version
            .as_deref()
            .filter(|r| !r.is_empty())
        && Some(rv) != old_rv.as_deref()
    {
        return Err(ApiError::modified(plural, &key.1));
    }
    let om = old.metadata().clone();
    let meta = new.metadata_mut();
    meta.name = om.name.clone();
    meta.namespace = om.namespace.clone();
    meta.uid = om.uid.clone();
    meta.creation_timestamp = om.creation_timestamp.clone();
    meta.deletion_timestamp = om.deletion_timestamp.clone();
    meta.deletion_grace_period_seconds = om.deletion_grace_period_seconds;
    meta.generation = om.generation;
    meta.resource_version = old_rv;
    K::prepare_update(&old, &mut new, part)?;
    if crate::store::to_json(&new) == crate::store::to_json(&old) {
        // A no-op write does not bump the resourceVersion, as in Kubernetes.
        return st
            .get::<K>(key)
            .map(|s| s.json.clone())
            .ok_or_else(|| ApiError::not_found(plural, &key.1));
    }
    let json = st.put(new, EventType::Modified);
    if K::OBJ_KIND == ObjKind::Pod {
        lifecycle::finish_deletion_if_done(st, key);
    }
    Ok(json)
}

pub(crate) fn patch<K: ApiKind>(
    cluster: &Cluster,
    key: Key,
    content_type: &str,
    body: &[u8],
    part: Part,
) -> ApiResult {
    let kind = PatchKind::from_content_type(content_type)?;
    let p = patch::parse_body(kind, body)?;
    let mut st = cluster.lock();
    let Some(current) = st.get::<K>(&key).map(|s| s.json.clone()) else {
        if kind == PatchKind::Apply && part == Part::Main {
            let obj: K = serde_json::from_value(p).map_err(bad_body)?;
            let created = create_locked(&mut st, &key.0, obj)?;
            return Ok(json_response(201, &created));
        }
        return Err(ApiError::not_found(K::URL_PATH_SEGMENT, &key.1));
    };
    if let Some(rv) = p
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && current
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            != Some(rv)
    {
        return Err(ApiError::modified(K::URL_PATH_SEGMENT, &key.1));
    }
    let mut target = (*current).clone();
    patch::apply(kind, &mut target, &p)?;
    let new: K = serde_json::from_value(target).map_err(|e| {
        ApiError::invalid(
            K::KIND,
            &key.1,
            &[FieldError::invalid("patch", "", e.to_string())],
        )
    })?;
    let json = update_locked(&mut st, &key, new, part, false)?;
    Ok(json_response(200, &json))
}

/// `gracePeriodSeconds` and preconditions from the query and the DeleteOptions body.
fn delete_options(
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<(Option<i64>, Value), ApiError> {
    let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(bad_body)?
    };
    let grace = opts
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    let pre = opts.get("preconditions").cloned().unwrap_or(Value::Null);
    Ok((grace, pre))
}

pub(crate) fn delete<K: ApiKind>(
    cluster: &Cluster,
    key: Key,
    q: &HashMap<String, String>,
    body: &[u8],
) -> ApiResult {
    let (grace, pre) = delete_options(q, body)?;
    let mut st = cluster.lock();
    let current = st
        .get::<K>(&key)
        .ok_or_else(|| ApiError::not_found(K::URL_PATH_SEGMENT, &key.1))?
        .json
        .clone();
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(want) = pre.get(field).and_then(Value::as_str) {
            let have = current
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if want != have {
                return Err(ApiError::conflict(
                    K::URL_PATH_SEGMENT,
                    &key.1,
                    &format!(
                        "Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}"
                    ),
                ));
            }
        }
    }
    let (json, gone) = K::delete(&mut st, &key, grace)?;
    Ok(json_response(if gone { 200 } else { 202 }, &json))
}

pub(crate) fn delete_collection<K: ApiKind>(
    cluster: &Cluster,
    namespace: Option<String>,
    q: &HashMap<String, String>,
) -> ApiResult {
    let filter = Filter::parse::<K>(namespace, q)?;
    let grace = q.get("gracePeriodSeconds").and_then(|g| g.parse().ok());
    let mut st = cluster.lock();
    let keys: Vec<Key> = K::table(&st)
        .iter()
        .filter(|(_, s)| filter.matches(&s.json))
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for key in keys {
        if let Ok((json, _)) = K::delete(&mut st, &key, grace) {
            items.push((*json).clone());
        }
    }
    let body = json!({
        "kind": <K as k8s_openapi::ListableResource>::LIST_KIND,
        "apiVersion": "v1",
        "metadata": { "resourceVersion": st.rv.to_string() },
        "items": items,
    });
    Ok(json_response(200, &body))
}
