//! pave-core: the pure domain of pave.
//!
//! Everything here is plain data and plain functions: the DAG model, its
//! validation, task-instance states, trigger rules, the per-run scheduling
//! decision, retry policy, dynamic task mapping, schedule arithmetic and
//! templating. Nothing here does IO, spawns, awaits or reads a clock: time is
//! always a parameter. `tests/deps.rs` fails if this crate gains an IO or
//! async dependency.

pub mod ids;
pub mod model;
pub mod state;

pub use ids::{DagId, MapIndex, RunId, TaskId, TryNumber};
pub use model::*;
pub use state::{RunState, TaskState};

// Per-run scheduling decisions (trigger rules, skips, mapping, setup/teardown, run state).
pub mod decide;
pub mod mapping;
pub mod run;
// Which tasks a new run gets instances of (task start_date / end_date).
pub mod run_tasks;
pub mod trigger;
// Retry policy: what an attempt's end means for its task instance.
pub mod retry;
// Schedules and timetables; templating; admission under pools/priorities/resources.
pub mod admit;
pub mod priority;
pub mod schedule;
pub mod template;
pub mod xcom_serde;
