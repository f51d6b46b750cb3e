//! Watches: only newer events, bookmarks, timeouts, 410 Gone, and kube's
//! watcher relisting after 410 and resuming after dropped watches.

use crate::common::*;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use pave_kube_sim::{PodMatch, Script};
use std::time::Duration;

#[tokio::test]
async fn watch_sends_only_newer_events_then_bookmarks_and_closes_on_timeout() {
    let c = scripted();
    c.script(PodMatch::All, Script::run_forever());
    let api = pods(&c);
    api.create(&PostParams::default(), &pod("old", &["true"]))
        .await
        .expect("create");
    c.wait_for_phase("default", "old", "Running", T)
        .await
        .expect("running");
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    api.create(&PostParams::default(), &pod("new", &["true"]))
        .await
        .expect("create");
    let wp = WatchParams::default().timeout(1);
    let started = std::time::Instant::now();
    let events: Vec<WatchEvent<Pod>> = api
        .watch(&wp, &rv)
        .await
        .expect("watch")
        .try_collect()
        .await
        .expect("events");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the watch closes on timeoutSeconds"
    );
    let mut names = Vec::new();
    let mut bookmarks = 0;
    for e in &events {
        match e {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => names.push(p.name_any()),
            WatchEvent::Bookmark(_) => bookmarks += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        !names.is_empty() && names.iter().all(|n| n == "new"),
        "{names:?}"
    );
    assert!(bookmarks >= 3, "a bookmark every 100 ms, got {bookmarks}");
}

#[tokio::test]
async fn too_old_resource_version_is_410_gone() {
    let c = scripted();
    let api = pods(&c);
    api.create(&PostParams::default(), &pod("x", &["true"]))
        .await
        .expect("create");
    c.compact_history();
    let events: Vec<WatchEvent<Pod>> = api
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .expect("watch")
        .try_collect()
        .await
        .expect("events");
    match events.as_slice() {
        [WatchEvent::Error(e)] => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
            assert!(
                e.message.starts_with("too old resource version: 1 ("),
                "{}",
                e.message
            );
        }
        other => panic!("expected one 410 ERROR event, got {other:?}"),
    }
}

/// Collects watcher events until `done` says stop.
async fn until<S>(stream: &mut S, mut done: impl FnMut(&watcher::Event<Pod>) -> bool) -> Vec<String>
where
    S: futures_util::Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> + Unpin,
{
    let mut seen = Vec::new();
    let fut = async {
        while let Some(item) = stream.next().await {
            let Ok(ev) = item else {
                seen.push("error".to_string());
                continue;
            };
            seen.push(match &ev {
                watcher::Event::Init => "init".to_string(),
                watcher::Event::InitApply(p) => format!("init-apply {}", p.name_any()),
                watcher::Event::InitDone => "init-done".to_string(),
                watcher::Event::Apply(p) => format!("apply {}", p.name_any()),
                watcher::Event::Delete(p) => format!("delete {}", p.name_any()),
            });
            if done(&ev) {
                return;
            }
        }
    };
    tokio::time::timeout(T, fut)
        .await
        .unwrap_or_else(|_| panic!("watcher stalled; saw {seen:?}"));
    seen
}

fn is_apply(name: &'static str) -> impl FnMut(&watcher::Event<Pod>) -> bool {
    move |e| matches!(e, watcher::Event::Apply(p) if p.name_any() == name)
}

#[tokio::test]
async fn watcher_resumes_after_dropped_watches_and_relists_after_410() {
    let c = scripted();
    c.script(PodMatch::All, Script::run_forever());
    let api = pods(&c);
    api.create(&PostParams::default(), &pod("first", &["true"]))
        .await
        .expect("create");
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let seen = until(&mut stream, |e| matches!(e, watcher::Event::InitDone)).await;
    assert_eq!(seen, ["init", "init-apply first", "init-done"]);

    // A dropped watch: the watcher re-watches from its last version, no relist.
    c.drop_watches();
    api.create(&PostParams::default(), &pod("second", &["true"]))
        .await
        .expect("create");
    let seen = until(&mut stream, is_apply("second")).await;
    assert!(
        !seen.contains(&"init".to_string()),
        "no relist after a dropped watch: {seen:?}"
    );

    // 410 on the next watch: the watcher relists.
    c.expire_next_watches(1);
    c.drop_watches();
    api.create(&PostParams::default(), &pod("third", &["true"]))
        .await
        .expect("create");
    let seen = until(&mut stream, |e| matches!(e, watcher::Event::InitDone)).await;
    assert!(
        seen.contains(&"init".to_string()),
        "relist after 410: {seen:?}"
    );
    assert!(seen.contains(&"init-apply third".to_string()), "{seen:?}");
    api.create(&PostParams::default(), &pod("fourth", &["true"]))
        .await
        .expect("create");
    until(&mut stream, is_apply("fourth")).await;
}

#[tokio::test]
async fn label_selector_watch_turns_unmatching_into_deleted() {
    let c = scripted();
    c.script(PodMatch::All, Script::run_forever());
    let api = pods(&c);
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    api.create(
        &PostParams::default(),
        &labelled(pod("l", &["true"]), &[("keep", "yes")]),
    )
    .await
    .expect("create");
    c.wait_for_phase("default", "l", "Running", T)
        .await
        .expect("running");
    let patch =
        kube::api::Patch::Merge(serde_json::json!({"metadata": {"labels": {"keep": "no"}}}));
    api.patch("l", &kube::api::PatchParams::default(), &patch)
        .await
        .expect("relabel");
    let events: Vec<WatchEvent<Pod>> = api
        .watch(&WatchParams::default().labels("keep=yes").timeout(1), &rv)
        .await
        .expect("watch")
        .try_collect()
        .await
        .expect("events");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            _ => "other",
        })
        .filter(|k| *k != "other")
        .collect();
    assert_eq!(kinds.first(), Some(&"ADDED"));
    assert_eq!(kinds.last(), Some(&"DELETED"), "{kinds:?}");
}
