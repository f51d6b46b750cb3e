//! Restarts: adopting running pods by handle or by name, outcomes that
//! happened while nobody watched, orphans cleaned up; what must survive a
//! restart: spot-fallback counts and execution timeouts.

use crate::common::{Fx, annotate, config, key};
use pave_core::{Resources, SpotPolicy};
use pave_executor::{AdoptStatus, ClaimQuery, ClaimStatus, Executor, ExecutorEvent};
use pave_kube_executor::naming;
use pave_kube_sim::{DisruptionReason, PodMatch, Script};
use std::time::Duration;

#[tokio::test]
async fn running_pods_are_adopted_after_a_restart_and_reported_once() {
    let mut fx = Fx::new(config("restart-adopt")).await;
    let name = fx.pod_name("train", 1);
    fx.cluster.script(
        PodMatch::name(&name),
        Script::succeed_after(Duration::from_millis(700)).log_line("done"),
    );
    let handle = fx.exec.start(fx.request("train", 1)).await.expect("start");
    fx.cluster
        .wait_for_phase("default", &name, "Running", Duration::from_secs(10))
        .await
        .expect("runs");
    let cfg = fx.cfg.clone();
    fx.restart(cfg).await;
    assert_eq!(
        fx.exec.adopt(&handle).await.expect("adopt"),
        AdoptStatus::Running
    );
    match fx.next().await {
        ExecutorEvent::Finished { result, .. } => {
            assert!(result.is_success());
            assert_eq!(result.last_line.as_deref(), Some("done"));
        }
        other => panic!("{other:?}"),
    }
    fx.quiet(Duration::from_millis(300)).await;
    // After the report, adopting again finds the result file: no new event.
    assert!(matches!(
        fx.exec.adopt(&handle).await.expect("adopt again"),
        AdoptStatus::Finished(_)
    ));
}

