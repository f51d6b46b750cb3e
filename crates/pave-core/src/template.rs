//! Jinja templating of commands, arguments and environment values, with
//! Airflow's template context.
//!
//! Templates are rendered with minijinja in strict mode: an undefined name is
//! an error naming it, never an empty string. Fuel bounds the work (and
//! memory) one render may use, so a runaway loop fails instead of hanging.
//!
//! The context follows Airflow 3's `RuntimeTaskInstance.get_template_context`:
//! `ds`, `ds_nodash`, `ts`, `ts_nodash`, `ts_nodash_with_tz` and `logical_date`
//! come from the run's logical date **in UTC** (Airflow formats the UTC
//! `dag_run.logical_date` it receives from the API server, not a date in the
//! DAG's time zone): `ds = "2026-01-01"`, `ts = "2026-01-01T00:00:00+00:00"`,
//! `ts_nodash = "20260101T000000"`, `ts_nodash_with_tz = "20260101T000000+0000"`.
//! A run without a logical date (a manual run triggered without one) has none
//! of these keys, nor `data_interval_start`/`data_interval_end`, as in Airflow.
//! A date renders like pendulum's `str()`: `2026-01-01 00:00:00+00:00`, and
//! offers `.isoformat()`, `.strftime(fmt)`, `.timestamp()` and its fields.
//!
//! Also available: `run_id`, `dag_run` (`.run_id`, `.dag_id`, `.conf`,
//! `.logical_date`, `.data_interval_start`, `.data_interval_end`, `.run_after`),
//! `dag.dag_id`, `task.task_id`, `params`, `args` (the task's resolved
//! arguments), `task_instance_key_str`, `ti`/`task_instance` (`.task_id`,
//! `.dag_id`, `.run_id`, `.try_number`, `.map_index`, `.xcom_pull(...)`), and
//! `macros.ds_add` / `macros.ds_format`. `var` and `conn` (Airflow Variables
//! and Connections) are not supported and fail with an error saying so.
//!
//! Dicts, lists, booleans and none render like Python's `str()` (`{'a': 1}`,
//! `True`, `None`), as minijinja does. Deliberate differences: `macros.datetime`,
//! `macros.timedelta` and other Python modules are not available, and
//! `xcom_pull` reads only this run's XComs.

use crate::ids::{DagId, MapIndex, RunId, TaskId};
use crate::run::XcomMap;
use crate::schedule::DataInterval;
use chrono::format::StrftimeItems;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use minijinja::value::{Kwargs, Object, ObjectRepr, Value, from_args};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Default fuel for one render: plenty for real commands, small enough that an
/// endless loop fails within milliseconds.
pub const DEFAULT_FUEL: u64 = 200_000;

/// The plain data a template context is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateContext {
    pub dag_id: DagId,
    pub task_id: TaskId,
    pub run_id: RunId,
    pub map_index: MapIndex,
    /// The attempt being rendered for (1 for the first).
    pub try_number: u32,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval: Option<DataInterval>,
    pub run_after: Option<DateTime<Utc>>,
    /// The run's `conf` (what the trigger passed).
    pub conf: serde_json::Map<String, Json>,
    /// Resolved DAG params.
    pub params: BTreeMap<String, Json>,
    /// The task's resolved arguments, mapped ones included.
    pub args: BTreeMap<String, Json>,
    /// XComs `ti.xcom_pull` can return (of this run).
    pub xcoms: XcomMap,
    /// Fuel for one render (see [`DEFAULT_FUEL`]).
    pub fuel: u64,
}

impl TemplateContext {
    /// A context with no dates, params, args or XComs.
    pub fn new(
        dag_id: impl Into<DagId>,
        task_id: impl Into<TaskId>,
        run_id: impl Into<RunId>,
    ) -> Self {
        TemplateContext {
            dag_id: dag_id.into(),
            task_id: task_id.into(),
            run_id: run_id.into(),
            map_index: MapIndex::UNMAPPED,
            try_number: 1,
            logical_date: None,
            data_interval: None,
            run_after: None,
            conf: serde_json::Map::new(),
            params: BTreeMap::new(),
            args: BTreeMap::new(),
            xcoms: XcomMap::new(),
            fuel: DEFAULT_FUEL,
        }
    }
}

