//! The DAG model: what a DAG and its tasks are, after parsing, defaults and
//! task-group dependencies have been applied. Wire forms (JSON spec, YAML,
//! what the Python SDK emits) live in `pave-spec` and convert into these.

use crate::ids::{DagId, TaskId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The name of the pool every task uses unless it names another (Airflow's).
pub const DEFAULT_POOL: &str = "default_pool";

/// A DAG after parsing and validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dag {
    pub dag_id: DagId,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub schedule: Schedule,
    /// IANA time zone name used for cron schedules and `ds` rendering (default "UTC").
    pub timezone: String,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
    pub params: BTreeMap<String, Param>,
    /// `None` means the installation default (Airflow: 16).
    pub max_active_runs: Option<u32>,
    /// `None` means the installation default (Airflow: 16).
    pub max_active_tasks: Option<u32>,
    pub dagrun_timeout: Option<Duration>,
    /// Tasks in the order they were declared; `TaskIdx` indexes this vector.
    pub tasks: Vec<Task>,
    /// Task groups, for display (the UI collapses them). Their dependencies have
    /// already been expanded into the member tasks' `upstream`.
    pub groups: Vec<TaskGroup>,
    /// Where the DAG was defined, for error messages and the UI.
    pub fileloc: Option<String>,
}

/// Index of a task in `Dag::tasks`.
pub type TaskIdx = usize;

impl Dag {
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.task_id.as_str() == id)
    }
    pub fn task_idx(&self, id: &str) -> Option<TaskIdx> {
        self.tasks.iter().position(|t| t.task_id.as_str() == id)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskGroup {
    /// Fully qualified group id (`outer.inner`).
    pub group_id: String,
    pub tooltip: Option<String>,
    /// The enclosing group, if any.
    pub parent: Option<String>,
}

/// When a DAG gets runs created for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Schedule {
    /// Manual triggers (and later, asset events) only. Airflow: `schedule=None`.
    None,
    /// Exactly one run, at start_date. Airflow: `@once`.
    Once,
    /// A 5-field cron expression (presets such as `@daily` are expanded to cron),
    /// evaluated in the DAG's time zone.
    Cron { expr: String },
    /// A fixed interval between data intervals (Airflow's DeltaDataIntervalTimetable).
    Interval { every: Duration },
}

/// A DAG-level parameter with its default and JSON-schema-ish constraints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub default: Option<Value>,
    /// JSON type name: "string", "integer", "number", "boolean", "array", "object", "null".
    #[serde(rename = "type")]
    pub type_: Option<Vec<String>>,
    pub description: Option<String>,
    #[serde(rename = "enum")]
    pub enum_: Option<Vec<Value>>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
}

/// A task after defaults have been applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Group-qualified id (`group.task`).
    pub task_id: TaskId,
    /// Direct upstream tasks (group dependencies already expanded).
    pub upstream: Vec<TaskId>,
    pub trigger_rule: TriggerRule,
    pub retry: RetryPolicy,
    pub execution_timeout: Option<Duration>,
    pub priority_weight: i64,
    pub weight_rule: WeightRule,
    pub pool: String,
    pub pool_slots: u32,
    pub max_active_tis_per_dag: Option<u32>,
    pub resources: Resources,
    pub env: BTreeMap<String, String>,
    pub kind: TaskKind,
    pub flow: Flow,
    /// Arguments the task receives (Python kwargs; `{{ args.NAME }}` in command templates).
    pub args: BTreeMap<String, Arg>,
    /// Dynamic task mapping, if the task is mapped.
    pub mapping: Option<Mapping>,
    pub role: TaskRole,
    /// The innermost group this task belongs to.
    pub group: Option<String>,
    /// Push the task's result as XCom `return_value`.
    pub do_xcom_push: bool,
    pub doc: Option<String>,
    /// Which executor runs it and, on Kubernetes, its image, spot policy
    /// and pod override.
    #[serde(default, skip_serializing_if = "Placement::is_default")]
    pub placement: Placement,
    /// The task's own `start_date`, as written. Runs whose logical date is
    /// before it (or before the DAG's, whichever is later) get no instance
    /// of the task: see [`crate::run_tasks`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<DateTime<Utc>>,
    /// The task's own `end_date`, as written. Runs whose logical date is
    /// after it (or after the DAG's, whichever is earlier) get no instance
    /// of the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<DateTime<Utc>>,
}

