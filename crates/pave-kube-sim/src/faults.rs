//! Fault injection: errors on the next calls, expired and dropped watches,
//! blocked evictions, and the node and pod disruptions of a real cluster
//! (eviction, spot reclaim, node loss, DisruptionTarget conditions).

use crate::cluster::Cluster;
use crate::error::{ApiError, SimError};
use crate::lifecycle::{self, DisruptionReason};
use crate::script::PodMatch;
use crate::store::{EventType, Key};
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};

/// An API verb, as Kubernetes audit logs and RBAC name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET with `watch=true`.
    Watch,
    /// POST (including evictions).
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

/// An error the API answers instead of serving a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedError {
    /// HTTP status: 409 (Conflict), 429 (TooManyRequests), 500 (InternalError), or any other.
    pub code: u16,
    /// Only requests with this verb (any when `None`).
    pub verb: Option<Verb>,
    /// Only requests whose path contains this (any when `None`).
    pub path_contains: Option<String>,
    /// How many matching requests fail.
    pub times: usize,
}

impl InjectedError {
    /// The next matching request fails with `code`.
    pub fn new(code: u16) -> Self {
        InjectedError {
            code,
            verb: None,
            path_contains: None,
            times: 1,
        }
    }

    /// Only for this verb.
    pub fn verb(mut self, verb: Verb) -> Self {
        self.verb = Some(verb);
        self
    }

    /// Only for paths containing `s` (`/pods`, `/eviction`, a pod name).
    pub fn path(mut self, s: impl Into<String>) -> Self {
        self.path_contains = Some(s.into());
        self
    }

    /// For the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    fn to_api_error(&self, path: &str) -> ApiError {
        match self.code {
            409 => ApiError::conflict(
                "pods",
                path.rsplit('/').next().unwrap_or(""),
                "injected conflict",
            ),
            429 => {
                ApiError::too_many_requests("injected: too many requests, please try again later")
            }
            500 => ApiError::internal("injected: internal error"),
            code => {
                let mut e = ApiError::internal(format!("injected error {code}"));
                e.code = code;
                e
            }
        }
    }
}

/// Fault state kept with the cluster.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    errors: Vec<InjectedError>,
    /// The next this many watch requests get 410 Gone.
    pub expire_watches: usize,
    pub blocked_evictions: Vec<PodMatch>,
}

impl Faults {
    /// The injected error for this request, if one matches (and counts it).
    pub fn take_error(&mut self, verb: Verb, path: &str) -> Option<ApiError> {
        let i = self.errors.iter().position(|e| {
            e.times > 0
                && e.verb.is_none_or(|v| v == verb)
                && e.path_contains.as_deref().is_none_or(|p| path.contains(p))
        })?;
        let err = self.errors[i].to_api_error(path);
        self.errors[i].times -= 1;
        if self.errors[i].times == 0 {
            self.errors.remove(i);
        }
        Some(err)
    }
}

/// How a node is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeLoss {
    /// The kubelet stops reporting: Ready=Unknown, unreachable taints, and
    /// its pods are failed by the taint manager (DeletionByTaintManager).
    NotReady,
    /// The Node object is deleted; its pods fail (DeletionByPodGC).
    Deleted,
}

impl Cluster {
    /// The next matching requests fail with an injected error.
    pub fn fail_next(&self, error: InjectedError) {
        self.lock().faults.errors.push(error);
    }

    /// Ends every open watch (the stream closes, as when a connection drops):
    /// clients re-watch from their last resourceVersion.
    pub fn drop_watches(&self) {
        self.inner.watch_epoch.send_modify(|e| *e += 1);
    }

    /// The next `n` watch requests get `410 Gone` (an ERROR event), so
    /// clients must relist.
    pub fn expire_next_watches(&self, n: usize) {
        self.lock().faults.expire_watches += n;
    }

    /// Forgets the event history: any watch from an older resourceVersion gets 410.
    pub fn compact_history(&self) {
        self.lock().compact();
    }

    /// Evictions of matching pods answer 429, as a PodDisruptionBudget would.
    pub fn block_evictions(&self, matcher: PodMatch) {
        self.lock().faults.blocked_evictions.push(matcher);
    }

    /// Evictions are allowed again.
    pub fn unblock_evictions(&self) {
        self.lock().faults.blocked_evictions.clear();
    }

    /// Evicts a pod as the Eviction API does (DisruptionTarget
    /// EvictionByEvictionAPI, then graceful deletion); ignores blocks.
    pub fn evict(&self, namespace: &str, name: &str) -> Result<(), SimError> {
        let key = pod_key(namespace, name);
        let mut st = self.lock();
        if lifecycle::mark_disrupted(&mut st, &key, DisruptionReason::EvictionByEvictionAPI)
            .is_none()
        {
            return Err(not_found(namespace, name));
        }
        lifecycle::delete_pod(&mut st, &key, None)?;
        Ok(())
    }

    /// Only adds the `DisruptionTarget=True` condition with `reason`.
    pub fn add_disruption_condition(
        &self,
        namespace: &str,
        name: &str,
        reason: DisruptionReason,
    ) -> Result<(), SimError> {
        let mut st = self.lock();
        lifecycle::mark_disrupted(&mut st, &pod_key(namespace, name), reason)
            .map(|_| ())
            .ok_or_else(|| not_found(namespace, name))
    }