/// A template that could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("syntax error in template `{template}`{}: {detail}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Syntax {
        template: String,
        line: Option<usize>,
        detail: String,
    },
    #[error("undefined variable `{name}` in template `{template}`; available: {}", if available.is_empty() { "none".to_owned() } else { available.join(", ") })]
    Undefined {
        name: String,
        template: String,
        available: Vec<String>,
    },
    #[error("`{name}` is not supported in pave templates (template `{template}`): {hint}")]
    Unsupported {
        name: String,
        template: String,
        hint: String,
    },
    #[error(
        "template `{template}` ran out of fuel ({fuel} steps): an endless or very long loop? simplify the template"
    )]
    OutOfFuel { template: String, fuel: u64 },
    #[error("cannot render template `{template}`: {detail}")]
    Render { template: String, detail: String },
}

/// Renders one template string.
pub fn render(template: &str, ctx: &TemplateContext) -> Result<String, TemplateError> {
    Renderer::new(ctx).render(template)
}

/// Renders every string inside a JSON value (object keys are left alone).
pub fn render_json_strings(value: &Json, ctx: &TemplateContext) -> Result<Json, TemplateError> {
    let renderer = Renderer::new(ctx);
    render_json(&renderer, value)
}

fn render_json(r: &Renderer, value: &Json) -> Result<Json, TemplateError> {
    Ok(match value {
        Json::String(s) => Json::String(r.render(s)?),
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|v| render_json(r, v))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(r, v)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// An environment and a context, built once and used for many strings.
struct Renderer {
    env: Environment<'static>,
    ctx: BTreeMap<String, Value>,
    value: Value,
    fuel: u64,
}

impl Renderer {
    fn new(ctx: &TemplateContext) -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Airflow templates are Jinja evaluated by Python, so DAG authors
        // write Python methods: `dag_run.conf.get("k", "d")`,
        // `params.name.upper()`. minijinja-contrib's pycompat provides them.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_fuel(Some(ctx.fuel));
        let map = context_values(ctx);
        Renderer {
            env,
            value: Value::from(map.clone()),
            ctx: map,
            fuel: ctx.fuel,
        }
    }

    fn render(&self, template: &str) -> Result<String, TemplateError> {
        // Plain strings are common (most args); skip the engine for them.
        if !template.contains("{{") && !template.contains("{%") && !template.contains("{#") {
            return Ok(template.to_owned());
        }
        self.env
            .render_str(template, self.value.clone())
            .map_err(|e| self.explain(template, &e))
    }

    fn explain(&self, template: &str, e: &Error) -> TemplateError {
        let shown = shorten(template);
        let detail = || {
            e.detail()
                .map(str::to_owned)
                .unwrap_or_else(|| e.to_string())
        };
        match e.kind() {
            ErrorKind::SyntaxError | ErrorKind::BadEscape => TemplateError::Syntax {
                template: shown,
                line: e.line(),
                detail: detail(),
            },
            ErrorKind::OutOfFuel => TemplateError::OutOfFuel {
                template: shown,
                fuel: self.fuel,
            },
            ErrorKind::UndefinedError
            | ErrorKind::UnknownFunction
            | ErrorKind::UnknownMethod
            | ErrorKind::InvalidOperation => {
                self.find_undefined(template, &shown)
                    .unwrap_or(TemplateError::Render {
                        template: shown,
                        detail: detail(),
                    })
            }
            _ => TemplateError::Render {
                template: shown,
                detail: detail(),
            },
        }
    }

    /// Names the first variable or attribute path of `template` that the
    /// context does not define.
    fn find_undefined(&self, template: &str, shown: &str) -> Option<TemplateError> {
        let env = Environment::new();
        let tpl = env.template_from_str(template).ok()?;
        let mut paths: Vec<String> = tpl.undeclared_variables(true).into_iter().collect();
        paths.sort();
        for path in paths {
            let mut parts = path.split('.');
            let first = parts.next()?;
            let Some(mut cur) = self.ctx.get(first).cloned() else {
                if let Some(hint) = unsupported(first) {
                    return Some(TemplateError::Unsupported {
                        name: first.to_owned(),
                        template: shown.to_owned(),
                        hint: hint.to_owned(),
                    });
                }
                return Some(TemplateError::Undefined {
                    name: first.to_owned(),
                    template: shown.to_owned(),
                    available: self.ctx.keys().cloned().collect(),
                });
            };
            let mut walked = first.to_owned();
            for seg in parts {
                if is_method(&cur, seg) {
                    break;
                }
                let next = cur.get_attr(seg).unwrap_or(Value::UNDEFINED);
                if next.is_undefined() {
                    if walked == "macros" {
                        return Some(TemplateError::Unsupported {
                            name: format!("macros.{seg}"),
                            template: shown.to_owned(),
                            hint: "only macros.ds_add and macros.ds_format are available".into(),
                        });
                    }
                    let available = match cur.try_iter() {
                        Ok(keys) if cur.kind() == minijinja::value::ValueKind::Map => {
                            keys.map(|k| k.to_string()).collect()
                        }
                        _ => Vec::new(),
                    };
                    return Some(TemplateError::Undefined {
                        name: format!("{walked}.{seg}"),
                        template: shown.to_owned(),
                        available,
                    });
                }
                walked.push('.');
                walked.push_str(seg);
                cur = next;
            }
        }
        None
    }
}

fn unsupported(name: &str) -> Option<&'static str> {
    match name {
        "var" => Some(
            "Airflow Variables are not available; pass the value as a DAG param or an env value",
        ),
        "conn" => Some(
            "Airflow Connections are not available in templates; read the connection in the task",
        ),
        "conf" => {
            Some("Airflow's configuration is not exposed; use `dag_run.conf` for the run's conf")
        }
        "prev_ds"
        | "next_ds"
        | "prev_ds_nodash"
        | "next_ds_nodash"
        | "yesterday_ds"
        | "tomorrow_ds"
        | "prev_execution_date"
        | "next_execution_date"
        | "execution_date" => Some(
            "removed in Airflow 3; use `logical_date`, `data_interval_start` or `macros.ds_add(ds, n)`",
        ),
        _ => None,
    }
}

