//! Pod defaulting and validation, worded as the API server's: names,
//! containers, restart policy, and resource requirements (extended resources
//! such as `nvidia.com/gpu` must be integers with requests equal to limits).

use crate::error::FieldError;
use crate::quantity::{format_milli, is_extended, parse_milli};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Toleration};
use std::collections::BTreeMap;

const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUANTITY: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

fn is_label_like(s: &str, extra: &[char], max: usize) -> bool {
    let b = s.as_bytes();
    !s.is_empty()
        && s.len() <= max
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

/// An RFC 1123 subdomain (object names).
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    is_label_like(s, &['-', '.'], 253) && !s.chars().any(|c| c.is_ascii_uppercase())
}

fn is_dns_label(s: &str) -> bool {
    is_label_like(s, &['-'], 63) && !s.chars().any(|c| c.is_ascii_uppercase())
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_like(s, &['-', '_', '.'], 63)
}

fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && is_label_like(name, &['-', '_', '.'], 63)
}

/// Validates an object name and its labels.
pub(crate) fn validate_meta(
    name: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !is_dns_subdomain(name) {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            DNS1123_SUBDOMAIN,
        ));
    }
    for (k, v) in labels.into_iter().flatten() {
        if !is_label_key(k) {
            errs.push(FieldError::invalid("metadata.labels", k.as_str(), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        }
        if !is_label_value(v) {
            errs.push(FieldError::invalid(
                "metadata.labels",
                v.as_str(),
                LABEL_VALUE,
            ));
        }
    }
    errs
}

/// The defaults the API server fills in on create.
pub(crate) fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.service_account_name
        .get_or_insert_with(|| "default".into());
    spec.priority.get_or_insert(0);
    spec.enable_service_links.get_or_insert(true);
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tols.iter().any(|t| t.key.as_deref() == Some(key)) {
            tols.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(300),
                value: None,
            });
        }
    }
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(c);
    }
}

fn default_container(c: &mut Container) {
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    if c.image_pull_policy.is_none() {
        let image = c.image.as_deref().unwrap_or("");
        let tagged = image
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':') || last.contains('@'));
        let latest = image.ends_with(":latest");
        c.image_pull_policy = Some(
            if !tagged || latest {
                "Always"
            } else {
                "IfNotPresent"
            }
            .into(),
        );
    }
    // Requests default to limits where unset.
    if let Some(r) = c.resources.as_mut()
        && let Some(limits) = r.limits.clone()
    {
        let req = r.requests.get_or_insert_with(BTreeMap::new);
        for (k, v) in limits {
            req.entry(k).or_insert(v);
        }
    }
}

/// The QoS class the API server records in `status.qosClass`.
pub(crate) fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in &spec.containers {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.as_ref());
        let lim = r.and_then(|r| r.limits.as_ref());
        any |= req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty());
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(res));
            let q = req.and_then(|m| m.get(res));
            if l.is_none() || l.map(|x| parse_milli(&x.0)) != q.map(|x| parse_milli(&x.0)) {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Validates a (defaulted) pod; empty when it is valid.
pub(crate) fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = validate_meta(
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.labels.as_ref(),
    );
    let Some(spec) = pod.spec.as_ref() else {
        errs.push(FieldError::required("spec", ""));
        return errs;
    };
    if spec.containers.is_empty() {
        errs.push(FieldError::required("spec.containers", ""));
    }
    if let Some(p) = spec.restart_policy.as_deref()
        && !matches!(p, "Always" | "OnFailure" | "Never")
    {
        errs.push(FieldError::not_supported(
            "spec.restartPolicy",
            format!("{p:?}: supported values: \"Always\", \"OnFailure\", \"Never\""),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let all = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.containers[{i}]"), c))
        .chain(
            spec.init_containers
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, c)| (format!("spec.initContainers[{i}]"), c)),
        );
    for (path, c) in all {
        if c.name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        } else if !is_dns_label(&c.name) {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                c.name.as_str(),
                DNS1123_LABEL,
            ));
        } else if !seen.insert(c.name.clone()) {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                c.name.as_str(),
                "Duplicate value",
            ));
        }
        if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            errs.push(FieldError::required(format!("{path}.image"), ""));
        }
        validate_resources(&path, c, &mut errs);
    }
    errs
}

