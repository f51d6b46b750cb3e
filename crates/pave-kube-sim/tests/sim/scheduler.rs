//! Binding, Unschedulable messages, taints, GPU product, MIG, retries.

use crate::common::*;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Toleration,
};
use kube::api::{DeleteParams, PostParams};
use pave_kube_sim::{Cluster, ClusterConfig, KubeletMode, NodeSpec, PodMatch, Script};
use std::time::Duration;

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

async fn unschedulable(c: &Cluster, name: &str) -> String {
    let p = c
        .wait_for_pod("default", name, T, |p| {
            condition(p, "PodScheduled")
                .is_some_and(|c| c.reason.as_deref() == Some("Unschedulable"))
        })
        .await
        .expect("unschedulable");
    condition(&p, "PodScheduled")
        .and_then(|c| c.message.clone())
        .expect("message")
}

async fn bound(c: &Cluster, name: &str) -> String {
    let p = c
        .wait_for_pod("default", name, T, |p| node_of(p).is_some())
        .await
        .expect("bound");
    node_of(&p).expect("node")
}

fn gpu_cluster() -> Cluster {
    let c = Cluster::start(ClusterConfig {
        kubelet: KubeletMode::Script,
        default_script: Script::run_forever(),
        ..Default::default()
    });
    c.add_nodes(&[
        NodeSpec::new("cpu", "8", "32Gi"),
        NodeSpec::new("t4", "16", "64Gi").gpus(2, "Tesla-T4"),
        NodeSpec::new("h100", "64", "512Gi")
            .gpus(4, "NVIDIA-H100-80GB-HBM3")
            .mig("1g.10gb", 2)
            .taint("nvidia.com/gpu=present:NoSchedule"),
    ]);
    c
}

fn tolerate_gpu(mut p: Pod) -> Pod {
    p.spec.as_mut().expect("spec").tolerations = Some(vec![Toleration {
        key: Some("nvidia.com/gpu".into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }]);
    p
}

fn select(mut p: Pod, key: &str, value: &str) -> Pod {
    p.spec.as_mut().expect("spec").node_selector =
        Some([(key.to_string(), value.to_string())].into());
    p
}

#[tokio::test]
async fn binds_what_fits_and_explains_what_does_not() {
    let c = gpu_cluster();
    let api = pods(&c);
    let pp = PostParams::default();
    api.create(&pp, &with_limits(pod("small", &["true"]), &[("cpu", "1")]))
        .await
        .expect("c");
    assert!(!bound(&c, "small").await.is_empty());

    // 3 GPUs: only the tainted H100 node has that many.
    api.create(
        &pp,
        &with_limits(pod("three", &["true"]), &[("nvidia.com/gpu", "3")]),
    )
    .await
    .expect("c");
    assert_eq!(
        unschedulable(&c, "three").await,
        "0/3 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}, 2 Insufficient nvidia.com/gpu."
    );
    api.create(
        &pp,
        &tolerate_gpu(with_limits(
            pod("three-ok", &["true"]),
            &[("nvidia.com/gpu", "3")],
        )),
    )
    .await
    .expect("c");
    assert_eq!(bound(&c, "three-ok").await, "h100");

    // GPU product through the node label.
    let t4 = select(
        with_limits(pod("t4", &["true"]), &[("nvidia.com/gpu", "1")]),
        "nvidia.com/gpu.product",
        "Tesla-T4",
    );
    api.create(&pp, &t4).await.expect("c");
    assert_eq!(bound(&c, "t4").await, "t4");
    let a100 = select(
        with_limits(pod("a100", &["true"]), &[("nvidia.com/gpu", "1")]),
        "nvidia.com/gpu.product",
        "A100",
    );
    api.create(&pp, &tolerate_gpu(a100)).await.expect("c");
    assert_eq!(
        unschedulable(&c, "a100").await,
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );

    // MIG profiles are extended resources.
    let mig = tolerate_gpu(with_limits(
        pod("mig", &["true"]),
        &[("nvidia.com/mig-1g.10gb", "2")],
    ));
    api.create(&pp, &mig).await.expect("c");
    assert_eq!(bound(&c, "mig").await, "h100");
    let mig2 = tolerate_gpu(with_limits(
        pod("mig2", &["true"]),
        &[("nvidia.com/mig-1g.10gb", "1")],
    ));
    api.create(&pp, &mig2).await.expect("c");
    assert!(
        unschedulable(&c, "mig2")
            .await
            .contains("Insufficient nvidia.com/mig-1g.10gb")
    );

    // Capacity freed: the waiting pod is retried and bound.
    api.delete("mig", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    assert_eq!(bound(&c, "mig2").await, "h100");
}

#[tokio::test]
async fn required_node_affinity_in_notin_exists() {
    let c = gpu_cluster();
    let api = pods(&c);
    let with_affinity = |name: &str, op: &str, values: &[&str]| {
        let mut p = pod(name, &["true"]);
        p.spec.as_mut().expect("spec").affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "nvidia.com/gpu.product".into(),
                            operator: op.into(),
                            values: (!values.is_empty())
                                .then(|| values.iter().map(|v| v.to_string()).collect()),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        tolerate_gpu(p)
    };
    let pp = PostParams::default();
    api.create(&pp, &with_affinity("in", "In", &["NVIDIA-H100-80GB-HBM3"]))
        .await
        .expect("c");
    assert_eq!(bound(&c, "in").await, "h100");
    api.create(
        &pp,
        &with_affinity("notin", "NotIn", &["NVIDIA-H100-80GB-HBM3", "Tesla-T4"]),
    )
    .await
    .expect("c");
    assert_eq!(bound(&c, "notin").await, "cpu");
    api.create(&pp, &with_affinity("exists", "Exists", &[]))
        .await
        .expect("c");
    assert_ne!(bound(&c, "exists").await, "cpu");
    api.create(&pp, &with_affinity("none", "In", &["B200"]))
        .await
        .expect("c");
    assert!(
        unschedulable(&c, "none")
            .await
            .contains("didn't match Pod's node affinity/selector")
    );
}

#[tokio::test]
async fn waits_for_capacity_and_binds_when_a_pod_finishes() {
    let c = gpu_cluster();
    c.script(
        PodMatch::name("hog"),
        Script::succeed_after(Duration::from_millis(200)),
    );
    let api = pods(&c);
    let pp = PostParams::default();
    api.create(
        &pp,
        &with_limits(pod("hog", &["true"]), &[("nvidia.com/gpu", "2")]),
    )
    .await
    .expect("c");
    assert_eq!(bound(&c, "hog").await, "t4");
    api.create(
        &pp,
        &with_limits(pod("next", &["true"]), &[("nvidia.com/gpu", "1")]),
    )
    .await
    .expect("c");
    assert!(
        unschedulable(&c, "next")
            .await
            .contains("Insufficient nvidia.com/gpu")
    );
    assert_eq!(
        bound(&c, "next").await,
        "t4",
        "bound once the hog succeeded"
    );
}
