//! Wiring the long-running pieces together for `standalone` and `dags
//! test`: the local executor, the scheduler, and the task execution API
//! (on loopback, or `--execution-api-listen`) that Python tasks talk to.

use crate::home::Home;
use crate::processor::PythonParser;
use anyhow::{Context, Result};
use chrono::Utc;
use pave_api::{
    AttemptScope, EXECUTION_API_PREFIX, ExecutionLimits, ExecutionState, TokenSigner,
    execution_router,
};
use pave_executor::{LocalExecutor, LocalExecutorConfig};
use pave_scheduler::{PythonTasks, Scheduler, SchedulerConfig, SystemClock};
use pave_store::{RunKey, Store};
use std::sync::Arc;
use std::time::Duration;

/// The interpreter Python tasks and DAG files run with.
fn python() -> String {
    std::env::var("PAVE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Where the pre-forked Python interpreters of this home keep their
/// sockets, unless `PAVE_PYTHON_PREFORK=0` turns them off
/// (docs/python-runtime.md).
fn prefork_dir(home: &Home) -> Option<std::path::PathBuf> {
    let off = std::env::var(pave_executor::PREFORK_ENV).is_ok_and(|v| v.trim() == "0");
    (!off).then(|| home.root.join("zygote"))
}

/// The folder of the supervision server of this home's command attempts
/// (`PAVE_SUPERVISION_SERVER=0`: none, a supervisor process per attempt).
pub fn server_dir(home: &Home) -> Option<std::path::PathBuf> {
    let off = std::env::var(pave_executor::SERVER_ENV).is_ok_and(|v| v.trim() == "0");
    (!off).then(|| home.root.join("supervise"))
}

/// A positive whole number from the environment variable `name`, else
/// `default`; a value that is not one is named in a warning, not ignored
/// silently.
fn positive_env(name: &str, default: u64, unit: &str) -> u64 {
    let Ok(text) = std::env::var(name) else {
        return default;
    };
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => n,
        _ => {
            tracing::warn!(
                "{name}={text:?} is not a positive whole number of {unit}; using {default} (unset it or give e.g. {name}={default})"
            );
            default
        }
    }
}

/// How DAG files written in Python are parsed on this home: at most
/// `PAVE_DAG_PARSE_TIMEOUT` seconds (default 60) and
/// `PAVE_DAG_PARSE_MEMORY_MB` of address space (default 4096) per file.
pub fn python_parser(home: &Home) -> Option<PythonParser> {
    match crate::sdk::unpack(&home.root) {
        Ok(sdk_path) => Some(PythonParser {
            python: python(),
            sdk_path,
            timeout: Duration::from_secs(positive_env("PAVE_DAG_PARSE_TIMEOUT", 60, "seconds")),
            memory_kib: positive_env("PAVE_DAG_PARSE_MEMORY_MB", 4096, "MiB").saturating_mul(1024),
        }),
        Err(e) => {
            tracing::warn!("Python DAG files are disabled: {e:#}");
            None
        }
    }
}

/// A scheduler over `store` with a local executor, and the execution API
/// its Python tasks use, served in the background for the life of the process.
///
/// Tasks get `PAVE_HOME=task_home` (where they keep artifacts): the home
/// itself for `standalone`, the user's home for `dags test`, whose store is
/// throwaway but whose artifacts are not.
pub async fn scheduler(
    store: Arc<dyn Store>,
    home: &Home,
    task_home: &std::path::Path,
    parallelism: usize,
    create_scheduled_runs: bool,
) -> Result<Scheduler> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let kube_events = tx.clone();
    let executor = LocalExecutor::new(
        LocalExecutorConfig {
            parallelism,
            server_dir: server_dir(home),
            server_idle: Duration::from_secs(positive_env(
                pave_executor::SERVER_IDLE_ENV,
                pave_executor::DEFAULT_SERVER_IDLE.as_secs(),
                "seconds",
            )),
            ..LocalExecutorConfig::default()
        },
        tx,
    )
    .context("cannot start the local executor")?;
    let mut cfg = SchedulerConfig::new(home.logs_dir());
    cfg.create_scheduled_runs = create_scheduled_runs;
    cfg.task_env
        .insert("PAVE_HOME".into(), task_home.display().to_string());
    if let Some(cap) = std::env::var("PAVE_XCOM_MAX_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.xcom_max_bytes = cap;
    }
    let clock = Arc::new(SystemClock);
    match crate::sdk::unpack(&home.root) {
        Ok(sdk_path) => {
            // The key lives in the home, so attempts adopted after a
            // restart keep working tokens.
            let signer = TokenSigner::from_file_or_create(home.root.join("execution-api.key"))
                .context("cannot set up the task execution API key")?;
            let (listener, addr) = crate::kube_exec::bind_execution_api().await?;
            let issuer = signer.clone();
            cfg.python = Some(PythonTasks {
                python: python(),
                sdk_path,
                api_url: format!("http://{addr}{EXECUTION_API_PREFIX}"),
                zygote_dir: prefork_dir(home),
                issue_token: Arc::new(move |run: i64, key: &pave_executor::AttemptKey| {
                    let scope = AttemptScope {
                        dag_id: key.dag_id.clone(),
                        run_id: key.run_id.clone(),
                        run: RunKey(run),
                        task_id: key.task_id.clone(),
                        map_index: key.map_index,
                        try_number: key.try_number,
                    };
                    // The API also refuses a token once its attempt stops running.
                    issuer.issue(&scope, Utc::now() + chrono::Duration::days(7))
                }),
            });
            let state = ExecutionState::new(
                store.clone(),
                signer,
                clock.clone(),
                ExecutionLimits::from(&cfg),
            );
            let router = axum::Router::new().nest(EXECUTION_API_PREFIX, execution_router(state));
            tokio::spawn(async move {
                if let Err(e) = pave_api::serve(listener, router, std::future::pending()).await {
                    tracing::error!("the task execution API stopped: {e}");
                }
            });
        }
        Err(e) => tracing::warn!("Python tasks are disabled: {e:#}"),
    }
    let executor = crate::kube_exec::executor(Arc::new(executor), kube_events, parallelism).await?;
    Ok(Scheduler::new(store, executor, rx, clock, cfg))
}