/// Whether `seg` names a method of `v`, not a missing attribute.
fn is_method(v: &Value, seg: &str) -> bool {
    if let Some(obj) = v.as_object() {
        if obj.downcast_ref::<TiObject>().is_some() {
            return seg == "xcom_pull";
        }
        if obj.downcast_ref::<MacrosObject>().is_some() {
            return matches!(seg, "ds_add" | "ds_format");
        }
        if obj.downcast_ref::<DateObject>().is_some() {
            return matches!(seg, "isoformat" | "strftime" | "timestamp" | "date");
        }
    }
    // Strings, numbers and sequences have builtin methods (`ds.upper()`).
    !matches!(v.kind(), minijinja::value::ValueKind::Map)
}

fn shorten(template: &str) -> String {
    const MAX: usize = 160;
    if template.chars().count() <= MAX {
        template.to_owned()
    } else {
        let cut: String = template.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

fn json(v: &Json) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// An XCom value (or an argument taken from one), its serde envelopes
/// decoded (`crate::xcom_serde`).
fn xcom_json(v: &Json) -> Value {
    json(&crate::xcom_serde::plain(v))
}

fn date(at: DateTime<Utc>) -> Value {
    Value::from_object(DateObject(at))
}

fn context_values(ctx: &TemplateContext) -> BTreeMap<String, Value> {
    let mut m: BTreeMap<String, Value> = BTreeMap::new();
    let opt_date = |d: Option<DateTime<Utc>>| d.map(date).unwrap_or(Value::from(()));
    if let Some(ld) = ctx.logical_date {
        let ds = ld.format("%Y-%m-%d").to_string();
        let ts = iso(ld, 'T');
        m.insert("ds_nodash".into(), Value::from(ds.replace('-', "")));
        m.insert(
            "task_instance_key_str".into(),
            Value::from(format!(
                "{}__{}__{}",
                ctx.dag_id,
                ctx.task_id,
                ds.replace('-', "")
            )),
        );
        m.insert("ds".into(), Value::from(ds));
        m.insert(
            "ts_nodash".into(),
            Value::from(ld.format("%Y%m%dT%H%M%S").to_string()),
        );
        m.insert(
            "ts_nodash_with_tz".into(),
            Value::from(ts.replace(['-', ':'], "")),
        );
        m.insert("ts".into(), Value::from(ts));
        m.insert("logical_date".into(), date(ld));
    }
    if let Some(di) = ctx.data_interval {
        m.insert("data_interval_start".into(), date(di.start));
        m.insert("data_interval_end".into(), date(di.end));
    }
    m.insert("run_id".into(), Value::from(ctx.run_id.as_str()));
    let conf = Json::Object(ctx.conf.clone());
    let dag_run: BTreeMap<String, Value> = [
        ("run_id", Value::from(ctx.run_id.as_str())),
        ("dag_id", Value::from(ctx.dag_id.as_str())),
        ("conf", json(&conf)),
        ("logical_date", opt_date(ctx.logical_date)),
        (
            "data_interval_start",
            opt_date(ctx.data_interval.map(|d| d.start)),
        ),
        (
            "data_interval_end",
            opt_date(ctx.data_interval.map(|d| d.end)),
        ),
        ("run_after", opt_date(ctx.run_after)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    m.insert("dag_run".into(), Value::from(dag_run));
    m.insert(
        "dag".into(),
        Value::from_pairs([("dag_id", Value::from(ctx.dag_id.as_str()))]),
    );
    m.insert(
        "task".into(),
        Value::from_pairs([("task_id", Value::from(ctx.task_id.as_str()))]),
    );
    let params: BTreeMap<String, Value> = ctx
        .params
        .iter()
        .map(|(k, v)| (k.clone(), json(v)))
        .collect();
    m.insert("params".into(), Value::from(params));
    let args: BTreeMap<String, Value> = ctx
        .args
        .iter()
        .map(|(k, v)| (k.clone(), xcom_json(v)))
        .collect();
    m.insert("args".into(), Value::from(args));
    let ti = Value::from_object(TiObject {
        dag_id: ctx.dag_id.clone(),
        task_id: ctx.task_id.clone(),
        run_id: ctx.run_id.clone(),
        map_index: ctx.map_index,
        try_number: ctx.try_number,
        xcoms: ctx.xcoms.clone(),
    });
    m.insert("ti".into(), ti.clone());
    m.insert("task_instance".into(), ti);
    m.insert("macros".into(), Value::from_object(MacrosObject));
    m
}

/// Python's `datetime.isoformat(sep)` of a UTC time.
fn iso(at: DateTime<Utc>, sep: char) -> String {
    let base = at.format(&format!("%Y-%m-%d{sep}%H:%M:%S")).to_string();
    let micros = at.nanosecond() / 1000;
    if micros == 0 {
        format!("{base}+00:00")
    } else {
        format!("{base}.{micros:06}+00:00")
    }
}

/// Python `strftime` codes are chrono's, except `%f` (microseconds in Python).
fn strftime(at: &NaiveDateTime, fmt: &str, with_offset: bool) -> Result<String, Error> {
    let fmt = fmt.replace("%f", "%6f");
    let items = StrftimeItems::new(&fmt).parse().map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("invalid date format `{fmt}`"),
        )
    })?;
    if with_offset {
        Ok(at.and_utc().format_with_items(items.iter()).to_string())
    } else {
        // A naive time has no offset: `%z`/`%Z` are invalid, as in Python (empty there).
        let ok = items.iter().all(|i| {
            !matches!(i, chrono::format::Item::Fixed(f) if matches!(f,
                chrono::format::Fixed::TimezoneName
                | chrono::format::Fixed::TimezoneOffset
                | chrono::format::Fixed::TimezoneOffsetColon
                | chrono::format::Fixed::TimezoneOffsetZ))
        });
        if !ok {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("date format `{fmt}` needs a time zone, the date has none"),
            ));
        }
        Ok(at.format_with_items(items.iter()).to_string())
    }
}

