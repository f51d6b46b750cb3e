//! Preparing one attempt for an executor: resolving its arguments (XComs,
//! mapped values), rendering its templates, and building the request.

use crate::config::{PythonTasks, SchedulerConfig};
use crate::paths;
use crate::runs::iso;
use chrono::{DateTime, Utc};
use pave_core::mapping;
use pave_core::model::{Arg, Dag, Task, TaskKind};
use pave_core::run::XcomMap;
use pave_core::template::{self, TemplateContext};
use pave_core::{DagId, RunId};
use pave_core::{MapIndex, Resources, TaskId, TryNumber};
use pave_executor::{AttemptKey, AttemptResult, CommandLine, Exit, StartRequest};
use pave_store::{RunRecord, TiKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// An attempt ready to start, or why it cannot start.
#[derive(Debug)]
pub enum Prepared {
    Ready(Box<StartRequest>),
    Failed {
        key: AttemptKey,
        log_path: PathBuf,
        error: String,
    },
}

impl Prepared {
    pub fn log_path(&self) -> &Path {
        match self {
            Prepared::Ready(r) => &r.log_path,
            Prepared::Failed { log_path, .. } => log_path,
        }
    }
}

/// What a task asks of the executor: its resources, less its GPUs when the
/// executor has none and GPU work falls back to CPU.
pub fn effective_resources(requested: &Resources, cpu_only: bool) -> Resources {
    let mut r = requested.clone();
    if cpu_only {
        r.gpu = 0;
    }
    r
}

/// Tasks whose XComs the given task reads through mapping.
pub fn xcom_sources(task: &Task) -> Vec<TaskId> {
    mapping::xcom_sources(task).cloned().collect()
}

/// Whether preparing the task needs the run's XComs.
pub fn needs_xcoms(task: &Task) -> bool {
    let templates_pull = match &task.kind {
        TaskKind::Command { command, .. } => command.contains("xcom_pull"),
        _ => false,
    } || task.env.values().any(|v| v.contains("xcom_pull"));
    templates_pull
        || !xcom_sources(task).is_empty()
        || task.args.values().any(|a| matches!(a, Arg::Xcom(_)))
}

/// Everything one attempt is prepared from.
pub struct AttemptInput<'a> {
    pub dag: &'a Dag,
    pub task: &'a Task,
    pub run: &'a RunRecord,
    pub ti: &'a TiKey,
    /// The try being prepared (1 for the first).
    pub try_number: u32,
    /// The run's XComs the task reads (mapping sources, XCom arguments).
    pub xcoms: &'a XcomMap,
    /// The executor has no GPU: GPU requests run on CPU.
    pub cpu_only: bool,
}

/// Builds the start request of one attempt.
pub fn prepare(cfg: &SchedulerConfig, input: AttemptInput<'_>) -> Prepared {
    let AttemptInput {
        dag,
        task,
        run,
        ti,
        try_number,
        xcoms,
        cpu_only,
    } = input;
    let key = AttemptKey {
        dag_id: dag.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: task.task_id.clone(),
        map_index: ti.map_index,
        try_number: TryNumber(try_number),
    };
    let log_path = paths::log_path(
        &cfg.logs_dir,
        &key.dag_id,
        &key.run_id,
        &key.task_id,
        key.map_index,
        try_number,
    );
    let result_path = paths::result_path(
        &cfg.logs_dir,
        &key.dag_id,
        &key.run_id,
        &key.task_id,
        key.map_index,
        try_number,
    );
    match build(cfg, dag, task, run, ti, try_number, xcoms, &key) {
        Ok((command, cwd, mut env)) => Prepared::Ready(Box::new(StartRequest {
            resources: {
                if cpu_only && task.resources.gpu > 0 {
                    write_log_line(
                        &log_path,
                        &format!(
                            "this machine has no GPU: the task asked for {} GPU(s) and runs on CPU",
                            task.resources.gpu
                        ),
                    );
                    env.insert("PAVE_GPU_FALLBACK".into(), "cpu".into());
                }
                effective_resources(&task.resources, cpu_only)
            },
            key,
            command,
            env,
            cwd,
            execution_timeout: task.execution_timeout,
            log_path,
            result_path,
            placement: task.placement.clone(),
        })),
        Err(error) => Prepared::Failed {
            key,
            log_path,
            error,
        },
    }
}

type Built = (CommandLine, Option<PathBuf>, BTreeMap<String, String>);

