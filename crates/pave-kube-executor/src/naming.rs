//! Pod names and labels: deterministic from an attempt's identity, so that a
//! create repeated after a crash names the same Pod (409 means "adopt"), and
//! DNS-safe whatever the DAG and task ids look like.

use pave_executor::AttemptKey;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Label: the pave installation that owns the Pod (its watcher selects on it).
pub const INSTALLATION_LABEL: &str = "pave.dev/installation";
/// Label: the DAG id (sanitized to a label value; the exact id is an annotation).
pub const DAG_LABEL: &str = "pave.dev/dag-id";
/// Label: the task id (sanitized; the exact id is an annotation).
pub const TASK_LABEL: &str = "pave.dev/task-id";
/// Label: a hash of the run id (run ids hold characters labels may not).
pub const RUN_HASH_LABEL: &str = "pave.dev/run-id-hash";
/// Label: the map index (`unmapped` for an unmapped task instance: label
/// values must start with an alphanumeric, so `-1` cannot be one).
pub const MAP_INDEX_LABEL: &str = "pave.dev/map-index";
/// Label: the try number.
pub const TRY_LABEL: &str = "pave.dev/try-number";
/// Label every pave Pod carries.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Annotations with the exact ids.
pub const DAG_ANNOTATION: &str = "pave.dev/dag-id";
/// The exact run id.
pub const RUN_ANNOTATION: &str = "pave.dev/run-id";
/// The exact task id.
pub const TASK_ANNOTATION: &str = "pave.dev/task-id";
/// Set when a spot-allowed task was moved to on-demand capacity.
pub const SPOT_FALLBACK_ANNOTATION: &str = "pave.dev/spot-fallback";
/// The attempt's `execution_timeout` in seconds (`3600`, `1.5`), so that
/// an executor adopting the pod after a restart still enforces it.
pub const EXECUTION_TIMEOUT_ANNOTATION: &str = "pave.dev/execution-timeout-seconds";

/// The annotation value of an execution timeout: whole seconds, or seconds
/// with a fraction.
pub fn timeout_annotation(d: std::time::Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}", d.as_secs_f64())
    }
}

/// The execution timeout a pod was created with, from its annotation;
/// `None` when it has none or an unreadable one.
pub fn execution_timeout_of(pod: &k8s_openapi::api::core::v1::Pod) -> Option<std::time::Duration> {
    let value = pod
        .metadata
        .annotations
        .as_ref()?
        .get(EXECUTION_TIMEOUT_ANNOTATION)?;
    let secs: f64 = value.trim().parse().ok()?;
    std::time::Duration::try_from_secs_f64(secs).ok()
}

/// Longest Pod name used: Pod names are DNS subdomains (253), but the name
/// is also the Pod's hostname, a DNS label (63).
const MAX_NAME: usize = 63;

/// The Pod name of an attempt: `pave-<dag>-<task>[-<map>]-t<try>-<hash>`, each
/// id lowercased with other characters turned into `-`, shortened so the
/// whole stays within 63 characters. The 10-hex-digit hash covers the
/// installation and the exact ids, so different attempts never share a name.
pub fn pod_name(installation: &str, key: &AttemptKey) -> String {
    let hash = hash_hex(
        &[
            installation,
            key.dag_id.as_str(),
            key.run_id.as_str(),
            key.task_id.as_str(),
            &key.map_index.0.to_string(),
            &key.try_number.0.to_string(),
        ],
        10,
    );
    let mut suffix = String::new();
    if !key.map_index.is_unmapped() {
        suffix.push_str(&format!("-{}", key.map_index.0));
    }
    suffix.push_str(&format!("-t{}-{hash}", key.try_number.0));
    // "pave-" + dag + "-" + task + suffix <= 63
    let room = MAX_NAME.saturating_sub(5 + 1 + suffix.len());
    let dag = dns_part(key.dag_id.as_str());
    let task = dns_part(key.task_id.as_str());
    let (dag_len, task_len) = split_room(dag.len(), task.len(), room);
    let dag = trim_dashes(&dag[..dag_len]);
    let task = trim_dashes(&task[..task_len]);
    let mut name = String::from("pave");
    for part in [dag, task] {
        if !part.is_empty() {
            name.push('-');
            name.push_str(part);
        }
    }
    name.push_str(&suffix);
    name
}