/// A date-time in templates (pendulum's `DateTime` in Airflow).
#[derive(Debug)]
struct DateObject(DateTime<Utc>);

impl Object for DateObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        use chrono::Datelike;
        let d = self.0;
        Some(Value::from(match key.as_str()? {
            "year" => i64::from(d.year()),
            "month" => i64::from(d.month()),
            "day" => i64::from(d.day()),
            "hour" => i64::from(d.hour()),
            "minute" => i64::from(d.minute()),
            "second" => i64::from(d.second()),
            "microsecond" => i64::from(d.nanosecond() / 1000),
            _ => return None,
        }))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "isoformat" => {
                let (sep,): (Option<&str>,) = from_args(args)?;
                let sep = sep.and_then(|s| s.chars().next()).unwrap_or('T');
                Ok(Value::from(iso(self.0, sep)))
            }
            "strftime" => {
                let (fmt,): (&str,) = from_args(args)?;
                Ok(Value::from(strftime(&self.0.naive_utc(), fmt, true)?))
            }
            "timestamp" => {
                let (): () = from_args(args)?;
                Ok(Value::from(self.0.timestamp_micros() as f64 / 1e6))
            }
            "date" => {
                let (): () = from_args(args)?;
                Ok(Value::from(self.0.format("%Y-%m-%d").to_string()))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&iso(self.0, ' '))
    }
}

