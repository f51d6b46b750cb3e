//! Errors of the scheduling driver.

use pave_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("executor: {0}")]
    Executor(#[from] pave_executor::ExecutorError),
}