/// Where a task's attempts run, beyond the resources they ask for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Placement {
    /// The executor by name (`local`, `kubernetes`); `None` means the DAG's
    /// `default_args` or the installation default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// The container image (Kubernetes executor); `None` uses the
    /// executor's default image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Whether the task may run on spot (preemptible) capacity.
    #[serde(default)]
    pub spot: SpotPolicy,
    /// A partial Pod (`metadata`, `spec`) merged over the executor's pod
    /// template (containers merged by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_override: Option<Value>,
}

impl Placement {
    /// Nothing set: the installation's defaults apply.
    pub fn is_default(&self) -> bool {
        *self == Placement::default()
    }
}

/// Whether a task may run on spot capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpotPolicy {
    /// On-demand capacity only (the default).
    #[default]
    Never,
    /// Spot or on-demand, whichever has room.
    Allow,
    /// Spot when there is room there, else on-demand.
    Prefer,
}

impl SpotPolicy {
    /// Every policy, in the order docs list them.
    pub const ALL: [SpotPolicy; 3] = [SpotPolicy::Never, SpotPolicy::Allow, SpotPolicy::Prefer];

    /// The name used in DAG files.
    pub fn as_str(self) -> &'static str {
        match self {
            SpotPolicy::Never => "never",
            SpotPolicy::Allow => "allow",
            SpotPolicy::Prefer => "prefer",
        }
    }

    /// The policy named `s`, if any.
    pub fn parse(s: &str) -> Option<SpotPolicy> {
        SpotPolicy::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// What a task runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskKind {
    /// Does nothing and succeeds without being sent to an executor (Airflow's EmptyOperator).
    Empty,
    /// A shell command (run with `bash -c`); a Jinja template. Like Airflow's
    /// BashOperator: exit 0 is success, exit `skip_exit_code` (default 99) is
    /// skipped, anything else fails; the last line of stdout is the result.
    Command {
        command: String,
        cwd: Option<String>,
        /// How the last stdout line becomes the XCom result.
        output: OutputFormat,
        skip_exit_code: Option<i32>,
    },
    /// A Python callable in the DAG file, run by pave's task runtime (SDK issue).
    Python {
        /// Dotted name of the callable inside the DAG file module.
        callable: String,
    },
}

/// How a command task's last stdout line is turned into its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// The line as a JSON string (Airflow BashOperator's behaviour).
    #[default]
    Text,
    /// The line parsed as JSON; a line that is not JSON fails the task.
    Json,
}

/// How a task's result steers what runs after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Flow {
    #[default]
    Normal,
    /// The result names the task id(s) (or group ids) to follow; other direct
    /// downstream tasks are skipped (Airflow's BaseBranchOperator).
    Branch,
    /// A falsy result skips downstream tasks (Airflow's ShortCircuitOperator).
    /// With `ignore_downstream_trigger_rules` (Airflow's default) every task
    /// downstream is skipped; without it only direct downstream tasks are,
    /// and their trigger rules decide the rest.
    ShortCircuit {
        ignore_downstream_trigger_rules: bool,
    },
}

/// Airflow's trigger rules, all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    #[default]
    AllSuccess,
    AllFailed,
    AllDone,
    AllDoneMinOneSuccess,
    AllDoneSetupSuccess,
    AllSkipped,
    OneSuccess,
    OneFailed,
    OneDone,
    NoneFailed,
    NoneFailedMinOneSuccess,
    NoneSkipped,
    Always,
}

impl TriggerRule {
    pub const ALL: [TriggerRule; 13] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllFailed,
        TriggerRule::AllDone,
        TriggerRule::AllDoneMinOneSuccess,
        TriggerRule::AllDoneSetupSuccess,
        TriggerRule::AllSkipped,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::OneDone,
        TriggerRule::NoneFailed,
        TriggerRule::NoneFailedMinOneSuccess,
        TriggerRule::NoneSkipped,
        TriggerRule::Always,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllFailed => "all_failed",
            TriggerRule::AllDone => "all_done",
            TriggerRule::AllDoneMinOneSuccess => "all_done_min_one_success",
            TriggerRule::AllDoneSetupSuccess => "all_done_setup_success",
            TriggerRule::AllSkipped => "all_skipped",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::OneDone => "one_done",
            TriggerRule::NoneFailed => "none_failed",
            TriggerRule::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            TriggerRule::NoneSkipped => "none_skipped",
            TriggerRule::Always => "always",
        }
    }

    pub fn parse(s: &str) -> Option<TriggerRule> {
        TriggerRule::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Retry policy of a task (Airflow's retries / retry_delay /
/// retry_exponential_backoff / max_retry_delay).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub retries: u32,
    pub retry_delay: Duration,
    pub retry_exponential_backoff: bool,
    pub max_retry_delay: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            retry_delay: Duration::from_secs(300),
            retry_exponential_backoff: false,
            max_retry_delay: None,
        }
    }
}

