//! A task instance: its state and details, "why is this not running yet",
//! its tries with their logs (live tail while a try runs), XComs, the
//! task's templated fields, and the clear and mark actions.

use super::run::done;
use super::{known_dag, known_run, run_href};
use crate::UiState;
use crate::error::UiError;
use crate::format;
use crate::render::{render, segment};
use crate::session::{Fields, Me, Viewer, require_editor};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use pave_core::{MapIndex, Task, TaskKind, TaskState};
use pave_scheduler::actions::{self, ClearRequest};
use pave_store::{PageRequest, RunRecord, StoreError, TiKey, TiRecord, XcomQuery};
use serde::{Deserialize, Serialize};
use std::path::Component;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

mod why;

/// The task instance named by the URL, or a 404 naming it.
async fn known_ti(
    state: &UiState,
    run: &RunRecord,
    task_id: &str,
    mi: i32,
) -> Result<TiRecord, UiError> {
    match state
        .rest
        .core_store()
        .get_ti(&TiKey::new(run.key, task_id, MapIndex(mi)))
        .await
    {
        Ok(t) => Ok(t),
        Err(StoreError::NotFound { .. }) => Err(UiError::NotFound(format!(
            "run `{}` of DAG `{}` has no task instance `{task_id}`{}",
            run.run_id,
            run.dag_id,
            if mi >= 0 {
                format!(" with map index {mi}")
            } else {
                String::new()
            }
        ))),
        Err(e) => Err(e.into()),
    }
}

fn parse_map_index(text: &str) -> Result<i32, UiError> {
    text.parse::<i32>()
        .ok()
        .filter(|i| *i >= -1)
        .ok_or_else(|| UiError::NotFound(format!("`{text}` is not a map index (-1, 0, 1, ...)")))
}

