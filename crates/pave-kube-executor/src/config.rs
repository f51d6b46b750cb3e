//! The Kubernetes executor's settings, and reading its pod template file.

use crate::error::KubeExecError;
use k8s_openapi::api::core::v1::Pod;
use std::path::Path;
use std::time::Duration;

/// How the executor labels and selects spot capacity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpotConfig {
    /// The node label that says whether a node is spot or on-demand.
    pub capacity_label: String,
    /// Its value on spot nodes.
    pub spot_value: String,
    /// A taint key spot nodes carry (tolerated by spot-allowed tasks), if any.
    pub spot_taint: Option<String>,
}

impl Default for SpotConfig {
    fn default() -> Self {
        SpotConfig {
            capacity_label: "pave.dev/capacity-type".to_owned(),
            spot_value: "spot".to_owned(),
            spot_taint: None,
        }
    }
}

/// Everything the Kubernetes executor is configured with.
#[derive(Clone, Debug)]
pub struct KubeExecutorConfig {
    /// The namespace pods are created in.
    pub namespace: String,
    /// Identifies this pave installation: its pods carry it as a label, and
    /// only its pods are watched, adopted and cleaned up.
    pub installation: String,
    /// The pod every attempt starts from (its first container, or the one
    /// named `base`, runs the task).
    pub pod_template: Option<Pod>,
    /// The image of tasks that name none (and of a template without one).
    pub default_image: String,
    /// Attempts running at once (pods created and not yet ended).
    pub parallelism: usize,
    /// An image that cannot be pulled for this long fails the attempt.
    pub image_pull_timeout: Duration,
    /// A pod the scheduler cannot place for this long fails the attempt,
    /// naming the unmet request.
    pub unschedulable_timeout: Duration,
    /// Pods of failed attempts are kept this long (for `kubectl describe`);
    /// succeeded pods are deleted at once.
    pub keep_failed_pods: Duration,
    /// A spot-allowed task disrupted this many times runs on on-demand
    /// capacity from then on.
    pub spot_fallback_after: u32,
    /// How long after the executor starts an unknown running pod of this
    /// installation (no attempt adopted it) is deleted as an orphan.
    pub orphan_grace: Duration,
    /// How often pending pods are checked against the timeouts and orphans
    /// are looked for.
    pub tick: Duration,
    /// The grace period given to a pod deleted by `kill`.
    pub kill_grace: Duration,
    /// How long the node list used for early "can never fit" checks is reused.
    pub nodes_ttl: Duration,
    /// Spot labels and taints.
    pub spot: SpotConfig,
    /// The URL of the task execution API as pods reach it (`PAVE_API_URL`
    /// of Python tasks), e.g. `http://pave-execution.pave.svc:8793/execution/v1`;
    /// `None` passes on the scheduler's own URL (loopback: only pods of the
    /// simulator's process kubelet reach it).
    pub execution_api_url: Option<String>,
}

impl Default for KubeExecutorConfig {
    fn default() -> Self {
        KubeExecutorConfig {
            namespace: "default".to_owned(),
            installation: "pave".to_owned(),
            pod_template: None,
            default_image: "python:3.12-slim".to_owned(),
            parallelism: 1000,
            image_pull_timeout: Duration::from_secs(120),
            unschedulable_timeout: Duration::from_secs(300),
            keep_failed_pods: Duration::from_secs(3600),
            spot_fallback_after: 2,
            orphan_grace: Duration::from_secs(120),
            tick: Duration::from_secs(1),
            kill_grace: Duration::from_secs(30),
            nodes_ttl: Duration::from_secs(10),
            spot: SpotConfig::default(),
            execution_api_url: None,
        }
    }
}

/// Reads a pod template: a YAML (or JSON) `Pod`, or a bare pod `spec`.
pub fn read_pod_template(path: &Path) -> Result<Pod, KubeExecError> {
    let text = std::fs::read_to_string(path).map_err(|e| KubeExecError::Template {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse_pod_template(&text).map_err(|reason| KubeExecError::Template {
        path: path.display().to_string(),
        reason,
    })
}

/// Parses a pod template from YAML or JSON text.
pub fn parse_pod_template(text: &str) -> Result<Pod, String> {
    let value: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let value = match value {
        serde_json::Value::Object(m) if !m.contains_key("spec") && m.contains_key("containers") => {
            serde_json::json!({ "spec": serde_json::Value::Object(m) })
        }
        other => other,
    };
    if let Some(kind) = value.get("kind").and_then(|k| k.as_str())
        && kind != "Pod"
    {
        return Err(format!("it is a `{kind}`, not a `Pod`"));
    }
    serde_json::from_value(value).map_err(|e| format!("not a Pod: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_from_yaml_pods_and_bare_specs() {
        let pod = parse_pod_template(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {team: ml}\nspec:\n  containers:\n  - name: base\n    image: busybox\n",
        )
        .expect("pod");
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.containers[0].name, "base");
        let bare = parse_pod_template("containers:\n- name: base\n").expect("bare spec");
        assert!(bare.spec.is_some());
        let err = parse_pod_template("kind: Deployment\n").expect_err("not a pod");
        assert!(err.contains("Deployment"), "{err}");
    }
}
