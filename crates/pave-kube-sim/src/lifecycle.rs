//! Pod lifecycle operations shared by the API, the kubelet and fault
//! injection: conditions, graceful deletion, disruption and failure.

use crate::error::ApiError;
use crate::kubelet::Stop;
use crate::store::{EventType, Key, State};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Now, as an API time.
pub(crate) fn now() -> Time {
    Time(Timestamp::now())
}

/// The phase of a pod (`Pending` when unset).
pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// True once a pod has Succeeded or Failed.
pub(crate) fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Sets (or replaces) a pod condition; the transition time changes only
/// when the status does. Returns whether anything changed.
pub(crate) fn set_condition(
    pod: &mut Pod,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> bool {
    let st = pod.status.get_or_insert_with(PodStatus::default);
    let conds = st.conditions.get_or_insert_with(Vec::new);
    let reason = (!reason.is_empty()).then(|| reason.to_string());
    let message = (!message.is_empty()).then(|| message.to_string());
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status && c.reason == reason && c.message == message {
            return false;
        }
        if c.status != status {
            c.last_transition_time = Some(now());
        }
        c.status = status.to_string();
        c.reason = reason;
        c.message = message;
        return true;
    }
    conds.push(PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason,
        message,
        last_transition_time: Some(now()),
        ..Default::default()
    });
    true
}

/// Why a pod is disrupted: the reasons of the `DisruptionTarget` condition
/// that Kubernetes components set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisruptionReason {
    /// The scheduler preempts the pod for a higher-priority one.
    PreemptionByScheduler,
    /// The taint manager deletes the pod for a NoExecute taint (node lost).
    DeletionByTaintManager,
    /// The Eviction API evicts the pod (drain, autoscaler).
    EvictionByEvictionAPI,
    /// The kubelet terminates the pod (node shutdown, spot reclaim, pressure).
    TerminationByKubelet,
    /// Pod garbage collection deletes a pod whose node is gone.
    DeletionByPodGC,
}

impl DisruptionReason {
    /// The condition's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            DisruptionReason::PreemptionByScheduler => "PreemptionByScheduler",
            DisruptionReason::DeletionByTaintManager => "DeletionByTaintManager",
            DisruptionReason::EvictionByEvictionAPI => "EvictionByEvictionAPI",
            DisruptionReason::TerminationByKubelet => "TerminationByKubelet",
            DisruptionReason::DeletionByPodGC => "DeletionByPodGC",
        }
    }

    /// The condition's `message`, as the real component words it.
    pub fn message(self) -> &'static str {
        match self {
            DisruptionReason::PreemptionByScheduler => {
                "default-scheduler: preempting to accommodate a higher priority pod"
            }
            DisruptionReason::DeletionByTaintManager => {
                "Taint manager: deleting due to NoExecute taint"
            }
            DisruptionReason::EvictionByEvictionAPI => "Eviction API: evicting",
            DisruptionReason::TerminationByKubelet => {
                "Pod was terminated in response to imminent node shutdown."
            }
            DisruptionReason::DeletionByPodGC => "PodGC: node no longer exists",
        }
    }
}

/// Adds `DisruptionTarget=True` with `reason` to a pod, as a write.
pub(crate) fn mark_disrupted(
    state: &mut State,
    key: &Key,
    reason: DisruptionReason,
) -> Option<Arc<Value>> {
    let mut pod = state.get::<Pod>(key)?.obj.clone();
    if set_condition(
        &mut pod,
        "DisruptionTarget",
        "True",
        reason.as_str(),
        reason.message(),
    ) {
        Some(state.put(pod, EventType::Modified))
    } else {
        state.get::<Pod>(key).map(|s| s.json.clone())
    }
}

/// Deletes a pod the way the API server does: a pod that the kubelet is
/// running (or that has finalizers) gets a `deletionTimestamp` and goes on
/// until the kubelet has stopped it; any other pod is removed at once.
/// `grace` is the grace period in seconds (`None`: the pod's own).
pub(crate) fn delete_pod(
    state: &mut State,
    key: &Key,
    grace: Option<i64>,
) -> Result<Arc<Value>, ApiError> {
    let stored = state
        .get::<Pod>(key)
        .ok_or_else(|| ApiError::not_found("pods", &key.1))?;
    let mut pod = stored.obj.clone();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let grace = grace
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0);
    let has_finalizers = pod
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| !f.is_empty());
    let running = state.runners.contains_key(&uid);
    if pod.metadata.deletion_timestamp.is_some() {
        // A second delete may only shorten the grace period (0 forces it).
        if grace == 0 && !has_finalizers {
            if let Some(r) = state.runners.get(&uid) {
                r.stop(Stop::Kill);
            }
            return state
                .remove::<Pod>(key)
                .ok_or_else(|| ApiError::not_found("pods", &key.1));
        }
        return Ok(stored.json.clone());
    }
    if running && grace > 0 || has_finalizers {
        let at = Timestamp::now()
            .checked_add(SignedDuration::from_secs(grace))
            .unwrap_or_else(|_| Timestamp::now());
        pod.metadata.deletion_timestamp = Some(Time(at));
        pod.metadata.deletion_grace_period_seconds = Some(grace);
        let json = state.put(pod, EventType::Modified);
        if let Some(r) = state.runners.get(&uid) {
            r.stop(Stop::Delete {
                grace: Duration::from_secs(u64::try_from(grace).unwrap_or(0)),
            });
        }
        return Ok(json);
    }
    if let Some(r) = state.runners.get(&uid) {
        r.stop(Stop::Kill);
    }
    state
        .remove::<Pod>(key)
        .ok_or_else(|| ApiError::not_found("pods", &key.1))
}

/// Removes a pod whose deletion is pending once nothing holds it any more
/// (the kubelet has stopped it and its finalizers are gone).
pub(crate) fn finish_deletion_if_done(state: &mut State, key: &Key) {
    let Some(stored) = state.get::<Pod>(key) else {
        return;
    };
    let pod = &stored.obj;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some()
        && pod.metadata.finalizers.as_ref().is_none_or(Vec::is_empty)
        && !state.runners.contains_key(&uid)
    {
        state.remove::<Pod>(key);
    }
}

/// Fails a pod as a node-level component does (`status.reason`,
/// `status.message`, phase Failed): the kubelet stops it if it runs it,
/// otherwise the status is written here.
pub(crate) fn fail_pod(state: &mut State, key: &Key, reason: &str, message: &str) {
    let Some(stored) = state.get::<Pod>(key) else {
        return;
    };
    if is_terminal(&stored.obj) {
        return;
    }
    let uid = stored.obj.metadata.uid.clone().unwrap_or_default();
    if let Some(r) = state.runners.get(&uid) {
        r.stop(Stop::Fail {
            reason: reason.to_string(),
            message: message.to_string(),
        });
        return;
    }
    let mut pod = stored.obj.clone();
    let st = pod.status.get_or_insert_with(PodStatus::default);
    st.phase = Some("Failed".into());
    st.reason = Some(reason.to_string());
    st.message = Some(message.to_string());
    set_condition(&mut pod, "Ready", "False", "PodFailed", "");
    state.capacity_gen += 1;
    state.put(pod, EventType::Modified);
}
