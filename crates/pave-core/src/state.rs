//! Task-instance and DAG-run states, with Airflow's names.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A task instance's state. Names and meanings are Airflow's (`TaskInstanceState`
/// plus the "none" state of a task instance that has not been scheduled yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Airflow's `None`: created, dependencies not yet met or not yet evaluated.
    #[serde(rename = "none")]
    NoStatus,
    Scheduled,
    Queued,
    Running,
    Success,
    Failed,
    UpForRetry,
    UpForReschedule,
    UpstreamFailed,
    Skipped,
    Removed,
    Deferred,
    Restarting,
}

impl TaskState {
    pub const ALL: [TaskState; 13] = [
        TaskState::NoStatus,
        TaskState::Scheduled,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Success,
        TaskState::Failed,
        TaskState::UpForRetry,
        TaskState::UpForReschedule,
        TaskState::UpstreamFailed,
        TaskState::Skipped,
        TaskState::Removed,
        TaskState::Deferred,
        TaskState::Restarting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::NoStatus => "none",
            TaskState::Scheduled => "scheduled",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::UpForReschedule => "up_for_reschedule",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Skipped => "skipped",
            TaskState::Removed => "removed",
            TaskState::Deferred => "deferred",
            TaskState::Restarting => "restarting",
        }
    }

    /// Airflow's "finished" states: the task instance will not run again unless cleared.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success
                | TaskState::Failed
                | TaskState::Skipped
                | TaskState::UpstreamFailed
                | TaskState::Removed
        )
    }

    /// States in which an attempt occupies an executor slot.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TaskState::Queued | TaskState::Running | TaskState::Restarting
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a state name that Airflow does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// A DAG run's state, as in Airflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    Success,
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
        }
    }
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Success | RunState::Failed)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            RunState::Queued,
            RunState::Running,
            RunState::Success,
            RunState::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| UnknownState(s.to_owned()))
    }
}