/// Airflow's `macros` module, the pure parts of it.
#[derive(Debug)]
struct MacrosObject;

impl Object for MacrosObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        None
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "ds_add" => {
                let (ds, days): (&str, i64) = from_args(args)?;
                Ok(Value::from(ds_add(ds, days)?))
            }
            "ds_format" => {
                let (ds, input, output): (&str, &str, &str) = from_args(args)?;
                Ok(Value::from(ds_format(ds, input, output)?))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("macros.{method} is not supported; available: ds_add, ds_format"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<macros>")
    }
}

/// Airflow's `macros.ds_add`: `ds` (YYYY-MM-DD) plus `days` days.
pub fn ds_add(ds: &str, days: i64) -> Result<String, Error> {
    let day = NaiveDate::parse_from_str(ds, "%Y-%m-%d").map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("ds_add: `{ds}` is not a YYYY-MM-DD date"),
        )
    })?;
    let moved = Duration::try_days(days)
        .and_then(|d| day.checked_add_signed(d))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("ds_add: {days} days is out of range"),
            )
        })?;
    Ok(moved.format("%Y-%m-%d").to_string())
}

/// Airflow's `macros.ds_format`: re-formats `ds` read with `input` as `output`
/// (Python strftime codes).
pub fn ds_format(ds: &str, input: &str, output: &str) -> Result<String, Error> {
    let input = input.replace("%f", "%6f");
    let parsed = NaiveDateTime::parse_from_str(ds, &input)
        .or_else(|_| {
            NaiveDate::parse_from_str(ds, &input).map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("ds_format: `{ds}` does not match format `{input}`: {e}"),
            )
        })?;
    strftime(&parsed, output, false)
}

/// `ti` in templates: ids, try number, map index and `xcom_pull`.
#[derive(Debug)]
struct TiObject {
    dag_id: DagId,
    task_id: TaskId,
    run_id: RunId,
    map_index: MapIndex,
    try_number: u32,
    xcoms: XcomMap,
}

impl Object for TiObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "task_id" => Value::from(self.task_id.as_str()),
            "dag_id" => Value::from(self.dag_id.as_str()),
            "run_id" => Value::from(self.run_id.as_str()),
            "try_number" => Value::from(self.try_number),
            "map_index" => Value::from(self.map_index.0),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "xcom_pull" => self.xcom_pull(args),
            "xcom_push" => Err(Error::new(
                ErrorKind::InvalidOperation,
                "ti.xcom_push cannot be called from a template",
            )),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<TaskInstance: {}.{} {} map_index={}>",
            self.dag_id, self.task_id, self.run_id, self.map_index
        )
    }
}

