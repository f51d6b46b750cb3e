//! The simulated scheduler: binds Pending pods to a Ready node whose free
//! capacity, labels and taints fit, or marks them `PodScheduled=False,
//! reason=Unschedulable` with the real scheduler's message, and retries them
//! when capacity frees up.
//!
//! The fit rules are pure functions ([`fit`], [`unschedulable_message`]);
//! [`run`] is the thin loop around them.

use crate::cluster::Cluster;
use crate::lifecycle::{is_terminal, set_condition};
use crate::quantity::{Milli, ResourceMap, add_into, to_map};
use crate::store::{EventType, Key, State};
use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, Pod, Taint, Toleration};
use std::collections::{BTreeMap, HashMap};

/// Why one node does not fit a pod, worded as the real scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Misfit {
    Cordoned,
    Taint(String),
    Affinity,
    Insufficient(Vec<String>),
}

impl Misfit {
    fn reasons(&self) -> Vec<String> {
        match self {
            Misfit::Cordoned => vec!["node(s) were unschedulable".into()],
            Misfit::Taint(t) => vec![format!("node(s) had untolerated taint {t}")],
            Misfit::Affinity => vec!["node(s) didn't match Pod's node affinity/selector".into()],
            Misfit::Insufficient(rs) => rs
                .iter()
                .map(|r| {
                    if r == "pods" {
                        "Too many pods".to_string()
                    } else {
                        format!("Insufficient {r}")
                    }
                })
                .collect(),
        }
    }
}

/// What a pod asks for: the sum over its containers, at least the largest
/// init container, plus one pod slot.
pub(crate) fn pod_requests(pod: &Pod) -> ResourceMap {
    let mut total = ResourceMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return total;
    };
    for c in &spec.containers {
        let r = c.resources.as_ref();
        let mut req = to_map(r.and_then(|r| r.requests.as_ref()));
        // Defaulting copies limits into missing requests; do the same here.
        for (k, v) in to_map(r.and_then(|r| r.limits.as_ref())) {
            req.entry(k).or_insert(v);
        }
        add_into(&mut total, &req);
    }
    for c in spec.init_containers.iter().flatten() {
        let r = c.resources.as_ref();
        for (k, v) in to_map(r.and_then(|r| r.requests.as_ref().or(r.limits.as_ref()))) {
            let e = total.entry(k).or_insert(0);
            *e = (*e).max(v);
        }
    }
    total.insert("pods".into(), 1000);
    total
}

fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if tol
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        _ => tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}

/// The first NoSchedule/NoExecute taint of `node` that `pod` does not tolerate.
pub(crate) fn untolerated_taint(pod: &Pod, node: &Node) -> Option<String> {
    let tols: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tols.iter().any(|tol| tolerates(tol, t)))
        .map(|t| format!("{{{}: {}}}", t.key, t.value.as_deref().unwrap_or("")))
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or(&[]);
    let as_int = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(as_int), values.first().and_then(|x| as_int(x))), (Some(v), Some(x)) if v > x)
        }
        "Lt" => {
            matches!((value.and_then(as_int), values.first().and_then(|x| as_int(x))), (Some(v), Some(x)) if v < x)
        }
        _ => false,
    }
}

/// nodeSelector and required node affinity.
pub(crate) fn matches_node_selection(pod: &Pod, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let Some(required) = required else {
        return true;
    };
    let name = node.metadata.name.as_deref();
    required.node_selector_terms.iter().any(|term| {
        let exprs_ok = term
            .match_expressions
            .iter()
            .flatten()
            .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)));
        let fields_ok = term
            .match_fields
            .iter()
            .flatten()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, name));
        let empty_term = term.match_expressions.as_ref().is_none_or(Vec::is_empty)
            && term.match_fields.as_ref().is_none_or(Vec::is_empty);
        !empty_term && exprs_ok && fields_ok
    })
}

