//! Files embedded in the binary: templates and static assets.
//!
//! Static assets are served with a long cache lifetime: pages link them as
//! `/static/NAME?v=HASH` (see [`asset_url`]), so a new build changes the
//! URL and browsers never keep a stale copy.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(RustEmbed)]
#[folder = "static/"]
pub(crate) struct Static;

#[derive(RustEmbed)]
#[folder = "templates/"]
pub(crate) struct Templates;

/// `/static/NAME?v=HASH`, the hash being the first hex digits of the file's
/// SHA-256 (a name that is not embedded gets no version).
pub(crate) fn asset_url(name: &str) -> String {
    static HASHES: OnceLock<HashMap<String, String>> = OnceLock::new();
    let hashes = HASHES.get_or_init(|| {
        Static::iter()
            .filter_map(|n| {
                let file = Static::get(&n)?;
                let hash: String = file
                    .metadata
                    .sha256_hash()
                    .iter()
                    .take(6)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Some((n.into_owned(), hash))
            })
            .collect()
    });
    match hashes.get(name) {
        Some(h) => format!("/static/{name}?v={h}"),
        None => format!("/static/{name}"),
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") | Some("md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /static/{*path}`: an embedded asset, or 404.
pub(crate) async fn serve(Path(path): Path<String>) -> Response {
    let Some(file) = Static::get(&path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut response = file.data.into_owned().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
