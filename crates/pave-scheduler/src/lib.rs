//! pave-scheduler: the driver that turns pave-core's pure decisions into
//! stored state and started attempts. See `engine/` for the loop.

pub mod actions;
pub mod attempt;
pub mod clock;
pub mod config;
pub mod dags;
pub mod engine;
pub mod error;
pub mod paths;
pub mod result;
pub mod runs;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{PythonTasks, SchedulerConfig, TokenIssuer};
pub use engine::{Scheduler, StepReport};
pub use error::SchedulerError;
pub use runs::TriggerRequest;
