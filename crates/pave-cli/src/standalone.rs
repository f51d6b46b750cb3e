//! `pave standalone`: the DAG processor, scheduler, local executor and the
//! REST API in one process on `$PAVE_HOME`.

use crate::cli::StandaloneArgs;
use crate::home::Home;
use crate::processor::DagProcessor;
use anyhow::{Context, Result};
use pave_rest::{RestConfig, RestState, SchedulerLink};
use pave_scheduler::{SystemClock, TriggerRequest};
use pave_store::{ApiStore, Store};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Holds `$PAVE_HOME/scheduler.lock` for the life of the process, so two
/// schedulers never share one home; a killed holder releases it at once.
fn lock_home(home: &Home) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let path = home.root.join("scheduler.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "another pave scheduler is running on {} (it holds {}); stop it first, or use another PAVE_HOME",
            home.root.display(),
            path.display()
        )
    })
}

pub async fn run(home: Home, args: StandaloneArgs) -> Result<ExitCode> {
    let api_store = home.open_api_store().await?;
    let store: Arc<dyn Store> = api_store.clone();
    let _lock = lock_home(&home)?;
    let dags_dir = home.dags_dir(args.dags.clone())?;
    println!("pave standalone: home {}", home.root.display());
    println!("pave standalone: DAGs folder {}", dags_dir.display());
    if let Some(password) = crate::accounts::first_admin(api_store.as_ref()).await? {
        println!("pave standalone: created user admin (role admin) with password: {password}");
        println!(
            "pave standalone: the password is shown only this once; change it with \
             `pave users set-password --username admin --password-stdin`"
        );
    }
    let link = SchedulerLink::default();
    let api_addr = serve_api(&home, &args, api_store, link.clone()).await?;
    println!("pave standalone: web UI at http://{api_addr}/ (see docs/ui.md)");
    println!("pave standalone: REST API at http://{api_addr}/api/v1 (see docs/rest-api.md)");

    // The scheduler comes first: a Python DAG file is parsed by the
    // pre-forked interpreter its tasks will use (docs/python-runtime.md), so
    // a run triggered after the parse does not wait for that to start.
    let parallelism = usize::try_from(args.parallelism).unwrap_or(32);
    let mut scheduler =
        crate::services::scheduler(store.clone(), &home, &home.root, parallelism, true).await?;
    let zygote_dir = scheduler
        .config()
        .python
        .as_ref()
        .and_then(|p| p.zygote_dir.clone());
    let mut processor = DagProcessor::with_python(crate::services::python_parser(&home))
        .with_zygotes(scheduler.config().clone());
    let report = processor.sync(store.as_ref(), &dags_dir).await?;
    println!("pave standalone: loaded DAGs: {}", report.dags.join(", "));
    for (file, err) in &report.errors {
        eprintln!("pave standalone: import error in {file}:\n{err}");
    }
    scheduler.reconcile().await?;
    if args.trigger_all {
        for dag in store.list_dags().await? {
            if dag.is_paused {
                continue;
            }
            // Like the UI's trigger form, a run triggered here gets `now` as
            // its logical date, so `{{ ds }}` and friends render.
            let req = TriggerRequest {
                logical_date: Some(chrono::Utc::now()),
                ..TriggerRequest::default()
            };
            let run = scheduler.trigger(&dag.dag_id, req).await?;
            println!(
                "pave standalone: triggered {} run {}",
                dag.dag_id, run.run_id
            );
        }
    }
    println!(
        "pave standalone: scheduling (Ctrl-C or SIGTERM to stop; running tasks carry on and are adopted on restart)"
    );

    // The DAG processor re-parses changed files in its own task, so a slow
    // or hanging DAG file never holds up scheduling.
    let processor_store = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            match processor.sync(processor_store.as_ref(), &dags_dir).await {
                Ok(report) => {
                    for id in &report.new_versions {
                        println!("pave standalone: DAG {id} changed: new version stored");
                    }
                    for (file, err) in &report.errors {
                        eprintln!("pave standalone: import error in {file}:\n{err}");
                    }
                }
                Err(e) => eprintln!("pave standalone: the DAG processor failed: {e:#}"),
            }
        }
    });
    let stop = stop_requested();
    tokio::pin!(stop);
    loop {
        link.beat(chrono::Utc::now());
        let report = scheduler.step().await?;
        for run in &report.finished_runs {
            if let Ok(r) = store.get_run(*run).await {
                println!(
                    "pave standalone: run {} of {} finished: {}",
                    r.run_id, r.dag_id, r.state
                );
            }
        }
        if args.exit_when_idle && scheduler.is_idle() {
            println!("pave standalone: no active runs left; exiting");
            stop_zygotes(zygote_dir.as_deref());
            stop_server(&home);
            return Ok(ExitCode::SUCCESS);
        }
        // Only the waiting is raced: handling the events it took must not be
        // dropped half way by a poke (they would be lost, their attempts
        // `running` for ever).
        let woke = tokio::select! {
            first = scheduler.next_wakeup() => Some(first),
            // A write through the REST API: look at the store now.
            _ = link.poked() => {
                scheduler.poke();
                None
            }
            _ = &mut stop => {
                println!("pave standalone: stopping; {} running attempt(s) keep running", scheduler.inflight_count());
                // Their `running` writes not made yet would otherwise wait
                // for the next start's reconciliation (from their claims).
                if let Err(e) = scheduler.write_starting().await {
                    eprintln!("pave standalone: could not record running attempts: {e}");
                }
                stop_zygotes(zygote_dir.as_deref());
                stop_server(&home);
                return Ok(ExitCode::SUCCESS);
            }
        };
        if let Some(first) = woke {
            scheduler.handle_wakeup(first).await?;
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what a service manager or
/// Kubernetes sends to stop a process).
async fn stop_requested() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A clean stop takes the pre-forked interpreters of this home's DAG files
/// with it: each stops accepting and exits once its running tasks (which
/// carry on, and are adopted on restart) have ended, instead of idling on
/// for a minute after pave is gone.
fn stop_zygotes(dir: Option<&std::path::Path>) {
    if let Some(dir) = dir {
        let n = pave_executor::stop_zygotes(dir);
        if n > 0 {
            println!("pave standalone: stopped {n} pre-forked Python interpreter(s)");
        }
    }
}

/// The same for the supervision server of command attempts.
fn stop_server(home: &Home) {
    if let Some(dir) = crate::services::server_dir(home) {
        pave_executor::stop_server(&dir);
    }
}

/// Binds the REST API's address (`--listen`, else 127.0.0.1:`--port`) and
/// serves it in the background; returns the address it got.
async fn serve_api(
    home: &Home,
    args: &StandaloneArgs,
    store: Arc<dyn ApiStore>,
    link: SchedulerLink,
) -> Result<SocketAddr> {
    let wanted: SocketAddr = match &args.listen {
        Some(text) => text.parse().with_context(|| {
            format!(
                "invalid --listen `{text}`: use HOST:PORT with an IP address, e.g. 127.0.0.1:8080"
            )
        })?,
        None => SocketAddr::from(([127, 0, 0, 1], args.port)),
    };
    let listener = tokio::net::TcpListener::bind(wanted).await.with_context(|| {
        format!("cannot listen on {wanted} for the REST API; pick another --port (0 picks a free one) or --listen")
    })?;
    let addr = listener.local_addr()?;
    let config = RestConfig {
        // Browsers send Secure cookies over HTTPS only, and reach loopback
        // over plain http; anywhere else pave is meant to sit behind HTTPS.
        secure_cookies: !addr.ip().is_loopback(),
        ..RestConfig::default()
    };
    let state = RestState::new(store, Arc::new(SystemClock), home.logs_dir(), link, config);
    let router = pave_rest::router(state.clone()).merge(pave_ui::ui_router(state));
    tokio::spawn(async move {
        if let Err(e) = pave_api::serve(listener, router, std::future::pending()).await {
            tracing::error!("the REST API stopped: {e}");
        }
    });
    Ok(addr)
}
