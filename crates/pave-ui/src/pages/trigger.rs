//! The trigger form, built from the DAG's params: one input per param
//! (checkbox, number, select, text or JSON) with its default, plus an
//! optional run id, logical date and raw JSON conf. The scheduler's
//! `runs::trigger` checks the conf against the params, as for the API.

use super::{known_dag, latest};
use crate::UiState;
use crate::error::UiError;
use crate::render::{render, segment};
use crate::session::{Fields, Me, Viewer, require_editor};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDateTime, TimeZone, Utc};
use pave_core::{DagId, Param};
use pave_scheduler::{TriggerRequest, runs};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One input of the form.
#[derive(Clone, Debug, Serialize)]
struct ParamField {
    name: String,
    /// `boolean`, `integer`, `number`, `enum`, `string` or `json`.
    input: &'static str,
    value: String,
    checked: bool,
    options: Vec<(String, bool)>,
    min: Option<f64>,
    max: Option<f64>,
    description: String,
    type_text: String,
    error: Option<String>,
}

fn types(p: &Param) -> Vec<String> {
    p.type_.clone().unwrap_or_default()
}

fn input_kind(p: &Param) -> &'static str {
    if p.enum_.as_ref().is_some_and(|e| !e.is_empty()) {
        return "enum";
    }
    let t = types(p);
    let main: Vec<&str> = t
        .iter()
        .map(String::as_str)
        .filter(|t| *t != "null")
        .collect();
    match main.as_slice() {
        ["boolean"] => "boolean",
        ["integer"] => "integer",
        ["number"] => "number",
        ["string"] => "string",
        [] => match &p.default {
            Some(Value::Bool(_)) => "boolean",
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => "integer",
            Some(Value::Number(_)) => "number",
            Some(Value::String(_)) | None | Some(Value::Null) => "string",
            _ => "json",
        },
        _ => "json",
    }
}

/// A value as the text its input shows.
fn shown(input: &str, v: Option<&Value>) -> String {
    match (input, v) {
        (_, None) | (_, Some(Value::Null)) => String::new(),
        ("string", Some(Value::String(s))) => s.clone(),
        ("json", Some(v)) => serde_json::to_string_pretty(v).unwrap_or_default(),
        (_, Some(v)) => v.to_string(),
    }
}

fn fields_for(params: &BTreeMap<String, Param>, values: &Map<String, Value>) -> Vec<ParamField> {
    params
        .iter()
        .map(|(name, p)| {
            let input = input_kind(p);
            let v = values.get(name).or(p.default.as_ref());
            ParamField {
                name: name.clone(),
                input,
                value: shown(input, v),
                checked: matches!(v, Some(Value::Bool(true))),
                options: p
                    .enum_
                    .clone()
                    .unwrap_or_default()
                    .iter()
                    .map(|o| (o.to_string(), Some(o) == v))
                    .collect(),
                min: p.minimum,
                max: p.maximum,
                description: p.description.clone().unwrap_or_default(),
                type_text: types(p).join(" | "),
                error: None,
            }
        })
        .collect()
}

#[derive(Serialize)]
struct FormCtx {
    me: Me,
    title: String,
    dag_id: String,
    dag_href: String,
    action: String,
    description: String,
    params: Vec<ParamField>,
    run_id: String,
    logical_date: String,
    conf: String,
    error: Option<String>,
}

/// `GET /dags/{dag_id}/trigger`.
pub(crate) async fn form(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(dag_id): Path<String>,
) -> Result<Response, UiError> {
    let d = known_dag(&state, &dag_id).await?;
    let loaded = latest(&state, &d).await?;
    let ctx = FormCtx {
        me: viewer.me(),
        title: format!("Trigger {dag_id}"),
        dag_href: format!("/dags/{}", segment(&dag_id)),
        action: format!("/dags/{}/trigger", segment(&dag_id)),
        description: loaded.dag.description.clone().unwrap_or_default(),
        params: fields_for(&loaded.dag.params, &Map::new()),
        run_id: String::new(),
        logical_date: String::new(),
        conf: String::new(),
        error: None,
        dag_id,
    };
    Ok(render("trigger.html", ctx)?.into_response())
}

