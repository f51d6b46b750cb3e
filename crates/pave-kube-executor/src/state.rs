//! The executor's shared state: the attempts it watches (by pod name) and
//! the pods of its installation that no attempt owns; and the result file
//! each attempt leaves next to its log, from which an adoption learns how
//! it ended and the spot fallback how often its task instance was
//! disrupted (both survive a restart).

use crate::config::KubeExecutorConfig;
use crate::logs::LogTail;
use crate::nodes::NodeInfo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use pave_core::TryNumber;
use pave_executor::{AttemptHandle, AttemptKey, AttemptResult, Capacity, ExecutorEvent};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::{AbortHandle, JoinHandle};

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
    /// Adopted after a restart: its running time counts from the
    /// container's start, not from when this executor first saw it.
    pub adopted: bool,
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
            adopted: false,
        }
    }
}

/// Mutable state behind one lock (never held across an await).
#[derive(Default)]
pub(crate) struct State {
    pub tracked: HashMap<String, Tracked>,
    /// Pods of this installation seen by the watcher that no attempt owns.
    pub others: HashMap<String, Pod>,
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

/// How many earlier tries of `key`'s task instance were disrupted, read
/// from their result files: every try's file lies next to its log, in the
/// folder of `result_path` (pave keeps one folder per task instance), and
/// names its pod, whose name is derived from the attempt. Files of other
/// task instances or executors do not match a pod name and are skipped.
pub(crate) fn earlier_disruptions(installation: &str, key: &AttemptKey, result_path: &Path) -> u32 {
    if key.try_number.0 <= 1 {
        return 0;
    }
    let Some(dir) = result_path.parent() else {
        return 0;
    };
    let earlier: HashSet<String> = (1..key.try_number.0)
        .map(|t| {
            let mut k = key.clone();
            k.try_number = TryNumber(t);
            crate::naming::pod_name(installation, &k)
        })
        .collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut seen = HashSet::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") || path == result_path {
            continue;
        }
        if let Some(file) = ResultFile::read(&path)
            && file.disruption.is_some()
            && earlier.contains(&file.pod)
        {
            seen.insert(file.pod);
        }
    }
    u32::try_from(seen.len()).unwrap_or(u32::MAX)
}
