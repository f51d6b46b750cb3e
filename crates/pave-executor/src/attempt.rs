//! The data that crosses the executor boundary: what to start
//! ([`StartRequest`]), how to find it again ([`AttemptHandle`]), how it ended
//! ([`AttemptResult`]) and what the executor reports ([`ExecutorEvent`]).
//!
//! Everything here is plain serde data so that the scheduler can store a
//! handle with the task instance and adopt the attempt after a restart, and
//! so that the supervisor process can hand its result to the executor through
//! a JSON file.

use chrono::{DateTime, Utc};
use pave_core::run::AttemptOutcome;
use pave_core::{DagId, MapIndex, Placement, Resources, RunId, TaskId, TryNumber};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Identifies one attempt of one task instance: the unit an executor runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttemptKey {
    pub dag_id: DagId,
    pub run_id: RunId,
    pub task_id: TaskId,
    pub map_index: MapIndex,
    pub try_number: TryNumber,
}

impl fmt::Display for AttemptKey {
    /// `dag/run/task[map_index]#try`, with `[..]` only for mapped instances.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.dag_id, self.run_id, self.task_id)?;
        if !self.map_index.is_unmapped() {
            write!(f, "[{}]", self.map_index)?;
        }
        write!(f, "#{}", self.try_number)
    }
}

/// What to execute. Templates have already been rendered by the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandLine {
    /// A shell script, run as `bash -c SCRIPT` (Airflow's BashOperator).
    Shell { script: String },
    /// A program and its arguments, executed directly (no shell).
    Argv { argv: Vec<String> },
}

impl CommandLine {
    /// The argv the supervisor executes.
    pub fn to_argv(&self) -> Vec<String> {
        match self {
            CommandLine::Shell { script } => {
                vec!["bash".to_owned(), "-c".to_owned(), script.clone()]
            }
            CommandLine::Argv { argv } => argv.clone(),
        }
    }
}

/// Everything an executor needs to start one attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartRequest {
    pub key: AttemptKey,
    pub command: CommandLine,
    /// Variables set for the task on top of the executor's own environment
    /// (including the `PAVE_*` variables the task runtime needs).
    pub env: BTreeMap<String, String>,
    /// Working directory; `None` keeps the executor's.
    pub cwd: Option<PathBuf>,
    /// Airflow's `execution_timeout`: the process group is killed after it.
    pub execution_timeout: Option<Duration>,
    pub resources: Resources,
    /// Where stdout and stderr of the task go (appended; parents are created).
    pub log_path: PathBuf,
    /// Where the supervisor writes the [`AttemptResult`] as JSON (atomically).
    pub result_path: PathBuf,
    /// Which executor runs it and, on Kubernetes, its image, spot policy and
    /// pod override (the task's [`Placement`]).
    #[serde(default)]
    pub placement: Placement,
}

/// What an executor needs to find a started attempt again, also from another
/// process after a restart. Store it with the task instance (serde JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptHandle {
    pub key: AttemptKey,
    pub started_at: DateTime<Utc>,
    /// The resources reserved for the attempt (released when it ends).
    pub resources: Resources,
    /// GPU ids handed to the attempt through `CUDA_VISIBLE_DEVICES`.
    pub gpu_ids: Vec<u32>,
    pub log_path: PathBuf,
    pub result_path: PathBuf,
    /// Which executor started it, and its own way of finding it.
    pub process: ProcessRef,
}

/// The executor-specific part of an [`AttemptHandle`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "executor", rename_all = "snake_case")]
pub enum ProcessRef {
    /// An attempt of [`crate::LocalExecutor`]: a supervisor process that owns
    /// the task's process group.
    Local(LocalProcess),
    /// An attempt of [`crate::NoopExecutor`]: nothing runs.
    Noop,
    /// An attempt of the Kubernetes executor: one Pod.
    Pod(PodRef),
}

/// The Pod behind a Kubernetes attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    /// Deterministic from the attempt's key, so a repeated create finds it.
    pub name: String,
    /// The Pod's uid once created, so a Pod of the same name created later
    /// (by someone else) is not mistaken for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// The processes behind a local attempt.
