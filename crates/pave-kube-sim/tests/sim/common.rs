//! Pods, clusters and waits shared by the tests.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use pave_kube_sim::{Cluster, ClusterConfig, KubeletMode, NodeSpec, Script};
use std::collections::BTreeMap;
use std::time::Duration;

/// Generous upper bound for waits: they return as soon as the state is reached.
pub const T: Duration = Duration::from_secs(10);

/// A pod running `argv` once (restartPolicy Never).
pub fn pod(name: &str, argv: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: Some(5),
            containers: vec![Container {
                name: "main".into(),
                image: Some("python:3.12".into()),
                command: Some(argv.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Adds resource limits (requests default to them).
pub fn with_limits(mut p: Pod, limits: &[(&str, &str)]) -> Pod {
    let m: BTreeMap<String, Quantity> = limits
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect();
    p.spec.as_mut().expect("spec").containers[0].resources = Some(ResourceRequirements {
        limits: Some(m),
        ..Default::default()
    });
    p
}

/// Adds labels.
pub fn labelled(mut p: Pod, labels: &[(&str, &str)]) -> Pod {
    p.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    p
}

/// A scripted cluster (pods succeed after 10 ms unless scripted) with two
/// CPU nodes and one 4-GPU H100 node.
pub fn scripted() -> Cluster {
    let c = Cluster::start(ClusterConfig {
        kubelet: KubeletMode::Script,
        default_script: Script::succeed_after(Duration::from_millis(10)),
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    });
    c.add_nodes(&[
        NodeSpec::new("cpu-0", "4", "16Gi"),
        NodeSpec::new("cpu-1", "4", "16Gi"),
        NodeSpec::new("gpu-0", "32", "256Gi").gpus(4, "NVIDIA-H100-80GB-HBM3"),
    ]);
    c
}

/// A process-mode cluster with one roomy node.
pub fn processes() -> Cluster {
    let c = Cluster::start(ClusterConfig {
        kubelet: KubeletMode::Process,
        max_termination_grace: Duration::from_secs(2),
        ..Default::default()
    });
    c.add_node(NodeSpec::new("local", "16", "64Gi"));
    c
}

pub fn pods(c: &Cluster) -> Api<Pod> {
    Api::namespaced(c.client(), "default")
}

/// The Status code of a kube API error.
pub fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The status message of a kube API error.
pub fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn condition<'a>(p: &'a Pod, t: &str) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
}

pub fn terminated(p: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}
