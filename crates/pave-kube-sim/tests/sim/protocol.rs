//! CRUD, lists, selectors, status, validation, deletion, eviction and logs
//! through the real kube client, in process.

use crate::common::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, EvictParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use pave_kube_sim::{DisruptionReason, PodMatch, Script};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn create_get_list_patch_replace_delete() {
    let c = scripted();
    c.script(PodMatch::All, Script::run_forever());
    let api = pods(&c);
    let created = api
        .create(&PostParams::default(), &pod("a", &["true"]))
        .await
        .expect("create");
    let rv1: u64 = created
        .resource_version()
        .expect("rv")
        .parse()
        .expect("numeric rv");
    assert!(created.uid().is_some());
    assert_eq!(phase(&created), "Pending");
    let again = api
        .create(&PostParams::default(), &pod("a", &["true"]))
        .await
        .expect_err("409");
    assert_eq!(code(&again), 409);
    assert_eq!(message(&again), "pods \"a\" already exists");

    let missing = api.get("nope").await.expect_err("404");
    assert_eq!(code(&missing), 404);
    assert_eq!(message(&missing), "pods \"nope\" not found");

    let list = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.len(), 1);
    let list_rv: u64 = list
        .metadata
        .resource_version
        .expect("list rv")
        .parse()
        .expect("n");
    assert!(list_rv >= rv1);

    // Merge, strategic and JSON patches; each write bumps the resourceVersion.
    let pp = PatchParams::default();
    let p1 = api
        .patch(
            "a",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
        )
        .await
        .expect("merge");
    let p2 = api
        .patch(
            "a",
            &pp,
            &Patch::Strategic(json!({"metadata": {"labels": {"y": "2"}}})),
        )
        .await
        .expect("strategic");
    let p3 = api
        .patch(
            "a",
            &pp,
            &Patch::<()>::Json(
                serde_json::from_value(json!([{"op": "remove", "path": "/metadata/labels/x"}]))
                    .expect("p"),
            ),
        )
        .await
        .expect("json patch");
    assert_eq!(p3.labels().get("y").map(String::as_str), Some("2"));
    assert!(!p3.labels().contains_key("x"));
    let rvs: Vec<u64> = [&p1, &p2, &p3]
        .iter()
        .map(|p| p.resource_version().expect("rv").parse().expect("n"))
        .collect();
    assert!(rvs[0] < rvs[1] && rvs[1] < rvs[2], "{rvs:?}");

    // Optimistic concurrency on PUT.
    let mut stale = p1.clone();
    stale.labels_mut().insert("z".into(), "3".into());
    let conflict = api
        .replace("a", &PostParams::default(), &stale)
        .await
        .expect_err("409");
    assert_eq!(code(&conflict), 409);
    assert!(
        message(&conflict).contains("the object has been modified"),
        "{}",
        message(&conflict)
    );
    let mut fresh = api.get("a").await.expect("get");
    fresh.labels_mut().insert("z".into(), "3".into());
    let replaced = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .expect("replace");
    assert_eq!(replaced.labels().get("z").map(String::as_str), Some("3"));

    // The spec of a pod is immutable apart from images and a few fields.
    let mut changed = replaced.clone();
    changed.spec.as_mut().expect("spec").containers[0].command = Some(vec!["false".into()]);
    let invalid = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .expect_err("422");
    assert_eq!(code(&invalid), 422);
    assert!(
        message(&invalid).starts_with(
            "Pod \"a\" is invalid: spec: Forbidden: pod updates may not change fields"
        )
    );

    // Delete a running pod: graceful, then gone.
    c.wait_for_phase("default", "a", "Running", T)
        .await
        .expect("running");
    let deleted = api
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let left = deleted.left().expect("a pod being deleted");
    assert!(left.metadata.deletion_timestamp.is_some());
    c.wait_for_pod_gone("default", "a", T).await.expect("gone");
    assert_eq!(code(&api.get("a").await.expect_err("404")), 404);
}