/// Airflow's priority weight rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WeightRule {
    /// Own weight plus the weights of all downstream tasks (Airflow's default).
    #[default]
    Downstream,
    /// Own weight plus the weights of all upstream tasks.
    Upstream,
    /// Own weight only.
    Absolute,
}

/// What a task asks of its executor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Resources {
    /// CPU in millicores (1000 = one core). 0 means "no explicit request".
    pub cpu_millis: u64,
    /// Memory in bytes. 0 means "no explicit request".
    pub memory_bytes: u64,
    /// Whole GPUs.
    pub gpu: u32,
    /// The GPU product the task needs (the `nvidia.com/gpu.product` node
    /// label, e.g. `NVIDIA-H100-80GB-HBM3`), if it cares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<String>,
    /// One MIG slice of this profile (`1g.10gb`) instead of whole GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig: Option<String>,
}

/// A task argument: a literal JSON value or a reference to an upstream XCom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Arg {
    Literal { value: Value },
    Xcom(XcomRef),
}

/// A reference to an XCom of an upstream task (Airflow's XComArg).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XcomRef {
    pub task_id: TaskId,
    /// Defaults to `return_value`.
    pub key: String,
}

/// Dynamic task mapping: how many instances, and each one's arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Mapping {
    /// `.expand(a=[..], b=[..])`: one instance per element of the cartesian
    /// product, in Airflow's order (the last argument varies fastest).
    Expand { args: BTreeMap<String, MapSource> },
    /// `.expand_kwargs([...])`: one instance per dict in the list.
    ExpandKwargs { source: MapSource },
}

/// Where the values of a mapped argument come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MapSource {
    Literal {
        values: Vec<Value>,
    },
    /// The XCom of an upstream task; if that task is itself mapped, each of its
    /// instances contributes one element (in map-index order).
    Xcom(XcomRef),
}

/// Setup/teardown role of a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskRole {
    #[default]
    Normal,
    Setup,
    Teardown {
        /// The setups this teardown tears down (they are also upstream of it).
        setups: Vec<TaskId>,
        /// A failed teardown fails the run (Airflow's `on_failure_fail_dagrun`).
        on_failure_fail_dagrun: bool,
    },
}

impl TaskRole {
    pub fn is_setup(&self) -> bool {
        matches!(self, TaskRole::Setup)
    }
    pub fn is_teardown(&self) -> bool {
        matches!(self, TaskRole::Teardown { .. })
    }
}

impl Task {
    /// A task with Airflow's defaults, for tests and builders.
    pub fn new(task_id: impl Into<TaskId>, kind: TaskKind) -> Task {
        Task {
            task_id: task_id.into(),
            upstream: Vec::new(),
            trigger_rule: TriggerRule::AllSuccess,
            retry: RetryPolicy::default(),
            execution_timeout: None,
            priority_weight: 1,
            weight_rule: WeightRule::Downstream,
            pool: DEFAULT_POOL.to_owned(),
            pool_slots: 1,
            max_active_tis_per_dag: None,
            resources: Resources::default(),
            env: BTreeMap::new(),
            kind,
            flow: Flow::Normal,
            args: BTreeMap::new(),
            mapping: None,
            role: TaskRole::Normal,
            group: None,
            do_xcom_push: true,
            doc: None,
            placement: Placement::default(),
            start_date: None,
            end_date: None,
        }
    }
}

impl Dag {
    /// A DAG with Airflow's defaults and no tasks, for tests and builders.
    pub fn new(dag_id: impl Into<DagId>) -> Dag {
        Dag {
            dag_id: dag_id.into(),
            description: None,
            tags: Vec::new(),
            schedule: Schedule::None,
            timezone: "UTC".to_owned(),
            start_date: None,
            end_date: None,
            catchup: false,
            params: BTreeMap::new(),
            max_active_runs: None,
            max_active_tasks: None,
            dagrun_timeout: None,
            tasks: Vec::new(),
            groups: Vec::new(),
            fileloc: None,
        }
    }
}
