//! The kubelet: local processes (command, env, workingDir, exit codes, logs,
//! graceful deletion) and scripted outcomes (OOMKilled, image pull errors).

use crate::common::*;
use k8s_openapi::api::core::v1::EnvVar;
use kube::api::{DeleteParams, LogParams, PostParams};
use pave_kube_sim::{OUTCOME_ANNOTATION, PodMatch, Script};
use std::time::{Duration, Instant};

#[tokio::test]
async fn runs_the_command_as_a_local_process() {
    let c = processes();
    let api = pods(&c);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = pod("proc", &["sh", "-c"]);
    {
        let ctr = &mut p.spec.as_mut().expect("spec").containers[0];
        ctr.args = Some(vec!["echo out $GREETING; pwd; echo err >&2; exit 3".into()]);
        ctr.env = Some(vec![EnvVar {
            name: "GREETING".into(),
            value: Some("hello".into()),
            ..Default::default()
        }]);
        ctr.working_dir = Some(dir.path().display().to_string());
    }
    api.create(&PostParams::default(), &p)
        .await
        .expect("create");
    let done = c
        .wait_for_phase("default", "proc", "Failed", T)
        .await
        .expect("failed");
    let term = terminated(&done).expect("terminated");
    assert_eq!(term.exit_code, 3);
    assert_eq!(term.reason.as_deref(), Some("Error"));
    assert!(
        done.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_some()
    );
    let log = api.logs("proc", &LogParams::default()).await.expect("log");
    assert!(log.contains("out hello\n"), "{log}");
    assert!(log.contains("err\n"), "{log}");
    assert!(
        log.contains(&format!("{}\n", dir.path().display())),
        "{log}"
    );

    api.create(&PostParams::default(), &pod("ok", &["true"]))
        .await
        .expect("create");
    let ok = c
        .wait_for_phase("default", "ok", "Succeeded", T)
        .await
        .expect("succeeded");
    assert_eq!(terminated(&ok).map(|t| t.exit_code), Some(0));
    api.create(
        &PostParams::default(),
        &pod("missing", &["/no/such/binary"]),
    )
    .await
    .expect("create");
    let missing = c
        .wait_for_phase("default", "missing", "Failed", T)
        .await
        .expect("failed");
    assert_eq!(
        terminated(&missing).and_then(|t| t.reason.as_deref()),
        Some("StartError")
    );
}

#[tokio::test]
async fn graceful_deletion_stops_the_process_group() {
    let c = processes();
    let api = pods(&c);
    api.create(
        &PostParams::default(),
        &pod("sleepy", &["sh", "-c", "sleep 600 & sleep 600"]),
    )
    .await
    .expect("c");
    c.wait_for_phase("default", "sleepy", "Running", T)
        .await
        .expect("running");
    let started = Instant::now();
    api.delete("sleepy", &DeleteParams::default())
        .await
        .expect("delete");
    c.wait_for_pod_gone("default", "sleepy", T)
        .await
        .expect("gone");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "SIGTERM ends sh at once"
    );
    c.shutdown();
}

#[tokio::test]
async fn follow_streams_a_process_log_until_it_exits() {
    let c = processes();
    let api = pods(&c);
    api.create(
        &PostParams::default(),
        &pod(
            "ticker",
            &[
                "sh",
                "-c",
                "for i in 1 2 3; do echo tick $i; sleep 0.1; done",
            ],
        ),
    )
    .await
    .expect("c");
    c.wait_for_phase("default", "ticker", "Running", T)
        .await
        .expect("running");
    let mut s = api
        .log_stream(
            "ticker",
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .expect("follow");
    let mut text = String::new();
    futures_util::AsyncReadExt::read_to_string(&mut s, &mut text)
        .await
        .expect("read");
    assert_eq!(text, "tick 1\ntick 2\ntick 3\n");
}

#[tokio::test]
async fn scripted_outcomes() {
    let c = scripted();
    c.script(
        PodMatch::name("code"),
        Script::exit(7).after(Duration::from_millis(20)),
    );
    c.script(PodMatch::label("memory", "hungry"), Script::oom_killed());
    c.script(PodMatch::name("forever"), Script::run_forever());
    c.set_bad_images(vec!["registry.invalid/*".into()]);
    let api = pods(&c);
    let pp = PostParams::default();
    api.create(&pp, &pod("fine", &["true"])).await.expect("c");
    api.create(&pp, &pod("code", &["true"])).await.expect("c");
    api.create(
        &pp,
        &labelled(pod("oom", &["true"]), &[("memory", "hungry")]),
    )
    .await
    .expect("c");
    api.create(&pp, &pod("forever", &["true"]))
        .await
        .expect("c");
    let mut bad = pod("bad-image", &["true"]);
    bad.spec.as_mut().expect("spec").containers[0].image = Some("registry.invalid/typo:1".into());
    api.create(&pp, &bad).await.expect("c");
    let mut annotated = pod("annotated", &["true"]);
    annotated.metadata.annotations =
        Some([(OUTCOME_ANNOTATION.to_string(), "exit:4".to_string())].into());
    api.create(&pp, &annotated).await.expect("c");

    c.wait_for_phase("default", "fine", "Succeeded", T)
        .await
        .expect("fine");
    let code = c
        .wait_for_phase("default", "code", "Failed", T)
        .await
        .expect("code");
    assert_eq!(terminated(&code).map(|t| t.exit_code), Some(7));
    let oom = c
        .wait_for_phase("default", "oom", "Failed", T)
        .await
        .expect("oom");
    assert_eq!(
        terminated(&oom).and_then(|t| t.reason.as_deref()),
        Some("OOMKilled")
    );
    assert_eq!(terminated(&oom).map(|t| t.exit_code), Some(137));
    let annotated = c
        .wait_for_phase("default", "annotated", "Failed", T)
        .await
        .expect("annotated");
    assert_eq!(terminated(&annotated).map(|t| t.exit_code), Some(4));
    let waiting = |reason: &'static str| {
        move |p: &k8s_openapi::api::core::v1::Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .is_some_and(|w| w.reason.as_deref() == Some(reason))
        }
    };
    let pull = c
        .wait_for_pod("default", "bad-image", T, waiting("ErrImagePull"))
        .await
        .expect("ErrImagePull");
    assert_eq!(phase(&pull), "Pending");
    c.wait_for_pod("default", "bad-image", T, waiting("ImagePullBackOff"))
        .await
        .expect("ImagePullBackOff");
    let forever = c
        .wait_for_phase("default", "forever", "Running", T)
        .await
        .expect("running");
    assert_eq!(
        condition(&forever, "Ready").map(|c| c.status.as_str()),
        Some("True")
    );
}
