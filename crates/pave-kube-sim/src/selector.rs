//! Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) and field
//! selectors (`metadata.name=x,status.phase!=Running`), matched against
//! objects in their JSON form.

use crate::error::ApiError;
use serde_json::Value;
use std::collections::BTreeMap;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(pub Vec<LabelReq>);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEq(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
        })
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.0.is_empty() || self.matches(&labels_of(obj))
    }
}

/// The labels of an object in JSON form.
pub(crate) fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_err(part: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {why}: {part:?}"))
}

fn check_key(key: &str, part: &str) -> Result<String, ApiError> {
    let key = key.trim();
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_string())
    } else {
        Err(parse_err(part, "invalid label key"))
    }
}

fn check_value(v: &str, part: &str) -> Result<String, ApiError> {
    let v = v.trim();
    if v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(v.to_string())
    } else {
        Err(parse_err(part, "invalid label value"))
    }
}

fn parse_set(rest: &str, part: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| parse_err(part, "expected a set of values in parentheses"))?;
    inner
        .split(',')
        .map(|v| check_value(v, part))
        .collect::<Result<Vec<_>, _>>()
}

fn parse_requirement(part: &str) -> Result<LabelReq, ApiError> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(LabelReq::NotExists(check_key(key, part)?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(LabelReq::NotEq(check_key(k, part)?, check_value(v, part)?));
    }
    if let Some((k, v)) = part.split_once("==") {
        return Ok(LabelReq::Eq(check_key(k, part)?, check_value(v, part)?));
    }
    if let Some((k, v)) = part.split_once('=') {
        return Ok(LabelReq::Eq(check_key(k, part)?, check_value(v, part)?));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = check_key(words[0], part)?;
        let rest = words[1].trim_start();
        if let Some(set) = rest.strip_prefix("notin") {
            return Ok(LabelReq::NotIn(key, parse_set(set, part)?));
        }
        if let Some(set) = rest.strip_prefix("in") {
            return Ok(LabelReq::In(key, parse_set(set, part)?));
        }
        return Err(parse_err(part, "expected one of =, ==, !=, in, notin"));
    }
    Ok(LabelReq::Exists(check_key(part, part)?))
}

/// Which fields a kind may be selected on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FieldSet {
    Pod,
    Node,
}

impl FieldSet {
    fn path(self, field: &str) -> Option<&'static str> {
        let common = match field {
            "metadata.name" => Some("/metadata/name"),
            "metadata.namespace" => Some("/metadata/namespace"),
            _ => None,
        };
        common.or(match (self, field) {
            (FieldSet::Pod, "spec.nodeName") => Some("/spec/nodeName"),
            (FieldSet::Pod, "spec.restartPolicy") => Some("/spec/restartPolicy"),
            (FieldSet::Pod, "spec.schedulerName") => Some("/spec/schedulerName"),
            (FieldSet::Pod, "spec.serviceAccountName") => Some("/spec/serviceAccountName"),
            (FieldSet::Pod, "status.phase") => Some("/status/phase"),
            (FieldSet::Pod, "status.podIP") => Some("/status/podIP"),
            (FieldSet::Pod, "status.nominatedNodeName") => Some("/status/nominatedNodeName"),
            (FieldSet::Node, "spec.unschedulable") => Some("/spec/unschedulable"),
            _ => None,
        })
    }
}

/// A parsed field selector (only `=`, `==` and `!=`, as the API server).
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSelector(Vec<(&'static str, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str, set: FieldSet) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            let path = set.path(field).ok_or_else(|| {
                ApiError::bad_request(format!("field label not supported: {field}"))
            })?;
            reqs.push((path, eq, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let got = match obj.pointer(path) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Null) | None => {
                    if *path == "/spec/unschedulable" {
                        "false".to_string()
                    } else {
                        String::new()
                    }
                }
                Some(other) => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("app", "pave"), ("tier", "gpu")]);
        let cases = [
            ("", true),
            ("app=pave", true),
            ("app==pave", true),
            ("app!=pave", false),
            ("app in (pave, x)", true),
            ("app notin (pave)", false),
            ("tier notin (cpu)", true),
            ("missing notin (cpu)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=pave,tier in (gpu,cpu),!missing", true),
            ("app=pave,tier=cpu", false),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).expect(sel);
            assert_eq!(s.matches(&l), want, "{sel}");
        }
        assert!(LabelSelector::parse("app in pave").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let ok = |s: &str| {
            FieldSelector::parse(s, FieldSet::Pod)
                .expect(s)
                .matches_object(&pod)
        };
        assert!(ok("metadata.name=p"));
        assert!(ok("spec.nodeName=n1,status.phase!=Pending"));
        assert!(!ok("status.phase=Succeeded"));
        assert!(FieldSelector::parse("spec.foo=x", FieldSet::Pod).is_err());
        let unbound = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(
            FieldSelector::parse("spec.nodeName=", FieldSet::Pod)
                .expect("parse")
                .matches_object(&unbound)
        );
    }
}
