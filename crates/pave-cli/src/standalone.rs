//! `pave standalone`: the DAG processor, scheduler and local executor in one
//! process on `$PAVE_HOME`.

use crate::cli::StandaloneArgs;
use crate::home::Home;
use crate::processor::DagProcessor;
use anyhow::{Context, Result};
use pave_scheduler::TriggerRequest;
use std::process::ExitCode;
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
    let store = home.open_store().await?;
    let _lock = lock_home(&home)?;
    let dags_dir = home.dags_dir(args.dags.clone())?;
    println!("pave standalone: home {}", home.root.display());
    println!("pave standalone: DAGs folder {}", dags_dir.display());
    println!(
        "pave standalone: the web UI and REST API are not part of this build yet (port {} stays free)",
        args.port
    );

    let mut processor = DagProcessor::with_python(crate::services::python_parser(&home));
    let report = processor.sync(store.as_ref(), &dags_dir).await?;
    println!("pave standalone: loaded DAGs: {}", report.dags.join(", "));
    for (file, err) in &report.errors {
        eprintln!("pave standalone: import error in {file}:\n{err}");
    }

    let parallelism = usize::try_from(args.parallelism).unwrap_or(32);
    let mut scheduler =
        crate::services::scheduler(store.clone(), &home, &home.root, parallelism, true).await?;
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
        "pave standalone: scheduling (Ctrl-C to stop; running tasks carry on and are adopted on restart)"
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
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
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
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            r = scheduler.wait() => r?,
            _ = &mut stop => {
                println!("pave standalone: stopping; {} running attempt(s) keep running", scheduler.inflight_count());
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}