fn validate_resources(path: &str, c: &Container, errs: &mut Vec<FieldError>) {
    let Some(r) = c.resources.as_ref() else {
        return;
    };
    let empty = BTreeMap::new();
    let limits = r.limits.as_ref().unwrap_or(&empty);
    let requests = r.requests.as_ref().unwrap_or(&empty);
    let check =
        |errs: &mut Vec<FieldError>, field: String, name: &str, raw: &str| -> Option<i128> {
            let Some(v) = parse_milli(raw) else {
                errs.push(FieldError::invalid(field, raw, QUANTITY));
                return None;
            };
            if v < 0 {
                errs.push(FieldError::invalid(
                    field,
                    raw,
                    "must be greater than or equal to 0",
                ));
            } else if is_extended(name) && v % 1000 != 0 {
                errs.push(FieldError::invalid(field, raw, "must be an integer"));
            }
            Some(v)
        };
    for (name, q) in limits {
        check(errs, format!("{path}.resources.limits[{name}]"), name, &q.0);
    }
    for (name, q) in requests {
        let field = format!("{path}.resources.requests[{name}]");
        let Some(req) = check(errs, field.clone(), name, &q.0) else {
            continue;
        };
        match limits.get(name).and_then(|l| parse_milli(&l.0)) {
            Some(lim) if is_extended(name) && req != lim => {
                errs.push(FieldError::invalid(
                    field,
                    q.0.as_str(),
                    format!("must be equal to {name} limit of {}", format_milli(lim)),
                ));
            }
            Some(lim) if req > lim => {
                errs.push(FieldError::invalid(
                    field,
                    q.0.as_str(),
                    format!(
                        "must be less than or equal to {name} limit of {}",
                        format_milli(lim)
                    ),
                ));
            }
            None if is_extended(name) => {
                errs.push(FieldError::required(
                    format!("{path}.resources.limits"),
                    "Limit must be set for non overcommitable resources",
                ));
            }
            _ => {}
        }
    }
}

/// What a pod update may change in `spec`: images, activeDeadlineSeconds
/// and added tolerations. Returns the error when anything else changed.
pub(crate) fn validate_spec_update(old: &PodSpec, new: &PodSpec) -> Option<FieldError> {
    let mut probe = new.clone();
    for (n, o) in probe.containers.iter_mut().zip(&old.containers) {
        n.image.clone_from(&o.image);
    }
    for (n, o) in probe
        .init_containers
        .iter_mut()
        .flatten()
        .zip(old.init_containers.iter().flatten())
    {
        n.image.clone_from(&o.image);
    }
    probe.active_deadline_seconds = old.active_deadline_seconds;
    let old_tols = old.tolerations.clone().unwrap_or_default();
    let new_tols = probe.tolerations.clone().unwrap_or_default();
    if old_tols.iter().all(|t| new_tols.contains(t)) {
        probe.tolerations.clone_from(&old.tolerations);
    }
    if probe.node_name.is_none() {
        probe.node_name.clone_from(&old.node_name);
    }
    if &probe == old {
        return None;
    }
    Some(FieldError::forbidden(
        "spec",
        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Pod {
        let m = |xs: &[(&str, &str)]| {
            (!xs.is_empty()).then(|| {
                xs.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        let mut p = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("p".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    image: Some("busybox".into()),
                    resources: Some(ResourceRequirements {
                        requests: m(requests),
                        limits: m(limits),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        default_pod(&mut p);
        p
    }

    fn messages(p: &Pod) -> Vec<String> {
        let errs = validate_pod(p);
        let e = crate::error::ApiError::invalid("Pod", "p", &errs);
        if errs.is_empty() {
            vec![]
        } else {
            vec![e.message]
        }
    }

    #[test]
    fn extended_resources_rules() {
        assert!(messages(&pod(&[], &[("nvidia.com/gpu", "1")])).is_empty());
        assert_eq!(
            messages(&pod(&[("nvidia.com/gpu", "2")], &[("nvidia.com/gpu", "1")])),
            vec![
                "Pod \"p\" is invalid: spec.containers[0].resources.requests[nvidia.com/gpu]: Invalid value: \"2\": must be equal to nvidia.com/gpu limit of 1"
            ]
        );
        assert_eq!(
            messages(&pod(&[], &[("nvidia.com/gpu", "500m")])),
            vec![
                "Pod \"p\" is invalid: [spec.containers[0].resources.limits[nvidia.com/gpu]: Invalid value: \"500m\": must be an integer, spec.containers[0].resources.requests[nvidia.com/gpu]: Invalid value: \"500m\": must be an integer]"
            ]
        );
        assert_eq!(
            messages(&pod(&[("nvidia.com/mig-1g.10gb", "1")], &[])),
            vec![
                "Pod \"p\" is invalid: spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources"
            ]
        );
        assert!(messages(&pod(&[("cpu", "500m")], &[("cpu", "1")])).is_empty());
        assert_eq!(
            messages(&pod(&[("cpu", "2")], &[("cpu", "1")])),
            vec![
                "Pod \"p\" is invalid: spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1"
            ]
        );
    }

    #[test]
    fn qos() {
        assert_eq!(qos_class(&pod(&[], &[])), "BestEffort");
        assert_eq!(
            qos_class(&pod(&[], &[("cpu", "1"), ("memory", "1Gi")])),
            "Guaranteed"
        );
        assert_eq!(qos_class(&pod(&[("cpu", "1")], &[])), "Burstable");
    }
}
