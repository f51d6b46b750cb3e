//! Merging a task's `pod_override` over the pod template, in the spirit of
//! Kubernetes' strategic merge patch: objects merge key by key, lists of
//! named things (containers, init containers, volumes, env, ports, volume
//! mounts) merge item by item by their `name`, other lists and scalars are
//! replaced, and `null` deletes a key.

use serde_json::Value;

/// Lists whose items merge by `name`.
const NAMED_LISTS: &[&str] = &[
    "containers",
    "initContainers",
    "ephemeralContainers",
    "volumes",
    "env",
    "ports",
    "volumeMounts",
    "volumeDevices",
    "imagePullSecrets",
];

/// Merges `patch` over `base` in place.
pub fn merge(base: &mut Value, patch: &Value) {
    merge_at(base, patch, "");
}

fn merge_at(base: &mut Value, patch: &Value, key: &str) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) = b.get_mut(k) {
                    merge_at(existing, v, k);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (Value::Array(b), Value::Array(p)) if NAMED_LISTS.contains(&key) => {
            for item in p {
                let name = item.get("name").and_then(Value::as_str);
                let found = name.and_then(|n| {
                    b.iter_mut()
                        .find(|e| e.get("name").and_then(Value::as_str) == Some(n))
                });
                match found {
                    Some(existing) => merge_at(existing, item, ""),
                    None => b.push(item.clone()),
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_null_deletes() {
        let mut base = json!({"spec": {"containers": [
            {"name": "base", "image": "a", "env": [{"name": "X", "value": "1"}]},
            {"name": "sidecar", "image": "s"}
        ], "nodeSelector": {"a": "b"}, "tolerations": [{"key": "x"}]}});
        merge(
            &mut base,
            &json!({"spec": {"containers": [
            {"name": "base", "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "3"}]},
            {"name": "extra", "image": "e"}
        ], "nodeSelector": null, "tolerations": [{"key": "y"}]}}),
        );
        assert_eq!(
            base,
            json!({"spec": {"containers": [
            {"name": "base", "image": "a", "env": [{"name": "X", "value": "3"}, {"name": "Y", "value": "2"}]},
            {"name": "sidecar", "image": "s"},
            {"name": "extra", "image": "e"}
        ], "tolerations": [{"key": "y"}]}})
        );
    }
}