///
/// The supervisor leads its own session, and every process of the task runs
/// in that session (session id = `supervisor_pid`), so the whole tree can be
/// found and killed even after the supervisor died, including processes that
/// moved to a process group of their own (GNU `timeout` does). The task's own
/// pid is not known when `start` returns (waiting for it would double the
/// cost of a start); the result records it.
///
/// A Python attempt handed to its pre-forked interpreter, and a command
/// attempt handed to the supervision server, have no supervisor process of
/// their own: the zygote or the server is their supervisor (it holds the
/// claim, enforces the timeout and writes the result), and serves other
/// attempts too, so it is never signalled for one of them;
/// [`LocalProcess::shared`] says so, and names the task to signal instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalProcess {
    pub supervisor_pid: u32,
    /// The supervisor's start time in clock ticks since boot
    /// (`/proc/PID/stat` field 22), so a reused pid is not mistaken for it.
    pub supervisor_start_ticks: Option<u64>,
    /// Set when the supervisor serves many attempts (a zygote, or the
    /// supervision server); stored as `zygote` before the server existed.
    #[serde(default, alias = "zygote", skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedTask>,
}

/// The task a shared supervisor (a zygote, or the supervision server)
/// started and supervises (see [`LocalProcess`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedTask {
    /// The task's pid (also its process group and session); `None` for an
    /// attempt adopted from its claim, which the zygote wrote before it
    /// forked.
    pub pid: Option<u32>,
    /// Its start time in clock ticks since boot, as for the supervisor.
    pub start_ticks: Option<u64>,
}

/// How the task's main process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Exit {
    Code {
        code: i32,
    },
    Signal {
        signal: i32,
    },
    /// The process never ran; [`AttemptResult::error`] says why.
    NotRun,
}

/// How one attempt ended, as written by the supervisor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptResult {
    pub exit: Exit,
    /// The task's main process (also its process group id), if it started.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The execution timeout expired and the process group was killed.
    pub timed_out: bool,
    /// The attempt was killed on request ([`crate::Executor::kill`]).
    pub cancelled: bool,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// The largest resident set of the task's processes, in KiB
    /// (`ru_maxrss` of the supervisor's reaped children).
    pub peak_rss_kib: u64,
    /// The last non-empty line of stdout, right-trimmed: the command's result
    /// (Airflow BashOperator's XCom).
    pub last_line: Option<String>,
    /// Why the process could not run at all (bad cwd, program not found).
    pub error: Option<String>,
    /// Things worth knowing that did not stop the attempt (a log write
    /// failed, a stray process kept stdout open).
    #[serde(default)]
    pub notes: Vec<String>,
    /// XComs that came with the end instead of through the execution API:
    /// a Python task's return value, when its zygote supervised it
    /// (`sdk/python/pave/zygote.py`); the scheduler checks and stores them
    /// with the end, in one transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xcoms: Option<BTreeMap<String, serde_json::Value>>,
}

/// Airflow's default exit code for "skip this task" in command tasks.
pub const DEFAULT_SKIP_EXIT_CODE: i32 = 99;

impl AttemptResult {
    /// A successful, instantaneous result (for fakes and tests).
    pub fn success_at(now: DateTime<Utc>, last_line: Option<String>) -> AttemptResult {
        AttemptResult::exited_at(now, 0, last_line)
    }

    /// An instantaneous result with the given exit code (for fakes and tests).
    pub fn exited_at(now: DateTime<Utc>, code: i32, last_line: Option<String>) -> AttemptResult {
        AttemptResult {
            exit: Exit::Code { code },
            pid: None,
            timed_out: false,
            cancelled: false,
            started_at: now,
            ended_at: now,
            duration_ms: 0,
            peak_rss_kib: 0,
            last_line,
            error: None,
            notes: Vec::new(),
            xcoms: None,
        }
    }

    /// Exit code 0, no timeout, no cancellation, no error.
    pub fn is_success(&self) -> bool {
        self.exit == Exit::Code { code: 0 }
            && !self.timed_out
            && !self.cancelled
            && self.error.is_none()
    }

    /// What the attempt means for its task instance, with Airflow's rules for
    /// command tasks: exit 0 succeeds, `skip_exit_code` (default 99) skips,
    /// anything else (a timeout included) fails and may be retried. A kill on
    /// request fails without retry: whoever asked for it decided the outcome.
    pub fn outcome(&self, skip_exit_code: Option<i32>) -> AttemptOutcome {
        let skip = skip_exit_code.unwrap_or(DEFAULT_SKIP_EXIT_CODE);
        if let Some(error) = &self.error {
            return AttemptOutcome::Failed {
                retryable: true,
                reason: error.clone(),
            };
        }
        if self.cancelled {
            return AttemptOutcome::Failed {
                retryable: false,
                reason: "killed on request".to_owned(),
            };
        }
        if self.timed_out {
            let secs = self.duration_ms as f64 / 1000.0;
            return AttemptOutcome::Failed {
                retryable: true,
                reason: format!("execution_timeout exceeded: killed after {secs:.1}s"),
            };
        }
        match self.exit {
            Exit::Code { code: 0 } => AttemptOutcome::Success,
            Exit::Code { code } if code == skip => AttemptOutcome::Skipped,
            Exit::Code { code } => AttemptOutcome::Failed {
                retryable: true,
                reason: format!("command exited with code {code}"),
            },
            Exit::Signal { signal } => AttemptOutcome::Failed {
                retryable: true,
                reason: format!(
                    "command was killed by {} (peak memory {} MiB)",
                    signal_name(signal),
                    self.peak_rss_kib / 1024
                ),
            },
            Exit::NotRun => AttemptOutcome::Failed {
                retryable: true,
                reason: "command did not run".to_owned(),
            },
        }
    }
}