fn ti_href(dag_id: &str, run_id: &str, task_id: &str, mi: i32) -> String {
    format!(
        "/dags/{}/runs/{}/tasks/{}/{mi}",
        segment(dag_id),
        segment(run_id),
        segment(task_id)
    )
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct TiQuery {
    #[serde(rename = "try", default)]
    try_number: Option<u32>,
}

#[derive(Serialize)]
struct Instance {
    map_index: i32,
    state: String,
    href: String,
    try_number: u32,
    duration: String,
}

#[derive(Serialize)]
struct MappedCtx {
    me: Me,
    title: String,
    dag_id: String,
    dag_href: String,
    run_id: String,
    run_href: String,
    task_id: String,
    instances: Vec<Instance>,
}

/// `GET /dags/{dag_id}/runs/{run_id}/tasks/{task_id}`: the unmapped task
/// instance, or the list of a mapped task's instances.
pub(crate) async fn page_unmapped(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    q: Query<TiQuery>,
) -> Result<Response, UiError> {
    known_dag(&state, &dag_id).await?;
    let run = known_run(&state, &dag_id, &run_id).await?;
    let all = state.rest.core_store().run_tis(run.key).await?;
    let mine: Vec<&TiRecord> = all
        .iter()
        .filter(|t| t.key.task_id.as_str() == task_id)
        .collect();
    let mapped = mine.iter().any(|t| t.key.map_index.0 >= 0);
    if !mapped {
        return page(
            State(state),
            viewer,
            Path((dag_id, run_id, task_id, "-1".into())),
            q,
        )
        .await;
    }
    let ctx = MappedCtx {
        me: viewer.me(),
        title: format!("{task_id} · {run_id}"),
        dag_href: format!("/dags/{}", segment(&dag_id)),
        run_href: run_href(&dag_id, &run_id),
        instances: mine
            .iter()
            .filter(|t| t.key.map_index.0 >= 0)
            .map(|t| Instance {
                map_index: t.key.map_index.0,
                state: t.state.as_str().to_owned(),
                href: ti_href(&dag_id, &run_id, &task_id, t.key.map_index.0),
                try_number: t.try_number.0,
                duration: format::span(t.start_date, t.end_date),
            })
            .collect(),
        dag_id,
        run_id,
        task_id,
    };
    Ok(render("mapped.html", ctx)?.into_response())
}

#[derive(Serialize)]
struct TryTab {
    number: u32,
    state: String,
    href: String,
    selected: bool,
    start: String,
    duration: String,
    exit_code: String,
    peak_rss: String,
    hostname: String,
    reason: String,
}

#[derive(Serialize)]
struct Xcom {
    key: String,
    value: serde_json::Value,
    size: u64,
}

#[derive(Serialize)]
struct Field {
    name: String,
    template: String,
    rendered: Option<String>,
    error: Option<String>,
}

/// The summary block that refreshes itself while the task instance is unfinished.
#[derive(Serialize)]
pub(crate) struct Summary {
    state: String,
    try_number: u32,
    max_tries: u32,
    start: String,
    end: String,
    duration: String,
    queued_at: String,
    pool: String,
    pool_slots: u32,
    priority_weight: i64,
    hostname: String,
    reason: String,
    finished: bool,
    why: Vec<why::Blocker>,
    partial_url: String,
}

async fn summary(
    state: &UiState,
    run: &RunRecord,
    ti: &TiRecord,
    task: Option<&Task>,
) -> Result<Summary, UiError> {
    let why = why::explain(state, run, ti, task).await?;
    Ok(Summary {
        state: ti.state.as_str().to_owned(),
        try_number: ti.try_number.0,
        max_tries: ti.max_tries,
        start: format::time(ti.start_date),
        end: format::time(ti.end_date),
        duration: ti.duration.map(format::duration).unwrap_or_else(|| {
            format::span(
                ti.start_date,
                Some(state.rest.now()).filter(|_| ti.start_date.is_some()),
            )
        }),
        queued_at: format::time(ti.queued_at),
        pool: ti.pool.clone(),
        pool_slots: ti.pool_slots,
        priority_weight: ti.priority_weight,
        hostname: ti.hostname.clone().unwrap_or_default(),
        reason: ti.reason.clone().unwrap_or_default(),
        finished: ti.state.is_finished(),
        why,
        partial_url: format!(
            "/ui/dags/{}/runs/{}/tasks/{}/{}/summary",
            segment(run.dag_id.as_str()),
            segment(run.run_id.as_str()),
            segment(ti.key.task_id.as_str()),
            ti.key.map_index.0
        ),
    })
}

#[derive(Serialize)]
struct TiCtx {
    me: Me,
    title: String,
    dag_id: String,
    dag_href: String,
    run_id: String,
    run_href: String,
    task_id: String,
    map_index: i32,
    href: String,
    kind: String,
    trigger_rule: String,
    doc: String,
    s: Summary,
    tries: Vec<TryTab>,
    log_url: String,
    log_try: u32,
    xcoms: Vec<Xcom>,
    fields: Vec<Field>,
}

/// `GET /dags/{dag_id}/runs/{run_id}/tasks/{task_id}/{map_index}?try=N`.
pub(crate) async fn page(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((dag_id, run_id, task_id, mi)): Path<(String, String, String, String)>,
    Query(q): Query<TiQuery>,
) -> Result<Response, UiError> {
    let mi = parse_map_index(&mi)?;
    known_dag(&state, &dag_id).await?;
    let run = known_run(&state, &dag_id, &run_id).await?;
    let ti = known_ti(&state, &run, &task_id, mi).await?;
    let loaded = state.rest.loaded(run.dag_version_id).await?;
    let task = loaded.task(&task_id);
    let href = ti_href(&dag_id, &run_id, &task_id, mi);
    let tries_records = state.rest.core_store().list_tries(&ti.key).await?;
    let selected = q
        .try_number
        .filter(|n| *n >= 1 && *n <= ti.try_number.0)
        .unwrap_or(ti.try_number.0);
    let tries = tries_records
        .iter()
        .map(|t| TryTab {
            number: t.try_number.0,
            state: t.state.as_str().to_owned(),
            href: format!("{href}?try={}", t.try_number.0),
            selected: t.try_number.0 == selected,
            start: format::time(t.start_date),
            duration: format::span(t.start_date, t.end_date),
            exit_code: t.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            peak_rss: t
                .peak_rss_kb
                .map(|kb| format!("{:.1} MiB", kb as f64 / 1024.0))
                .unwrap_or_default(),
            hostname: t.hostname.clone().unwrap_or_default(),
            reason: t.reason.clone().unwrap_or_default(),
        })
        .collect();
    let xcoms = state
        .rest
        .store()
        .query_xcoms(&XcomQuery {
            run: run.key,
            task_id: Some(ti.key.task_id.clone()),
            map_index: Some(ti.key.map_index),
            key: None,
            page: PageRequest {
                limit: 100,
                offset: 0,
            },
        })
        .await?
        .items
        .into_iter()
        .map(|x| Xcom {
            key: x.key,
            value: x.value,
            size: x.size_bytes,
        })
        .collect();
    let fields = task
        .map(|t| templated_fields(&run, &ti, t, &loaded.dag))
        .unwrap_or_default();
    let ctx = TiCtx {
        me: viewer.me(),
        title: format!("{task_id} · {run_id}"),
        dag_href: format!("/dags/{}", segment(&dag_id)),
        run_href: run_href(&dag_id, &run_id),
        log_url: format!(
            "/ui/dags/{}/runs/{}/tasks/{}/{mi}/logs/{selected}",
            segment(&dag_id),
            segment(&run_id),
            segment(&task_id)
        ),
        log_try: selected,
        kind: match task.map(|t| &t.kind) {
            Some(TaskKind::Empty) => "empty",
            Some(TaskKind::Command { .. }) => "command",
            Some(TaskKind::Python { .. }) => "python",
            None => "",
        }
        .to_owned(),
        trigger_rule: task
            .map(|t| t.trigger_rule.as_str().to_owned())
            .unwrap_or_default(),
        doc: task.and_then(|t| t.doc.clone()).unwrap_or_default(),
        s: summary(&state, &run, &ti, task).await?,
        href,
        tries,
        xcoms,
        fields,
        dag_id,
        run_id,
        task_id,
        map_index: mi,
    };
    Ok(render("ti.html", ctx)?.into_response())
}

/// The task's templated fields (a command, its arguments), rendered with
/// what is known of the run now; XCom references show as such.
fn templated_fields(
    run: &RunRecord,
    ti: &TiRecord,
    task: &Task,
    dag: &pave_core::Dag,
) -> Vec<Field> {
    use pave_core::template::{TemplateContext, render};
    let mut ctx = TemplateContext::new(
        run.dag_id.clone(),
        ti.key.task_id.clone(),
        run.run_id.clone(),
    );
    ctx.map_index = ti.key.map_index;
    ctx.try_number = ti.try_number.0.max(1);
    ctx.logical_date = run.logical_date;
    ctx.data_interval = run
        .data_interval
        .map(|d| pave_core::schedule::DataInterval {
            start: d.start,
            end: d.end,
        });
    ctx.run_after = Some(run.run_after);
    if let serde_json::Value::Object(m) = &run.conf {
        ctx.conf = m.clone();
    }
    for (k, p) in &dag.params {
        let v = run
            .conf
            .get(k)
            .cloned()
            .or_else(|| p.default.clone())
            .unwrap_or(serde_json::Value::Null);
        ctx.params.insert(k.clone(), v);
    }
    let mut out = Vec::new();
    if let TaskKind::Command { command, .. } = &task.kind {
        let (rendered, error) = match render(command, &ctx) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(Field {
            name: "command".into(),
            template: command.clone(),
            rendered,
            error,
        });
    }
    if let TaskKind::Python { callable } = &task.kind {
        out.push(Field {
            name: "python_callable".into(),
            template: callable.clone(),
            rendered: None,
            error: None,
        });
    }
    for (name, arg) in &task.args {
        let template = match arg {
            pave_core::Arg::Literal { value } => value.to_string(),
            pave_core::Arg::Xcom(x) => format!("XComArg({}, key={})", x.task_id, x.key),
        };
        out.push(Field {
            name: format!("args.{name}"),
            template,
            rendered: None,
            error: None,
        });
    }
    for (name, value) in &task.env {
        let (rendered, error) = match render(value, &ctx) {
            Ok(r) if &r != value => (Some(r), None),
            Ok(_) => (None, None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(Field {
            name: format!("env.{name}"),
            template: value.clone(),
            rendered,
            error,
        });
    }
    out
}

#[derive(Serialize)]
struct SummaryCtx {
    s: Summary,
}

/// `GET /ui/.../{map_index}/summary`: the state block, for the poll.
pub(crate) async fn summary_partial(
    State(state): State<UiState>,
    _viewer: Viewer,
    Path((dag_id, run_id, task_id, mi)): Path<(String, String, String, String)>,
) -> Result<Response, UiError> {
    let mi = parse_map_index(&mi)?;
    let run = known_run(&state, &dag_id, &run_id).await?;
    let ti = known_ti(&state, &run, &task_id, mi).await?;
    let loaded = state.rest.loaded(run.dag_version_id).await?;
    let s = summary(&state, &run, &ti, loaded.task(&task_id)).await?;
    Ok(render("partials/ti_summary.html", SummaryCtx { s })?.into_response())
}

/// A chunk of a try's log.
#[derive(Serialize)]
struct LogChunk {
    content: String,
    next_offset: u64,
    end_of_log: bool,
}

#[derive(Deserialize)]
pub(crate) struct LogQuery {
    #[serde(default)]
    offset: u64,
}

/// Most bytes one log request returns.
const LOG_CHUNK: u64 = 256 * 1024;

/// `GET /ui/.../{map_index}/logs/{try}?offset=N`: the next chunk of a try's
/// log as JSON; poll from `next_offset` until `end_of_log`.
pub(crate) async fn log_chunk(
    State(state): State<UiState>,
    _viewer: Viewer,
    Path((dag_id, run_id, task_id, mi, try_text)): Path<(String, String, String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, UiError> {
    let mi = parse_map_index(&mi)?;
    let try_number: u32 = try_text.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
        UiError::NotFound(format!("`{try_text}` is not a try number (1, 2, ...)"))
    })?;
    let run = known_run(&state, &dag_id, &run_id).await?;
    let ti = known_ti(&state, &run, &task_id, mi).await?;
    if try_number > ti.try_number.0 {
        return Err(UiError::NotFound(format!(
            "task `{task_id}` has no try {try_number} yet"
        )));
    }
    let ended = try_number < ti.try_number.0 || !ti.state.is_active();
    let logs = state.rest.logs_dir();
    let path = pave_scheduler::paths::log_path(
        logs,
        &run.dag_id,
        &run.run_id,
        &ti.key.task_id,
        MapIndex(mi),
        try_number,
    );
    let inside = path
        .strip_prefix(logs)
        .map(|rel| rel.components().all(|c| matches!(c, Component::Normal(_))))
        .unwrap_or(false);
    if !inside {
        return Err(UiError::BadRequest(format!(
            "the log of task `{task_id}` would lie outside the logs folder"
        )));
    }
    let (content, next_offset, size) = match read_chunk(&path, q.offset).await {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), q.offset, 0),
        Err(e) => {
            return Err(UiError::Internal(format!(
                "cannot read the log of try {try_number} of `{task_id}`: {e}"
            )));
        }
    };
    Ok(Json(LogChunk {
        content,
        next_offset,
        end_of_log: ended && next_offset >= size,
    })
    .into_response())
}

/// Up to [`LOG_CHUNK`] bytes from `offset`, cut back to whole UTF-8
/// characters; returns the text, the offset after it and the file's size.
async fn read_chunk(path: &std::path::Path, offset: u64) -> std::io::Result<(String, u64, u64)> {
    let mut file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    let start = offset.min(size);
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let want = usize::try_from(LOG_CHUNK.min(size - start)).unwrap_or(0);
    let mut buf = vec![0u8; want];
    file.read_exact(&mut buf).await?;
    let used = match std::str::from_utf8(&buf) {
        Ok(_) => buf.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => buf.len(),
    };
    let text = String::from_utf8_lossy(&buf[..used]).into_owned();
    Ok((text, start + used as u64, size))
}

/// `POST .../{map_index}/clear` (`downstream=on`, `upstream=on`).
pub(crate) async fn clear(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((dag_id, run_id, task_id, mi)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = Fields::parse(&body);
    require_editor(&viewer, &headers, &fields, "clearing a task instance")?;
    let mi = parse_map_index(&mi)?;
    let run = known_run(&state, &dag_id, &run_id).await?;
    known_ti(&state, &run, &task_id, mi).await?;
    let loaded = state.rest.loaded(run.dag_version_id).await?;
    let req = ClearRequest {
        task_ids: vec![task_id.clone()],
        include_downstream: fields.checked("downstream"),
        include_upstream: fields.checked("upstream"),
        ..ClearRequest::default()
    };
    actions::clear(
        state.rest.core_store(),
        &run,
        &loaded.dag,
        &req,
        state.rest.now(),
    )
    .await?;
    state.rest.scheduler().poke();
    Ok(done(
        &headers,
        &fields,
        &ti_href(&dag_id, &run_id, &task_id, mi),
    ))
}

/// `POST .../{map_index}/mark` (`state=success|failed`).
pub(crate) async fn mark(
    State(state): State<UiState>,
    viewer: Viewer,
    Path((dag_id, run_id, task_id, mi)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = Fields::parse(&body);
    require_editor(&viewer, &headers, &fields, "marking a task instance")?;
    let to = match fields.get("state") {
        Some("success") => TaskState::Success,
        Some("failed") => TaskState::Failed,
        other => {
            return Err(UiError::BadRequest(format!(
                "field `state` must be `success` or `failed`, got {other:?}"
            )));
        }
    };
    let mi = parse_map_index(&mi)?;
    let run = known_run(&state, &dag_id, &run_id).await?;
    let ti = known_ti(&state, &run, &task_id, mi).await?;
    let loaded = state.rest.loaded(run.dag_version_id).await?;
    let note = format!("marked {to} by {} in the UI", viewer.0.username());
    actions::mark_tis(
        state.rest.core_store(),
        &run,
        &loaded.dag,
        &[ti],
        to,
        &note,
        state.rest.now(),
    )
    .await?;
    state.rest.scheduler().poke();
    Ok(done(
        &headers,
        &fields,
        &ti_href(&dag_id, &run_id, &task_id, mi),
    ))
}
