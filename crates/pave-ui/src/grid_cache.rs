//! The rendered grid fragment, kept by its fingerprint (`grid::fingerprint`).
//!
//! The grid is polled by every open DAG page (every 2 s while a run is
//! active, every 10 s otherwise), and most polls find nothing changed:
//! building and rendering hundreds of cells was most of a poll's CPU. A
//! fragment is stored under the digest of everything it is made of, read
//! fresh from the store on every request, so a cached fragment can never
//! show a state the store no longer has: a clear, a mark, a new attempt or
//! a new run changes the inputs, hence the key, and the next request renders
//! anew. There is nothing to invalidate. The same digest is the fragment's
//! ETag, so a browser revalidating it gets a 304 without a body.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Bytes of rendered fragments kept at most (oldest dropped first).
const BUDGET_BYTES: usize = 16 * 1024 * 1024;

/// Rendered fragments by fingerprint.
pub(crate) struct GridCache {
    /// A random number per process, mixed into every fingerprint: a browser's
    /// ETag from another process (perhaps another build, with another
    /// template) never matches.
    salt: u64,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    html: HashMap<[u8; 16], Bytes>,
    /// Insertion order, for dropping the oldest.
    order: VecDeque<[u8; 16]>,
    bytes: usize,
}

impl Default for GridCache {
    fn default() -> Self {
        use std::hash::BuildHasher;
        GridCache {
            salt: std::collections::hash_map::RandomState::new().hash_one(0x9a7e_u64),
            inner: Mutex::new(Entries::default()),
        }
    }
}

impl GridCache {
    pub fn salt(&self) -> u64 {
        self.salt
    }

    /// The fragment rendered for `key`, if kept.
    pub fn get(&self, key: &[u8; 16]) -> Option<Bytes> {
        let entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        entries.html.get(key).cloned()
    }

    /// Keeps `html` under `key`, dropping the oldest fragments beyond the budget.
    pub fn put(&self, key: [u8; 16], html: Bytes) {
        let mut e = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if html.len() > BUDGET_BYTES || e.html.contains_key(&key) {
            return;
        }
        e.bytes += html.len();
        e.html.insert(key, html);
        e.order.push_back(key);
        while e.bytes > BUDGET_BYTES {
            let Some(old) = e.order.pop_front() else {
                break;
            };
            if let Some(gone) = e.html.remove(&old) {
                e.bytes -= gone.len();
            }
        }
    }

    /// How many fragments are kept (for tests).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.inner.lock().map(|e| e.html.len()).unwrap_or(0)
    }
}

/// The weak ETag of a fingerprint (weak: the body may be sent gzipped or not).
pub(crate) fn etag(key: &[u8; 16]) -> String {
    let mut s = String::with_capacity(38);
    s.push_str("W/\"g");
    for b in key {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('"');
    s
}

/// Whether the request's `If-None-Match` names `tag` (or `*`).
pub(crate) fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let want = bare(tag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == want)
}

/// The fragment's response: 304 if the browser has it, else the HTML. Both
/// carry the ETag, and `no-cache`: the browser must ask every time (it
/// does, with `If-None-Match`), never show a kept copy unasked.
pub(crate) fn respond(headers: &HeaderMap, tag: &str, html: Option<Bytes>) -> Response {
    let etag = HeaderValue::from_str(tag).unwrap_or_else(|_| HeaderValue::from_static("W/\"\""));
    let cache = HeaderValue::from_static("private, no-cache");
    match html {
        Some(body) if !not_modified(headers, tag) => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::ETAG, etag),
                (header::CACHE_CONTROL, cache),
            ],
            body,
        )
            .into_response(),
        _ => (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_weakly_and_in_lists() {
        let tag = etag(&[0xab; 16]);
        assert!(tag.starts_with("W/\"gabab") && tag.ends_with('"'), "{tag}");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &tag));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", {}", tag.trim_start_matches("W/")))
                .expect("a header"),
        );
        assert!(not_modified(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&h, &tag));
    }

    #[test]
    fn the_oldest_fragments_go_first_beyond_the_budget() {
        let c = GridCache::default();
        let big = Bytes::from(vec![b'x'; BUDGET_BYTES / 2]);
        c.put([1; 16], big.clone());
        c.put([2; 16], big.clone());
        assert_eq!(c.entries(), 2);
        c.put([3; 16], big);
        assert_eq!(c.entries(), 2);
        assert!(c.get(&[1; 16]).is_none());
        assert!(c.get(&[3; 16]).is_some());
    }
}