    /// Disrupts a pod as the component behind `reason` does: the condition,
    /// then graceful deletion (preemption, taint manager, eviction, pod GC)
    /// or, for TerminationByKubelet, phase Failed with the pod kept.
    pub fn disrupt(
        &self,
        namespace: &str,
        name: &str,
        reason: DisruptionReason,
    ) -> Result<(), SimError> {
        let key = pod_key(namespace, name);
        let mut st = self.lock();
        if lifecycle::mark_disrupted(&mut st, &key, reason).is_none() {
            return Err(not_found(namespace, name));
        }
        match reason {
            DisruptionReason::TerminationByKubelet => {
                lifecycle::fail_pod(&mut st, &key, "Terminated", reason.message());
            }
            _ => {
                lifecycle::delete_pod(&mut st, &key, None)?;
            }
        }
        Ok(())
    }

    /// Reclaims a spot node: its pods are terminated by the kubelet's
    /// graceful node shutdown (DisruptionTarget TerminationByKubelet, phase
    /// Failed, reason Terminated), then the node is deleted.
    pub fn reclaim_spot_node(&self, node: &str) -> Result<(), SimError> {
        let mut st = self.lock();
        let nkey: Key = (String::new(), node.to_string());
        if st.get::<Node>(&nkey).is_none() {
            return Err(SimError::NodeNotFound(node.to_string()));
        }
        for key in pods_on(&st.pods, node) {
            lifecycle::mark_disrupted(&mut st, &key, DisruptionReason::TerminationByKubelet);
            lifecycle::fail_pod(
                &mut st,
                &key,
                "Terminated",
                DisruptionReason::TerminationByKubelet.message(),
            );
        }
        st.remove::<Node>(&nkey);
        Ok(())
    }

    /// Loses a node (see [`NodeLoss`]). Its running processes are killed.
    pub fn lose_node(&self, node: &str, how: NodeLoss) -> Result<(), SimError> {
        let mut st = self.lock();
        let nkey: Key = (String::new(), node.to_string());
        let Some(stored) = st.get::<Node>(&nkey) else {
            return Err(SimError::NodeNotFound(node.to_string()));
        };
        let mut n = stored.obj.clone();
        let reason = match how {
            NodeLoss::NotReady => DisruptionReason::DeletionByTaintManager,
            NodeLoss::Deleted => DisruptionReason::DeletionByPodGC,
        };
        for key in pods_on(&st.pods, node) {
            lifecycle::mark_disrupted(&mut st, &key, reason);
            lifecycle::fail_pod(
                &mut st,
                &key,
                "NodeLost",
                &format!("Node {node} which was running pod is unresponsive"),
            );
        }
        match how {
            NodeLoss::Deleted => {
                st.remove::<Node>(&nkey);
            }
            NodeLoss::NotReady => {
                set_not_ready(&mut n);
                st.put(n, EventType::Modified);
            }
        }
        Ok(())
    }

    /// Brings a NotReady node back: Ready=True, unreachable taints removed.
    pub fn restore_node(&self, node: &str) -> Result<(), SimError> {
        let mut st = self.lock();
        let nkey: Key = (String::new(), node.to_string());
        let Some(stored) = st.get::<Node>(&nkey) else {
            return Err(SimError::NodeNotFound(node.to_string()));
        };
        let mut n = stored.obj.clone();
        if let Some(spec) = n.spec.as_mut()
            && let Some(t) = spec.taints.as_mut()
        {
            t.retain(|t| !t.key.starts_with("node.kubernetes.io/unreachable"));
        }
        if let Some(s) = n.status.as_mut() {
            s.conditions = Some(crate::nodes::ready_conditions());
        }
        st.put(n, EventType::Modified);
        Ok(())
    }
}

fn pod_key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

fn not_found(namespace: &str, name: &str) -> SimError {
    SimError::PodNotFound {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn pods_on(
    pods: &std::collections::BTreeMap<Key, crate::store::Stored<Pod>>,
    node: &str,
) -> Vec<Key> {
    pods.iter()
        .filter(|(_, s)| s.obj.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .filter(|(_, s)| !lifecycle::is_terminal(&s.obj))
        .map(|(k, _)| k.clone())
        .collect()
}

fn set_not_ready(n: &mut Node) {
    let now = lifecycle::now();
    if let Some(s) = n.status.as_mut() {
        for c in s.conditions.iter_mut().flatten() {
            *c = NodeCondition {
                status: "Unknown".into(),
                reason: Some("NodeStatusUnknown".into()),
                message: Some("Kubelet stopped posting node status.".into()),
                last_transition_time: Some(now.clone()),
                ..c.clone()
            };
        }
    }
    let spec = n.spec.get_or_insert_with(Default::default);
    let taints = spec.taints.get_or_insert_with(Vec::new);
    for effect in ["NoSchedule", "NoExecute"] {
        if !taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == effect)
        {
            taints.push(Taint {
                key: "node.kubernetes.io/unreachable".into(),
                effect: effect.into(),
                value: None,
                time_added: Some(now.clone()),
            });
        }
    }
}