/// The labels identifying an attempt's Pod.
pub fn labels(installation: &str, key: &AttemptKey) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), "pave".to_owned()),
        (INSTALLATION_LABEL.to_owned(), label_value(installation)),
        (DAG_LABEL.to_owned(), label_value(key.dag_id.as_str())),
        (TASK_LABEL.to_owned(), label_value(key.task_id.as_str())),
        (
            RUN_HASH_LABEL.to_owned(),
            hash_hex(&[key.run_id.as_str()], 16),
        ),
        (
            MAP_INDEX_LABEL.to_owned(),
            if key.map_index.is_unmapped() {
                "unmapped".to_owned()
            } else {
                key.map_index.0.to_string()
            },
        ),
        (TRY_LABEL.to_owned(), key.try_number.0.to_string()),
    ])
}

/// The annotations with the exact ids of an attempt.
pub fn annotations(key: &AttemptKey) -> BTreeMap<String, String> {
    BTreeMap::from([
        (DAG_ANNOTATION.to_owned(), key.dag_id.to_string()),
        (RUN_ANNOTATION.to_owned(), key.run_id.to_string()),
        (TASK_ANNOTATION.to_owned(), key.task_id.to_string()),
    ])
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, starting and ending
/// alphanumeric; other characters become `_`. Long values keep a hash.
pub fn label_value(s: &str) -> String {
    let mut v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if v.len() > 63 {
        v = format!("{}-{}", &v[..52], hash_hex(&[s], 10));
    }
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// Lowercase alphanumerics and `-`, from any id.
fn dns_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out
}

fn trim_dashes(s: &str) -> &str {
    s.trim_matches('-')
}

/// Shares `room` characters between two parts, the shorter one first.
fn split_room(a: usize, b: usize, room: usize) -> (usize, usize) {
    if a + b < room {
        return (a, b);
    }
    // One character goes to the dash between the parts.
    let room = room.saturating_sub(1);
    let half = room / 2;
    if a <= half {
        (a, room - a)
    } else if b <= half {
        (room - b, b)
    } else {
        (half, room - half)
    }
}

fn hash_hex(parts: &[&str], len: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s.truncate(len);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use pave_core::{MapIndex, TryNumber};

    fn key(dag: &str, task: &str, map: i32, try_number: u32) -> AttemptKey {
        AttemptKey {
            dag_id: dag.into(),
            run_id: "manual__2026-01-01T00:00:00+00:00".into(),
            task_id: task.into(),
            map_index: MapIndex(map),
            try_number: TryNumber(try_number),
        }
    }

    fn dns_label_ok(s: &str) -> bool {
        s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn names_are_deterministic_and_dns_safe() {
        let a = pod_name("prod", &key("ETL_daily", "group.Load_Data", -1, 1));
        assert_eq!(
            a,
            pod_name("prod", &key("ETL_daily", "group.Load_Data", -1, 1))
        );
        assert!(a.starts_with("pave-etl-daily-group-load-data-t1-"), "{a}");
        assert!(dns_label_ok(&a), "{a}");
        let mapped = pod_name("prod", &key("etl", "load", 12, 3));
        assert!(mapped.starts_with("pave-etl-load-12-t3-"), "{mapped}");
        assert_ne!(
            a,
            pod_name("other", &key("ETL_daily", "group.Load_Data", -1, 1))
        );
        assert_ne!(
            a,
            pod_name("prod", &key("ETL_daily", "group.Load_Data", -1, 2))
        );
    }

    #[test]
    fn long_ids_are_shortened_and_still_distinct() {
        let long = "x".repeat(200);
        let a = pod_name("prod", &key(&long, &format!("{long}.a"), 100000, 12));
        let b = pod_name("prod", &key(&long, &format!("{long}.b"), 100000, 12));
        assert!(dns_label_ok(&a) && dns_label_ok(&b), "{a} {b}");
        assert_ne!(a, b);
        let odd = pod_name("prod", &key("___", "...", -1, 1));
        assert!(dns_label_ok(&odd), "{odd}");
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("etl.daily"), "etl.daily");
        assert_eq!(label_value("a b/c"), "a_b_c");
        let long = label_value(&"y".repeat(100));
        assert!(long.len() <= 63, "{long}");
    }
}
