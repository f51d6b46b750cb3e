//! Watches: a chunked stream of JSON events, one per line, replaying the
//! history after the requested resourceVersion, then live events, with
//! BOOKMARKs, a timeout, 410 Gone when the version is too old, and the
//! end of every stream when a test drops watches.

use super::kinds::ApiKind;
use super::objects::Filter;
use super::{ApiResult, channel_body};
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::store::{Event, EventType};
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// What a watch sends first.
enum Start {
    /// 410 Gone, then the end.
    Expired(ApiError),
    /// These events (history after N, or the current state as ADDED), then live ones.
    From {
        first: Vec<(EventType, Arc<Value>)>,
        live: broadcast::Receiver<Arc<Event>>,
        rv: u64,
        initial_end: bool,
    },
}

fn line(etype: &str, object: &Value) -> Bytes {
    let mut s = json!({ "type": etype, "object": object }).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// How one stored event looks through this watch's filter: "stopped
/// matching" is DELETED and "started matching" is ADDED, as in Kubernetes.
fn view(ev: &Event, filter: &Filter) -> Option<EventType> {
    let now = filter.matches(&ev.object);
    let before = ev.old.as_ref().is_some_and(|o| filter.matches(o));
    match ev.etype {
        EventType::Added if now => Some(EventType::Added),
        EventType::Modified if now && before => Some(EventType::Modified),
        EventType::Modified if now => Some(EventType::Added),
        EventType::Modified if before => Some(EventType::Deleted),
        EventType::Deleted if before || now => Some(EventType::Deleted),
        _ => None,
    }
}

pub(crate) fn serve<K: ApiKind>(
    cluster: &Cluster,
    filter: Filter,
    q: &HashMap<String, String>,
    table: bool,
) -> ApiResult {
    let rv: Option<u64> = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))?,
        ),
    };
    let send_initial = q.get("sendInitialEvents").map(String::as_str) == Some("true");
    let bookmarks = q.get("allowWatchBookmarks").map(String::as_str) == Some("true") && !table;
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let full_object = q.get("includeObject").map(String::as_str) == Some("Object");
    let (start, bookmark_every) = {
        let mut st = cluster.lock();
        let every = st.config.bookmark_interval;
        let start = if st.faults.expire_watches > 0 {
            st.faults.expire_watches -= 1;
            Start::Expired(ApiError::gone(rv.unwrap_or(0), st.rv))
        } else if rv.is_none() || send_initial {
            let first = K::table(&st)
                .values()
                .filter(|s| filter.matches(&s.json))
                .map(|s| (EventType::Added, s.json.clone()))
                .collect();
            Start::From {
                first,
                live: st.subscribe(),
                rv: st.rv,
                initial_end: send_initial,
            }
        } else {
            let from = rv.unwrap_or(0);
            match st.subscribe_from(from) {
                Err(oldest) => Start::Expired(ApiError::gone(from, oldest)),
                Ok((backlog, live)) => Start::From {
                    first: backlog
                        .iter()
                        .filter(|e| e.kind == K::OBJ_KIND)
                        .filter_map(|e| view(e, &filter).map(|t| (t, e.object.clone())))
                        .collect(),
                    live,
                    rv: backlog.last().map_or(from, |e| e.rv),
                    initial_end: false,
                },
            }
        };
        (start, every)
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let epoch = cluster.inner.watch_epoch.subscribe();
    tokio::spawn(pump::<K>(
        tx,
        start,
        filter,
        Options {
            timeout,
            bookmarks,
            bookmark_every,
            table,
            full_object,
        },
        epoch,
    ));
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        channel_body(rx),
    )
        .into_response())
}

struct Options {
    timeout: Duration,
    bookmarks: bool,
    bookmark_every: Duration,
    table: bool,
    full_object: bool,
}

fn render<K: ApiKind>(etype: EventType, obj: &Arc<Value>, opts: &Options) -> Bytes {
    if opts.table {
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        line(
            etype.as_str(),
            &K::to_table(std::slice::from_ref(obj), rv, opts.full_object),
        )
    } else {
        line(etype.as_str(), obj)
    }
}

fn bookmark<K: ApiKind>(rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    line(
        "BOOKMARK",
        &json!({ "kind": K::KIND, "apiVersion": K::API_VERSION, "metadata": meta }),
    )
}

async fn pump<K: ApiKind>(
    tx: mpsc::Sender<Bytes>,
    start: Start,
    filter: Filter,
    opts: Options,
    mut epoch: tokio::sync::watch::Receiver<u64>,
) {
    let (first, mut live, mut rv, initial_end) = match start {
        Start::Expired(err) => {
            let _ = tx.send(line("ERROR", &err.status())).await;
            return;
        }
        Start::From {
            first,
            live,
            rv,
            initial_end,
        } => (first, live, rv, initial_end),
    };
    for (etype, obj) in &first {
        if tx.send(render::<K>(*etype, obj, &opts)).await.is_err() {
            return;
        }
    }
    if initial_end && tx.send(bookmark::<K>(rv, true)).await.is_err() {
        return;
    }
    let deadline = tokio::time::sleep(opts.timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(opts.bookmark_every);
    tick.tick().await;
    loop {
        let out = tokio::select! {
            _ = &mut deadline => return,
            _ = epoch.changed() => return,
            _ = tx.closed() => return,
            _ = tick.tick(), if opts.bookmarks => bookmark::<K>(rv, false),
            ev = live.recv() => match ev {
                Ok(ev) => {
                    if ev.rv <= rv {
                        continue;
                    }
                    rv = ev.rv;
                    if ev.kind != K::OBJ_KIND {
                        continue;
                    }
                    match view(&ev, &filter) {
                        Some(t) => render::<K>(t, &ev.object, &opts),
                        None => continue,
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // This watcher fell behind the broadcast buffer: like an
                    // apiserver whose watch cache moved on, answer 410.
                    let _ = tx.send(line("ERROR", &ApiError::gone(rv, rv + 1).status())).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if tx.send(out).await.is_err() {
            return;
        }
    }
}