#[tokio::test]
async fn status_only_through_the_status_subresource() {
    let c = scripted();
    c.script(PodMatch::All, Script::run_forever());
    let api = pods(&c);
    api.create(&PostParams::default(), &pod("s", &["true"]))
        .await
        .expect("create");
    c.wait_for_phase("default", "s", "Running", T)
        .await
        .expect("running");
    let pp = PatchParams::default();
    let main = api
        .patch(
            "s",
            &pp,
            &Patch::Merge(json!({"status": {"message": "hello"}})),
        )
        .await
        .expect("patch main");
    assert_eq!(main.status.as_ref().and_then(|s| s.message.clone()), None);
    let st = api
        .patch_status(
            "s",
            &pp,
            &Patch::Merge(
                json!({"status": {"message": "hello"}, "metadata": {"labels": {"no": "pe"}}}),
            ),
        )
        .await
        .expect("patch status");
    assert_eq!(
        st.status.as_ref().and_then(|s| s.message.as_deref()),
        Some("hello")
    );
    assert!(st.labels().is_empty(), "a status write changes only status");
}

#[tokio::test]
async fn list_pages_and_selectors() {
    let c = scripted();
    c.script(PodMatch::All, Script::run_forever());
    let api = pods(&c);
    for (i, team) in ["a", "a", "b", "b", "c"].iter().enumerate() {
        let mut p = labelled(pod(&format!("p{i}"), &["true"]), &[("team", team)]);
        if i == 4 {
            p.metadata
                .labels
                .as_mut()
                .expect("labels")
                .insert("gpu".into(), "yes".into());
        }
        api.create(&PostParams::default(), &p)
            .await
            .expect("create");
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.expect("page");
        pages += 1;
        names.extend(page.items.iter().map(ResourceExt::name_any));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);
    let count = |sel: &'static str| {
        let api = api.clone();
        async move {
            api.list(&ListParams::default().labels(sel))
                .await
                .expect(sel)
                .items
                .len()
        }
    };
    assert_eq!(count("team=a").await, 2);
    assert_eq!(count("team==b").await, 2);
    assert_eq!(count("team!=a").await, 3);
    assert_eq!(count("team in (a,c)").await, 3);
    assert_eq!(count("team notin (a,c)").await, 2);
    assert_eq!(count("gpu").await, 1);
    assert_eq!(count("!gpu").await, 4);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=p3"))
        .await
        .expect("fields");
    assert_eq!(by_name.items.len(), 1);
    for i in 0..5 {
        c.wait_for_phase("default", &format!("p{i}"), "Running", T)
            .await
            .expect("running");
    }
    let running = api
        .list(&ListParams::default().fields("status.phase=Running,spec.nodeName!="))
        .await
        .expect("f");
    assert_eq!(running.items.len(), 5);
    let bad = api
        .list(&ListParams::default().fields("spec.colour=red"))
        .await
        .expect_err("400");
    assert_eq!(code(&bad), 400);
    assert_eq!(message(&bad), "field label not supported: spec.colour");
    let all: Api<Pod> = Api::all(c.client());
    assert_eq!(
        all.list(&ListParams::default())
            .await
            .expect("all")
            .items
            .len(),
        5
    );
}

#[tokio::test]
async fn extended_resources_must_be_whole_and_equal() {
    let c = scripted();
    let api = pods(&c);
    let half = with_limits(pod("half", &["true"]), &[("nvidia.com/gpu", "500m")]);
    let err = api
        .create(&PostParams::default(), &half)
        .await
        .expect_err("422");
    assert_eq!(code(&err), 422);
    assert!(
        message(&err).contains("spec.containers[0].resources.limits[nvidia.com/gpu]: Invalid value: \"500m\": must be an integer"),
        "{}",
        message(&err)
    );
    let mut unequal = with_limits(pod("unequal", &["true"]), &[("nvidia.com/gpu", "1")]);
    unequal.spec.as_mut().expect("spec").containers[0]
        .resources
        .as_mut()
        .expect("r")
        .requests = Some(
        [(
            "nvidia.com/gpu".to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()),
        )]
        .into(),
    );
    let err = api
        .create(&PostParams::default(), &unequal)
        .await
        .expect_err("422");
    assert_eq!(
        message(&err),
        "Pod \"unequal\" is invalid: spec.containers[0].resources.requests[nvidia.com/gpu]: Invalid value: \"2\": must be equal to nvidia.com/gpu limit of 1"
    );
    match &err {
        kube::Error::Api(s) => assert_eq!(s.reason, "Invalid"),
        other => panic!("{other:?}"),
    }
    let ok = with_limits(
        pod("ok", &["true"]),
        &[("nvidia.com/gpu", "1"), ("nvidia.com/mig-1g.10gb", "2")],
    );
    let created = api
        .create(&PostParams::default(), &ok)
        .await
        .expect("valid");
    let requests = created.spec.expect("spec").containers[0]
        .resources
        .clone()
        .expect("r")
        .requests
        .expect("defaulted");
    assert_eq!(
        requests.get("nvidia.com/gpu").map(|q| q.0.as_str()),
        Some("1")
    );
}

