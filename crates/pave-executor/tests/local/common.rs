//! The local executor's test fixture and helpers, for both ways it
//! supervises command attempts: a supervisor process per attempt, and the
//! supervision server (`LocalExecutorConfig::server_dir`).

use pave_core::{MapIndex, Resources, TryNumber};
use pave_executor::{
    AttemptHandle, AttemptKey, AttemptResult, Claim, ClaimQuery, CommandLine, Executor,
    ExecutorEvent, LocalExecutor, LocalExecutorConfig, ProcessRef, StartRequest, claim_path,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::mpsc::{self, UnboundedReceiver};

/// How command attempts are supervised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A `pave-executor-supervise` process per attempt.
    PerAttempt,
    /// The supervision server (`pave-executor-supervise --serve`).
    Server,
}

/// The executor's configuration in `mode`, with the crate's own supervisor
/// binary; the server (if any) lives under `dir`.
pub fn config_in(mode: Mode, gpus: u32, dir: &Path) -> LocalExecutorConfig {
    LocalExecutorConfig {
        supervisor: vec![env!("CARGO_BIN_EXE_pave-executor-supervise").to_owned()],
        gpu_count: Some(gpus),
        kill_grace: Duration::from_secs(1),
        adopt_poll_interval: Duration::from_millis(50),
        server_dir: (mode == Mode::Server).then(|| server_dir(dir)),
        ..LocalExecutorConfig::default()
    }
}

/// Where a fixture's supervision server keeps its socket.
pub fn server_dir(dir: &Path) -> PathBuf {
    dir.join("supervise")
}

pub struct Fixture {
    pub dir: TempDir,
    pub exec: Arc<LocalExecutor>,
    pub events: UnboundedReceiver<ExecutorEvent>,
}

impl Fixture {
    pub fn new(mode: Mode, gpus: u32) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        Fixture::with_config(dir, |d| config_in(mode, gpus, d))
    }

    pub fn with_config(dir: TempDir, config: impl FnOnce(&Path) -> LocalExecutorConfig) -> Fixture {
        let (tx, events) = mpsc::unbounded_channel();
        let exec = Arc::new(LocalExecutor::new(config(dir.path()), tx).expect("executor"));
        Fixture { dir, exec, events }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn shell(&self, task: &str, script: &str) -> StartRequest {
        self.request(
            task,
            CommandLine::Shell {
                script: script.to_owned(),
            },
        )
    }

    pub fn request(&self, task: &str, command: CommandLine) -> StartRequest {
        StartRequest {
            key: key(task),
            command,
            env: BTreeMap::new(),
            cwd: None,
            execution_timeout: None,
            resources: Resources::default(),
            log_path: self.path(&format!("logs/{task}.log")),
            result_path: self.path(&format!("results/{task}.json")),
            placement: Default::default(),
        }
    }

    pub async fn next(&mut self) -> ExecutorEvent {
        next_event(&mut self.events).await
    }

    pub async fn run(&mut self, req: StartRequest) -> AttemptResult {
        self.exec.start(req).await.expect("start");
        finished(self.next().await)
    }
}

pub fn key(task: &str) -> AttemptKey {
    AttemptKey {
        dag_id: "dag".into(),
        run_id: "manual__1".into(),
        task_id: task.into(),
        map_index: MapIndex::UNMAPPED,
        try_number: TryNumber(1),
    }
}

pub async fn next_event(events: &mut UnboundedReceiver<ExecutorEvent>) -> ExecutorEvent {
    tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("an event within 30 s")
        .expect("channel open")
}

pub fn finished(event: ExecutorEvent) -> AttemptResult {
    match event {
        ExecutorEvent::Finished { result, .. } => result,
        other => panic!("expected Finished, got {other:?}"),
    }
}

/// Running and not a zombie (zombies may linger under a non-reaping pid 1).
pub fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

pub async fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn pid_from(path: &Path) -> u32 {
    wait_for_file(path).await.parse().expect("a pid")
}

pub fn supervisor_pid(handle: &AttemptHandle) -> u32 {
    match &handle.process {
        ProcessRef::Local(p) => p.supervisor_pid,
        _ => panic!("not local"),
    }
}

/// A script that starts a grandchild `sleep 100`, records both pids, and waits.
pub fn tree_script(dir: &Path) -> String {
    format!(
        "sleep 100 & echo $! > {gc}; echo $$ > {main}; wait",
        gc = dir.join("gc.pid").display(),
        main = dir.join("main.pid").display()
    )
}

/// What `adopt_claimed` needs to find the attempt `req` would start.
pub fn query_of(req: &StartRequest) -> ClaimQuery {
    ClaimQuery {
        key: req.key.clone(),
        resources: req.resources.clone(),
        log_path: req.log_path.clone(),
        result_path: req.result_path.clone(),
    }
}

/// A shell request that touches `side` (the effect that must not happen twice).
pub fn touching(f: &Fixture, task: &str, side: &Path, then: &str) -> StartRequest {
    f.shell(task, &format!("touch '{}'; {then}", side.display()))
}

/// Waits until the supervisor of `req` has claimed it.
pub async fn wait_for_claim(req: &StartRequest) -> Claim {
    let path = claim_path(&req.result_path);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(bytes) = std::fs::read(&path) {
            return serde_json::from_slice(&bytes).expect("a complete claim");
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
