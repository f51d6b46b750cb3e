//! The records the store reads and writes: plain data in pave-core's types,
//! with no trace of how a backend lays them out.
//!
//! Timestamps are kept to the microsecond (both SQLite and PostgreSQL
//! backends round-trip exactly that precision).

use chrono::{DateTime, Utc};
use pave_core::run::FlowResult;
use pave_core::{DagId, MapIndex, RunId, RunState, Task, TaskId, TaskState, TryNumber};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The store's key of a DAG run (the `dag_run.id` column). Stable for the
/// life of the run; cheaper to pass around than `(DagId, RunId)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunKey(pub i64);

impl fmt::Display for RunKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dag run #{}", self.0)
    }
}

/// The id of a stored DAG version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DagVersionId(pub i64);

impl fmt::Display for DagVersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dag version #{}", self.0)
    }
}

/// The identity of one task instance: run, task and map index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TiKey {
    pub run: RunKey,
    pub task_id: TaskId,
    pub map_index: MapIndex,
}

impl TiKey {
    pub fn new(run: RunKey, task_id: impl Into<TaskId>, map_index: MapIndex) -> Self {
        TiKey {
            run,
            task_id: task_id.into(),
            map_index,
        }
    }
    /// The key of an unmapped task instance (map index -1).
    pub fn unmapped(run: RunKey, task_id: impl Into<TaskId>) -> Self {
        TiKey::new(run, task_id, MapIndex::UNMAPPED)
    }
}

impl fmt::Display for TiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task instance `{}` (map index {}) of {}",
            self.task_id, self.map_index, self.run
        )
    }
}

// ---------------------------------------------------------------- DAGs

/// A DAG as the store knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct DagRecord {
    pub dag_id: DagId,
    pub is_paused: bool,
    pub fileloc: Option<String>,
    pub latest_version: Option<DagVersionId>,
    pub last_parsed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One parse of a DAG, as the DAG processor hands it to `Store::upsert_dag`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedDag {
    pub dag_id: DagId,
    pub fileloc: Option<String>,
    /// The serialized DAG (pave-spec's wire form). The store hashes its
    /// compact JSON text to tell versions apart.
    pub spec: Value,
    pub parsed_at: DateTime<Utc>,
    /// Whether a DAG seen for the first time starts paused (Airflow's
    /// `dags_are_paused_at_creation`). Ignored for a known DAG.
    pub paused_at_creation: bool,
}

/// A stored, immutable version of a DAG's serialized form.
#[derive(Clone, Debug, PartialEq)]
pub struct DagVersionRecord {
    pub id: DagVersionId,
    pub dag_id: DagId,
    /// 1 for the first version of a DAG, then 2, 3, ...
    pub version_number: u32,
    /// Hex SHA-256 of the spec's compact JSON text.
    pub spec_hash: String,
    pub spec: Value,
    pub created_at: DateTime<Utc>,
}

/// What `Store::upsert_dag` did with the spec.
#[derive(Clone, Debug, PartialEq)]
pub struct UpsertedDag {
    /// The latest version: the new one, or the existing one when the spec is
    /// identical to it.
    pub version: DagVersionRecord,
    /// False when the spec was identical to the latest version (a no-op).
    pub is_new_version: bool,
}

// ---------------------------------------------------------------- runs

/// Why a DAG run exists (Airflow's `DagRunType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    Manual,
    Scheduled,
    Backfill,
}

impl RunType {
    pub const ALL: [RunType; 3] = [RunType::Manual, RunType::Scheduled, RunType::Backfill];

    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Manual => "manual",
            RunType::Scheduled => "scheduled",
            RunType::Backfill => "backfill",
        }
    }
}

impl fmt::Display for RunType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown run type `{s}`"))
    }
}

/// A data interval, start inclusive, end exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataInterval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A stored DAG run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub key: RunKey,
    pub dag_id: DagId,
    pub run_id: RunId,
    /// The DAG version the run was created with; it keeps it to the end.
    pub dag_version_id: DagVersionId,
    pub state: RunState,
    pub run_type: RunType,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval: Option<DataInterval>,
    pub run_after: DateTime<Utc>,
    pub conf: Value,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A run to create, with its initial task instances (`Change::CreateRun`).
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    pub dag_id: DagId,
    pub run_id: RunId,
    pub dag_version_id: DagVersionId,
    pub run_type: RunType,
    /// Usually `queued`; `queued_at` is set to the batch's `now`, and for
    /// `running` so is `start_date`.
    pub state: RunState,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval: Option<DataInterval>,
    pub run_after: DateTime<Utc>,
    pub conf: Value,
    /// One task instance per task, created with map index -1 and state `none`.
    pub tasks: Vec<NewTi>,
}

/// The per-task fields of a new task instance.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTi {
    pub task_id: TaskId,
    pub pool: String,
    pub pool_slots: u32,
    pub priority_weight: i64,
    /// Airflow's `max_tries`: the task's `retries`.
    pub max_tries: u32,
}

impl From<&Task> for NewTi {
    /// Takes the task's own priority weight; a caller that applies weight
    /// rules (downstream/upstream sums) overwrites `priority_weight`.
    fn from(task: &Task) -> Self {
        NewTi {
            task_id: task.task_id.clone(),
            pool: task.pool.clone(),
            pool_slots: task.pool_slots,
            priority_weight: task.priority_weight,
            max_tries: task.retry.retries,
        }
    }
}

/// Which runs `Store::list_runs` returns, newest (`run_after`) first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFilter {
    pub dag_id: Option<DagId>,
    /// Empty means every state.
    pub states: Vec<RunState>,
    pub limit: Option<u32>,
}

