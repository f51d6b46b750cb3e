//! Pods that run to an end: success, exit codes, OOM, image pulls,
//! unschedulable pods, logs, kill.

use crate::common::{Fx, H100, annotate, config};
use pave_executor::{Executor, ExecutorError, ExecutorEvent, Exit};
use pave_kube_sim::{PodMatch, Script};
use std::time::Duration;

fn finished(ev: ExecutorEvent) -> pave_executor::AttemptResult {
    match ev {
        ExecutorEvent::Finished { result, .. } => result,
        other => panic!("expected Finished, got {other:?}"),
    }
}

#[tokio::test]
async fn success_is_reported_once_with_logs_kept_after_the_pod_is_deleted() {
    let mut fx = Fx::new(config("life-ok")).await;
    let name = fx.pod_name("train", 1);
    fx.cluster.script(
        PodMatch::name(&name),
        Script::succeed_after(Duration::from_millis(200))
            .log_line("epoch 1 loss 0.3")
            .log_line("{\"accuracy\": 0.93}"),
    );
    let req = fx.request("train", 1);
    let log = req.log_path.clone();
    let handle = fx.exec.start(req).await.expect("start");
    let pod = fx.cluster.pod("default", &name).expect("pod created");
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("pave.dev/task-id").map(String::as_str),
        Some("train")
    );
    assert_eq!(
        labels.get("pave.dev/try-number").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        labels.get("pave.dev/installation").map(String::as_str),
        Some("life-ok")
    );
    let result = finished(fx.next().await);
    assert!(result.is_success(), "{result:?}");
    assert_eq!(result.last_line.as_deref(), Some("{\"accuracy\": 0.93}"));
    fx.cluster
        .wait_for_pod_gone("default", &name, Duration::from_secs(10))
        .await
        .expect("succeeded pod deleted");
    let text = std::fs::read_to_string(&log).expect("log file");
    assert!(text.contains("epoch 1 loss 0.3"), "{text}");
    assert!(handle.result_path.exists(), "result file written");
    fx.quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn exit_codes_and_oom_are_reported_with_reasons() {
    let mut fx = Fx::new(config("life-exit")).await;
    let mut req = fx.request("exit3", 1);
    annotate(&mut req, "exit:3");
    fx.exec.start(req).await.expect("start");
    let r = finished(fx.next().await);
    assert_eq!(r.exit, Exit::Code { code: 3 });
    let mut req = fx.request("oom", 1);
    annotate(&mut req, "oom");
    let name = fx.pod_name("oom", 1);
    fx.exec.start(req).await.expect("start");
    let r = finished(fx.next().await);
    let err = r.error.clone().unwrap_or_default();
    assert!(
        err.contains("OOMKilled") && err.contains("resources.memory"),
        "{r:?}"
    );
    // Failed pods are kept a while (300 ms here), then deleted.
    assert!(
        fx.cluster.pod("default", &name).is_some(),
        "failed pod kept"
    );
    fx.cluster
        .wait_for_pod_gone("default", &name, Duration::from_secs(10))
        .await
        .expect("failed pod deleted after keep_failed_pods");
}

#[tokio::test]
async fn image_pull_errors_fail_after_the_configured_time() {
    let mut fx = Fx::new(config("life-image")).await;
    fx.cluster
        .set_bad_images(vec!["registry.invalid/*".to_owned()]);
    let mut req = fx.request("pull", 1);
    req.placement.image = Some("registry.invalid/trainer:v1".to_owned());
    let name = fx.pod_name("pull", 1);
    fx.exec.start(req).await.expect("start");
    let r = finished(fx.next().await);
    let err = r.error.clone().unwrap_or_default();
    assert!(
        (err.contains("ErrImagePull") || err.contains("ImagePullBackOff"))
            && err.contains("registry.invalid/trainer:v1")
            && err.contains("`image`"),
        "{err}"
    );
    fx.cluster
        .wait_for_pod_gone("default", &name, Duration::from_secs(10))
        .await
        .expect("pending pod deleted");
}

