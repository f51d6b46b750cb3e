//! Wire types shared by several endpoints, with Airflow's field and state
//! names, and their conversions from store records (by hand, at the edge).

use chrono::{DateTime, Utc};
use pave_core::TaskState;
use pave_store::{RunRecord, TiRecord, TryRecord};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A DAG run (Airflow's `DAGRunResponse`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DagRun {
    pub dag_run_id: String,
    pub dag_id: String,
    /// `queued`, `running`, `success` or `failed`.
    pub state: String,
    /// `manual`, `scheduled` or `backfill`.
    pub run_type: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// The run's conf (a JSON object).
    #[schema(value_type = Object)]
    pub conf: Value,
    pub note: Option<String>,
    /// The store's id of the DAG version the run is pinned to.
    pub dag_version_id: i64,
}

impl From<&RunRecord> for DagRun {
    fn from(r: &RunRecord) -> Self {
        DagRun {
            dag_run_id: r.run_id.to_string(),
            dag_id: r.dag_id.to_string(),
            state: r.state.as_str().to_owned(),
            run_type: r.run_type.as_str().to_owned(),
            logical_date: r.logical_date,
            data_interval_start: r.data_interval.map(|d| d.start),
            data_interval_end: r.data_interval.map(|d| d.end),
            run_after: r.run_after,
            queued_at: r.queued_at,
            start_date: r.start_date,
            end_date: r.end_date,
            conf: r.conf.clone(),
            note: r.note.clone(),
            dag_version_id: r.dag_version_id.0,
        }
    }
}

/// A task instance (Airflow's `TaskInstanceResponse`, plus pave's `reason`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskInstance {
    pub dag_id: String,
    pub dag_run_id: String,
    pub task_id: String,
    /// -1 for a task that is not mapped.
    pub map_index: i32,
    /// Airflow's state names; `null` for a task instance with no state yet.
    pub state: Option<String>,
    /// Attempts started so far.
    pub try_number: u32,
    pub max_tries: u32,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// Seconds between start and end.
    pub duration: Option<f64>,
    pub queued_when: Option<DateTime<Utc>>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub pool: String,
    pub pool_slots: u32,
    pub priority_weight: i64,
    pub hostname: Option<String>,
    /// Why the task instance ended, or why it waits.
    pub reason: Option<String>,
}

/// A task state as Airflow's API shows it: `null` for no state.
pub fn task_state(state: TaskState) -> Option<String> {
    match state {
        TaskState::NoStatus => None,
        other => Some(other.as_str().to_owned()),
    }
}

impl From<&TiRecord> for TaskInstance {
    fn from(t: &TiRecord) -> Self {
        TaskInstance {
            dag_id: t.dag_id.to_string(),
            dag_run_id: t.run_id.to_string(),
            task_id: t.key.task_id.to_string(),
            map_index: t.key.map_index.0,
            state: task_state(t.state),
            try_number: t.try_number.0,
            max_tries: t.max_tries,
            start_date: t.start_date,
            end_date: t.end_date,
            duration: t.duration.map(|d| d.as_secs_f64()),
            queued_when: t.queued_at,
            next_retry_at: t.next_retry_at,
            pool: t.pool.clone(),
            pool_slots: t.pool_slots,
            priority_weight: t.priority_weight,
            hostname: t.hostname.clone(),
            reason: t.reason.clone(),
        }
    }
}

/// One attempt of a task instance.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TaskInstanceTry {
    pub task_id: String,
    pub map_index: i32,
    pub try_number: u32,
    pub state: Option<String>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    /// Peak resident memory of the attempt's process tree, in KiB.
    pub peak_rss_kb: Option<u64>,
    pub hostname: Option<String>,
    pub reason: Option<String>,
}

impl From<&TryRecord> for TaskInstanceTry {
    fn from(t: &TryRecord) -> Self {
        TaskInstanceTry {
            task_id: t.ti.task_id.to_string(),
            map_index: t.ti.map_index.0,
            try_number: t.try_number.0,
            state: task_state(t.state),
            start_date: t.start_date,
            end_date: t.end_date,
            exit_code: t.exit_code,
            peak_rss_kb: t.peak_rss_kb,
            hostname: t.hostname.clone(),
            reason: t.reason.clone(),
        }
    }
}

/// Parses a task state filter value: Airflow's names, with `none` or
/// `no_status` for a task instance with no state.
pub fn parse_task_state(text: &str) -> Option<TaskState> {
    match text {
        "no_status" | "null" => Some(TaskState::NoStatus),
        other => other.parse().ok(),
    }
}

/// Wraps a task state so `QueryArgs::parse_list` can parse it.
#[derive(Clone, Copy, Debug)]
pub struct StateArg(pub TaskState);

impl std::str::FromStr for StateArg {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_task_state(s).map(StateArg).ok_or(())
    }
}

/// The names a task state filter takes, for error messages.
pub fn task_state_names() -> String {
    TaskState::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
