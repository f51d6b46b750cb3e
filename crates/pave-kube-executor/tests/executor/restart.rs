//! Restarts: adopting running pods by handle or by name, outcomes that
//! happened while nobody watched, orphans cleaned up.

use crate::common::{Fx, annotate, config, key};
use pave_core::Resources;
use pave_executor::{AdoptStatus, ClaimQuery, ClaimStatus, Executor, ExecutorEvent};
use pave_kube_sim::{PodMatch, Script};
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