#[allow(clippy::too_many_arguments)]
fn build(
    cfg: &SchedulerConfig,
    dag: &Dag,
    task: &Task,
    run: &RunRecord,
    ti: &TiKey,
    try_number: u32,
    xcoms: &XcomMap,
    key: &AttemptKey,
) -> Result<Built, String> {
    let (command, cwd) = match &task.kind {
        TaskKind::Command { command, cwd, .. } => (command, cwd),
        TaskKind::Python { .. } => {
            return python_command(cfg, dag, task, run, key, try_number, xcoms);
        }
        TaskKind::Empty => return Err("empty tasks are not sent to executors".into()),
    };
    let ctx = context(dag, task, run, ti.map_index, try_number, xcoms)?;
    let script = template::render(command, &ctx)
        .map_err(|e| format!("task `{}`, field `command`: {e}", task.task_id))?;
    let cwd = cwd
        .as_ref()
        .map(|c| template::render(c, &ctx).map(PathBuf::from))
        .transpose()
        .map_err(|e| format!("task `{}`, field `cwd`: {e}", task.task_id))?;
    let mut env = cfg.task_env.clone();
    for (k, v) in &task.env {
        let value = template::render(v, &ctx)
            .map_err(|e| format!("task `{}`, field `env.{k}`: {e}", task.task_id))?;
        env.insert(k.clone(), value);
    }
    insert_context_vars(&mut env, dag, task, run, key.map_index, try_number);
    Ok((CommandLine::Shell { script }, cwd, env))
}

/// A Python task: `python -m pave.runtime`, which fetches its arguments
/// from the task execution API with a token scoped to this attempt. With
/// `PAVE_ZYGOTE_DIR` set, the supervisor runs it as a child of a
/// pre-forked interpreter that has imported the DAG file already, and falls
/// back to this command line whenever that interpreter cannot be used
/// (docs/python-runtime.md).
fn python_command(
    cfg: &SchedulerConfig,
    dag: &Dag,
    task: &Task,
    run: &RunRecord,
    key: &AttemptKey,
    try_number: u32,
    xcoms: &XcomMap,
) -> Result<Built, String> {
    let Some(py) = &cfg.python else {
        return Err(format!(
            "task `{}` is a Python task, but this scheduler runs without the Python runtime \
             (no task execution API); run it with `pave standalone` or `pave dags test`",
            task.task_id
        ));
    };
    let Some(file) = &dag.fileloc else {
        return Err(format!(
            "task `{}` is a Python task, but DAG `{}` does not say which file defines it (fileloc)",
            task.task_id, dag.dag_id
        ));
    };
    // Mapped arguments are resolved here too, so a bad mapping fails the
    // attempt before a process starts.
    let ctx = context(dag, task, run, key.map_index, try_number, xcoms)?;
    let mut own = BTreeMap::new();
    for (k, v) in &task.env {
        let value = template::render(v, &ctx)
            .map_err(|e| format!("task `{}`, field `env.{k}`: {e}", task.task_id))?;
        own.insert(k.clone(), value);
    }
    let mut env = python_env(cfg, py, file, own);
    env.insert("PAVE_TASK_TOKEN".into(), (py.issue_token)(run.key.0, key));
    insert_context_vars(&mut env, dag, task, run, key.map_index, try_number);
    // The context, so that the task need not ask the API for it. The
    // run's XComs are at hand only when the task reads some (mapping
    // sources, XCom arguments): then they are all here.
    if let Ok(json) = ti_context(dag, task, run, ctx, xcoms)
        .and_then(|c| serde_json::to_string(&c).map_err(|e| e.to_string()))
        && json.len() <= CONTEXT_ENV_MAX
    {
        env.insert(CONTEXT_ENV.into(), json);
    }
    Ok((
        CommandLine::Argv {
            argv: python_argv(py),
        },
        None,
        env,
    ))
}

/// The command line of every Python attempt: `PYTHON -m pave.runtime`.
pub fn python_argv(py: &PythonTasks) -> Vec<String> {
    vec![py.python.clone(), "-m".into(), "pave.runtime".into()]
}

/// The environment the scheduler gives a Python attempt of the DAG file
/// `file`, less its token and identity (`PAVE_TASK_TOKEN`, `PAVE_DAG_ID`,
/// ...): `cfg.task_env`, the task's own `env` (`task_env`, rendered), then
/// the SDK's path, the API's URL, the DAG file and the zygotes' folder.
/// `pave dags test` starts the DAG file's zygote from it before the run,
/// so it must be exactly what each attempt gets (docs/python-runtime.md).
pub fn python_env(
    cfg: &SchedulerConfig,
    py: &PythonTasks,
    file: &str,
    task_env: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = cfg.task_env.clone();
    env.extend(task_env);
    let python_path = match std::env::var("PYTHONPATH") {
        Ok(existing) if !existing.is_empty() => format!("{}:{existing}", py.sdk_path.display()),
        _ => py.sdk_path.display().to_string(),
    };
    env.insert("PYTHONPATH".into(), python_path);
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    env.insert("PAVE_API_URL".into(), py.api_url.clone());
    env.insert("PAVE_DAG_FILE".into(), file.to_owned());
    if let Some(dir) = &py.zygote_dir {
        env.insert(
            pave_executor::ZYGOTE_DIR_ENV.into(),
            dir.display().to_string(),
        );
    }
    env
}