#[tokio::test]
async fn pods_that_ended_while_nobody_watched_are_reported_on_adoption() {
    let mut fx = Fx::new(config("restart-ended")).await;
    let mut req = fx.request("quick", 1);
    annotate(&mut req, "exit:4");
    let name = fx.pod_name("quick", 1);
    fx.exec.shutdown();
    // Created by a scheduler that crashed right after: nobody watches.
    let cfg = fx.cfg.clone();
    fx.restart(cfg.clone()).await;
    let handle = fx.exec.start(req).await.expect("start");
    fx.exec.shutdown();
    fx.cluster
        .wait_for_phase("default", &name, "Failed", Duration::from_secs(10))
        .await
        .expect("ends");
    fx.restart(cfg).await;
    assert_eq!(
        fx.exec.adopt(&handle).await.expect("adopt"),
        AdoptStatus::Running
    );
    match fx.next().await {
        ExecutorEvent::Finished { result, .. } => {
            assert_eq!(result.exit, pave_executor::Exit::Code { code: 4 })
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn attempts_without_a_stored_handle_are_found_by_name_or_fenced() {
    let mut fx = Fx::new(config("restart-claim")).await;
    let mut req = fx.request("a", 1);
    annotate(&mut req, "succeed after 500ms");
    fx.exec.start(req).await.expect("start");
    let cfg = fx.cfg.clone();
    fx.restart(cfg).await;
    let dir = fx.dir.path().to_owned();
    let query = |task: &str| ClaimQuery {
        key: key(task, 1),
        resources: Resources::default(),
        log_path: dir.join(format!("logs/{task}/1.log")),
        result_path: dir.join(format!("logs/{task}/1.result.json")),
    };
    match fx.exec.adopt_claimed(&query("a")).await.expect("claimed") {
        ClaimStatus::Running(h) => assert!(matches!(h.process, pave_executor::ProcessRef::Pod(_))),
        other => panic!("{other:?}"),
    }
    assert!(matches!(fx.next().await, ExecutorEvent::Finished { .. }));
    assert_eq!(
        fx.exec
            .adopt_claimed(&query("never"))
            .await
            .expect("fenced"),
        ClaimStatus::Fenced
    );
}

#[tokio::test]
async fn pods_no_attempt_owns_are_cleaned_up() {
    let mut cfg = config("restart-orphans");
    let mut fx = Fx::new(cfg.clone()).await;
    let mut req = fx.request("orphan", 1);
    annotate(&mut req, "run-forever");
    let name = fx.pod_name("orphan", 1);
    fx.exec.start(req).await.expect("start");
    fx.cluster
        .wait_for_phase("default", &name, "Running", Duration::from_secs(10))
        .await
        .expect("runs");
    // The restarted scheduler has no task instance for it: never adopted.
    cfg.orphan_grace = Duration::from_millis(300);
    fx.restart(cfg).await;
    fx.cluster
        .wait_for_pod_gone("default", &name, Duration::from_secs(10))
        .await
        .expect("orphan deleted");
    fx.quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn spot_fallback_counts_survive_a_restart() {
    let mut cfg = config("restart-spot");
    cfg.spot_fallback_after = 2;
    let mut fx = Fx::new(cfg.clone()).await;
    let fallback = |fx: &Fx, name: &str| {
        fx.cluster
            .pod("default", name)
            .expect("pod")
            .metadata
            .annotations
            .unwrap_or_default()
            .get(naming::SPOT_FALLBACK_ANNOTATION)
            .cloned()
    };
    // Tries 1 and 2 are disrupted, with a scheduler restart in between.
    for try_number in 1..=2 {
        let mut req = fx.request("etl", try_number);
        req.placement.spot = SpotPolicy::Allow;
        annotate(&mut req, "run-forever");
        let name = fx.pod_name("etl", try_number);
        fx.exec.start(req).await.expect("start");
        assert_eq!(fallback(&fx, &name), None, "try {try_number} may use spot");
        fx.cluster
            .wait_for_phase("default", &name, "Running", Duration::from_secs(10))
            .await
            .expect("runs");
        fx.cluster
            .disrupt("default", &name, DisruptionReason::PreemptionByScheduler)
            .expect("disrupt");
        assert!(matches!(fx.next().await, ExecutorEvent::Disrupted { .. }));
        fx.restart(cfg.clone()).await;
    }
    // A fresh executor (as after a restart) still counts both disruptions.
    let mut req = fx.request("etl", 3);
    req.placement.spot = SpotPolicy::Allow;
    annotate(&mut req, "succeed");
    let name = fx.pod_name("etl", 3);
    fx.exec.start(req).await.expect("start try 3");
    assert_eq!(fallback(&fx, &name).as_deref(), Some("on-demand"));
    assert!(matches!(fx.next().await, ExecutorEvent::Finished { .. }));
    // Another task instance, never disrupted, keeps spot.
    let mut other = fx.request("other", 3);
    other.placement.spot = SpotPolicy::Allow;
    annotate(&mut other, "succeed");
    let other_name = fx.pod_name("other", 3);
    fx.exec.start(other).await.expect("start other");
    assert_eq!(fallback(&fx, &other_name), None);
    assert!(matches!(fx.next().await, ExecutorEvent::Finished { .. }));
}

#[tokio::test]
async fn an_adopted_pod_keeps_its_execution_timeout() {
    let mut fx = Fx::new(config("restart-timeout")).await;
    let mut req = fx.request("slow", 1);
    req.execution_timeout = Some(Duration::from_secs(2));
    annotate(&mut req, "run-forever");
    let log = req.log_path.clone();
    let name = fx.pod_name("slow", 1);
    let handle = fx.exec.start(req).await.expect("start");
    fx.cluster
        .wait_for_phase("default", &name, "Running", Duration::from_secs(10))
        .await
        .expect("runs");
    let pod = fx.cluster.pod("default", &name).expect("pod");
    assert_eq!(
        naming::execution_timeout_of(&pod),
        Some(Duration::from_secs(2)),
        "the timeout is written on the pod"
    );
    // The scheduler restarts; the new executor knows only the handle.
    let cfg = fx.cfg.clone();
    fx.restart(cfg).await;
    assert_eq!(
        fx.exec.adopt(&handle).await.expect("adopt"),
        AdoptStatus::Running
    );
    match fx.next().await {
        ExecutorEvent::Finished { result, .. } => {
            assert!(result.timed_out, "{result:?}");
            assert!(!result.is_success());
        }
        other => panic!("{other:?}"),
    }
    fx.cluster
        .wait_for_pod_gone("default", &name, Duration::from_secs(10))
        .await
        .expect("the pod is deleted");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("execution_timeout of 2s exceeded"),
        "the log says why"
    );
}
