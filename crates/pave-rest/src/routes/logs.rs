//! The log of one try of a task instance, read in chunks from a byte
//! offset: the live tail is offset-based polling. A client asks from
//! offset 0, shows `content`, and asks again from `next_offset` until
//! `end_of_log` is true (the try has ended and everything was read).
//!
//! The file is found from the task instance's identity as stored (never
//! from a path in the request), and the path is checked to stay inside
//! the logs folder.

use super::runs::known_run;
use super::tis::{known_ti, map_index_arg};
use crate::extract::QueryArgs;
use crate::problem::{ApiResult, Problem};
use crate::state::RestState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use pave_core::MapIndex;
use serde::Serialize;
use std::path::Component;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa::ToSchema;

/// A chunk of a try's log.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LogChunk {
    pub try_number: u32,
    /// The byte offset `content` starts at.
    pub offset: u64,
    /// Where the next request should start.
    pub next_offset: u64,
    /// The try has ended and `next_offset` is the end of its log: stop polling.
    pub end_of_log: bool,
    /// The log text from `offset` (whole UTF-8 characters only).
    pub content: String,
}

/// Get the log of one try, from a byte offset (`Accept: text/plain` for
/// the raw text, with `X-Pave-Next-Offset` and `X-Pave-End-Of-Log` headers).
#[utoipa::path(get, path = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}", tag = "TaskInstance",
    params(("dag_id" = String, Path, description = "The DAG id"),
           ("dag_run_id" = String, Path, description = "The run id"),
           ("task_id" = String, Path, description = "The task id"),
           ("try_number" = u32, Path, description = "The try, from 1"),
           ("map_index" = Option<i32>, Query, description = "Map index (default -1)"),
           ("offset" = Option<u64>, Query, description = "Byte offset to read from (default 0)"),
           ("limit" = Option<u64>, Query, description = "Most bytes to return (default and maximum 1 MiB)")),
    responses((status = 200, body = LogChunk),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_log(
    State(state): State<RestState>,
    Path((dag_id, run_id, task_id, try_text)): Path<(String, String, String, String)>,
    q: QueryArgs,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let map_index = map_index_arg(&q, &["offset", "limit"])?.unwrap_or(MapIndex::UNMAPPED);
    let try_number: u32 = try_text.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
        Problem::bad_request(format!(
            "path parameter `try_number`: `{try_text}` is not a try number (1, 2, ...)"
        ))
        .with_field("try_number")
    })?;
    let offset = q
        .parse::<u64>("offset", "a byte offset (0, 1, ...)")?
        .unwrap_or(0);
    let max = state.config().max_log_chunk;
    let limit = q
        .parse::<u64>("limit", "a number of bytes")?
        .unwrap_or(max)
        .clamp(1, max);
    let run = known_run(&state, &dag_id, &run_id).await?;
    let ti = known_ti(&state, &run, &task_id, map_index).await?;
    if try_number > ti.try_number.0 {
        return Err(Problem::not_found(format!(
            "task instance `{task_id}` (map index {map_index}) of run `{run_id}` has run {} time(s); there is no try {try_number}",
            ti.try_number.0
        ))
        .with_field("try_number"));
    }
    let try_ended = try_number < ti.try_number.0 || !ti.state.is_active();
    let logs = state.logs_dir();
    let path = pave_scheduler::paths::log_path(
        logs,
        &run.dag_id,
        &run.run_id,
        &ti.key.task_id,
        map_index,
        try_number,
    );
    let inside = path
        .strip_prefix(logs)
        .map(|rel| rel.components().all(|c| matches!(c, Component::Normal(_))))
        .unwrap_or(false);
    if !inside {
        return Err(Problem::bad_request(format!(
            "the log of task `{task_id}` would lie outside the logs folder; refusing to read it"
        )));
    }
    let (content, next_offset, size) = match read_chunk(&path, offset, limit).await {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if try_ended {
                return Err(Problem::not_found(format!(
                    "try {try_number} of task `{task_id}` (map index {map_index}) of run `{run_id}` has no log: it never started"
                )));
            }
            (String::new(), offset, 0)
        }
        Err(e) => {
            return Err(Problem::internal(format!(
                "cannot read the log of try {try_number} of task `{task_id}`: {e}"
            )));
        }
    };
    let chunk = LogChunk {
        try_number,
        offset,
        next_offset,
        end_of_log: try_ended && next_offset >= size,
        content,
    };
    let wants_text = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/plain") && !a.contains("application/json"));
    if wants_text {
        let mut response = chunk.content.into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert("x-pave-next-offset", HeaderValue::from(chunk.next_offset));
        h.insert(
            "x-pave-end-of-log",
            HeaderValue::from_static(if chunk.end_of_log { "true" } else { "false" }),
        );
        return Ok(response);
    }
    Ok(Json(chunk).into_response())
}

/// Up to `limit` bytes from `offset`, cut back to whole UTF-8 characters;
/// returns the text, the offset after it, and the file's size.
async fn read_chunk(
    path: &std::path::Path,
    offset: u64,
    limit: u64,
) -> std::io::Result<(String, u64, u64)> {
    let mut file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    let start = offset.min(size);
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let want = usize::try_from(limit.min(size - start)).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; want];
    file.read_exact(&mut buf).await?;
    let (text, consumed) = match std::str::from_utf8(&buf) {
        Ok(t) => (t.to_owned(), buf.len()),
        // A character cut at the end of the chunk: leave it for the next one.
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => {
            let n = e.valid_up_to();
            (String::from_utf8_lossy(&buf[..n]).into_owned(), n)
        }
        Err(_) => (String::from_utf8_lossy(&buf).into_owned(), buf.len()),
    };
    let consumed = consumed as u64;
    Ok((text, start + consumed, size))
}
