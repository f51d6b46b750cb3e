//! What a Pod's status means for its attempt, as pure functions: phases,
//! container states and conditions become "still pending (and why)",
//! "running", "ended with this exit code", or "disrupted by this cause".

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use pave_executor::{AttemptResult, Exit};
use std::time::Duration;

/// Container waiting reasons that mean the image cannot be pulled.
const IMAGE_ERRORS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// Pod-level failure reasons of a kubelet or node that killed a pod which
/// did nothing wrong.
const DISRUPTED_REASONS: &[&str] = &[
    "NodeLost",
    "Terminated",
    "Evicted",
    "Shutdown",
    "NodeShutdown",
];

/// Where a Pod stands.
#[derive(Clone, Debug, PartialEq)]
pub enum PodState {
    /// Not running yet. `unschedulable`: the scheduler's message;
    /// `image_error`: why the image cannot be pulled.
    Pending {
        unschedulable: Option<String>,
        image_error: Option<String>,
    },
    Running,
    /// Ended; `succeeded` is phase Succeeded.
    Ended {
        succeeded: bool,
        end: Ending,
    },
    /// Killed by something outside the task; the cause.
    Disrupted(String),
}

/// How the task's container ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    pub exit_code: i32,
    /// `OOMKilled`, `Error`, `Completed`, `DeadlineExceeded`, ...
    pub reason: Option<String>,
    pub message: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The `DisruptionTarget` condition's cause, when it is set.
pub fn disruption(pod: &Pod) -> Option<String> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conds
        .iter()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")?;
    let reason = c
        .reason
        .clone()
        .unwrap_or_else(|| "DisruptionTarget".to_owned());
    Some(match &c.message {
        Some(m) if !m.is_empty() => format!("{reason}: {m}"),
        _ => reason,
    })
}

/// Classifies a Pod by its status.
pub fn classify(pod: &Pod) -> PodState {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    match phase {
        "Succeeded" => PodState::Ended {
            succeeded: true,
            end: ending(pod),
        },
        "Failed" => {
            if let Some(cause) = disruption(pod) {
                return PodState::Disrupted(cause);
            }
            let reason = status.and_then(|s| s.reason.clone()).unwrap_or_default();
            if DISRUPTED_REASONS.contains(&reason.as_str()) {
                let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
                return PodState::Disrupted(format!("{reason}: {message}"));
            }
            PodState::Ended {
                succeeded: false,
                end: ending(pod),
            }
        }
        "Running" => PodState::Running,
        _ => {
            let unschedulable = status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| {
                    cs.iter().find(|c| {
                        c.type_ == "PodScheduled"
                            && c.status == "False"
                            && c.reason.as_deref() == Some("Unschedulable")
                    })
                })
                .map(|c| c.message.clone().unwrap_or_default());
            let image_error = status
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| {
                    cs.iter().find_map(|c| {
                        let w = c.state.as_ref()?.waiting.as_ref()?;
                        let reason = w.reason.as_deref()?;
                        IMAGE_ERRORS.contains(&reason).then(|| {
                            format!(
                                "{reason} for image `{}`{}",
                                c.image,
                                w.message
                                    .as_deref()
                                    .map(|m| format!(": {m}"))
                                    .unwrap_or_default()
                            )
                        })
                    })
                });
            PodState::Pending {
                unschedulable,
                image_error,
            }
        }
    }
}

/// The main (first) container's terminated state.
fn ending(pod: &Pod) -> Ending {
    let term: Option<&ContainerStateTerminated> = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    match term {
        Some(t) => Ending {
            exit_code: t.exit_code,
            reason: t.reason.clone(),
            message: t.message.clone(),
            started_at: t.started_at.as_ref().map(|ts| to_chrono(&ts.0)),
            finished_at: t.finished_at.as_ref().map(|ts| to_chrono(&ts.0)),
        },
        None => {
            let status = pod.status.as_ref();
            Ending {
                exit_code: -1,
                reason: status.and_then(|s| s.reason.clone()),
                message: status.and_then(|s| s.message.clone()),
                started_at: None,
                finished_at: None,
            }
        }
    }
}

/// When the main (first) container started running, else when the pod
/// started (`status.startTime`).
pub fn running_since(pod: &Pod) -> Option<DateTime<Utc>> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .or(status.start_time.as_ref())
        .map(|ts| to_chrono(&ts.0))
}

fn to_chrono(ts: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().max(0) as u32)
        .unwrap_or_else(Utc::now)
}