#[tokio::test]
async fn unschedulable_pods_fail_naming_the_unmet_request() {
    let mut fx = Fx::new(config("life-unsched")).await;
    let mut hog = fx.request("hog", 1);
    hog.resources.gpu = 4;
    annotate(&mut hog, "run-forever");
    fx.exec.start(hog).await.expect("start hog");
    let hog_name = fx.pod_name("hog", 1);
    fx.cluster
        .wait_for_phase("default", &hog_name, "Running", Duration::from_secs(10))
        .await
        .expect("hog runs");
    let mut req = fx.request("train", 1);
    req.resources.gpu = 4;
    req.resources.gpu_type = Some("H100".to_owned());
    fx.exec.start(req).await.expect("start");
    let r = finished(fx.next().await);
    let err = r.error.clone().unwrap_or_default();
    assert!(
        err.contains(&format!("no node can fit 4 nvidia.com/gpu of type {H100}"))
            && err.contains("Insufficient nvidia.com/gpu"),
        "{err}"
    );
}

#[tokio::test]
async fn requests_no_node_can_hold_are_refused_at_start() {
    let fx = Fx::new(config("life-never")).await;
    let mut req = fx.request("train", 1);
    req.resources.gpu = 8;
    req.resources.gpu_type = Some("H100".to_owned());
    let err = fx.exec.start(req).await.expect_err("8 GPUs never fit");
    let msg = err.to_string();
    assert!(matches!(err, ExecutorError::Unsatisfiable { .. }), "{msg}");
    assert!(
        msg.contains("8 nvidia.com/gpu of type H100")
            && msg.contains("`train`")
            && msg.contains("resources.gpu"),
        "{msg}"
    );
    assert!(fx.cluster.pods().is_empty(), "no pod created");
    let mut req = fx.request("mig", 1);
    req.resources.mig = Some("1g.10gb".to_owned());
    let msg = fx.exec.start(req).await.expect_err("no MIG").to_string();
    assert!(msg.contains("resources.mig"), "{msg}");
}

#[tokio::test]
async fn kill_deletes_the_pod_and_reports_a_cancelled_attempt() {
    let mut fx = Fx::new(config("life-kill")).await;
    let mut req = fx.request("long", 1);
    annotate(&mut req, "run-forever");
    let name = fx.pod_name("long", 1);
    let handle = fx.exec.start(req).await.expect("start");
    fx.cluster
        .wait_for_phase("default", &name, "Running", Duration::from_secs(10))
        .await
        .expect("runs");
    fx.exec.kill(&handle).await.expect("kill");
    let r = finished(fx.next().await);
    assert!(r.cancelled, "{r:?}");
}

#[tokio::test]
async fn execution_timeout_deletes_the_pod() {
    let mut fx = Fx::new(config("life-timeout")).await;
    let mut req = fx.request("slow", 1);
    annotate(&mut req, "run-forever");
    req.execution_timeout = Some(Duration::from_millis(300));
    fx.exec.start(req).await.expect("start");
    let r = finished(fx.next().await);
    assert!(r.timed_out, "{r:?}");
}

#[tokio::test]
async fn bad_pod_overrides_are_refused_naming_the_field() {
    let fx = Fx::new(config("life-bad")).await;
    let mut req = fx.request("odd", 1);
    req.placement.pod_override = Some(serde_json::json!({"spec": {"containers": "base"}}));
    let msg = fx.exec.start(req).await.expect_err("malformed").to_string();
    assert!(
        msg.contains("`odd`") && msg.contains("pod_override"),
        "{msg}"
    );
    let mut req = fx.request("odd2", 1);
    req.placement.pod_override = Some(serde_json::json!(["not", "a", "mapping"]));
    let msg = fx.exec.start(req).await.expect_err("not a map").to_string();
    assert!(msg.contains("pod_override"), "{msg}");
}