impl RunFilter {
    /// Queued and running runs of every DAG.
    pub fn active() -> Self {
        RunFilter {
            states: vec![RunState::Queued, RunState::Running],
            ..RunFilter::default()
        }
    }
    /// Every run of one DAG.
    pub fn dag(dag_id: impl Into<DagId>) -> Self {
        RunFilter {
            dag_id: Some(dag_id.into()),
            ..RunFilter::default()
        }
    }
}

// ---------------------------------------------------------------- task instances

/// A stored task instance.
#[derive(Clone, Debug, PartialEq)]
pub struct TiRecord {
    pub key: TiKey,
    pub dag_id: DagId,
    pub run_id: RunId,
    pub state: TaskState,
    /// Attempts started so far (0 before the first).
    pub try_number: TryNumber,
    pub max_tries: u32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// `end_date - start_date` when both are set.
    pub duration: Option<Duration>,
    pub pool: String,
    pub pool_slots: u32,
    pub priority_weight: i64,
    pub queued_at: Option<DateTime<Utc>>,
    /// Whatever the executor needs to find the attempt again after a restart
    /// (a pid and process start time, a pod name).
    pub executor_handle: Option<Value>,
    pub hostname: Option<String>,
    pub flow_result: Option<FlowResult>,
    /// Why the task instance ended, or why it waits.
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Running task instances per pool, DAG and task, for admission.
///
/// "Active" is `TaskState::is_active` (queued, running, restarting).
/// Deferred task instances count only towards pools that include them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub pools: BTreeMap<String, PoolUse>,
    /// Active task instances per DAG.
    pub dags: BTreeMap<DagId, u32>,
    /// Active task instances per task of a DAG (for `max_active_tis_per_dag`).
    pub tasks: BTreeMap<(DagId, TaskId), u32>,
}

/// Slots taken in one pool, by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUse {
    pub queued_slots: u64,
    pub running_slots: u64,
    pub deferred_slots: u64,
}

impl PoolUse {
    /// Slots occupied under the pool's `include_deferred` setting.
    pub fn occupied(&self, include_deferred: bool) -> u64 {
        self.queued_slots
            + self.running_slots
            + if include_deferred {
                self.deferred_slots
            } else {
                0
            }
    }
}

/// One attempt of a task instance (the `task_instance_try` history).
///
/// As input (`Change::RecordTry`) it is an upsert on `(ti, try_number)`:
/// `state` always replaces, and each `None` field keeps what is stored, so
/// the queue-time row can be completed when the attempt ends.
#[derive(Clone, Debug, PartialEq)]
pub struct TryRecord {
    pub ti: TiKey,
    pub try_number: TryNumber,
    pub state: TaskState,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub peak_rss_kb: Option<u64>,
    pub hostname: Option<String>,
    pub executor_handle: Option<Value>,
    pub reason: Option<String>,
    pub log_path: Option<String>,
}

impl TryRecord {
    /// A try with only its identity and state; fill in the rest by field.
    pub fn new(ti: TiKey, try_number: TryNumber, state: TaskState) -> Self {
        TryRecord {
            ti,
            try_number,
            state,
            start_date: None,
            end_date: None,
            exit_code: None,
            peak_rss_kb: None,
            hostname: None,
            executor_handle: None,
            reason: None,
            log_path: None,
        }
    }
}

// ---------------------------------------------------------------- XComs

/// A stored XCom value.
#[derive(Clone, Debug, PartialEq)]
pub struct XcomRecord {
    pub ti: TiKey,
    pub key: String,
    pub value: Value,
    /// Length of the value's JSON text in bytes (callers enforce the cap).
    pub size_bytes: u64,
    pub updated_at: DateTime<Utc>,
}

/// An XCom to store (`Change::PutXcom`); replaces any value under the same key.
#[derive(Clone, Debug, PartialEq)]
pub struct NewXcom {
    pub ti: TiKey,
    pub key: String,
    pub value: Value,
}

/// Which task instances' XComs `Store::list_xcoms` returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskSelection {
    All,
    Only(Vec<TaskId>),
}

// ---------------------------------------------------------------- pools, errors, jobs

/// A pool of slots (Airflow's pools).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRecord {
    pub name: String,
    pub slots: u32,
    pub description: Option<String>,
    /// Whether deferred task instances take slots of this pool.
    pub include_deferred: bool,
}

/// The error of the last failed parse of a DAG file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportErrorRecord {
    pub fileloc: String,
    pub timestamp: DateTime<Utc>,
    pub stacktrace: String,
}

/// The id of a scheduler job (its row in the `job` table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scheduler job #{}", self.0)
    }
}

/// The life of a scheduler job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Holds the lease (at most one job at a time).
    Running,
    /// Released the lease on a clean shutdown.
    Ended,
    /// Stopped heartbeating; its lease was taken over by a newer job.
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Ended => "ended",
            JobState::Dead => "dead",
        }
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [JobState::Running, JobState::Ended, JobState::Dead]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown job state `{s}`"))
    }
}

/// A scheduler job: who held (or holds) the scheduler lease, and its last sign of life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: JobId,
    pub state: JobState,
    pub hostname: String,
    pub pid: u32,
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
    pub latest_heartbeat: DateTime<Utc>,
}

/// A request for the single-scheduler lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRequest {
    pub hostname: String,
    pub pid: u32,
    pub now: DateTime<Utc>,
    /// A holder whose latest heartbeat is older than `now - stale_after` is
    /// considered dead and its lease is taken over.
    pub stale_after: Duration,
}

/// The lease granted by `Store::acquire_scheduler_lease`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub job: JobRecord,
    /// The holder this lease was taken from, if it died without releasing it:
    /// the new scheduler must reconcile that one's queued and running work.
    pub took_over: Option<JobRecord>,
}
