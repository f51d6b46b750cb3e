//! The grid fragment is cached by the fingerprint of what it shows and
//! revalidated with its ETag. Whatever changes in the store (a state set
//! by the scheduler at the very same timestamp, a new attempt, a clear or a
//! mark from the UI, a new run, a deleted run), the next poll shows it: it
//! is always byte for byte what a freshly started pave renders.

use super::{Reply, Ui, enc};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use pave_core::{DagId, RunId, TaskState};
use pave_store::{QueryStore, Role, Store};
use tower::ServiceExt;

const GRID: &str = "/ui/dags/etl/grid?expand=prep";

/// Polls the grid as htmx does, revalidating `etag` if given.
async fn poll(ui: &Ui, path: &str, etag: Option<&str>) -> Reply {
    let mut req = Request::builder().uri(path).header(
        header::COOKIE,
        format!("pave_session={}", ui.session(Role::Viewer).cookie),
    );
    if let Some(tag) = etag {
        req = req.header(header::IF_NONE_MATCH, tag);
    }
    ui.send(req.body(Body::empty()).expect("a request")).await
}

/// The fragment a freshly started pave (nothing cached) renders now.
async fn fresh(ui: &Ui, path: &str) -> String {
    let req = Request::builder()
        .uri(path)
        .header(
            header::COOKIE,
            format!("pave_session={}", ui.session(Role::Viewer).cookie),
        )
        .body(Body::empty())
        .expect("a request");
    let response = ui.fresh_app().oneshot(req).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn etag(r: &Reply) -> String {
    r.headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .expect("an ETag")
        .to_owned()
}

/// Checks that a poll revalidating `old` sees the change: a full answer,
/// a new ETag, and exactly what a fresh server shows, containing `expect`.
async fn sees_change(ui: &Ui, old: &str, expect: &str) -> String {
    let r = poll(ui, GRID, Some(old)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a stale 304 after a change: {r:?}"
    );
    let tag = etag(&r);
    assert_ne!(tag, old, "the ETag must move with the content");
    assert_eq!(r.text, fresh(ui, GRID).await, "the cached grid is stale");
    assert!(r.text.contains(expect), "{expect} not in {}", r.text);
    // And unchanged again: a 304 without a body.
    let again = poll(ui, GRID, Some(&tag)).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{again:?}");
    assert!(again.text.is_empty());
    tag
}

#[tokio::test]
async fn an_unchanged_grid_is_a_304_and_every_change_shows_at_once() {
    let ui = Ui::new().await;
    let run = ui.trigger(&[]).await;
    let first = poll(&ui, GRID, None).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(
        first.headers[header::CACHE_CONTROL],
        "private, no-cache",
        "browsers must revalidate every poll"
    );
    let mut tag = etag(&first);
    assert!(tag.starts_with("W/\""), "{tag}");
    assert_eq!(first.text, fresh(&ui, GRID).await);
    // The full page embeds the very same fragment.
    let page = ui.get("/dags/etl?tab=grid&expand=prep").await;
    assert!(page.text.contains(&first.text), "{page:?}");

    let unchanged = poll(&ui, GRID, Some(&tag)).await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED, "{unchanged:?}");
    assert_eq!(etag(&unchanged), tag);
    // Without If-None-Match: the kept copy, the same bytes.
    assert_eq!(poll(&ui, GRID, None).await.text, first.text);

    // The scheduler moves task instances; every write in this test has the
    // same timestamp, so nothing but the content can tell them apart.
    ui.set_ti(&run, "report", -1, TaskState::Running, 1).await;
    tag = sees_change(&ui, &tag, "report · running · try 1").await;
    ui.set_ti(&run, "report", -1, TaskState::Failed, 1).await;
    tag = sees_change(&ui, &tag, "report · failed · try 1").await;
    // A new attempt, in the same state as the last one.
    ui.set_ti(&run, "report", -1, TaskState::Failed, 2).await;
    tag = sees_change(&ui, &tag, "report · failed · try 2").await;
    // Inside the collapsed group.
    ui.set_ti(&run, "prep.extract", -1, TaskState::Success, 1)
        .await;
    tag = sees_change(&ui, &tag, "extract · success · try 1").await;

    // Clear and mark from the UI.
    let r = enc(&run);
    let cleared = ui
        .post(
            Role::Admin,
            &format!("/dags/etl/runs/{r}/tasks/report/-1/clear"),
            &[],
            true,
        )
        .await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER, "{cleared:?}");
    tag = sees_change(&ui, &tag, "report · none · try 2").await;
    let marked = ui
        .post(
            Role::Admin,
            &format!("/dags/etl/runs/{r}/mark"),
            &[("state", "failed")],
            true,
        )
        .await;
    assert_eq!(marked.status, StatusCode::SEE_OTHER, "{marked:?}");
    tag = sees_change(&ui, &tag, "st-failed").await;

    // A new run is a new column; a deleted run goes away.
    ui.clock.advance(chrono::Duration::minutes(5));
    let second = ui.trigger(&[("run_id", "second")]).await;
    tag = sees_change(&ui, &tag, &enc(&second)).await;
    let record = ui
        .store
        .find_run(&DagId::new("etl"), &RunId::new(second.as_str()))
        .await
        .expect("the run");
    ui.store.delete_run(record.key).await.expect("delete");
    let after = poll(&ui, GRID, Some(&tag)).await;
    assert_eq!(after.status, StatusCode::OK);
    assert!(!after.text.contains(&enc(&second)), "{after:?}");
    assert_eq!(after.text, fresh(&ui, GRID).await);

    // Other rows expanded: another fragment, cached on its own.
    let all = "/ui/dags/etl/grid?expand=prep,train";
    let open = poll(&ui, all, Some(&etag(&after))).await;
    assert_eq!(open.status, StatusCode::OK);
    assert_eq!(open.text, fresh(&ui, all).await);
}

#[tokio::test]
async fn an_etag_from_another_process_never_matches() {
    let ui = Ui::new().await;
    ui.trigger(&[]).await;
    let first = poll(&ui, GRID, None).await;
    // A restarted pave (perhaps a newer build with another template) must
    // send the fragment again, even though the store is unchanged.
    let req = Request::builder()
        .uri(GRID)
        .header(
            header::COOKIE,
            format!("pave_session={}", ui.session(Role::Viewer).cookie),
        )
        .header(header::IF_NONE_MATCH, etag(&first))
        .body(Body::empty())
        .expect("a request");
    let response = ui.fresh_app().oneshot(req).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
}