#[tokio::test]
async fn eviction_and_disruption_budget() {
    let c = scripted();
    c.script(PodMatch::All, Script::run_forever());
    let api = pods(&c);
    api.create(
        &PostParams::default(),
        &labelled(pod("keep", &["true"]), &[("pdb", "yes")]),
    )
    .await
    .expect("c");
    let mut go = pod("go", &["true"]);
    go.metadata.finalizers = Some(vec!["pave.dev/keep".into()]);
    api.create(&PostParams::default(), &go).await.expect("c");
    c.wait_for_phase("default", "keep", "Running", T)
        .await
        .expect("running");
    c.wait_for_phase("default", "go", "Running", T)
        .await
        .expect("running");
    c.block_evictions(PodMatch::label("pdb", "yes"));
    let blocked = api
        .evict("keep", &EvictParams::default())
        .await
        .expect_err("429");
    assert_eq!(code(&blocked), 429);
    assert_eq!(
        message(&blocked),
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    api.evict("go", &EvictParams::default())
        .await
        .expect("evict");
    // The finalizer keeps the stopped pod around for inspection.
    let evicted = c
        .wait_for_phase("default", "go", "Failed", T)
        .await
        .expect("stopped");
    assert!(evicted.metadata.deletion_timestamp.is_some());
    let cond = condition(&evicted, "DisruptionTarget").expect("condition");
    assert_eq!(
        cond.reason.as_deref(),
        Some(DisruptionReason::EvictionByEvictionAPI.as_str())
    );
    api.patch(
        "go",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("drop finalizer");
    c.wait_for_pod_gone("default", "go", T)
        .await
        .expect("evicted pod deleted");
}

#[tokio::test]
async fn logs_plain_tail_and_follow() {
    let c = scripted();
    c.script(
        PodMatch::name("talk"),
        Script::succeed_after(Duration::from_millis(300))
            .log_line("one")
            .log_line("two")
            .log_line("three"),
    );
    let api = pods(&c);
    api.create(&PostParams::default(), &pod("talk", &["true"]))
        .await
        .expect("create");
    c.wait_for_phase("default", "talk", "Running", T)
        .await
        .expect("running");
    let mut follow = api
        .log_stream(
            "talk",
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .expect("follow");
    let mut text = String::new();
    futures_util::AsyncReadExt::read_to_string(&mut follow, &mut text)
        .await
        .expect("read to end");
    assert_eq!(
        text, "one\ntwo\nthree\n",
        "follow ends when the container does"
    );
    assert_eq!(phase(&c.pod("default", "talk").expect("pod")), "Succeeded");
    let tail = api
        .logs(
            "talk",
            &LogParams {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("tail");
    assert_eq!(tail, "three\n");
    let bad = api
        .logs(
            "talk",
            &LogParams {
                container: Some("sidecar".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("400");
    assert_eq!(message(&bad), "container sidecar is not valid for pod talk");
}

#[tokio::test]
async fn nodes_are_listed_with_gpu_labels() {
    let c = scripted();
    let nodes: Api<Node> = Api::all(c.client());
    let list = nodes
        .list(&ListParams::default().labels("nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    let gpu = &list.items[0];
    let alloc = gpu
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .expect("allocatable");
    assert_eq!(alloc.get("nvidia.com/gpu").map(|q| q.0.as_str()), Some("4"));
    let cordoned = nodes
        .patch(
            "cpu-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .expect("cordon");
    assert_eq!(cordoned.spec.and_then(|s| s.unschedulable), Some(true));
}