/// The attempt's identity in the environment, as PAVE_* and Airflow's
/// AIRFLOW_CTX_* variables.
fn insert_context_vars(
    env: &mut BTreeMap<String, String>,
    dag: &Dag,
    task: &Task,
    run: &RunRecord,
    map_index: MapIndex,
    try_number: u32,
) {
    let context_vars = [
        ("DAG_ID", dag.dag_id.to_string()),
        ("TASK_ID", task.task_id.to_string()),
        ("RUN_ID", run.run_id.to_string()),
        ("TRY_NUMBER", try_number.to_string()),
        ("MAP_INDEX", map_index.0.to_string()),
        (
            "LOGICAL_DATE",
            run.logical_date.map(iso).unwrap_or_default(),
        ),
    ];
    for (name, value) in context_vars {
        env.insert(format!("PAVE_{name}"), value.clone());
        // What Airflow sets for BashOperator, so scripts written for it work.
        if name != "MAP_INDEX" {
            env.insert(format!("AIRFLOW_CTX_{name}"), value);
        }
    }
}

/// The environment variable that carries a Python attempt's context
/// ([`TiContext`] as JSON), so that its task need not ask the execution API
/// for it (`GET /ti/context` answers the same). Left out when larger than
/// [`CONTEXT_ENV_MAX`].
pub const CONTEXT_ENV: &str = "PAVE_TASK_CONTEXT";

/// Largest context sent in [`CONTEXT_ENV`] (an environment string is
/// limited to 128 KiB when a fresh interpreter is exec'd).
pub const CONTEXT_ENV_MAX: usize = 16 * 1024;

/// What a Python attempt knows of its run and itself: the body of the
/// execution API's `GET /ti/context`, and [`CONTEXT_ENV`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TiContext {
    pub dag_id: DagId,
    pub run_id: RunId,
    pub task_id: TaskId,
    pub map_index: MapIndex,
    pub try_number: TryNumber,
    /// RFC 3339 (`2026-01-01T00:00:00+00:00`), or null for a run without one.
    pub logical_date: Option<String>,
    pub data_interval_start: Option<String>,
    pub data_interval_end: Option<String>,
    /// From the UTC logical date, as in templates; null without one.
    pub ds: Option<String>,
    pub ds_nodash: Option<String>,
    pub ts: Option<String>,
    pub run_after: String,
    /// The DAG's params with the run's conf applied.
    pub params: BTreeMap<String, Value>,
    /// The run's conf, as triggered.
    pub conf: Value,
    /// This map index's values of the task's `expand`/`expand_kwargs`
    /// arguments (empty for an unmapped task).
    pub mapped_args: BTreeMap<String, Value>,
}

/// The [`TiContext`] of an attempt whose template context is `ctx` (see
/// [`context`]; `xcoms` hold the task's mapping sources).
pub fn ti_context(
    dag: &Dag,
    task: &Task,
    run: &RunRecord,
    ctx: TemplateContext,
    xcoms: &XcomMap,
) -> Result<TiContext, String> {
    let is_mapped = |id: &TaskId| dag.task(id.as_str()).is_some_and(|t| t.mapping.is_some());
    let mapped_args = if ctx.map_index.is_unmapped() {
        BTreeMap::new()
    } else {
        mapping::instance_args(task, ctx.map_index, xcoms, &is_mapped)
            .map_err(|e| format!("cannot resolve the mapped arguments: {e}"))?
    };
    let (ds, ds_nodash, ts) = match date_strings(&ctx)? {
        Some((ds, ds_nodash, ts)) => (Some(ds), Some(ds_nodash), Some(ts)),
        None => (None, None, None),
    };
    Ok(TiContext {
        dag_id: ctx.dag_id,
        run_id: ctx.run_id,
        task_id: ctx.task_id,
        map_index: ctx.map_index,
        try_number: TryNumber(ctx.try_number),
        logical_date: run.logical_date.map(iso),
        data_interval_start: run.data_interval.map(|d| iso(d.start)),
        data_interval_end: run.data_interval.map(|d| iso(d.end)),
        ds,
        ds_nodash,
        ts,
        run_after: iso(run.run_after),
        params: ctx.params,
        conf: Value::Object(ctx.conf),
        mapped_args,
    })
}

