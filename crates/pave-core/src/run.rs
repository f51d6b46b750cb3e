//! One DAG run as the scheduler sees it, and what it decides to do with it.
//!
//! `decide(view, now)` is the heart of the scheduler: given the DAG, the
//! current task instances of one run and the XComs that mapping needs, it
//! returns the commands that move the run forward (schedule a task instance,
//! skip it, mark it upstream_failed, expand a mapped task, finish the run).
//! It is pure: the driver loads the view, applies the commands in one
//! transaction and only then talks to executors.

use crate::ids::{MapIndex, TaskId};
use crate::model::Dag;
use crate::state::{RunState, TaskState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A task instance as the decision sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TiView {
    pub task_id: TaskId,
    pub map_index: MapIndex,
    pub state: TaskState,
    /// Attempts started so far (Airflow 3's try_number; 0 before the first).
    pub try_number: u32,
    /// For `up_for_retry`: the earliest time the next attempt may start.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// For a finished branch or short-circuit task: what it decided.
    pub flow_result: Option<FlowResult>,
}

/// What a branch or short-circuit task decided when it finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FlowResult {
    /// Task ids (or group ids) the branch follows; may be empty (skip all).
    Branch { follow: Vec<String> },
    /// The truthiness of a short-circuit task's result.
    ShortCircuit { proceed: bool },
}

/// XCom values keyed by (task, map index, key), as far as the decision needs
/// them (the sources of mapped tasks).
pub type XcomMap = BTreeMap<(TaskId, MapIndex, String), Value>;

/// Everything `decide` looks at for one run.
#[derive(Clone, Debug)]
pub struct RunView<'a> {
    pub dag: &'a Dag,
    pub run_state: RunState,
    pub tis: &'a [TiView],
    pub xcoms: &'a XcomMap,
    /// When the run started (for dagrun_timeout).
    pub start_date: Option<DateTime<Utc>>,
    /// Largest allowed number of instances of one mapped task.
    pub max_map_length: usize,
}

/// A change `decide` asks the driver to make.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// The task instance's dependencies are met: move it to `scheduled`.
    Schedule {
        task_id: TaskId,
        map_index: MapIndex,
    },
    /// Move a task instance to a finished state without running it
    /// (skipped, upstream_failed, removed) or fail it (a bad mapping source,
    /// a run timeout); `reason` says why, for logs and the UI.
    SetState {
        task_id: TaskId,
        map_index: MapIndex,
        state: TaskState,
        reason: String,
    },
    /// Replace the unexpanded placeholder (map index -1) of a mapped task by
    /// `count` instances 0..count, each in state `none`. `count` is never 0:
    /// an empty expansion is a `SetState` to skipped of the placeholder.
    Expand { task_id: TaskId, count: usize },
    /// Every task instance is finished: the run ends in this state.
    FinishRun { state: RunState, reason: String },
}

/// How one attempt ended, as reported by an executor or the task runtime.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AttemptOutcome {
    Success,
    /// The task skipped itself (AirflowSkipException, a command's skip exit code).
    Skipped,
    /// The attempt failed; `retryable: false` is AirflowFailException.
    Failed {
        retryable: bool,
        reason: String,
    },
    /// The attempt was killed by something outside the task (node loss,
    /// preemption, eviction); retried without spending a retry.
    Disrupted {
        reason: String,
    },
}
