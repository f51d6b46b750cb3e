//! Injected errors, spot reclaim, node loss and disruption conditions.

use crate::common::*;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ListParams, PostParams};
use pave_kube_sim::{
    Cluster, ClusterConfig, DisruptionReason, InjectedError, KubeletMode, NodeLoss, NodeSpec,
    PodMatch, Script, Verb,
};

#[tokio::test]
async fn injected_errors_hit_the_next_matching_calls() {
    let c = scripted();
    let api = pods(&c);
    c.fail_next(InjectedError::new(500).verb(Verb::Create).times(2));
    c.fail_next(InjectedError::new(429).verb(Verb::List));
    c.fail_next(InjectedError::new(409).path("/pods/b"));
    let pp = PostParams::default();
    assert_eq!(
        code(
            &api.create(&pp, &pod("a", &["true"]))
                .await
                .expect_err("500")
        ),
        500
    );
    assert_eq!(
        code(
            &api.create(&pp, &pod("a", &["true"]))
                .await
                .expect_err("500")
        ),
        500
    );
    api.create(&pp, &pod("a", &["true"]))
        .await
        .expect("third create works");
    let e = api.list(&ListParams::default()).await.expect_err("429");
    assert_eq!(code(&e), 429);
    assert_eq!(
        api.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    assert_eq!(code(&api.get("b").await.expect_err("409")), 409);
    assert_eq!(code(&api.get("b").await.expect_err("404 now")), 404);
}

#[tokio::test]
async fn spot_reclaim_fails_pods_with_termination_by_kubelet() {
    let c = Cluster::start(ClusterConfig {
        kubelet: KubeletMode::Script,
        default_script: Script::run_forever(),
        ..Default::default()
    });
    c.add_node(NodeSpec::new("spot-0", "8", "32Gi").spot());
    let api = pods(&c);
    api.create(&PostParams::default(), &pod("job", &["true"]))
        .await
        .expect("c");
    c.wait_for_phase("default", "job", "Running", T)
        .await
        .expect("running");
    let node = c.node("spot-0").expect("node");
    let labels = node.metadata.labels.expect("labels");
    assert_eq!(
        labels.get("pave.dev/capacity-type").map(String::as_str),
        Some("spot")
    );
    assert_eq!(
        labels.get("cloud.google.com/gke-spot").map(String::as_str),
        Some("true")
    );
    c.reclaim_spot_node("spot-0").expect("reclaim");
    let failed = c
        .wait_for_phase("default", "job", "Failed", T)
        .await
        .expect("failed");
    let cond = condition(&failed, "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(cond.reason.as_deref(), Some("TerminationByKubelet"));
    assert_eq!(
        failed.status.as_ref().and_then(|s| s.reason.as_deref()),
        Some("Terminated")
    );
    let nodes: Api<Node> = Api::all(c.client());
    assert!(
        nodes
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn lost_node_fails_its_pods_and_blocks_scheduling() {
    let c = scripted();
    c.script(PodMatch::All, Script::run_forever());
    let api = pods(&c);
    let mut p = pod("on-gpu", &["true"]);
    p.spec.as_mut().expect("spec").node_name = Some("gpu-0".into());
    api.create(&PostParams::default(), &p).await.expect("c");
    c.wait_for_phase("default", "on-gpu", "Running", T)
        .await
        .expect("running");
    c.lose_node("gpu-0", NodeLoss::NotReady).expect("lose");
    let failed = c
        .wait_for_phase("default", "on-gpu", "Failed", T)
        .await
        .expect("failed");
    assert_eq!(
        condition(&failed, "DisruptionTarget").and_then(|c| c.reason.as_deref()),
        Some("DeletionByTaintManager")
    );
    let ready = c
        .node("gpu-0")
        .and_then(|n| n.status)
        .and_then(|s| s.conditions)
        .expect("conditions");
    assert!(
        ready
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "Unknown")
    );
    api.create(
        &PostParams::default(),
        &with_limits(pod("wants-gpu", &["true"]), &[("nvidia.com/gpu", "1")]),
    )
    .await
    .expect("c");
    let p = c
        .wait_for_pod("default", "wants-gpu", T, |p| {
            condition(p, "PodScheduled").is_some_and(|c| c.status == "False")
        })
        .await
        .expect("unschedulable");
    let msg = condition(&p, "PodScheduled")
        .and_then(|c| c.message.clone())
        .expect("msg");
    assert_eq!(
        msg,
        "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 2 Insufficient nvidia.com/gpu."
    );
    c.restore_node("gpu-0").expect("restore");
    c.wait_for_phase("default", "wants-gpu", "Running", T)
        .await
        .expect("runs after restore");
}

#[tokio::test]
async fn disruption_reasons() {
    let c = scripted();
    c.script(PodMatch::All, Script::run_forever());
    let api = pods(&c);
    for name in ["pre", "kub", "cond"] {
        api.create(&PostParams::default(), &pod(name, &["true"]))
            .await
            .expect("c");
        c.wait_for_phase("default", name, "Running", T)
            .await
            .expect("running");
    }
    c.add_disruption_condition("default", "cond", DisruptionReason::DeletionByTaintManager)
        .expect("cond");
    let p = c.pod("default", "cond").expect("pod");
    assert_eq!(phase(&p), "Running", "only the condition");
    assert_eq!(
        condition(&p, "DisruptionTarget").and_then(|c| c.reason.as_deref()),
        Some("DeletionByTaintManager")
    );
    c.disrupt("default", "kub", DisruptionReason::TerminationByKubelet)
        .expect("kubelet");
    let p = c
        .wait_for_phase("default", "kub", "Failed", T)
        .await
        .expect("failed");
    assert_eq!(
        condition(&p, "DisruptionTarget").and_then(|c| c.reason.as_deref()),
        Some("TerminationByKubelet")
    );
    c.disrupt("default", "pre", DisruptionReason::PreemptionByScheduler)
        .expect("preempt");
    c.wait_for_pod_gone("default", "pre", T)
        .await
        .expect("preempted pods are deleted");
    assert!(c.evict("default", "nope").is_err());
}
