//! The `Executor` trait: the narrow boundary between the scheduler, which
//! decides what runs, and whatever runs it (local processes, a fake, Pods).

use crate::attempt::{AdoptStatus, AttemptHandle, Capacity, ClaimQuery, ClaimStatus, StartRequest};
use crate::error::ExecutorError;
use async_trait::async_trait;

/// Runs task attempts. Completions arrive as [`crate::ExecutorEvent`]s on the
/// channel the executor was constructed with, exactly one per attempt that
/// `start` accepted or `adopt` reported as `Running`.
///
/// Used as `Arc<dyn Executor>`.
#[async_trait]
pub trait Executor: Send + Sync {
    /// A short name for logs and handles (`local`, `noop`).
    fn name(&self) -> &'static str;

    /// Totals the scheduler's admission works against. The executor also
    /// checks every `start` against them and never oversubscribes.
    fn capacity(&self) -> Capacity;

    /// Starts one attempt and returns as soon as its process exists.
    ///
    /// If this returns `Err`, no process was started and no slot is held; the
    /// scheduler may try again later ([`ExecutorError::Busy`]) or fail the
    /// attempt ([`ExecutorError::Unsatisfiable`], `InvalidRequest`).
    /// If it returns `Ok`, exactly one event will follow for the attempt, even
    /// when the command itself could not run (a missing cwd, a program that
    /// does not exist): that is reported in [`crate::AttemptResult::error`].
    async fn start(&self, req: StartRequest) -> Result<AttemptHandle, ExecutorError>;

    /// Kills the attempt's whole process tree: SIGTERM, then SIGKILL after the
    /// executor's grace period. Returns once the kill is under way; the
    /// attempt's event follows (a `Finished` with `cancelled: true`).
    /// Killing an attempt that already ended is `Ok` and does nothing.
    async fn kill(&self, handle: &AttemptHandle) -> Result<(), ExecutorError>;

    /// Looks for an attempt started before a restart (by this process or
    /// another one) from its stored handle. `Running`: the executor watches
    /// it from now on, holds its slots, and sends its event when it ends.
    /// `Finished` / `Lost`: the answer is the outcome, no event follows.
    /// If this returns `Err`, nothing is watched and nothing was killed.
    async fn adopt(&self, handle: &AttemptHandle) -> Result<AdoptStatus, ExecutorError>;

    /// Looks for an attempt whose handle was never stored (the scheduler
    /// recorded it as queued, started it, and stopped before recording the
    /// handle), from its identity and files alone:
    /// - its result exists: `Finished`, no event follows;
    /// - it was claimed by a supervisor: like [`Executor::adopt`] of the
    ///   handle built from the claim (`Running` with that handle, watched,
    ///   one event follows; or `Lost`);
    /// - nobody claimed it: the executor claims it itself and answers
    ///   `Fenced`; the attempt never ran and any supervisor started for it
    ///   later refuses to run it.
    ///
    /// Asking again gives the same answer (a fenced attempt stays `Fenced`).
    /// If this returns `Err`, nothing is watched and nothing was fenced.
    ///
    /// The default is for executors without claims: an `Unsupported` error.
    async fn adopt_claimed(&self, query: &ClaimQuery) -> Result<ClaimStatus, ExecutorError> {
        Err(ExecutorError::Unsupported {
            key: query.key.clone(),
            executor: self.name(),
            operation: "adopt_claimed",
        })
    }
}
