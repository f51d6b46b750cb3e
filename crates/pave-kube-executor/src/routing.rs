//! `RoutingExecutor`: several executors behind one, each task going to the
//! one it names (`executor: kubernetes`), or the installation's default, so
//! the scheduler's engine sees a single executor (Airflow 3's multiple
//! executors).

use async_trait::async_trait;
use pave_executor::{
    AdoptStatus, AttemptHandle, Capacity, ClaimQuery, ClaimStatus, Executor, ExecutorError,
    GpuInfo, ProcessRef, StartRequest,
};
use std::sync::Arc;

/// Dispatches attempts to executors by name.
pub struct RoutingExecutor {
    default: String,
    /// Ordered so that `local` comes last: its `adopt_claimed` fences an
    /// unclaimed attempt, the others only look.
    executors: Vec<Arc<dyn Executor>>,
}

impl RoutingExecutor {
    /// Routes to `executors` by their [`Executor::name`]; tasks that name
    /// none go to `default`, which must be one of them.
    pub fn new(default: &str, mut executors: Vec<Arc<dyn Executor>>) -> Result<Self, String> {
        if !executors.iter().any(|e| e.name() == default) {
            return Err(format!(
                "the default executor `{default}` is not configured (configured: {})",
                names(&executors)
            ));
        }
        executors.sort_by_key(|e| e.name() == "local");
        Ok(RoutingExecutor {
            default: default.to_owned(),
            executors,
        })
    }

    /// The executor a request goes to.
    fn pick(&self, req: &StartRequest) -> Result<&Arc<dyn Executor>, ExecutorError> {
        let wanted = req.placement.executor.as_deref().unwrap_or(&self.default);
        self.by_name(wanted)
            .ok_or_else(|| ExecutorError::InvalidRequest {
                key: req.key.clone(),
                reason: format!(
                    "task `{}` asks for executor `{wanted}`, which this installation does not run \
                     (it runs: {}); start pave with `--executor {wanted}` or change the task's `executor`",
                    req.key.task_id,
                    names(&self.executors)
                ),
            })
    }

    fn by_name(&self, name: &str) -> Option<&Arc<dyn Executor>> {
        self.executors.iter().find(|e| e.name() == name)
    }

    /// The executor that started the attempt of `handle`.
    fn of_handle(&self, handle: &AttemptHandle) -> Result<&Arc<dyn Executor>, ExecutorError> {
        let name = match handle.process {
            ProcessRef::Local(_) => "local",
            ProcessRef::Noop => "noop",
            ProcessRef::Pod(_) => "kubernetes",
        };
        self.by_name(name).ok_or(ExecutorError::WrongExecutor {
            key: handle.key.clone(),
            expected: "routing",
            found: name_static(name),
        })
    }
}

fn name_static(name: &str) -> &'static str {
    match name {
        "local" => "local",
        "noop" => "noop",
        _ => "kubernetes",
    }
}

fn names(executors: &[Arc<dyn Executor>]) -> String {
    executors
        .iter()
        .map(|e| e.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl Executor for RoutingExecutor {
    fn name(&self) -> &'static str {
        "routing"
    }

    /// The sum of all executors' capacities (GPU ids renumbered).
    fn capacity(&self) -> Capacity {
        let mut total = Capacity {
            parallelism: 0,
            cpu_millis: 0,
            memory_bytes: 0,
            gpus: Vec::new(),
        };
        for e in &self.executors {
            let c = e.capacity();
            total.parallelism = total.parallelism.saturating_add(c.parallelism);
            total.cpu_millis = total.cpu_millis.saturating_add(c.cpu_millis);
            total.memory_bytes = total.memory_bytes.saturating_add(c.memory_bytes);
            for g in c.gpus {
                let id = u32::try_from(total.gpus.len()).unwrap_or(u32::MAX);
                total.gpus.push(GpuInfo { id, ..g });
            }
        }
        total
    }

    async fn start(&self, req: StartRequest) -> Result<AttemptHandle, ExecutorError> {
        self.pick(&req)?.start(req).await
    }

    async fn kill(&self, handle: &AttemptHandle) -> Result<(), ExecutorError> {
        self.of_handle(handle)?.kill(handle).await
    }

    async fn adopt(&self, handle: &AttemptHandle) -> Result<AdoptStatus, ExecutorError> {
        self.of_handle(handle)?.adopt(handle).await
    }

    /// Asks each executor in turn; the first that knows the attempt
    /// answers. Only the last one (local, when configured) may fence it.
    async fn adopt_claimed(&self, query: &ClaimQuery) -> Result<ClaimStatus, ExecutorError> {
        let mut last = Ok(ClaimStatus::Unclaimed);
        for e in &self.executors {
            last = e.adopt_claimed(query).await;
            match &last {
                Ok(ClaimStatus::Fenced | ClaimStatus::Unclaimed)
                | Err(ExecutorError::Unsupported { .. }) => continue,
                _ => return last,
            }
        }
        last
    }
}
