//! Settings of the scheduling driver.

use pave_core::schedule::SchedulePolicy;
use std::path::PathBuf;
use std::time::Duration;

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