/// `SIGKILL (9)` for 9, `signal 64` for one nix does not know.
pub(crate) fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(s) => format!("{} ({signal})", s.as_str()),
        Err(_) => format!("signal {signal}"),
    }
}

/// What an executor tells the scheduler, on the channel given at construction.
/// Every started (or adopted-as-running) attempt produces exactly one event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExecutorEvent {
    /// The attempt ended and its supervisor recorded how.
    Finished {
        key: AttemptKey,
        result: AttemptResult,
    },
    /// The attempt's supervisor died without recording a result (killed -9,
    /// out of memory). Its processes have been killed; fail the attempt and
    /// retry it by policy.
    Lost { key: AttemptKey, reason: String },
    /// The attempt was killed by something outside the task (preemption,
    /// eviction, spot reclaim, node loss): retried without spending one of
    /// the task's retries. `reason` names the cause for the try history.
    Disrupted {
        key: AttemptKey,
        result: AttemptResult,
        reason: String,
    },
}

impl ExecutorEvent {
    /// The attempt the event is about.
    pub fn key(&self) -> &AttemptKey {
        match self {
            ExecutorEvent::Finished { key, .. }
            | ExecutorEvent::Lost { key, .. }
            | ExecutorEvent::Disrupted { key, .. } => key,
        }
    }
}

/// What [`crate::Executor::adopt`] found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdoptStatus {
    /// Still running; the executor watches it again and sends one
    /// [`ExecutorEvent`] when it ends.
    Running,
    /// It ended while nobody was watching; no event follows.
    Finished(AttemptResult),
    /// Its supervisor is gone and left no result; no event follows. Any of
    /// its processes that were still alive have been killed.
    Lost { reason: String },
    /// It was disrupted (preempted, evicted, its node lost) while nobody was
    /// watching; no event follows. Retry it without spending a retry.
    Disrupted {
        result: AttemptResult,
        reason: String,
    },
}

/// An attempt to look for by its identity and files, when its handle was
/// never stored (the scheduler stopped between starting it and recording
/// it): the argument of [`crate::Executor::adopt_claimed`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimQuery {
    pub key: AttemptKey,
    /// What the attempt reserved (the task's request), held again if it is
    /// still running.
    pub resources: Resources,
    pub log_path: PathBuf,
    /// Its claim file lies next to it ([`crate::claim_path`]).
    pub result_path: PathBuf,
}

/// What [`crate::Executor::adopt_claimed`] found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClaimStatus {
    /// A supervisor claimed it and still runs it; the executor watches it
    /// (exactly one [`ExecutorEvent`] follows) through this handle, which the
    /// caller should store.
    Running(AttemptHandle),
    /// It ran to its end; no event follows.
    Finished(AttemptResult),
    /// Its supervisor claimed it and is gone without a result (what is left
    /// of its processes has been killed); no event follows.
    Lost { reason: String },
    /// Nobody had claimed it: the executor claimed it itself, so it never ran
    /// and never will (a supervisor still starting up refuses to run it).
    /// Its try can be given up and the next try started.
    Fenced,
    /// The executor keeps no claims: its attempts do not outlive the process
    /// that started them (the no-op executor), so there is nothing to find.
    Unclaimed,
}

/// What an executor can run at once, for the scheduler's admission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Attempts that may run at the same time.
    pub parallelism: usize,
    /// Total CPU in millicores.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: Vec<GpuInfo>,
}

impl Capacity {
    pub fn gpu_count(&self) -> u32 {
        u32::try_from(self.gpus.len()).unwrap_or(u32::MAX)
    }
}