/// The attempt's result from how its container ended.
pub fn ended_result(
    succeeded: bool,
    end: &Ending,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AttemptResult {
    let started_at = end.started_at.unwrap_or(started);
    let ended_at = end.finished_at.unwrap_or(now);
    let mut result = AttemptResult::exited_at(ended_at, end.exit_code, None);
    result.started_at = started_at;
    result.duration_ms = u64::try_from((ended_at - started_at).num_milliseconds()).unwrap_or(0);
    if succeeded {
        result.exit = Exit::Code { code: 0 };
        return result;
    }
    match end.reason.as_deref() {
        Some("OOMKilled") => {
            result.error = Some(format!(
                "the container was OOMKilled (exit code {}): it used more memory than its limit; \
                 raise the task's `resources.memory`",
                end.exit_code
            ));
        }
        Some("DeadlineExceeded") => result.timed_out = true,
        Some(reason @ ("StartError" | "ContainerCannotRun" | "CreateContainerError")) => {
            result.exit = Exit::NotRun;
            result.error = Some(format!(
                "the container could not start ({reason}){}",
                end.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
        }
        _ if end.exit_code < 0 => {
            result.exit = Exit::NotRun;
            result.error = Some(format!(
                "the pod failed without a container exit code ({}{})",
                end.reason.as_deref().unwrap_or("no reason"),
                end.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
        }
        _ => {}
    }
    result
}

/// A result for an attempt that ended without its container exiting.
pub fn failed_result(started: DateTime<Utc>, now: DateTime<Utc>, error: String) -> AttemptResult {
    let mut result = AttemptResult::exited_at(now, 0, None);
    result.exit = Exit::NotRun;
    result.started_at = started;
    result.duration_ms = u64::try_from((now - started).num_milliseconds()).unwrap_or(0);
    result.error = Some(error);
    result
}

/// What the pod asks for that no node has, for the "unschedulable" message:
/// `8 nvidia.com/gpu of type H100`, or its cpu and memory.
pub fn describe_request(pod: &Pod) -> String {
    let Some(spec) = pod.spec.as_ref() else {
        return "its requests".to_owned();
    };
    let mut parts = Vec::new();
    let product = spec
        .node_selector
        .as_ref()
        .and_then(|s| s.get(crate::render::GPU_PRODUCT_LABEL).cloned())
        .or_else(|| {
            let terms = &spec
                .affinity
                .as_ref()?
                .node_affinity
                .as_ref()?
                .required_during_scheduling_ignored_during_execution
                .as_ref()?
                .node_selector_terms;
            terms.iter().find_map(|t| {
                t.match_expressions.as_ref()?.iter().find_map(|e| {
                    (e.key == crate::render::GPU_PRODUCT_LABEL && e.operator == "In")
                        .then(|| e.values.clone().unwrap_or_default().join(" or "))
                })
            })
        });
    let mut gpu_part = None;
    for c in &spec.containers {
        let Some(req) = c.resources.as_ref().and_then(|r| r.requests.as_ref()) else {
            continue;
        };
        for (name, q) in req {
            if name.starts_with("nvidia.com/") {
                let mut s = format!("{} {name}", q.0);
                if let Some(p) = &product {
                    s.push_str(&format!(" of type {p}"));
                }
                gpu_part = Some(s);
            } else {
                parts.push(format!("{} {name}", q.0));
            }
        }
    }
    if let Some(g) = gpu_part {
        return g;
    }
    if parts.is_empty() {
        "this pod (no resource requests; check its node selector, affinity and tolerations)"
            .to_owned()
    } else {
        parts.join(" and ")
    }
}

/// The message of an attempt failed because its pod stayed unschedulable.
pub fn unschedulable_message(pod: &Pod, waited: Duration, scheduler: &str) -> String {
    format!(
        "no node can fit {} (unschedulable for {}s; scheduler: {scheduler})",
        describe_request(pod),
        waited.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "base", "image": "x",
                "resources": {"requests": {"nvidia.com/gpu": "8"}, "limits": {"nvidia.com/gpu": "8"}}}],
                "nodeSelector": {"nvidia.com/gpu.product": "H100"}},
            "status": status
        }))
        .expect("pod")
    }

    fn terminated(phase: &str, code: i32, reason: &str) -> Pod {
        pod(
            json!({"phase": phase, "containerStatuses": [{"name": "base", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": reason}}}]}),
        )
    }

    #[test]
    fn phases_and_states_classify() {
        assert!(matches!(
            classify(&terminated("Succeeded", 0, "Completed")),
            PodState::Ended {
                succeeded: true,
                ..
            }
        ));
        let PodState::Ended {
            succeeded: false,
            end,
        } = classify(&terminated("Failed", 137, "OOMKilled"))
        else {
            panic!("ended");
        };
        let r = ended_result(false, &end, Utc::now(), Utc::now());
        assert!(
            r.error.as_deref().is_some_and(|e| e.contains("OOMKilled")),
            "{r:?}"
        );
        let PodState::Ended { end, .. } = classify(&terminated("Failed", 3, "Error")) else {
            panic!("ended");
        };
        let r = ended_result(false, &end, Utc::now(), Utc::now());
        assert_eq!((r.exit, r.error), (Exit::Code { code: 3 }, None));
        assert_eq!(
            classify(&pod(json!({"phase": "Running"}))),
            PodState::Running
        );
        let lost = pod(json!({"phase": "Failed", "reason": "NodeLost", "message": "node gone"}));
        assert_eq!(
            classify(&lost),
            PodState::Disrupted("NodeLost: node gone".into())
        );
        let preempted = pod(
            json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget",
            "status": "True", "reason": "PreemptionByScheduler", "message": "preempted"}]}),
        );
        assert_eq!(
            classify(&preempted),
            PodState::Disrupted("PreemptionByScheduler: preempted".into())
        );
    }

    #[test]
    fn pending_pods_say_why() {
        let unsched = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}),
        );
        let PodState::Pending {
            unschedulable: Some(m),
            image_error: None,
        } = classify(&unsched)
        else {
            panic!("pending");
        };
        let msg = unschedulable_message(&unsched, Duration::from_secs(300), &m);
        assert!(
            msg.starts_with("no node can fit 8 nvidia.com/gpu of type H100")
                && msg.contains("Insufficient"),
            "{msg}"
        );
        let pull = pod(
            json!({"phase": "Pending", "containerStatuses": [{"name": "base",
            "image": "reg/x:1", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "back-off"}}}]}),
        );
        let PodState::Pending {
            image_error: Some(e),
            ..
        } = classify(&pull)
        else {
            panic!("pending");
        };
        assert_eq!(e, "ImagePullBackOff for image `reg/x:1`: back-off");
    }
}
