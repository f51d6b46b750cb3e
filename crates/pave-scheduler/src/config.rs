//! Settings of the scheduling driver.

use pave_core::schedule::SchedulePolicy;
use pave_executor::AttemptKey;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Issues the execution-API token of one attempt (run key, attempt).
pub type TokenIssuer = dyn Fn(i64, &AttemptKey) -> String + Send + Sync;

/// How Python tasks run: `PYTHON -m pave.runtime` with the SDK on its
/// path, talking to the task execution API (docs/execution-api.md), in a
/// child of a pre-forked interpreter when `zygote_dir` is set
/// (docs/python-runtime.md).
#[derive(Clone)]
pub struct PythonTasks {
    /// The interpreter (default `python3`).
    pub python: String,
    /// The folder holding the `pave` package, put first on PYTHONPATH.
    pub sdk_path: PathBuf,
    /// Base URL of the execution API, e.g. `http://127.0.0.1:4123/execution/v1`.
    pub api_url: String,
    pub issue_token: Arc<TokenIssuer>,
    /// Where the supervisors keep the pre-forked interpreters' sockets
    /// (`$PAVE_HOME/zygote`); `None` starts a fresh interpreter for every
    /// attempt (`PAVE_PYTHON_PREFORK=0`).
    pub zygote_dir: Option<PathBuf>,
}

impl std::fmt::Debug for PythonTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonTasks")
            .field("python", &self.python)
            .field("sdk_path", &self.sdk_path)
            .field("api_url", &self.api_url)
            .field("zygote_dir", &self.zygote_dir)
            .finish_non_exhaustive()
    }
}

/// How the driver behaves; `SchedulerConfig::new(logs_dir)` gives Airflow's defaults.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Root of per-try log and result files.
    pub logs_dir: PathBuf,
    /// Largest number of instances one mapped task may expand to (Airflow's
    /// `[core] max_map_length`, 1024).
    pub max_map_length: usize,
    /// Largest XCom value in bytes (default 64 KiB).
    pub xcom_max_bytes: usize,
    /// `max_active_runs` of a DAG that does not set it (Airflow: 16).
    pub default_max_active_runs: u32,
    /// `max_active_tasks` of a DAG that does not set it (Airflow: 16).
    pub default_max_active_tasks: u32,
    pub schedule_policy: SchedulePolicy,
    /// How often the driver looks at the store for changes made by other
    /// processes (runs triggered or tasks cleared from the CLI) and creates
    /// scheduled runs. Task completions never wait for it.
    pub poll_interval: Duration,
    /// Create runs from DAG schedules (off for `pave dags test`).
    pub create_scheduled_runs: bool,
    /// The host name recorded on task instances.
    pub hostname: String,
    /// How Python tasks run; `None` fails them with a clear message.
    pub python: Option<PythonTasks>,
    /// When the executor has no GPU at all, tasks that ask for GPUs run on
    /// CPU (their log says so) instead of failing: a pipeline written for a
    /// GPU fleet still runs on a laptop. An executor with some GPUs still
    /// fails requests larger than it has.
    pub gpu_fallback_to_cpu: bool,
    /// Environment every task gets (the task's own `env` wins), e.g.
    /// `PAVE_HOME`, under which tasks keep artifacts.
    pub task_env: std::collections::BTreeMap<String, String>,
    /// Most task instances queued and started per store transaction: a step
    /// that admits more does it in chunks of this size, so admitting 10,000
    /// at once does not hold 10,000 prepared attempts (and one huge batch)
    /// in memory. Executor completions are written in chunks of this size too.
    pub admit_chunk: usize,
    /// How long a started attempt's `running` write waits for the
    /// attempt's own end, which then carries it; once due, it goes with the
    /// next transaction the scheduler makes (other attempts' ends) or on
    /// its own. An attempt shorter than this goes from queued to its end
    /// in one write; meanwhile the store
    /// holds it `queued` with its try number and its claim names its
    /// supervisor, which is all a restart needs to adopt it. Zero writes it
    /// at the end of the step that started it, unless an event waits.
    pub running_write_delay: Duration,
}

impl SchedulerConfig {
    pub fn new(logs_dir: impl Into<PathBuf>) -> Self {
        SchedulerConfig {
            logs_dir: logs_dir.into(),
            max_map_length: 1024,
            xcom_max_bytes: 64 * 1024,
            default_max_active_runs: 16,
            default_max_active_tasks: 16,
            schedule_policy: SchedulePolicy::default(),
            poll_interval: Duration::from_millis(500),
            create_scheduled_runs: true,
            hostname: hostname(),
            python: None,
            gpu_fallback_to_cpu: true,
            task_env: Default::default(),
            admit_chunk: 256,
            running_write_delay: Duration::from_millis(200),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