/// `ds`, `ds_nodash` and `ts`, rendered by pave-core's template code so that
/// they are exactly what a template sees; None without a logical date.
fn date_strings(ctx: &TemplateContext) -> Result<Option<(String, String, String)>, String> {
    if ctx.logical_date.is_none() {
        return Ok(None);
    }
    let mut dates =
        TemplateContext::new(ctx.dag_id.clone(), ctx.task_id.clone(), ctx.run_id.clone());
    dates.logical_date = ctx.logical_date;
    let text = template::render("{{ ds }}\n{{ ds_nodash }}\n{{ ts }}", &dates)
        .map_err(|e| format!("cannot format the logical date: {e}"))?;
    let mut lines = text.lines().map(str::to_owned);
    match (lines.next(), lines.next(), lines.next()) {
        (Some(ds), Some(ds_nodash), Some(ts)) => Ok(Some((ds, ds_nodash, ts))),
        _ => Err(format!("cannot format the logical date: got `{text}`")),
    }
}

/// The template context of one attempt.
pub fn context(
    dag: &Dag,
    task: &Task,
    run: &RunRecord,
    map_index: MapIndex,
    try_number: u32,
    xcoms: &XcomMap,
) -> Result<TemplateContext, String> {
    let mut ctx =
        TemplateContext::new(dag.dag_id.clone(), task.task_id.clone(), run.run_id.clone());
    ctx.map_index = map_index;
    ctx.try_number = try_number;
    ctx.logical_date = run.logical_date;
    ctx.data_interval = run
        .data_interval
        .map(|d| pave_core::schedule::DataInterval {
            start: d.start,
            end: d.end,
        });
    ctx.run_after = Some(run.run_after);
    if let Value::Object(conf) = &run.conf {
        ctx.conf = conf.clone();
    }
    // Params: declared defaults, overridden by the run's conf (Airflow's
    // `dag_run_conf_overrides_params`, on by default).
    for (name, p) in &dag.params {
        let v = ctx
            .conf
            .get(name)
            .cloned()
            .or_else(|| p.default.clone())
            .unwrap_or(Value::Null);
        ctx.params.insert(name.clone(), v);
    }
    ctx.args = resolve_args(dag, task, map_index, xcoms)?;
    ctx.xcoms = xcoms.clone();
    Ok(ctx)
}

/// The task's arguments: literals, upstream XComs, and this instance's mapped values.
pub fn resolve_args(
    dag: &Dag,
    task: &Task,
    map_index: MapIndex,
    xcoms: &XcomMap,
) -> Result<BTreeMap<String, Value>, String> {
    let is_mapped = |id: &TaskId| dag.task(id.as_str()).is_some_and(|t| t.mapping.is_some());
    let mut args = BTreeMap::new();
    for (name, arg) in &task.args {
        let v = match arg {
            Arg::Literal { value } => value.clone(),
            Arg::Xcom(r) if is_mapped(&r.task_id) => Value::Array(
                xcoms
                    .iter()
                    .filter(|((t, mi, k), _)| t == &r.task_id && k == &r.key && !mi.is_unmapped())
                    .map(|(_, v)| v.clone())
                    .collect(),
            ),
            Arg::Xcom(r) => xcoms
                .get(&(r.task_id.clone(), MapIndex::UNMAPPED, r.key.clone()))
                .cloned()
                .unwrap_or(Value::Null),
        };
        args.insert(name.clone(), v);
    }
    if task.mapping.is_some() && !map_index.is_unmapped() {
        let mapped = mapping::instance_args(task, map_index, xcoms, &is_mapped)
            .map_err(|e| e.to_string())?;
        args.extend(mapped);
    }
    Ok(args)
}

/// The log file of an attempt (to append scheduler-side notes to it).
pub fn log_of(cfg: &SchedulerConfig, key: &AttemptKey) -> PathBuf {
    paths::log_path(
        &cfg.logs_dir,
        &key.dag_id,
        &key.run_id,
        &key.task_id,
        key.map_index,
        key.try_number.0,
    )
}

/// Appends one line from pave itself to an attempt's log.
pub fn write_log_line(path: &Path, line: &str) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "[pave] {line}");
    }
}

/// The result of an attempt that never got to run its command.
pub fn not_started(now: DateTime<Utc>, error: String) -> AttemptResult {
    let mut result = AttemptResult::exited_at(now, 0, None);
    result.exit = Exit::NotRun;
    result.error = Some(error);
    result
}
