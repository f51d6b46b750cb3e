//! The executor's shared state: the attempts it watches (by pod name), the
//! pods of its installation that no attempt owns, and how often each task
//! instance was disrupted (for the spot fallback).

use crate::config::KubeExecutorConfig;
use crate::logs::LogTail;
use crate::nodes::NodeInfo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use pave_core::{DagId, MapIndex, RunId, TaskId};
use pave_executor::{AttemptHandle, AttemptKey, AttemptResult, Capacity, ExecutorEvent};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::{AbortHandle, JoinHandle};

/// A task instance, across its tries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TiIdent(DagId, RunId, TaskId, MapIndex);

impl TiIdent {
    pub(crate) fn of(key: &AttemptKey) -> TiIdent {
        TiIdent(
            key.dag_id.clone(),
            key.run_id.clone(),
            key.task_id.clone(),
            key.map_index,
        )
    }
}

/// One attempt the executor watches.
pub(crate) struct Tracked {
    pub handle: AttemptHandle,
    /// The container whose log and exit code count.
    pub container: String,
    pub execution_timeout: Option<Duration>,
    /// `kill` asked for it: its end is reported as cancelled.
    pub killed: bool,
    /// Its execution timeout expired and the pod is being deleted.
    pub timed_out: bool,
    pub unschedulable_since: Option<Instant>,
    pub image_error_since: Option<Instant>,
    pub running_since: Option<Instant>,
    /// The latest version of its pod seen.
    pub last: Option<Pod>,
    pub logs: Option<JoinHandle<LogTail>>,
    /// Lines of the log file written before a restart.
    pub log_skip: u64,
    /// Its end is being reported: later pod events are ignored, so a watch
    /// that relists never reports it twice.
    pub ending: bool,
}

impl Tracked {
    pub(crate) fn new(
        handle: AttemptHandle,
        container: String,
        execution_timeout: Option<Duration>,
    ) -> Tracked {
        Tracked {
            handle,
            container,
            execution_timeout,
            killed: false,
            timed_out: false,
            unschedulable_since: None,
            image_error_since: None,
            running_since: None,
            last: None,
            logs: None,
            log_skip: 0,
            ending: false,
        }
    }
}

/// Mutable state behind one lock (never held across an await).
#[derive(Default)]
pub(crate) struct State {
    pub tracked: HashMap<String, Tracked>,
    /// Pods of this installation seen by the watcher that no attempt owns.
    pub others: HashMap<String, Pod>,
    pub disruptions: HashMap<TiIdent, u32>,
    /// Attempts reported so far (for tests and benchmarks).
    pub reported: u64,
}

/// What the background tasks and the trait methods share.
pub(crate) struct Inner {
    pub api: Api<Pod>,
    pub nodes_api: Api<Node>,
    pub cfg: KubeExecutorConfig,
    pub events: UnboundedSender<ExecutorEvent>,
    pub state: Mutex<State>,
    pub started: Instant,
    pub nodes: tokio::sync::Mutex<Option<(Instant, Vec<NodeInfo>)>>,
    pub capacity: Capacity,
    pub background: Mutex<Vec<AbortHandle>>,
}

impl Inner {
    /// Runs `f` on the state; a poisoned lock is recovered (the state is
    /// plain maps, consistent after every statement).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

/// What the executor writes next to the attempt's log when it ends, so an
/// adoption after a restart finds the outcome even if the pod is gone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ResultFile {
    pub pod: String,
    pub result: AttemptResult,
    #[serde(default)]
    pub disruption: Option<String>,
}

impl ResultFile {
    pub(crate) fn read(path: &Path) -> Option<ResultFile> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the file atomically (a temporary file renamed over it).
    pub(crate) fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}
