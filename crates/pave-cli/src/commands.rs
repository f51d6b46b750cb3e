//! `pave dags ...` and `pave tasks ...`.

use crate::cli::{DagsCommand, DagsFolder, TasksCommand, TestArgs};
use crate::home::Home;
use crate::output::{date, json_date, table};
use crate::processor::{self, DagProcessor};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use pave_core::{Dag, DagId, RunState, TaskState};
use pave_scheduler::dags::DagCache;
use pave_scheduler::{SchedulerError, TriggerRequest, runs};
use pave_store::{RunFilter, RunRecord, Store, StoreError, TiRecord};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::sync::Arc;

pub async fn dags(home: Home, cmd: DagsCommand) -> Result<ExitCode> {
    match cmd {
        DagsCommand::Test(args) => dags_test(&home, args).await,
        DagsCommand::ImportErrors { folder, json } => {
            let store = synced_store(&home, folder).await?;
            let errors = store.list_import_errors().await?;
            if json.json {
                let v: Vec<Value> = errors
                    .iter()
                    .map(|e| {
                        json!({"fileloc": e.fileloc, "timestamp": json_date(Some(e.timestamp)), "error": e.stacktrace})
                    })
                    .collect();
                println!("{}", Value::Array(v));
            } else if errors.is_empty() {
                println!("no import errors");
            } else {
                for e in errors {
                    println!(
                        "{} ({}):\n{}\n",
                        e.fileloc,
                        date(Some(e.timestamp)),
                        e.stacktrace
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::List { folder, json } => {
            let store = synced_store(&home, folder).await?;
            let mut rows = Vec::new();
            let mut out = Vec::new();
            for d in store.list_dags().await? {
                let dag = latest(store.as_ref(), &d.dag_id).await.ok();
                let schedule = dag.as_ref().map(schedule_text).unwrap_or_default();
                let tasks = dag.as_ref().map_or(0, |d| d.tasks.len());
                out.push(json!({
                    "dag_id": d.dag_id, "is_paused": d.is_paused, "fileloc": d.fileloc,
                    "schedule": schedule, "tasks": tasks,
                    "latest_version": d.latest_version.map(|v| v.0),
                }));
                rows.push(vec![
                    d.dag_id.to_string(),
                    schedule,
                    tasks.to_string(),
                    if d.is_paused {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                    d.fileloc.unwrap_or_default(),
                ]);
            }
            let errors = store.list_import_errors().await?;
            if json.json {
                let errs: Vec<Value> = errors
                    .iter()
                    .map(|e| json!({"fileloc": e.fileloc, "error": e.stacktrace}))
                    .collect();
                println!("{}", json!({"dags": out, "import_errors": errs}));
            } else {
                table(&["dag_id", "schedule", "tasks", "paused", "file"], &rows);
                for e in errors {
                    eprintln!("\nimport error in {}:\n{}", e.fileloc, e.stacktrace);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::Show {
            dag_id,
            folder,
            json,
        } => {
            let store = synced_store(&home, folder).await?;
            let dag = latest(store.as_ref(), &DagId::new(dag_id)).await?;
            if json.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&pave_scheduler::dags::encode(&dag))?
                );
            } else {
                println!("DAG {}  schedule: {}", dag.dag_id, schedule_text(&dag));
                if let Some(d) = &dag.description {
                    println!("{d}");
                }
                let rows: Vec<Vec<String>> = dag
                    .tasks
                    .iter()
                    .map(|t| {
                        vec![
                            t.task_id.to_string(),
                            kind_text(t),
                            t.trigger_rule.as_str().to_owned(),
                            t.retry.retries.to_string(),
                            t.upstream
                                .iter()
                                .map(|u| u.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        ]
                    })
                    .collect();
                table(
                    &["task_id", "kind", "trigger_rule", "retries", "upstream"],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::Trigger {
            dag_id,
            conf,
            run_id,
            logical_date,
            folder,
            json,
        } => {
            let store = synced_store(&home, folder).await?;
            let dag_id = DagId::new(dag_id);
            known_dag(store.as_ref(), &dag_id).await?;
            let req = TriggerRequest {
                run_id,
                logical_date: parse_date(logical_date.as_deref())?.or(Some(Utc::now())),
                conf: parse_conf(conf.as_deref())?,
            };
            let run = runs::trigger(
                store.as_ref(),
                &mut DagCache::default(),
                &dag_id,
                req,
                Utc::now(),
                &Default::default(),
            )
            .await
            .map_err(explain)?;
            if json.json {
                println!("{}", run_json(&run));
            } else {
                println!(
                    "created run {} of {} (queued); a running `pave standalone` on {} picks it up",
                    run.run_id,
                    run.dag_id,
                    home.root.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::Pause { dag_id, folder } => set_paused(&home, folder, dag_id, true).await,
        DagsCommand::Unpause { dag_id, folder } => set_paused(&home, folder, dag_id, false).await,
        DagsCommand::Runs {
            dag_id,
            state,
            limit,
            json,
        } => {
            let store = home.open_store().await?;
            let dag_id = DagId::new(dag_id);
            known_dag(store.as_ref(), &dag_id).await?;
            let states = match state {
                Some(s) => vec![s.parse::<RunState>().map_err(|_| {
                    anyhow::anyhow!(
                        "unknown run state `{s}`; use queued, running, success or failed"
                    )
                })?],
                None => Vec::new(),
            };
            let runs = store
                .list_runs(&RunFilter {
                    dag_id: Some(dag_id),
                    states,
                    limit: Some(limit),
                })
                .await?;
            if json.json {
                println!("{}", Value::Array(runs.iter().map(run_json).collect()));
            } else {
                let rows: Vec<Vec<String>> = runs
                    .iter()
                    .map(|r| {
                        vec![
                            r.run_id.to_string(),
                            r.state.to_string(),
                            r.run_type.to_string(),
                            date(r.logical_date),
                            date(r.start_date),
                            date(r.end_date),
                        ]
                    })
                    .collect();
                table(
                    &["run_id", "state", "type", "logical_date", "start", "end"],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn tasks(home: Home, cmd: TasksCommand) -> Result<ExitCode> {
    let store = home.open_store().await?;
    match cmd {
        TasksCommand::List {
            dag_id,
            run_id,
            tries,
            json,
        } => {
            let run = find_run(store.as_ref(), &dag_id, run_id.as_deref()).await?;
            let tis = store.run_tis(run.key).await?;
            let mut out = Vec::new();
            let mut rows = Vec::new();
            for ti in &tis {
                let history = if tries {
                    store.list_tries(&ti.key).await?
                } else {
                    Vec::new()
                };
                let mut v = ti_json(ti);
                if tries {
                    v["tries"] = Value::Array(
                        history
                            .iter()
                            .map(|t| {
                                json!({
                                    "try_number": t.try_number.0, "state": t.state,
                                    "start_date": json_date(t.start_date), "end_date": json_date(t.end_date),
                                    "exit_code": t.exit_code, "peak_rss_kb": t.peak_rss_kb,
                                    "reason": t.reason, "log_path": t.log_path,
                                })
                            })
                            .collect(),
                    );
                }
                out.push(v);
                rows.push(vec![
                    ti.key.task_id.to_string(),
                    ti.key.map_index.to_string(),
                    ti.state.to_string(),
                    ti.try_number.to_string(),
                    date(ti.start_date),
                    ti.duration
                        .map(|d| format!("{:.2}s", d.as_secs_f64()))
                        .unwrap_or_default(),
                    ti.reason.clone().unwrap_or_default(),
                ]);
                for t in &history {
                    rows.push(vec![
                        format!("  try {}", t.try_number),
                        String::new(),
                        t.state.to_string(),
                        t.exit_code.map(|c| format!("exit {c}")).unwrap_or_default(),
                        date(t.start_date),
                        t.peak_rss_kb
                            .map(|k| format!("{} KiB", k))
                            .unwrap_or_default(),
                        t.reason.clone().unwrap_or_default(),
                    ]);
                }
            }
            if json.json {
                println!(
                    "{}",
                    json!({"dag_id": run.dag_id, "run_id": run.run_id, "state": run.state, "task_instances": out})
                );
            } else {
                println!("run {} of {}: {}", run.run_id, run.dag_id, run.state);
                table(
                    &[
                        "task_id", "map", "state", "try", "start", "duration", "reason",
                    ],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Logs {
            dag_id,
            task_id,
            run_id,
            map_index,
            try_number,
        } => {
            let run = find_run(store.as_ref(), &dag_id, run_id.as_deref()).await?;
            let key =
                pave_store::TiKey::new(run.key, task_id.as_str(), pave_core::MapIndex(map_index));
            let ti = store.get_ti(&key).await.map_err(|e| match e {
                StoreError::NotFound { .. } => anyhow::anyhow!(
                    "run {} of {} has no task instance `{task_id}` with map index {map_index}; \
                     see `pave tasks list {dag_id} --run-id {}`",
                    run.run_id,
                    run.dag_id,
                    run.run_id
                ),
                other => other.into(),
            })?;
            let n = try_number.unwrap_or(ti.try_number.0);
            if n == 0 || n > ti.try_number.0 {
                bail!(
                    "task `{task_id}` has run {} time(s); there is no try {n}",
                    ti.try_number.0
                );
            }
            let path = pave_scheduler::paths::log_path(
                &home.logs_dir(),
                &run.dag_id,
                &run.run_id,
                &key.task_id,
                key.map_index,
                n,
            );
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("no log for try {n} of `{task_id}` at {}", path.display())
            })?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Clear {
            dag_id,
            run_id,
            task_regex,
            downstream,
            upstream,
            only_failed,
        } => {
            let run = find_run(store.as_ref(), &dag_id, run_id.as_deref()).await?;
            let dag = pave_scheduler::dags::decode(
                &store.get_dag_version(run.dag_version_id).await?.spec,
                &format!("DAG `{dag_id}`"),
            )?;
            let re = match &task_regex {
                Some(r) => Some(
                    regex::Regex::new(r).with_context(|| format!("invalid --task-regex `{r}`"))?,
                ),
                None => None,
            };
            let selected: Vec<String> = dag
                .tasks
                .iter()
                .filter(|t| re.as_ref().is_none_or(|re| re.is_match(t.task_id.as_str())))
                .map(|t| t.task_id.to_string())
                .collect();
            if selected.is_empty() {
                bail!(
                    "no task of DAG `{dag_id}` matches `{}`",
                    task_regex.unwrap_or_default()
                );
            }
            // The same clear as the REST API's and the UI's.
            let request = pave_scheduler::actions::ClearRequest {
                task_ids: selected,
                include_downstream: downstream,
                include_upstream: upstream,
                only_failed,
                dry_run: false,
            };
            let cleared =
                pave_scheduler::actions::clear(store.as_ref(), &run, &dag, &request, Utc::now())
                    .await
                    .map_err(|e| match e {
                        SchedulerError::Store(StoreError::Conflict { what }) => {
                            anyhow::anyhow!("{what}; nothing was cleared")
                        }
                        other => anyhow::Error::new(other),
                    })?;
            let n = cleared.len();
            if n == 0 {
                println!("nothing to clear");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "cleared {n} task instance(s) of run {}; the run is queued again",
                run.run_id
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs one DAG run of a file to completion on a throwaway home (Airflow's `dags test`).
async fn dags_test(user_home: &Home, args: TestArgs) -> Result<ExitCode> {
    let TestArgs {
        file,
        dag_id,
        conf,
        logical_date,
        parallelism,
        executor,
        json,
    } = args;
    crate::kube_exec::configure(executor);
    let (file, as_json) = (file.as_path(), json.json);
    let fileloc = file.display().to_string();
    let tmp = tempfile::tempdir().context("cannot create a temporary folder")?;
    let home = Home {
        root: tmp.path().to_path_buf(),
    };
    share_sdk(&home);
    // The scheduler comes first: a Python file is parsed by the zygote its
    // tasks will use, started with the scheduler's environment for them.
    let store = home.open_store().await?;
    let parallelism = usize::try_from(parallelism.max(1)).unwrap_or(32);
    let mut scheduler =
        crate::services::scheduler(store.clone(), &home, &user_home.root, parallelism, false)
            .await?;
    let dags = if fileloc.ends_with(".py") {
        let parser = crate::services::python_parser(&home)
            .context("Python DAG files need the Python SDK, which this build lacks")?;
        let abs = std::fs::canonicalize(file)
            .with_context(|| format!("cannot read the DAG file {fileloc}"))?;
        processor::parse_python_in_zygote(&parser, scheduler.config(), &abs, &Default::default())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
    } else {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the DAG file {fileloc}"))?;
        pave_spec::load_file(&fileloc, &text, &Default::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let ids = dags
        .iter()
        .map(|d| d.dag_id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let dag = match (dag_id, dags.len()) {
        (Some(id), _) => dags
            .into_iter()
            .find(|d| d.dag_id.as_str() == id)
            .with_context(|| format!("{fileloc} defines no DAG `{id}`; it defines: {ids}"))?,
        (None, 1) => dags.into_iter().next().context("no DAG")?,
        (None, 0) => bail!("{fileloc} defines no DAG"),
        (None, _) => bail!(
            "{fileloc} defines {} DAGs ({}); pick one with --dag-id",
            dags.len(),
            dags.iter()
                .map(|d| d.dag_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let req = TriggerRequest {
        run_id: None,
        logical_date: parse_date(logical_date.as_deref())?.or(Some(Utc::now())),
        conf: parse_conf(conf.as_deref())?,
    };
    processor::store_dag(store.as_ref(), &dag, &fileloc).await?;
    let run = scheduler.trigger(&dag.dag_id, req).await.map_err(explain)?;
    let run = scheduler.run_to_completion(run.key).await?;
    let tis = store.run_tis(run.key).await?;
    if as_json {
        let out = json!({
            "dag_id": run.dag_id,
            "run_id": run.run_id,
            "state": run.state,
            "task_instances": tis.iter().map(|t| json!({
                "task_id": t.key.task_id, "map_index": t.key.map_index.0, "state": state_json(t.state),
                "try_number": t.try_number.0, "start_date": json_date(t.start_date), "end_date": json_date(t.end_date),
            })).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        // Like Airflow's `dags test`, show what failed tasks printed: the
        // store and logs of this run are thrown away afterwards.
        for ti in &tis {
            if ti.state != TaskState::Failed {
                continue;
            }
            for t in 1..=ti.try_number.0 {
                let path = pave_scheduler::paths::log_path(
                    &home.logs_dir(),
                    &run.dag_id,
                    &run.run_id,
                    &ti.key.task_id,
                    ti.key.map_index,
                    t,
                );
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let label = if ti.key.map_index.is_unmapped() {
                        ti.key.task_id.to_string()
                    } else {
                        format!("{}[{}]", ti.key.task_id, ti.key.map_index)
                    };
                    eprintln!("----- log of {label}, try {t} -----");
                    eprint!("{text}");
                }
            }
        }
        for ti in &tis {
            if let Some(reason) = &ti.reason
                && matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed)
            {
                eprintln!("{} [{}]: {}", ti.key.task_id, ti.state, reason);
            }
        }
        let rows: Vec<Vec<String>> = tis
            .iter()
            .map(|t| {
                vec![
                    t.key.task_id.to_string(),
                    t.key.map_index.to_string(),
                    t.state.to_string(),
                    t.try_number.to_string(),
                    t.duration
                        .map(|d| format!("{:.3}s", d.as_secs_f64()))
                        .unwrap_or_default(),
                ]
            })
            .collect();
        table(&["task_id", "map_index", "state", "try", "duration"], &rows);
        println!("run {} of {}: {}", run.run_id, run.dag_id, run.state);
    }
    Ok(ExitCode::SUCCESS)
}

/// Points the throwaway home's `sdk` folder at the user's cache
/// (`$XDG_CACHE_HOME/pave/sdk`, else `~/.cache/pave/sdk`; `PAVE_HOME` is
/// left alone), so that the SDK is unpacked and compiled once
/// (`sdk::unpack`) instead of at every `pave dags test`. Without a cache
/// folder each run unpacks its own, as before.
fn share_sdk(home: &Home) {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")));
    let Some(shared) = cache.map(|c| c.join("pave").join("sdk")) else {
        return;
    };
    if std::fs::create_dir_all(&shared).is_ok()
        && let Ok(shared) = std::fs::canonicalize(&shared)
    {
        let _ = std::os::unix::fs::symlink(shared, home.root.join("sdk"));
    }
}

async fn synced_store(home: &Home, folder: DagsFolder) -> Result<Arc<dyn Store>> {
    let store = home.open_store().await?;
    let dir = home.dags_dir(folder.dags)?;
    DagProcessor::with_python(crate::services::python_parser(home))
        .with_cache(home.root.join("dag-parse-cache.json"))
        .sync(store.as_ref(), &dir)
        .await?;
    Ok(store)
}

async fn set_paused(
    home: &Home,
    folder: DagsFolder,
    dag_id: String,
    paused: bool,
) -> Result<ExitCode> {
    let store = synced_store(home, folder).await?;
    let id = DagId::new(dag_id);
    known_dag(store.as_ref(), &id).await?;
    store.set_dag_paused(&id, paused).await?;
    println!("DAG {id} is {}", if paused { "paused" } else { "unpaused" });
    Ok(ExitCode::SUCCESS)
}

async fn known_dag(store: &dyn Store, id: &DagId) -> Result<()> {
    match store.get_dag(id).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound { .. }) => {
            let known: Vec<String> = store
                .list_dags()
                .await?
                .into_iter()
                .map(|d| d.dag_id.to_string())
                .collect();
            bail!(
                "no DAG `{id}`; known DAGs: {}",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )
        }
        Err(e) => Err(e.into()),
    }
}

async fn latest(store: &dyn Store, id: &DagId) -> Result<Dag> {
    known_dag(store, id).await?;
    let rec = store.get_dag(id).await?;
    let version = rec
        .latest_version
        .with_context(|| format!("DAG `{id}` has no stored version"))?;
    let v = store.get_dag_version(version).await?;
    Ok(pave_scheduler::dags::decode(
        &v.spec,
        &format!("DAG `{id}`"),
    )?)
}

async fn find_run(store: &dyn Store, dag_id: &str, run_id: Option<&str>) -> Result<RunRecord> {
    let id = DagId::new(dag_id);
    known_dag(store, &id).await?;
    match run_id {
        Some(r) => store
            .find_run(&id, &pave_core::RunId::new(r))
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => {
                    anyhow::anyhow!(
                        "DAG `{dag_id}` has no run `{r}`; see `pave dags runs {dag_id}`"
                    )
                }
                other => other.into(),
            }),
        None => store
            .list_runs(&RunFilter {
                dag_id: Some(id),
                states: Vec::new(),
                limit: Some(1),
            })
            .await?
            .into_iter()
            .next()
            .with_context(|| {
                format!(
                    "DAG `{dag_id}` has no runs yet; trigger one with `pave dags trigger {dag_id}`"
                )
            }),
    }
}

fn parse_conf(conf: Option<&str>) -> Result<Value> {
    match conf {
        None => Ok(Value::Null),
        Some(text) => {
            let v: Value = serde_json::from_str(text).with_context(|| {
                format!(
                    "--conf is not valid JSON: `{text}`; pass an object such as '{{\"epochs\": 3}}'"
                )
            })?;
            if !v.is_object() {
                bail!("--conf must be a JSON object such as '{{\"epochs\": 3}}', got `{text}`");
            }
            Ok(v)
        }
    }
}

fn parse_date(text: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&Utc))
            .with_context(|| format!("invalid date `{t}`: use RFC 3339, e.g. 2026-01-31T00:00:00Z"))
    })
    .transpose()
}

fn explain(e: SchedulerError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn schedule_text(dag: &Dag) -> String {
    match &dag.schedule {
        pave_core::Schedule::None => "None".into(),
        pave_core::Schedule::Once => "@once".into(),
        pave_core::Schedule::Cron { expr } => expr.clone(),
        pave_core::Schedule::Interval { every } => format!("every {}s", every.as_secs()),
    }
}

fn kind_text(t: &pave_core::Task) -> String {
    let base = match &t.kind {
        pave_core::TaskKind::Empty => "empty",
        pave_core::TaskKind::Command { .. } => "command",
        pave_core::TaskKind::Python { .. } => "python",
    };
    let flow = match t.flow {
        pave_core::Flow::Normal => "",
        pave_core::Flow::Branch => " (branch)",
        pave_core::Flow::ShortCircuit { .. } => " (short-circuit)",
    };
    let mapped = if t.mapping.is_some() { " [mapped]" } else { "" };
    format!("{base}{flow}{mapped}")
}

fn run_json(r: &RunRecord) -> Value {
    json!({
        "dag_id": r.dag_id, "run_id": r.run_id, "state": r.state, "run_type": r.run_type.as_str(),
        "logical_date": json_date(r.logical_date), "start_date": json_date(r.start_date),
        "end_date": json_date(r.end_date), "conf": r.conf,
    })
}

fn ti_json(t: &TiRecord) -> Value {
    json!({
        "task_id": t.key.task_id, "map_index": t.key.map_index.0, "state": state_json(t.state),
        "try_number": t.try_number.0, "start_date": json_date(t.start_date),
        "end_date": json_date(t.end_date), "reason": t.reason,
    })
}

/// A task instance's state as Airflow's API shows it: `null` for "none".
fn state_json(state: TaskState) -> Value {
    match state {
        TaskState::NoStatus => Value::Null,
        other => json!(other),
    }
}