/// Reads one param's input; `Ok(None)` leaves the param to its default.
fn read_param(input: &str, p: &Param, raw: Option<&str>) -> Result<Option<Value>, String> {
    let nullable = types(p).iter().any(|t| t == "null") || matches!(p.default, Some(Value::Null));
    let text = raw.unwrap_or("").trim();
    if input == "boolean" {
        return Ok(Some(Value::Bool(matches!(text, "on" | "true" | "1"))));
    }
    if text.is_empty() {
        return Ok(if nullable { Some(Value::Null) } else { None });
    }
    match input {
        "integer" => text
            .parse::<i64>()
            .map(|n| Some(Value::from(n)))
            .map_err(|_| format!("`{text}` is not a whole number")),
        "number" => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(|n| Some(Value::Number(n)))
            .ok_or_else(|| format!("`{text}` is not a number")),
        "string" => Ok(Some(Value::String(raw.unwrap_or("").to_owned()))),
        // Enum options and JSON inputs carry JSON text.
        _ => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!("not valid JSON: {e}")),
    }
}

/// `POST /dags/{dag_id}/trigger`: creates a manual run and goes to the grid.
pub(crate) async fn submit(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(dag_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    let fields = Fields::parse(&body);
    require_editor(&viewer, &headers, &fields, "triggering a DAG")?;
    let d = known_dag(&state, &dag_id).await?;
    let loaded = latest(&state, &d).await?;
    let params = &loaded.dag.params;
    let mut conf = Map::new();
    let mut errors: BTreeMap<String, String> = BTreeMap::new();
    for (name, p) in params {
        let input = input_kind(p);
        match read_param(input, p, fields.get(&format!("param.{name}"))) {
            Ok(Some(v)) => {
                conf.insert(name.clone(), v);
            }
            Ok(None) => {}
            Err(e) => {
                errors.insert(name.clone(), e);
            }
        }
    }
    let mut error = None;
    let raw_conf = fields.get("conf").unwrap_or("").trim().to_owned();
    if !raw_conf.is_empty() {
        match serde_json::from_str::<Value>(&raw_conf) {
            Ok(Value::Object(m)) => conf.extend(m),
            Ok(_) => error = Some("the JSON conf must be an object, e.g. {\"epochs\": 3}".into()),
            Err(e) => error = Some(format!("the JSON conf is not valid JSON: {e}")),
        }
    }
    let logical_text = fields.get("logical_date").unwrap_or("").trim().to_owned();
    let logical_date = if logical_text.is_empty() {
        Some(state.rest.now())
    } else {
        match NaiveDateTime::parse_from_str(&logical_text, "%Y-%m-%dT%H:%M")
            .or_else(|_| NaiveDateTime::parse_from_str(&logical_text, "%Y-%m-%dT%H:%M:%S"))
        {
            Ok(n) => Some(Utc.from_utc_datetime(&n)),
            Err(_) => {
                error = Some(format!(
                    "logical date `{logical_text}` is not a date and time (YYYY-MM-DDTHH:MM, UTC)"
                ));
                None
            }
        }
    };
    let run_id = fields.get("run_id").unwrap_or("").trim().to_owned();
    if errors.is_empty() && error.is_none() {
        let req = TriggerRequest {
            run_id: (!run_id.is_empty()).then(|| run_id.clone()),
            logical_date,
            conf: Value::Object(conf.clone()),
        };
        let id = DagId::new(dag_id.as_str());
        let result = {
            let mut cache = state.trigger_cache.lock().await;
            runs::trigger(
                state.rest.core_store(),
                &mut cache,
                &id,
                req,
                state.rest.now(),
                &Default::default(),
            )
            .await
        };
        match result {
            Ok(_) => {
                state.rest.scheduler().poke();
                return Ok(
                    Redirect::to(&format!("/dags/{}?tab=grid", segment(&dag_id))).into_response(),
                );
            }
            Err(pave_scheduler::SchedulerError::BadRequest(m)) => error = Some(m),
            Err(e) => return Err(e.into()),
        }
    }
    let mut shown_params = fields_for(params, &conf);
    for f in &mut shown_params {
        f.error = errors.get(&f.name).cloned();
        if f.error.is_some() {
            f.value = fields
                .get(&format!("param.{}", f.name))
                .unwrap_or("")
                .to_owned();
        }
    }
    let ctx = FormCtx {
        me: viewer.me(),
        title: format!("Trigger {dag_id}"),
        dag_href: format!("/dags/{}", segment(&dag_id)),
        action: format!("/dags/{}/trigger", segment(&dag_id)),
        description: loaded.dag.description.clone().unwrap_or_default(),
        params: shown_params,
        run_id,
        logical_date: logical_text,
        conf: raw_conf,
        error: error.or_else(|| {
            (!errors.is_empty()).then(|| "some params are not valid; see below".into())
        }),
        dag_id,
    };
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        render("trigger.html", ctx)?,
    )
        .into_response())
}
