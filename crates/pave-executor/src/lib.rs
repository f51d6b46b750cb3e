//! pave-executor: where task attempts actually run.
//!
//! The scheduler sees one narrow trait, [`Executor`]: `capacity`, `start`,
//! `kill`, `adopt` and `adopt_claimed`, with completions arriving as
//! [`ExecutorEvent`]s on a channel given at construction. Implementations:
//! - [`LocalExecutor`]: each attempt is a local process tree under a
//!   supervisor process ([`supervise`]) that outlives the scheduler, so a
//!   `kill -9` of pave loses no result and never runs an attempt twice
//!   (the supervisor's exclusive claim file, [`claim_path`], fences off an
//!   attempt whose handle the scheduler never stored);
//! - [`NoopExecutor`]: completes every attempt at once, for benchmarks and
//!   scheduler tests.
//!
//! Architecture invariant: the supervisor side ([`supervise`]) uses no async
//! runtime and no logging framework; it is started once per task and must
//! start fast.

mod attempt;
mod claim;
mod error;
mod executor;
mod handover;
mod host;
mod local;
mod noop;
mod serve;
mod slots;
pub mod supervise;
mod sys;
mod watch;
mod zygote;

pub use attempt::{
    AdoptStatus, AttemptHandle, AttemptKey, AttemptResult, Capacity, ClaimQuery, ClaimStatus,
    CommandLine, DEFAULT_SKIP_EXIT_CODE, ExecutorEvent, Exit, GpuInfo, LocalProcess, PodRef,
    ProcessRef, SharedTask, StartRequest,
};
pub use claim::{Claim, claim_path};
pub use error::ExecutorError;
pub use executor::Executor;
pub use host::{detect_cpu_millis, detect_gpus, detect_memory_bytes};
pub use local::{
    DEFAULT_PARALLELISM, LocalExecutor, LocalExecutorConfig, SUPERVISOR_BIN, default_supervisor,
};
pub use noop::{NoopExecutor, NoopOutcome};
pub use serve::{
    DEFAULT_IDLE as DEFAULT_SERVER_IDLE, SERVER_ENV, SERVER_IDLE_ENV, serve_cli, stop_server,
};
pub use supervise::{
    EXIT_ALREADY_CLAIMED, SuperviseArgs, SuperviseArgsError, supervise_cli, supervise_main,
};
pub use zygote::{
    ATTEMPT_VARS, DEFAULT_IDLE_SECS, IDLE_ENV, PREFORK_ENV, Prestart, Prestarted, ZYGOTE_DIR_ENV,
    prestart, stop_zygotes,
};
