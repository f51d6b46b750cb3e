//! An executor that runs nothing: every attempt ends the moment it starts,
//! with an outcome chosen per attempt by a closure. For the control-plane
//! benchmark and for scheduler tests.

use crate::attempt::{
    AdoptStatus, AttemptHandle, AttemptKey, AttemptResult, Capacity, ClaimQuery, ClaimStatus,
    ExecutorEvent, ProcessRef, StartRequest,
};
use crate::error::ExecutorError;
use crate::executor::Executor;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// What a [`NoopExecutor`] reports for one attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum NoopOutcome {
    /// A `Finished` event with this result.
    Finished(AttemptResult),
    /// A `Lost` event with this reason.
    Lost(String),
}

type OutcomeFn = dyn Fn(&AttemptKey, DateTime<Utc>) -> NoopOutcome + Send + Sync;
type ClockFn = dyn Fn() -> DateTime<Utc> + Send + Sync;

/// Completes every attempt at once: `start` sends its event before returning
/// (the event waits in the channel until the scheduler reads it).
pub struct NoopExecutor {
    events: UnboundedSender<ExecutorEvent>,
    outcome: Arc<OutcomeFn>,
    clock: Arc<ClockFn>,
    capacity: Capacity,
}

impl NoopExecutor {
    /// Every attempt succeeds, with no output. Capacity is practically unlimited.
    pub fn new(events: UnboundedSender<ExecutorEvent>) -> NoopExecutor {
        NoopExecutor {
            events,
            outcome: Arc::new(|_, now| NoopOutcome::Finished(AttemptResult::success_at(now, None))),
            clock: Arc::new(Utc::now),
            capacity: Capacity {
                parallelism: usize::MAX,
                cpu_millis: u64::MAX,
                memory_bytes: u64::MAX,
                gpus: Vec::new(),
            },
        }
    }

    /// Decides each attempt's outcome (`now` is the executor's clock).
    pub fn with_outcome(
        mut self,
        outcome: impl Fn(&AttemptKey, DateTime<Utc>) -> NoopOutcome + Send + Sync + 'static,
    ) -> NoopExecutor {
        self.outcome = Arc::new(outcome);
        self
    }

    /// Replaces the wall clock used for timestamps (for deterministic tests).
    pub fn with_clock(
        mut self,
        clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static,
    ) -> NoopExecutor {
        self.clock = Arc::new(clock);
        self
    }

    /// Replaces the capacity reported to admission (nothing is enforced).
    pub fn with_capacity(mut self, capacity: Capacity) -> NoopExecutor {
        self.capacity = capacity;
        self
    }
}

#[async_trait]
impl Executor for NoopExecutor {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn capacity(&self) -> Capacity {
        self.capacity.clone()
    }

    async fn start(&self, req: StartRequest) -> Result<AttemptHandle, ExecutorError> {
        let now = (self.clock)();
        let event = match (self.outcome)(&req.key, now) {
            NoopOutcome::Finished(result) => ExecutorEvent::Finished {
                key: req.key.clone(),
                result,
            },
            NoopOutcome::Lost(reason) => ExecutorEvent::Lost {
                key: req.key.clone(),
                reason,
            },
        };
        let handle = AttemptHandle {
            key: req.key,
            started_at: now,
            resources: req.resources,
            gpu_ids: Vec::new(),
            log_path: req.log_path,
            result_path: req.result_path,
            process: ProcessRef::Noop,
        };
        let _ = self.events.send(event);
        Ok(handle)
    }

    async fn kill(&self, _handle: &AttemptHandle) -> Result<(), ExecutorError> {
        Ok(())
    }

    /// Nothing survives a restart here, so the closure decides again.
    async fn adopt(&self, handle: &AttemptHandle) -> Result<AdoptStatus, ExecutorError> {
        Ok(match (self.outcome)(&handle.key, (self.clock)()) {
            NoopOutcome::Finished(result) => AdoptStatus::Finished(result),
            NoopOutcome::Lost(reason) => AdoptStatus::Lost { reason },
        })
    }

    /// Nothing outlives a restart here and nothing is claimed.
    async fn adopt_claimed(&self, _query: &ClaimQuery) -> Result<ClaimStatus, ExecutorError> {
        Ok(ClaimStatus::Unclaimed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::CommandLine;
    use pave_core::{MapIndex, Resources, TryNumber};
    use tokio::sync::mpsc;

    fn request(task: &str) -> StartRequest {
        StartRequest {
            key: AttemptKey {
                dag_id: "d".into(),
                run_id: "r".into(),
                task_id: task.into(),
                map_index: MapIndex::UNMAPPED,
                try_number: TryNumber(1),
            },
            command: CommandLine::Shell {
                script: "true".to_owned(),
            },
            env: Default::default(),
            cwd: None,
            execution_timeout: None,
            resources: Resources::default(),
            log_path: "/nonexistent/log".into(),
            result_path: "/nonexistent/result".into(),
            placement: Default::default(),
        }
    }

    #[tokio::test]
    async fn completes_at_once_with_the_chosen_outcome() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fixed = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("timestamp");
        let exec: Arc<dyn Executor> = Arc::new(
            NoopExecutor::new(tx)
                .with_clock(move || fixed)
                .with_outcome(|key, now| match key.task_id.as_str() {
                    "flaky" => NoopOutcome::Lost("node went away".to_owned()),
                    "bad" => NoopOutcome::Finished(AttemptResult::exited_at(now, 3, None)),
                    _ => {
                        NoopOutcome::Finished(AttemptResult::success_at(now, Some("42".to_owned())))
                    }
                }),
        );
        for task in ["ok", "bad", "flaky"] {
            exec.start(request(task)).await.expect("start");
        }
        let mut got = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            got.push(ev);
        }
        assert_eq!(got.len(), 3);
        assert!(
            matches!(&got[0], ExecutorEvent::Finished { result, .. } if result.is_success() && result.started_at == fixed && result.last_line.as_deref() == Some("42"))
        );
        assert!(
            matches!(&got[1], ExecutorEvent::Finished { result, .. } if result.exit == crate::Exit::Code { code: 3 })
        );
        assert!(
            matches!(&got[2], ExecutorEvent::Lost { reason, .. } if reason == "node went away")
        );
        let req = request("ok");
        let query = ClaimQuery {
            key: req.key,
            resources: req.resources,
            log_path: req.log_path,
            result_path: req.result_path,
        };
        assert!(matches!(
            exec.adopt_claimed(&query).await,
            Ok(ClaimStatus::Unclaimed)
        ));
    }
}
