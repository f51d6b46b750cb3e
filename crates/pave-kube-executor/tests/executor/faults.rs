//! Faults of a real cluster: disruptions, spot reclaim and the fallback to
//! on-demand, dropped and expired watches, API errors on create.

use crate::common::{Fx, annotate, config};
use pave_core::SpotPolicy;
use pave_executor::{Executor, ExecutorEvent};
use pave_kube_sim::{DisruptionReason, InjectedError, PodMatch, Script, Verb};
use std::time::Duration;

fn disrupted(ev: ExecutorEvent) -> String {
    match ev {
        ExecutorEvent::Disrupted { reason, .. } => reason,
        other => panic!("expected Disrupted, got {other:?}"),
    }
}

#[tokio::test]
async fn disruptions_are_reported_as_disruptions_with_their_cause() {
    let mut fx = Fx::new(config("fault-disrupt")).await;
    for (i, reason, word) in [
        (
            1,
            DisruptionReason::PreemptionByScheduler,
            "PreemptionByScheduler",
        ),
        (
            2,
            DisruptionReason::EvictionByEvictionAPI,
            "EvictionByEvictionAPI",
        ),
        (
            3,
            DisruptionReason::TerminationByKubelet,
            "TerminationByKubelet",
        ),
        (
            4,
            DisruptionReason::DeletionByTaintManager,
            "DeletionByTaintManager",
        ),
    ] {
        let task = format!("t{i}");
        let mut req = fx.request(&task, 1);
        annotate(&mut req, "run-forever");
        let name = fx.pod_name(&task, 1);
        fx.exec.start(req).await.expect("start");
        fx.cluster
            .wait_for_phase("default", &name, "Running", Duration::from_secs(10))
            .await
            .expect("runs");
        fx.cluster
            .disrupt("default", &name, reason)
            .expect("disrupt");
        let cause = disrupted(fx.next().await);
        assert!(cause.contains(word), "{cause}");
    }
    fx.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn spot_reclaim_is_a_disruption_and_spot_tasks_fall_back_to_on_demand() {
    let mut cfg = config("fault-spot");
    cfg.spot_fallback_after = 1;
    let mut fx = Fx::new(cfg).await;
    // Only the spot node has room for this task's cpu.
    fx.cluster
        .add_node(pave_kube_sim::NodeSpec::new("spot-big", "64", "64Gi").spot());
    let mut req = fx.request("etl", 1);
    req.placement.spot = SpotPolicy::Allow;
    // Only `spot-big` has 40 cpu: the pod lands on spot capacity.
    req.resources.cpu_millis = 40_000;
    annotate(&mut req, "run-forever");
    let name = fx.pod_name("etl", 1);
    fx.exec.start(req).await.expect("start");
    let pod = fx
        .cluster
        .wait_for_phase("default", &name, "Running", Duration::from_secs(10))
        .await
        .expect("runs");
    let node = pod.spec.and_then(|s| s.node_name).expect("bound to a node");
    assert_eq!(node, "spot-big");
    let spec_json = serde_json::to_string(&fx.cluster.pod("default", &name)).unwrap_or_default();
    assert!(
        !spec_json.contains("NotIn"),
        "spot allowed: no anti-spot affinity"
    );
    fx.cluster.reclaim_spot_node(&node).expect("reclaim");
    let cause = disrupted(fx.next().await);
    assert!(cause.contains("TerminationByKubelet"), "{cause}");
    // Try 2 of the same task instance: on-demand only.
    let mut req = fx.request("etl", 2);
    req.placement.spot = SpotPolicy::Allow;
    annotate(&mut req, "succeed");
    let log = req.log_path.clone();
    let name2 = fx.pod_name("etl", 2);
    fx.exec.start(req).await.expect("start try 2");
    let pod2 = fx.cluster.pod("default", &name2).expect("pod 2");
    let text = serde_json::to_string(&pod2).unwrap_or_default();
    assert!(
        text.contains("NotIn") && text.contains("pave.dev/spot-fallback"),
        "{text}"
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("on-demand capacity"),
        "the log says why"
    );
    match fx.next().await {
        ExecutorEvent::Finished { result, .. } => assert!(result.is_success(), "{result:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dropped_and_expired_watches_never_double_count() {
    let mut fx = Fx::new(config("fault-watch")).await;
    let mut names = Vec::new();
    for i in 0..5 {
        let task = format!("w{i}");
        fx.cluster.script(
            PodMatch::name(fx.pod_name(&task, 1)),
            Script::succeed_after(Duration::from_millis(300 + 50 * i)),
        );
        names.push(fx.pod_name(&task, 1));
        fx.exec.start(fx.request(&task, 1)).await.expect("start");
    }
    fx.cluster.drop_watches();
    fx.cluster.expire_next_watches(2);
    fx.cluster.compact_history();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let ev = fx.next().await;
        assert!(seen.insert(ev.key().clone()), "reported twice: {ev:?}");
    }
    fx.cluster.drop_watches();
    fx.cluster.expire_next_watches(1);
    fx.quiet(Duration::from_millis(800)).await;
    assert_eq!(fx.exec.reported(), 5);
}

#[tokio::test]
async fn a_repeated_create_adopts_the_existing_pod() {
    let mut fx = Fx::new(config("fault-409")).await;
    let name = fx.pod_name("train", 1);
    fx.cluster.script(
        PodMatch::name(&name),
        Script::succeed_after(Duration::from_millis(500)),
    );
    fx.exec.start(fx.request("train", 1)).await.expect("start");
    // The scheduler crashes before recording the start, restarts, and
    // starts the same try again: 409 AlreadyExists, adopted.
    let cfg = fx.cfg.clone();
    fx.restart(cfg).await;
    let handle = fx
        .exec
        .start(fx.request("train", 1))
        .await
        .expect("re-create adopts");
    assert!(matches!(handle.process, pave_executor::ProcessRef::Pod(ref p) if p.uid.is_some()));
    match fx.next().await {
        ExecutorEvent::Finished { result, .. } => assert!(result.is_success()),
        other => panic!("{other:?}"),
    }
    fx.quiet(Duration::from_millis(300)).await;
    assert_eq!(
        fx.cluster
            .pods()
            .iter()
            .filter(|p| p.metadata.name.as_deref() == Some(name.as_str()))
            .count(),
        0,
        "one pod, deleted after success"
    );
}

#[tokio::test]
async fn transient_api_errors_on_create_are_retried() {
    let mut fx = Fx::new(config("fault-500")).await;
    fx.cluster.fail_next(
        InjectedError::new(500)
            .verb(Verb::Create)
            .path("/pods")
            .times(2),
    );
    fx.exec
        .start(fx.request("t", 1))
        .await
        .expect("start after retries");
    assert!(matches!(fx.next().await, ExecutorEvent::Finished { .. }));
}

#[tokio::test]
async fn a_lost_node_disrupts_its_pods() {
    let mut fx = Fx::new(config("fault-node")).await;
    let mut req = fx.request("on-node", 1);
    annotate(&mut req, "run-forever");
    let name = fx.pod_name("on-node", 1);
    fx.exec.start(req).await.expect("start");
    let pod = fx
        .cluster
        .wait_for_phase("default", &name, "Running", Duration::from_secs(10))
        .await
        .expect("runs");
    let node = pod.spec.and_then(|s| s.node_name).expect("bound");
    fx.cluster
        .lose_node(&node, pave_kube_sim::NodeLoss::Deleted)
        .expect("lose node");
    let cause = disrupted(fx.next().await);
    assert!(
        cause.contains("DeletionByPodGC") || cause.contains("NodeLost"),
        "{cause}"
    );
    fx.quiet(Duration::from_millis(300)).await;
}
