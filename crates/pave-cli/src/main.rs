//! `pave`: the scheduler, executors, DAG processor and CLI in one binary.

mod accounts;
mod cli;
mod commands;
mod home;
mod kube_exec;
mod kube_sim;
mod output;
mod pools;
mod processor;
mod sdk;
mod services;
mod standalone;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    // The task supervisor must start fast: no runtime, no logging set-up.
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some("supervise") {
        let code = pave_executor::supervise_cli(args.collect());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    restore_sigpipe();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAVE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let home = home::Home::resolve(cli.home)?;
    match cli.command {
        Command::Standalone(args) => {
            kube_exec::configure(args.executor.clone());
            standalone::run(home, args).await
        }
        Command::Dags(cmd) => commands::dags(home, cmd).await,
        Command::Tasks(cmd) => commands::tasks(home, cmd).await,
        Command::Users(cmd) => accounts::users(home, cmd).await,
        Command::Tokens(cmd) => accounts::tokens(home, cmd).await,
        Command::Pools(cmd) => pools::run(home, cmd).await,
        Command::Db(cli::DbCommand::Migrate) => {
            home.open_store().await?;
            println!("database {} is up to date", home.db_path().display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Version(flag) => {
            let version = env!("CARGO_PKG_VERSION");
            if flag.json {
                println!("{}", serde_json::json!({ "version": version }));
            } else {
                println!("pave {version}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::KubeSim(args) => kube_sim::run(args).await,
        // Handled in `main` before the runtime starts.
        Command::Supervise { .. } => Ok(ExitCode::FAILURE),
    }
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`pave ... | head`)
/// would panic; a command-line tool should just stop, as `cat` does.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called first thing in main, before any other thread exists;
    // SIG_DFL installs no Rust code as a handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
