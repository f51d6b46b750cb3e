//! The command line: every `pave` subcommand and its flags.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "pave",
    version,
    about = "pave: ML pipelines with Airflow's semantics, one fast binary",
    propagate_version = true
)]
pub struct Cli {
    /// Where pave keeps its SQLite database, logs and DAGs.
    #[arg(long, global = true, env = "PAVE_HOME")]
    pub home: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the scheduler, the local executor and the REST API on $PAVE_HOME.
    Standalone(StandaloneArgs),
    /// Inspect, test, trigger and pause DAGs.
    #[command(subcommand)]
    Dags(DagsCommand),
    /// Inspect task instances, read their logs, clear them.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Database maintenance.
    #[command(subcommand)]
    Db(DbCommand),
    /// Users of the REST API and web UI.
    #[command(subcommand)]
    Users(crate::accounts::UsersCommand),
    /// API tokens for scripts.
    #[command(subcommand)]
    Tokens(crate::accounts::TokensCommand),
    /// Pools: slots shared by task instances (`default_pool` always exists).
    #[command(subcommand)]
    Pools(crate::pools::PoolsCommand),
    /// Print pave's version.
    Version(JsonFlag),
    /// Serve a simulated Kubernetes cluster (for the Kubernetes executor and kubectl).
    KubeSim(crate::kube_sim::KubeSimArgs),
    /// Internal: run one task attempt under supervision (used by the local executor).
    #[command(hide = true, trailing_var_arg = true)]
    Supervise {
        #[arg(allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct StandaloneArgs {
    /// Port for the UI and API on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address for the UI and API, e.g. 0.0.0.0:8080 (overrides --port).
    /// Off loopback, session cookies are marked Secure: serve it behind HTTPS.
    #[arg(long, env = "PAVE_LISTEN")]
    pub listen: Option<String>,
    /// Folder of DAG files (default: $PAVE_HOME/dags, seeded with the examples).
    #[arg(long, env = "PAVE_DAGS_FOLDER")]
    pub dags: Option<PathBuf>,
    /// Most task attempts running at once.
    #[arg(long, default_value_t = 32)]
    pub parallelism: u32,
    /// Trigger one run of every unpaused DAG at start (handy for a first look).
    #[arg(long)]
    pub trigger_all: bool,
    /// Exit once no run is active (with --trigger-all: run the examples once).
    #[arg(long)]
    pub exit_when_idle: bool,
    #[command(flatten)]
    pub executor: crate::kube_exec::ExecutorArgs,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DagsFolder {
    /// Folder of DAG files (default: $PAVE_HOME/dags).
    #[arg(long, env = "PAVE_DAGS_FOLDER")]
    pub dags: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum DagsCommand {
    /// List the DAGs in the DAGs folder.
    List {
        #[command(flatten)]
        folder: DagsFolder,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show one DAG: its tasks, dependencies and schedule.
    Show {
        dag_id: String,
        #[command(flatten)]
        folder: DagsFolder,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Run one DAG run of a DAG file to completion, in process, on a temporary store.
    Test(TestArgs),
    /// Show the errors of DAG files that could not be loaded.
    ImportErrors {
        #[command(flatten)]
        folder: DagsFolder,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Create a manual DAG run; a running `pave standalone` picks it up.
    Trigger {
        dag_id: String,
        /// The run's conf, a JSON object.
        #[arg(long)]
        conf: Option<String>,
        /// The run id (default: manual__<logical date>).
        #[arg(long)]
        run_id: Option<String>,
        /// Logical date (RFC 3339; default: now).
        #[arg(long)]
        logical_date: Option<String>,
        #[command(flatten)]
        folder: DagsFolder,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Pause a DAG: no new scheduled runs, running ones go on.
    Pause {
        dag_id: String,
        #[command(flatten)]
        folder: DagsFolder,
    },
    /// Unpause a DAG.
    Unpause {
        dag_id: String,
        #[command(flatten)]
        folder: DagsFolder,
    },
    /// List a DAG's runs, newest first.
    Runs {
        dag_id: String,
        /// Only runs in this state (queued, running, success, failed).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 25)]
        limit: u32,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// The DAG file (YAML, JSON spec or Python).
    pub file: PathBuf,
    /// Which DAG of the file (needed when it defines several).
    #[arg(long)]
    pub dag_id: Option<String>,
    /// The run's conf, a JSON object.
    #[arg(long)]
    pub conf: Option<String>,
    /// Logical date of the run (RFC 3339; default: now).
    #[arg(long)]
    pub logical_date: Option<String>,
    /// Most task attempts running at once.
    #[arg(long, default_value_t = 32)]
    pub parallelism: u32,
    #[command(flatten)]
    pub executor: crate::kube_exec::ExecutorArgs,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// List the task instances of a DAG run (default: the latest run).
    List {
        dag_id: String,
        /// The run id (default: the DAG's latest run).
        #[arg(long)]
        run_id: Option<String>,
        /// Show every try of every task instance.
        #[arg(long)]
        tries: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Print the log of one try of a task instance.
    Logs {
        dag_id: String,
        task_id: String,
        /// The run id (default: the DAG's latest run).
        #[arg(long)]
        run_id: Option<String>,
        #[arg(long, default_value_t = -1)]
        map_index: i32,
        /// The try (default: the latest).
        #[arg(long = "try")]
        try_number: Option<u32>,
    },
    /// Clear task instances so they run again.
    Clear {
        dag_id: String,
        /// The run id (default: the DAG's latest run).
        #[arg(long)]
        run_id: Option<String>,
        /// Only tasks whose id matches this regular expression (default: all).
        #[arg(long, short = 't')]
        task_regex: Option<String>,
        /// Also clear the downstream tasks of the matched ones.
        #[arg(long, short = 'd')]
        downstream: bool,
        /// Also clear the upstream tasks of the matched ones.
        #[arg(long, short = 'u')]
        upstream: bool,
        /// Only clear failed and upstream_failed task instances.
        #[arg(long)]
        only_failed: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Create or upgrade the database schema.
    Migrate,
}
