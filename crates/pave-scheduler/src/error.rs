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
    Executor(Box<pave_executor::ExecutorError>),
}

impl From<pave_executor::ExecutorError> for SchedulerError {
    fn from(e: pave_executor::ExecutorError) -> Self {
        SchedulerError::Executor(Box::new(e))
    }
}
