//! The one error type of the executor boundary.

use crate::attempt::AttemptKey;
use std::path::PathBuf;

/// Why an executor refused or failed an operation. For `start`, every
/// variant means that no process was started and nothing was reserved.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The request can never fit this executor, however long it waits.
    #[error("attempt {key} {reason}; lower the task's request or run it on a bigger executor")]
    Unsatisfiable { key: AttemptKey, reason: String },

    /// The request fits, but not now: the slots it needs are taken.
    #[error("no free slot for attempt {key}: {reason}")]
    Busy { key: AttemptKey, reason: String },

    /// The same attempt is already running here: starting it again would run it twice.
    #[error("attempt {key} is already running on this executor")]
    AlreadyRunning { key: AttemptKey },

    /// A result file for this attempt exists: it already ran (adopt it instead).
    #[error("attempt {key} already has a result at {}; adopt it instead of starting it again", path.display())]
    AlreadyFinished { key: AttemptKey, path: PathBuf },

    #[error("invalid start request for attempt {key}: {reason}")]
    InvalidRequest { key: AttemptKey, reason: String },

    /// The supervisor process could not be spawned.
    #[error(
        "cannot start the supervisor `{program}` for attempt {key}: {source}; check LocalExecutorConfig::supervisor"
    )]
    Spawn {
        key: AttemptKey,
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A result file exists but cannot be read as an [`crate::AttemptResult`].
    #[error("result file {} is unreadable: {reason}", path.display())]
    BadResult { path: PathBuf, reason: String },

    /// The executor's configuration cannot work.
    #[error("invalid executor configuration: {reason}")]
    Config { reason: String },

    /// An attempt's claim file exists but cannot be read as a [`crate::Claim`].
    #[error("claim file {} is unreadable: {reason}", path.display())]
    BadClaim { path: PathBuf, reason: String },

    /// This executor does not implement the operation.
    #[error("the {executor} executor cannot {operation} (attempt {key})")]
    Unsupported {
        key: AttemptKey,
        executor: &'static str,
        operation: &'static str,
    },

    /// The handle belongs to another kind of executor.
    #[error("attempt {key} was started by the {found} executor, not by this {expected} executor")]
    WrongExecutor {
        key: AttemptKey,
        expected: &'static str,
        found: &'static str,
    },
}