/// Whether `pod` fits `node` given what is already `used` there, checked in
/// the real scheduler's filter order (the first failing filter counts).
pub(crate) fn fit(
    pod: &Pod,
    requests: &ResourceMap,
    node: &Node,
    used: &ResourceMap,
) -> Result<(), Misfit> {
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        return Err(Misfit::Cordoned);
    }
    if let Some(t) = untolerated_taint(pod, node) {
        return Err(Misfit::Taint(t));
    }
    if !matches_node_selection(pod, node) {
        return Err(Misfit::Affinity);
    }
    let alloc = to_map(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
    let short: Vec<String> = requests
        .iter()
        .filter(|(_, v)| **v > 0)
        .filter(|(k, v)| {
            let free = alloc.get(*k).copied().unwrap_or(0) - used.get(*k).copied().unwrap_or(0);
            **v > free
        })
        .map(|(k, _)| k.clone())
        .collect();
    if short.is_empty() {
        Ok(())
    } else {
        Err(Misfit::Insufficient(short))
    }
}

/// "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient nvidia.com/gpu."
pub(crate) fn unschedulable_message(total_nodes: usize, misfits: &[Misfit]) -> String {
    let mut hist: BTreeMap<String, usize> = BTreeMap::new();
    for m in misfits {
        for r in m.reasons() {
            *hist.entry(r).or_insert(0) += 1;
        }
    }
    let mut parts: Vec<String> = hist.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    if parts.is_empty() {
        format!("0/{total_nodes} nodes are available.")
    } else {
        format!("0/{total_nodes} nodes are available: {}.", parts.join(", "))
    }
}

/// Lower is better: how full cpu and memory would be (LeastAllocated).
fn score(requests: &ResourceMap, node: &Node, used: &ResourceMap) -> i128 {
    let alloc = to_map(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
    ["cpu", "memory"]
        .iter()
        .map(|r| {
            let a: Milli = alloc.get(*r).copied().unwrap_or(0).max(1);
            let u = used.get(*r).copied().unwrap_or(0) + requests.get(*r).copied().unwrap_or(0);
            u * 1_000_000 / a
        })
        .sum()
}

/// Scheduler memory between passes: the capacity generation and pod version
/// at which each pod last failed, so it is retried only when either changes.
#[derive(Default)]
pub(crate) struct Retry {
    failed_at: HashMap<String, (u64, String)>,
}

/// One scheduling pass over every pending pod.
pub(crate) fn schedule_pass(state: &mut State, retry: &mut Retry) {
    let ready: Vec<(Key, Node)> = state
        .nodes
        .iter()
        .filter(|(_, n)| crate::nodes::is_ready(&n.obj))
        .map(|(k, n)| (k.clone(), n.obj.clone()))
        .collect();
    let total_nodes = state.nodes.len();
    let mut used: HashMap<String, ResourceMap> = HashMap::new();
    let mut pending: Vec<(i32, String, Key)> = Vec::new();
    let mut unbound = std::collections::HashSet::new();
    for (key, stored) in &state.pods {
        let pod = &stored.obj;
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        match node {
            Some(n) if !is_terminal(pod) => {
                add_into(used.entry(n).or_default(), &pod_requests(pod))
            }
            Some(_) => {}
            None if pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let rv = pod.metadata.resource_version.clone().unwrap_or_default();
                unbound.insert(uid.clone());
                if retry.failed_at.get(&uid) == Some(&(state.capacity_gen, rv)) {
                    continue;
                }
                let prio = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
                pending.push((-prio, uid, key.clone()));
            }
            None => {}
        }
    }
    pending.sort();
    retry.failed_at.retain(|uid, _| unbound.contains(uid));
    let empty = ResourceMap::new();
    for (_, uid, key) in pending {
        let Some(stored) = state.get::<Pod>(&key) else {
            continue;
        };
        let mut pod = stored.obj.clone();
        let requests = pod_requests(&pod);
        let mut misfits = Vec::new();
        let mut best: Option<(i128, &String)> = None;
        for (nkey, node) in &ready {
            let u = used.get(&nkey.1).unwrap_or(&empty);
            match fit(&pod, &requests, node, u) {
                Ok(()) => {
                    let s = score(&requests, node, u);
                    if best.is_none_or(|(b, _)| s < b) {
                        best = Some((s, &nkey.1));
                    }
                }
                Err(m) => misfits.push(m),
            }
        }
        // NotReady nodes carry the not-ready taint in a real cluster.
        for _ in ready.len()..total_nodes {
            misfits.push(Misfit::Taint("{node.kubernetes.io/not-ready: }".into()));
        }
        match best {
            Some((_, node_name)) => {
                let node_name = node_name.clone();
                add_into(used.entry(node_name.clone()).or_default(), &requests);
                if let Some(spec) = pod.spec.as_mut() {
                    spec.node_name = Some(node_name);
                }
                set_condition(&mut pod, "PodScheduled", "True", "", "");
                retry.failed_at.remove(&uid);
                state.put(pod, EventType::Modified);
            }
            None => {
                let msg = unschedulable_message(total_nodes, &misfits);
                let rv = if set_condition(&mut pod, "PodScheduled", "False", "Unschedulable", &msg)
                {
                    state.put(pod, EventType::Modified);
                    state.rv.to_string()
                } else {
                    pod.metadata.resource_version.clone().unwrap_or_default()
                };
                retry.failed_at.insert(uid, (state.capacity_gen, rv));
            }
        }
    }
}