/// One GPU an executor can hand out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// The id put in `CUDA_VISIBLE_DEVICES` (NVML's and nvidia-smi's index; the executor
    /// also sets `CUDA_DEVICE_ORDER=PCI_BUS_ID` so CUDA numbers them the same).
    pub id: u32,
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub memory_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(map_index: i32) -> AttemptKey {
        AttemptKey {
            dag_id: "etl".into(),
            run_id: "manual__1".into(),
            task_id: "g.load".into(),
            map_index: MapIndex(map_index),
            try_number: TryNumber(2),
        }
    }

    #[test]
    fn key_display_names_map_index_only_when_mapped() {
        assert_eq!(key(-1).to_string(), "etl/manual__1/g.load#2");
        assert_eq!(key(3).to_string(), "etl/manual__1/g.load[3]#2");
    }

    #[test]
    fn outcome_follows_airflow_bash_rules() {
        let now = Utc::now();
        let ok = AttemptResult::success_at(now, None);
        assert_eq!(ok.outcome(None), AttemptOutcome::Success);
        assert_eq!(
            AttemptResult::exited_at(now, 99, None).outcome(None),
            AttemptOutcome::Skipped
        );
        assert_eq!(
            AttemptResult::exited_at(now, 7, None).outcome(Some(7)),
            AttemptOutcome::Skipped
        );
        let failed = AttemptResult::exited_at(now, 99, None).outcome(Some(7));
        assert!(
            matches!(failed, AttemptOutcome::Failed { retryable: true, ref reason } if reason.contains("99"))
        );
        let mut timed_out = AttemptResult::exited_at(now, 0, None);
        timed_out.exit = Exit::Signal { signal: 15 };
        timed_out.timed_out = true;
        assert!(
            matches!(timed_out.outcome(None), AttemptOutcome::Failed { retryable: true, ref reason } if reason.contains("execution_timeout"))
        );
        let mut killed = timed_out.clone();
        killed.timed_out = false;
        killed.cancelled = true;
        assert!(matches!(
            killed.outcome(None),
            AttemptOutcome::Failed {
                retryable: false,
                ..
            }
        ));
        let mut signalled = ok.clone();
        signalled.exit = Exit::Signal { signal: 9 };
        assert!(
            matches!(signalled.outcome(None), AttemptOutcome::Failed { ref reason, .. } if reason.contains("SIGKILL (9)"))
        );
    }

    #[test]
    fn handle_round_trips_through_json() {
        let handle = AttemptHandle {
            key: key(0),
            started_at: Utc::now(),
            resources: Resources {
                cpu_millis: 500,
                memory_bytes: 1 << 20,
                gpu: 1,
                ..Resources::default()
            },
            gpu_ids: vec![1],
            log_path: "/tmp/a.log".into(),
            result_path: "/tmp/a.json".into(),
            process: ProcessRef::Local(LocalProcess {
                supervisor_pid: 10,
                supervisor_start_ticks: Some(1234),
                shared: None,
            }),
        };
        let json = serde_json::to_string(&handle).expect("serialize");
        assert!(json.contains(r#""executor":"local""#), "{json}");
        let back: AttemptHandle = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, handle);
        // Handles stored before zygotes supervised attempts still read.
        assert!(!json.contains("zygote"), "{json}");
        let mut zygote = handle.clone();
        zygote.process = ProcessRef::Local(LocalProcess {
            supervisor_pid: 10,
            supervisor_start_ticks: Some(1234),
            shared: Some(SharedTask {
                pid: Some(11),
                start_ticks: Some(1240),
            }),
        });
        let json = serde_json::to_string(&zygote).expect("serialize");
        let back: AttemptHandle = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, zygote);
        // Handles stored when only zygotes were shared supervisors named the field `zygote`.
        let old = json.replace(r#""shared":"#, r#""zygote":"#);
        assert_ne!(old, json);
        let back: AttemptHandle = serde_json::from_str(&old).expect("deserialize the old name");
        assert_eq!(back, zygote);
    }

    #[test]
    fn a_result_reads_as_the_python_zygote_writes_it() {
        // What sdk/python/pave/zygote.py writes when a supervised task ends.
        let text = r#"{"exit": {"type": "signal", "signal": 15}, "pid": 4243, "timed_out": true, "cancelled": false, "started_at": "2026-11-29T02:36:22.123456Z", "ended_at": "2026-11-29T02:36:23.5Z", "duration_ms": 1377, "peak_rss_kib": 20480, "last_line": null, "error": null, "notes": ["execution_timeout of 1.2s exceeded: sent SIGTERM"]}"#;
        let result: AttemptResult = serde_json::from_str(text).expect("result");
        assert_eq!(result.exit, Exit::Signal { signal: 15 });
        assert_eq!(
            (result.pid, result.timed_out, result.peak_rss_kib),
            (Some(4243), true, 20480)
        );
        assert!(matches!(
            result.outcome(None),
            AttemptOutcome::Failed {
                retryable: true,
                ..
            }
        ));
    }
}