fn bad(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

impl TiObject {
    /// Airflow 3's `RuntimeTaskInstance.xcom_pull(task_ids=None, dag_id=None,
    /// key="return_value", include_prior_dates=False, *, map_indexes=<unset>,
    /// default=None, run_id=None)` over the XComs of this run.
    fn xcom_pull(&self, args: &[Value]) -> Result<Value, Error> {
        let (pos_task_ids, pos_dag_id, pos_key, kwargs): (
            Option<Value>,
            Option<Value>,
            Option<Value>,
            Kwargs,
        ) = from_args(args)?;
        let pick = |pos: Option<Value>, name: &str| -> Result<Option<Value>, Error> {
            match (pos, kwargs.get::<Option<Value>>(name)?) {
                (Some(_), Some(_)) => Err(bad(format!("xcom_pull got `{name}` twice"))),
                (p, k) => Ok(p.or(k).filter(|v| !v.is_none())),
            }
        };
        let task_ids = pick(pos_task_ids, "task_ids")?;
        let dag_id = pick(pos_dag_id, "dag_id")?;
        let key = pick(pos_key, "key")?;
        let run_id: Option<Value> = kwargs.get("run_id")?;
        let prior: Option<bool> = kwargs.get("include_prior_dates")?;
        let default: Option<Value> = kwargs.get("default")?;
        let map_indexes: Option<Value> = if kwargs.has("map_indexes") {
            Some(kwargs.get::<Value>("map_indexes")?)
        } else {
            None
        };
        kwargs.assert_all_used()?;

        if let Some(d) = dag_id.as_ref().and_then(Value::as_str)
            && d != self.dag_id.as_str()
        {
            return Err(bad(format!(
                "xcom_pull from another DAG (`{d}`) is not supported; only this run's XComs are available"
            )));
        }
        if let Some(r) = run_id.as_ref().and_then(Value::as_str)
            && r != self.run_id.as_str()
        {
            return Err(bad(format!(
                "xcom_pull from another run (`{r}`) is not supported; only this run's XComs are available"
            )));
        }
        if prior == Some(true) {
            return Err(bad(
                "xcom_pull(include_prior_dates=True) is not supported".into()
            ));
        }
        let key = match &key {
            Some(k) => k
                .as_str()
                .ok_or_else(|| bad(format!("xcom_pull: key must be a string, not {k}")))?
                .to_owned(),
            None => "return_value".to_owned(),
        };
        let (tasks, single_task): (Vec<String>, bool) = match &task_ids {
            None => (vec![self.task_id.to_string()], true),
            Some(v) if v.as_str().is_some() => (vec![v.to_string()], true),
            Some(v) => {
                let items = v.try_iter().map_err(|_| {
                    bad(format!(
                        "xcom_pull: task_ids must be a string or a list, not {v}"
                    ))
                })?;
                let ids = items
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad(format!("xcom_pull: task id {i} is not a string")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (ids, false)
            }
        };
        let default = default.unwrap_or(Value::from(()));

        let Some(map_indexes) = map_indexes else {
            // No map_indexes: every instance's value, in map-index order; a
            // single task with a single value returns that value.
            let mut out: Vec<Value> = Vec::new();
            for t in &tasks {
                let mut found = false;
                for ((task, _, k), v) in &self.xcoms {
                    if task.as_str() == t && *k == key {
                        out.push(xcom_json(v));
                        found = true;
                    }
                }
                if !found {
                    out.push(Value::from(()));
                }
            }
            if single_task && out.len() == 1 {
                return Ok(out.swap_remove(0));
            }
            return Ok(Value::from(out));
        };

        let (indexes, single_index): (Vec<Option<i32>>, bool) = if map_indexes.is_none() {
            (vec![None], true)
        } else if let Some(i) = map_indexes.as_i64() {
            (vec![Some(to_i32(i)?)], true)
        } else {
            let items = map_indexes.try_iter().map_err(|_| {
                bad(format!(
                    "xcom_pull: map_indexes must be an int or a list, not {map_indexes}"
                ))
            })?;
            let list = items
                .map(|i| {
                    i.as_i64()
                        .ok_or_else(|| bad(format!("xcom_pull: map index {i} is not an integer")))
                        .and_then(to_i32)
                        .map(Some)
                })
                .collect::<Result<Vec<_>, _>>()?;
            (list, false)
        };
        let mut out = Vec::new();
        for t in &tasks {
            for mi in &indexes {
                let value = match mi {
                    Some(mi) => {
                        self.xcoms
                            .get(&(TaskId::new(t.as_str()), MapIndex(*mi), key.clone()))
                    }
                    // `map_indexes=None`: any instance (the lowest map index).
                    None => self
                        .xcoms
                        .iter()
                        .find(|((task, _, k), _)| task.as_str() == t && *k == key)
                        .map(|(_, v)| v),
                };
                out.push(value.map(xcom_json).unwrap_or_else(|| default.clone()));
            }
        }
        if single_task && single_index {
            return Ok(out.swap_remove(0));
        }
        Ok(Value::from(out))
    }
}

fn to_i32(i: i64) -> Result<i32, Error> {
    i32::try_from(i).map_err(|_| bad(format!("xcom_pull: map index {i} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_matches_python() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000123Z")
            .expect("t")
            .with_timezone(&Utc);
        assert_eq!(iso(at, 'T'), "2026-01-02T03:04:05.000123+00:00");
        assert_eq!(ds_add("2026-01-31", 1).expect("ok"), "2026-02-01");
        assert_eq!(ds_add("2026-03-01", -1).expect("ok"), "2026-02-28");
        assert_eq!(
            ds_format("2026-01-02", "%Y-%m-%d", "%d/%m/%Y").expect("ok"),
            "02/01/2026"
        );
    }
}