/// The scheduler loop: a pass after every change to the cluster.
pub(crate) async fn run(cluster: Cluster) {
    let wake = cluster.lock().wake_scheduler.clone();
    let mut retry = Retry::default();
    loop {
        wake.notified().await;
        let mut st = cluster.lock();
        schedule_pass(&mut st, &mut retry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::NodeSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod_with(gpus: u32, selector: Option<(&str, &str)>, tolerate: Option<&str>) -> Pod {
        let limits = BTreeMap::from([("nvidia.com/gpu".to_string(), Quantity(gpus.to_string()))]);
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    resources: Some(ResourceRequirements {
                        limits: Some(limits),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                node_selector: selector
                    .map(|(k, v)| BTreeMap::from([(k.to_string(), v.to_string())])),
                tolerations: tolerate.map(|k| {
                    vec![Toleration {
                        key: Some(k.into()),
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(spec: NodeSpec) -> Node {
        spec.expand().remove(0)
    }

    #[test]
    fn fit_rules() {
        let h100 = node(NodeSpec::new("a", "8", "32Gi").gpus(2, "H100"));
        let tainted = node(
            NodeSpec::new("b", "8", "32Gi")
                .gpus(8, "A100")
                .taint("gpu=yes:NoSchedule"),
        );
        let none = ResourceMap::new();
        let p = pod_with(1, None, None);
        assert_eq!(fit(&p, &pod_requests(&p), &h100, &none), Ok(()));
        let p4 = pod_with(4, None, None);
        assert_eq!(
            fit(&p4, &pod_requests(&p4), &h100, &none),
            Err(Misfit::Insufficient(vec!["nvidia.com/gpu".into()]))
        );
        assert_eq!(
            fit(&p, &pod_requests(&p), &tainted, &none),
            Err(Misfit::Taint("{gpu: yes}".into()))
        );
        let tol = pod_with(1, Some(("nvidia.com/gpu.product", "A100")), Some("gpu"));
        assert_eq!(fit(&tol, &pod_requests(&tol), &tainted, &none), Ok(()));
        assert_eq!(
            fit(&tol, &pod_requests(&tol), &h100, &none),
            Err(Misfit::Affinity)
        );
    }

    #[test]
    fn message_like_the_real_scheduler() {
        let m = unschedulable_message(
            3,
            &[
                Misfit::Insufficient(vec!["nvidia.com/gpu".into()]),
                Misfit::Insufficient(vec!["cpu".into(), "nvidia.com/gpu".into()]),
                Misfit::Taint("{gpu: yes}".into()),
            ],
        );
        assert_eq!(
            m,
            "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {gpu: yes}, 2 Insufficient nvidia.com/gpu."
        );
    }
}
