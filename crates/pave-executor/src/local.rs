//! The local executor: every attempt runs on this machine under its own
//! supervisor process (see [`crate::supervise`]), within slots of
//! parallelism, CPU, memory and GPUs.
//!
//! One watcher task per attempt waits for the supervisor to exit, reads the
//! result file, frees the slots and sends the event. Adopted attempts are
//! not our children: their watcher polls the supervisor's liveness and the
//! result file instead. Every supervisor is started with `--claim` (the
//! file next to the result, [`claim_path`]), so an attempt whose handle was
//! never stored is found, or fenced off, by [`Executor::adopt_claimed`].

use crate::attempt::{
    AdoptStatus, AttemptHandle, AttemptKey, AttemptResult, Capacity, ClaimQuery, ClaimStatus,
    ExecutorEvent, Exit, GpuInfo, LocalProcess, ProcessRef, SharedTask, StartRequest,
};
use crate::claim::{self, Claim, claim_path};
use crate::error::ExecutorError;
use crate::executor::Executor;
use crate::handover::{Handed, Supervised, Supervision};
use crate::host;
use crate::serve::{self, ServerFiles};
use crate::slots::Slots;
use crate::supervise::{EXIT_ALREADY_CLAIMED, SuperviseArgs, append_note, open_log};
use crate::zygote::{self, Handover};
use async_trait::async_trait;
use chrono::Utc;
use nix::sys::signal::{Signal, kill};
use pave_core::Resources;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;

/// Airflow's default `parallelism`.
pub const DEFAULT_PARALLELISM: usize = 32;

/// How the local executor runs attempts.
#[derive(Clone, Debug)]
pub struct LocalExecutorConfig {
    /// The supervisor program and its leading arguments; the executor appends
    /// [`SuperviseArgs::to_args`]. Default: [`default_supervisor`].
    pub supervisor: Vec<String>,
    /// Attempts that may run at once.
    pub parallelism: usize,
    /// Total CPU in millicores; `None`: the machine's cores × 1000.
    pub cpu_millis: Option<u64>,
    /// Total memory; `None`: `MemTotal` from `/proc/meminfo`.
    pub memory_bytes: Option<u64>,
    /// `Some(n)`: exactly GPUs `0..n` (like `PAVE_GPUS=n`), no detection.
    /// `None`: the GPUs NVML (else `nvidia-smi`) reports, or none without them.
    pub gpu_count: Option<u32>,
    /// Time between SIGTERM and SIGKILL on a timeout or a kill.
    pub kill_grace: Duration,
    /// How often an adopted attempt (not our child) is checked.
    pub adopt_poll_interval: Duration,
    /// The folder of the supervision server ([`crate::serve`]) that
    /// supervises command attempts, started on demand; `None`: each
    /// command attempt gets a supervisor process of its own.
    pub server_dir: Option<PathBuf>,
    /// How long an unused supervision server lives.
    pub server_idle: Duration,
}

/// The name of the stand-alone supervisor binary, installed next to `pave`.
pub const SUPERVISOR_BIN: &str = "pave-supervise";

/// The supervisor the local executor starts by default: `pave-supervise`
/// when it lies next to this executable (it starts in a fraction of the
/// time of the full binary), else this executable with `supervise` (`pave
/// supervise`, the same code).
pub fn default_supervisor() -> Vec<String> {
    let exe = std::env::current_exe().ok();
    if let Some(sibling) = exe
        .as_deref()
        .and_then(Path::parent)
        .map(|dir| dir.join(SUPERVISOR_BIN))
        .filter(|p| p.is_file())
    {
        return vec![sibling.to_string_lossy().into_owned()];
    }
    let exe = exe.map_or_else(|| "pave".to_owned(), |p| p.to_string_lossy().into_owned());
    vec![exe, "supervise".to_owned()]
}

impl Default for LocalExecutorConfig {
    fn default() -> Self {
        LocalExecutorConfig {
            supervisor: default_supervisor(),
            parallelism: DEFAULT_PARALLELISM,
            cpu_millis: None,
            memory_bytes: None,
            gpu_count: None,
            kill_grace: crate::supervise::DEFAULT_GRACE,
            adopt_poll_interval: Duration::from_millis(250),
            server_dir: None,
            server_idle: crate::serve::DEFAULT_IDLE,
        }
    }
}

/// Runs attempts as local processes, each under a supervisor. Dropping the
/// executor stops watching (like a crash of the scheduler) but leaves the
/// attempts running; a new executor can [`Executor::adopt`] them.
pub struct LocalExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    config: LocalExecutorConfig,
    events: UnboundedSender<ExecutorEvent>,
    state: Mutex<State>,
    /// The supervision servers' files (one per core), when configured.
    servers: Vec<ServerFiles>,
    /// Which server the next command attempt goes to (round robin).
    next_server: std::sync::atomic::AtomicUsize,
    /// A server that failed to start is not tried again before this.
    server_down_until: Mutex<Option<Instant>>,
    /// This process's environment (`None`: not all UTF-8), under each
    /// attempt's own variables in what is sent to a shared supervisor.
    base_env: OnceLock<Option<BTreeMap<String, String>>>,
}

/// How long a supervision server that failed to start is not tried again.
const SERVER_RETRY: Duration = Duration::from_secs(60);

struct State {
    slots: Slots,
    attempts: HashMap<AttemptKey, Tracked>,
}

/// An attempt that holds slots: from reservation in `start` (or `adopt`)
/// until its event is sent.
struct Tracked {
    /// `kill` was called: a supervisor that dies without a result was
    /// stopped on request, not lost.
    kill_requested: bool,
    resources: Resources,
    gpu_ids: Vec<u32>,
    handle: Option<AttemptHandle>,
    watcher: Option<AbortHandle>,
}

/// Extra time the executor gives a supervisor beyond its own grace before
/// killing the attempt itself.
const BACKSTOP_SLACK: Duration = Duration::from_secs(2);

impl LocalExecutor {
    /// Detects the machine's capacity (unless configured) and sends the
    /// attempts' events on `events`. The channel is unbounded on purpose:
    /// each attempt sends exactly one event, so it holds at most as many as
    /// attempts were started, and a watcher never waits on a slow scheduler.
    pub fn new(
        config: LocalExecutorConfig,
        events: UnboundedSender<ExecutorEvent>,
    ) -> Result<Self, ExecutorError> {
        if config.supervisor.first().is_none_or(|p| p.is_empty()) {
            return Err(ExecutorError::Config {
                reason: "`supervisor` must name a program".to_owned(),
            });
        }
        if config.parallelism == 0 {
            return Err(ExecutorError::Config {
                reason: "`parallelism` must be at least 1".to_owned(),
            });
        }
        let gpus = match config.gpu_count {
            Some(n) => (0..n)
                .map(|id| GpuInfo {
                    id,
                    uuid: None,
                    name: None,
                    memory_bytes: None,
                })
                .collect(),
            None => host::detect_gpus(),
        };
        let capacity = Capacity {
            parallelism: config.parallelism,
            cpu_millis: config.cpu_millis.unwrap_or_else(host::detect_cpu_millis),
            memory_bytes: config
                .memory_bytes
                .or_else(host::detect_memory_bytes)
                .unwrap_or(u64::MAX),
            gpus,
        };
        let servers = match config.server_dir.as_deref() {
            Some(dir) => (0..serve::shards())
                .map(|i| ServerFiles::shard(dir, i))
                .collect(),
            None => Vec::new(),
        };
        Ok(LocalExecutor {
            inner: Arc::new(Inner {
                config,
                events,
                state: Mutex::new(State {
                    slots: Slots::new(capacity),
                    attempts: HashMap::new(),
                }),
                servers,
                next_server: std::sync::atomic::AtomicUsize::new(0),
                server_down_until: Mutex::new(None),
                base_env: OnceLock::new(),
            }),
        })
    }

    /// Kills every attempt this executor watches (for a shutdown that must
    /// not leave work behind, such as `pave dags test` on Ctrl-C).
    pub async fn kill_all(&self) {
        let handles: Vec<AttemptHandle> = self
            .inner
            .lock()
            .attempts
            .values()
            .filter_map(|t| t.handle.clone())
            .collect();
        for handle in handles {
            let _ = self.kill(&handle).await;
        }
    }

    /// Number of attempts holding slots right now.
    pub fn running(&self) -> usize {
        self.inner.lock().attempts.len()
    }
}

impl Drop for LocalExecutor {
    fn drop(&mut self) {
        for tracked in self.inner.lock().attempts.values() {
            if let Some(w) = &tracked.watcher {
                w.abort();
            }
        }
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn capacity(&self) -> Capacity {
        self.inner.lock().slots.capacity().clone()
    }

    async fn start(&self, mut req: StartRequest) -> Result<AttemptHandle, ExecutorError> {
        let key = req.key.clone();
        // The handle must still point at the files after a restart from
        // another working directory.
        for path in [&mut req.log_path, &mut req.result_path] {
            if let Ok(abs) = std::path::absolute(&*path) {
                *path = abs;
            }
        }
        let argv = req.command.to_argv();
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err(ExecutorError::InvalidRequest {
                key,
                reason: "the command is empty".to_owned(),
            });
        }
        if req.log_path.as_os_str().is_empty() || req.result_path.as_os_str().is_empty() {
            return Err(ExecutorError::InvalidRequest {
                key,
                reason: "log and result paths are required".to_owned(),
            });
        }
        // A result means the attempt already ran: starting it again would run it twice.
        if req.result_path.exists() {
            return Err(ExecutorError::AlreadyFinished {
                key,
                path: req.result_path,
            });
        }

        let gpu_ids = self.inner.reserve(&key, &req.resources)?;
        // Run the rest as its own task so that a caller dropping this future
        // cannot leave a supervisor running without a watcher and slots held.
        let inner = Arc::clone(&self.inner);
        let started = tokio::spawn(async move {
            match inner.spawn(&req, argv, &gpu_ids).await {
                Ok((handle, how)) => {
                    inner.watch(handle.clone(), how);
                    Ok(handle)
                }
                Err(e) => {
                    inner.forget(&req.key);
                    Err(e)
                }
            }
        });
        started.await.map_err(|e| ExecutorError::Io {
            context: format!("starting attempt {key} panicked"),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    async fn kill(&self, handle: &AttemptHandle) -> Result<(), ExecutorError> {
        let process = local_process(handle)?;
        let (sup, ticks) = (process.supervisor_pid, process.supervisor_start_ticks);
        if let Some(t) = self.inner.lock().attempts.get_mut(&handle.key) {
            t.kill_requested = true;
        }
        if let Some(task) = &process.shared {
            // A shared supervisor (a zygote, the supervision server)
            // supervises other attempts too: signal the task (SIGTERM, then
            // SIGKILL after the grace); the supervisor reaps it and writes
            // its result, which reports it as cancelled.
            let Some(pid) = task.pid else {
                tracing::warn!(
                    attempt = %handle.key,
                    "cannot kill an attempt adopted from its shared supervisor's claim: its pid is unknown; it ends by itself or at its timeout"
                );
                return Ok(());
            };
            let ticks = task.start_ticks;
            signal_task(pid, ticks, Signal::SIGTERM);
            let grace = self.inner.config.kill_grace;
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                signal_task(pid, ticks, Signal::SIGKILL);
            });
            return Ok(());
        }
        if !host::is_alive(sup, ticks) {
            // The supervisor is gone: make sure nothing of the attempt is left.
            host::signal_session(sup, ticks, Signal::SIGKILL);
            return Ok(());
        }
        // The supervisor turns SIGTERM into SIGTERM, grace, SIGKILL of the
        // task's tree, and records `cancelled`.
        if let Some(pid) = host::pid_of(sup) {
            let _ = kill(pid, Signal::SIGTERM);
        }
        let backstop = self.inner.config.kill_grace + BACKSTOP_SLACK;
        tokio::spawn(async move {
            tokio::time::sleep(backstop).await;
            if host::is_alive(sup, ticks) {
                tracing::warn!(
                    supervisor = sup,
                    "supervisor did not stop after a kill request; killing the attempt"
                );
                host::signal_session(sup, ticks, Signal::SIGKILL);
                tokio::time::sleep(BACKSTOP_SLACK).await;
                if host::is_alive(sup, ticks)
                    && let Some(pid) = host::pid_of(sup)
                {
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
        });
        Ok(())
    }

    async fn adopt(&self, handle: &AttemptHandle) -> Result<AdoptStatus, ExecutorError> {
        let process = local_process(handle)?;
        if self.inner.lock().attempts.contains_key(&handle.key) {
            return Ok(AdoptStatus::Running);
        }
        if let Some(result) = read_result(&handle.result_path)? {
            return Ok(AdoptStatus::Finished(result));
        }
        if host::is_alive(process.supervisor_pid, process.supervisor_start_ticks) {
            {
                let mut state = self.inner.lock();
                if state.attempts.contains_key(&handle.key) {
                    return Ok(AdoptStatus::Running);
                }
                state.slots.take(&handle.resources, &handle.gpu_ids);
                state.attempts.insert(
                    handle.key.clone(),
                    Tracked {
                        kill_requested: false,
                        resources: handle.resources.clone(),
                        gpu_ids: handle.gpu_ids.clone(),
                        handle: Some(handle.clone()),
                        watcher: None,
                    },
                );
            }
            self.inner.watch(handle.clone(), Watch::Poll);
            return Ok(AdoptStatus::Running);
        }
        // The result may have landed between the two checks.
        if let Some(result) = read_result(&handle.result_path)? {
            return Ok(AdoptStatus::Finished(result));
        }
        Ok(AdoptStatus::Lost {
            reason: lost(process, handle),
        })
    }

    async fn adopt_claimed(&self, query: &ClaimQuery) -> Result<ClaimStatus, ExecutorError> {
        let key = &query.key;
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let (log_path, result_path) = (absolute(&query.log_path), absolute(&query.result_path));
        let tracked = self
            .inner
            .lock()
            .attempts
            .get(key)
            .and_then(|t| t.handle.clone());
        if let Some(handle) = tracked {
            return Ok(ClaimStatus::Running(handle));
        }
        if let Some(result) = read_result(&result_path)? {
            return Ok(ClaimStatus::Finished(result));
        }
        let path = claim_path(&result_path);
        // Claims are never removed: once `create` finds one, `read` sees it.
        for _ in 0..3 {
            let found = claim::read(&path).map_err(|reason| ExecutorError::BadClaim {
                path: path.clone(),
                reason,
            })?;
            match found {
                Some(Claim::Fence { .. }) => return Ok(ClaimStatus::Fenced),
                Some(Claim::Supervisor {
                    pid,
                    start_ticks,
                    started_at,
                    gpu_ids,
                    shared,
                }) => {
                    let handle = AttemptHandle {
                        key: key.clone(),
                        started_at,
                        resources: query.resources.clone(),
                        gpu_ids,
                        log_path,
                        result_path,
                        process: ProcessRef::Local(LocalProcess {
                            supervisor_pid: pid,
                            supervisor_start_ticks: start_ticks,
                            // Claimed before the fork: the task's pid is not in it.
                            shared: shared.then_some(SharedTask {
                                pid: None,
                                start_ticks: None,
                            }),
                        }),
                    };
                    return Ok(match self.adopt(&handle).await? {
                        AdoptStatus::Running => ClaimStatus::Running(handle),
                        AdoptStatus::Finished(result) => ClaimStatus::Finished(result),
                        AdoptStatus::Lost { reason } | AdoptStatus::Disrupted { reason, .. } => {
                            ClaimStatus::Lost { reason }
                        }
                    });
                }
                None => {
                    let io = |source| ExecutorError::Io {
                        context: format!("cannot fence off attempt {key} at {}", path.display()),
                        source,
                    };
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).map_err(io)?;
                    }
                    let fence = Claim::Fence {
                        fenced_at: Utc::now(),
                        note: "fenced by the scheduler: the attempt had no process when the \
                               scheduler looked for it after a restart"
                            .to_owned(),
                    };
                    match claim::create(&path, &fence) {
                        Ok(()) => return Ok(ClaimStatus::Fenced),
                        // A supervisor claimed it just now: adopt it.
                        Err(claim::CreateError::Exists) => {}
                        Err(claim::CreateError::Io(e)) => return Err(io(e)),
                    }
                }
            }
        }
        Err(ExecutorError::BadClaim {
            path,
            reason: "the claim file exists but keeps disappearing".to_owned(),
        })
    }
}

/// How a watcher learns that the supervisor ended.
enum Watch {
    /// Our child: wait for it.
    Child(Child),
    /// A task a shared supervisor (a zygote, the supervision server)
    /// supervises: wait for the end report on the connection, then read
    /// the result file.
    Shared(Supervised),
    /// Someone else held the claim: nothing ran.
    Claimed,
    /// Nothing ran, for this reason.
    Lost(String),
    /// It ended before it started (its shared supervisor claimed it and
    /// could not start it): the result file is there.
    Ended,
    /// Adopted: poll liveness and the result file.
    Poll,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counts half-updated
        // in a way worse than stopping, so keep going with the data.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reserve(&self, key: &AttemptKey, resources: &Resources) -> Result<Vec<u32>, ExecutorError> {
        let mut state = self.lock();
        if state.attempts.contains_key(key) {
            return Err(ExecutorError::AlreadyRunning { key: key.clone() });
        }
        let gpu_ids = state.slots.reserve(key, resources)?;
        state.attempts.insert(
            key.clone(),
            Tracked {
                kill_requested: false,
                resources: resources.clone(),
                gpu_ids: gpu_ids.clone(),
                handle: None,
                watcher: None,
            },
        );
        Ok(gpu_ids)
    }

    /// Drops an attempt's record and frees its slots.
    fn forget(&self, key: &AttemptKey) {
        let mut state = self.lock();
        if let Some(t) = state.attempts.remove(key) {
            state.slots.release(&t.resources, &t.gpu_ids);
        }
    }

    async fn spawn(
        &self,
        req: &StartRequest,
        argv: Vec<String>,
        gpu_ids: &[u32],
    ) -> Result<(AttemptHandle, Watch), ExecutorError> {
        for path in [&req.log_path, &req.result_path] {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| ExecutorError::Io {
                    context: format!(
                        "cannot create directory {} for attempt {}",
                        dir.display(),
                        req.key
                    ),
                    source,
                })?;
            }
        }
        // A Python attempt goes to its pre-forked interpreter, which
        // supervises it; anything that fails before the fork runs it under
        // a supervisor process in a fresh interpreter instead.
        let mut prefork_off = false;
        if zygote::applies(&argv, &req.env) {
            match self.hand_to_zygote(req, &argv, gpu_ids).await {
                Ok(Some(done)) => return Ok(done),
                // The supervisor starts the zygote and hands it the attempt.
                Ok(None) => {}
                Err(note) => {
                    if let Some(note) = note {
                        append_note(
                            &req.log_path,
                            &format!("[pave] running in a fresh interpreter: {note}\n"),
                        );
                    }
                    prefork_off = true;
                }
            }
        } else if let Some(done) = self.hand_to_server(req, &argv, gpu_ids).await {
            return Ok(done);
        }
        let args = SuperviseArgs {
            result: req.result_path.clone(),
            log: req.log_path.clone(),
            claim: Some(claim_path(&req.result_path)),
            gpus: gpu_ids.to_vec(),
            timeout: req.execution_timeout,
            grace: self.config.kill_grace,
            cwd: req.cwd.clone(),
            argv,
        };
        let (program, leading) =
            self.config
                .supervisor
                .split_first()
                .ok_or_else(|| ExecutorError::Config {
                    reason: "`supervisor` must name a program".to_owned(),
                })?;
        let mut cmd = Command::new(program);
        cmd.args(leading)
            .args(args.to_args())
            .envs(&req.env)
            .envs(prefork_off.then_some((zygote::PREFORK_ENV, "0")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.envs(self.gpu_env(gpu_ids));

        let started_at = Utc::now();
        let child = cmd.spawn().map_err(|source| ExecutorError::Spawn {
            key: req.key.clone(),
            program: program.clone(),
            source,
        })?;
        let supervisor_pid = child.id().unwrap_or(0);
        let supervisor_start_ticks = host::proc_stat(supervisor_pid).map(|s| s.start_ticks);
        let handle = self.track(
            req,
            gpu_ids,
            started_at,
            LocalProcess {
                supervisor_pid,
                supervisor_start_ticks,
                shared: None,
            },
        );
        Ok((handle, Watch::Child(child)))
    }

    /// The attempt's handle, remembered with its slots.
    fn track(
        &self,
        req: &StartRequest,
        gpu_ids: &[u32],
        started_at: chrono::DateTime<Utc>,
        process: LocalProcess,
    ) -> AttemptHandle {
        let handle = AttemptHandle {
            key: req.key.clone(),
            started_at,
            resources: req.resources.clone(),
            gpu_ids: gpu_ids.to_vec(),
            log_path: req.log_path.clone(),
            result_path: req.result_path.clone(),
            process: ProcessRef::Local(process),
        };
        if let Some(t) = self.lock().attempts.get_mut(&req.key) {
            t.handle = Some(handle.clone());
        }
        handle
    }

    /// Hands a Python attempt to its zygote (see [`zygote::hand_over`]).
    /// `Ok(None)`: no zygote listens; `Err`: nothing was forked or claimed
    /// and the zygote cannot serve the attempt, with a note for the log.
    async fn hand_to_zygote(
        &self,
        req: &StartRequest,
        argv: &[String],
        gpu_ids: &[u32],
    ) -> Result<Option<(AttemptHandle, Watch)>, Option<String>> {
        let log = open_log(&req.log_path)
            .map_err(|e| Some(format!("cannot open {}: {e}", req.log_path.display())))?;
        let Some(env) = self.attempt_env(req, gpu_ids) else {
            return Err(None);
        };
        let argv = argv.to_vec();
        let cwd = req.cwd.clone();
        let supervision = self.supervision(req, gpu_ids);
        let started_at = Utc::now();
        let handed = tokio::task::spawn_blocking(move || {
            zygote::hand_over(&Handover {
                argv: &argv,
                cwd: cwd.as_deref(),
                env,
                log: &log,
                supervision: &supervision,
            })
        })
        .await
        .map_err(|e| Some(format!("handing the attempt to its zygote panicked: {e}")))?;
        self.take_handed(req, gpu_ids, started_at, handed)
    }

    /// Hands a command attempt to the supervision server, starting it if
    /// none listens (see [`crate::serve`]). `None`: the server is not
    /// configured or cannot take the attempt, and nothing was claimed: it
    /// runs under a supervisor process of its own.
    async fn hand_to_server(
        &self,
        req: &StartRequest,
        argv: &[String],
        gpu_ids: &[u32],
    ) -> Option<(AttemptHandle, Watch)> {
        let n = self
            .next_server
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let files = self.servers.get(n % self.servers.len().max(1))?.clone();
        let down = *self
            .server_down_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if down.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        let env = self.attempt_env(req, gpu_ids)?;
        let cwd = match &req.cwd {
            Some(cwd) => cwd.clone(),
            None => std::env::current_dir().ok()?,
        };
        let argv = argv.to_vec();
        let log = req.log_path.clone();
        let supervision = self.supervision(req, gpu_ids);
        let supervisor = self.config.supervisor.clone();
        let idle = self.config.server_idle;
        let started_at = Utc::now();
        let (handed, start_failed) = tokio::task::spawn_blocking(move || {
            let h = serve::Handover {
                argv: &argv,
                cwd: &cwd,
                env: &env,
                log: &log,
                supervision: &supervision,
            };
            match serve::hand_over(&files, &h) {
                Handed::NotListening => match serve::start(&files, &supervisor, idle) {
                    Ok(()) => (serve::hand_over(&files, &h), None),
                    Err(why) => (Handed::Unservable(None), Some(why)),
                },
                other => (other, None),
            }
        })
        .await
        .ok()?;
        if let Some(why) = start_failed {
            tracing::warn!(
                "the supervision server cannot start ({why}); command attempts run under a \
                 supervisor process each for the next {}s",
                SERVER_RETRY.as_secs()
            );
            *self
                .server_down_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(Instant::now() + SERVER_RETRY);
        }
        match self.take_handed(req, gpu_ids, started_at, handed) {
            Ok(done) => done,
            Err(note) => {
                if let Some(note) = note {
                    tracing::warn!(attempt = %req.key, "{note}; running it under a supervisor process of its own");
                }
                None
            }
        }
    }

    /// What a shared supervisor supervises of an attempt (its claim and
    /// result files, timeout, kill grace, GPUs).
    fn supervision(&self, req: &StartRequest, gpu_ids: &[u32]) -> Supervision {
        Supervision {
            claim: claim_path(&req.result_path),
            result: req.result_path.clone(),
            timeout: req.execution_timeout,
            grace: self.config.kill_grace,
            gpu_ids: gpu_ids.to_vec(),
        }
    }

    /// The whole environment of an attempt for a shared supervisor: this
    /// process's, then the attempt's variables and its GPUs. `None` when
    /// this process's environment is not all UTF-8 (it cannot go as JSON).
    fn attempt_env(&self, req: &StartRequest, gpu_ids: &[u32]) -> Option<BTreeMap<String, String>> {
        let mut env = self.base_env.get_or_init(zygote::process_env).clone()?;
        env.extend(req.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(self.gpu_env(gpu_ids));
        Some(env)
    }

    /// What a hand-over to a shared supervisor did, as the attempt's handle
    /// and how to watch it. `Ok(None)`: nobody listened (nothing was
    /// sent); `Err`: nothing was started or claimed and the supervisor
    /// cannot serve the attempt, with a note for the log.
    fn take_handed(
        &self,
        req: &StartRequest,
        gpu_ids: &[u32],
        started_at: chrono::DateTime<Utc>,
        handed: Handed,
    ) -> Result<Option<(AttemptHandle, Watch)>, Option<String>> {
        match handed {
            Handed::Running(attempt) => {
                let process = LocalProcess {
                    supervisor_pid: attempt.supervisor_pid,
                    supervisor_start_ticks: attempt
                        .supervisor_start_ticks
                        .or_else(|| host::proc_stat(attempt.supervisor_pid).map(|s| s.start_ticks)),
                    shared: Some(SharedTask {
                        pid: Some(attempt.task_pid),
                        start_ticks: host::proc_stat(attempt.task_pid).map(|s| s.start_ticks),
                    }),
                };
                let handle = self.track(req, gpu_ids, started_at, process);
                Ok(Some((handle, Watch::Shared(attempt))))
            }
            Handed::Claimed | Handed::NotRun => {
                let how = if matches!(handed, Handed::Claimed) {
                    Watch::Claimed
                } else {
                    Watch::Ended
                };
                let process = LocalProcess {
                    supervisor_pid: 0,
                    supervisor_start_ticks: None,
                    shared: None,
                };
                let handle = self.track(req, gpu_ids, started_at, process);
                Ok(Some((handle, how)))
            }
            Handed::Silent(attempt) => {
                // The supervisor may still claim and start it: fence it
                // off first, unless the supervisor already claimed it.
                let who = attempt.who;
                let fence = Claim::Fence {
                    fenced_at: Utc::now(),
                    note: format!("fenced by the scheduler: {who} did not answer in time"),
                };
                let claim = claim_path(&req.result_path);
                let fenced = claim::create(&claim, &fence);
                let supervisor_pid = attempt.supervisor_pid;
                let process = LocalProcess {
                    supervisor_pid,
                    supervisor_start_ticks: host::proc_stat(supervisor_pid).map(|s| s.start_ticks),
                    shared: Some(SharedTask {
                        pid: None,
                        start_ticks: None,
                    }),
                };
                let handle = self.track(req, gpu_ids, started_at, process);
                Ok(Some(match fenced {
                    Ok(()) => (
                        handle,
                        Watch::Lost(format!(
                            "{who} (pid {supervisor_pid}) did not answer in time; the attempt \
                             was fenced off ({}) before anything ran",
                            claim.display()
                        )),
                    ),
                    // The supervisor claimed it: it runs; its end comes as usual.
                    Err(_) => (handle, Watch::Shared(attempt)),
                }))
            }
            Handed::NotListening => Ok(None),
            Handed::Unservable(note) => Err(note),
        }
    }

    /// The variables that hand out the attempt's GPUs, when this machine has
    /// any: exactly the reserved ones; a task that asked for none sees none.
    fn gpu_env(&self, gpu_ids: &[u32]) -> Vec<(String, String)> {
        if self.lock().slots.capacity().gpus.is_empty() {
            return Vec::new();
        }
        let ids = gpu_ids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        vec![
            ("CUDA_DEVICE_ORDER".to_owned(), "PCI_BUS_ID".to_owned()),
            (
                "NVIDIA_VISIBLE_DEVICES".to_owned(),
                if ids.is_empty() {
                    "void".to_owned()
                } else {
                    ids.clone()
                },
            ),
            ("CUDA_VISIBLE_DEVICES".to_owned(), ids),
        ]
    }

    /// Starts the watcher of a tracked attempt.
    fn watch(self: &Arc<Self>, handle: AttemptHandle, how: Watch) {
        let key = handle.key.clone();
        let inner = Arc::clone(self);
        let task = tokio::spawn(async move {
            let event = match how {
                Watch::Child(child) => inner.wait_child(&handle, child).await,
                Watch::Shared(attempt) => inner.wait_shared(&handle, attempt).await,
                Watch::Claimed => already_claimed(&handle),
                Watch::Lost(reason) => ExecutorEvent::Lost {
                    key: handle.key.clone(),
                    reason,
                },
                Watch::Ended => match read_result(&handle.result_path) {
                    Ok(Some(result)) => ExecutorEvent::Finished {
                        key: handle.key.clone(),
                        result,
                    },
                    Ok(None) => inner.no_result(&handle, ": its supervisor could not start it"),
                    Err(e) => ExecutorEvent::Lost {
                        key: handle.key.clone(),
                        reason: e.to_string(),
                    },
                },
                Watch::Poll => inner.poll_adopted(&handle).await,
            };
            inner.finish(event);
        });
        if let Some(t) = self.lock().attempts.get_mut(&key) {
            t.watcher = Some(task.abort_handle());
        }
    }

    async fn wait_child(&self, handle: &AttemptHandle, mut child: Child) -> ExecutorEvent {
        let status = child.wait().await;
        if status
            .as_ref()
            .is_ok_and(|s| s.code() == Some(EXIT_ALREADY_CLAIMED))
        {
            return already_claimed(handle);
        }
        match read_result(&handle.result_path) {
            Ok(Some(result)) => ExecutorEvent::Finished {
                key: handle.key.clone(),
                result,
            },
            Ok(None) => {
                let how = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("an unknown status ({e})"),
                };
                self.no_result(handle, &format!("; it exited with {how}"))
            }
            Err(e) => ExecutorEvent::Lost {
                key: handle.key.clone(),
                reason: e.to_string(),
            },
        }
    }

    /// Waits for the shared supervisor's report that its task ended, then
    /// reads the result file it wrote. Without one (the supervisor died,
    /// which its tasks do not survive, or could not write it) the result is
    /// made here from what is known.
    async fn wait_shared(&self, handle: &AttemptHandle, attempt: Supervised) -> ExecutorEvent {
        use tokio::io::AsyncReadExt;
        let task_pid = attempt.task_pid;
        let who = attempt.who;
        let (stream, mut report) = attempt.split();
        let end = match stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(stream))
        {
            Ok(mut stream) => {
                let mut buf = [0u8; 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break None,
                        Ok(n) => {
                            if let Some(end) = report.feed(buf.get(..n).unwrap_or_default()) {
                                break Some(end);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break None,
                    }
                }
            }
            Err(_) => None,
        };
        let kill_requested = self
            .lock()
            .attempts
            .get(&handle.key)
            .is_some_and(|t| t.kill_requested);
        let mut result = match read_result(&handle.result_path) {
            Ok(Some(result)) => result,
            Ok(None) => {
                let ended_at = Utc::now();
                let mut notes = Vec::new();
                let (exit, peak_rss_kib) = match &end {
                    Some(end) => {
                        notes.push(format!(
                            "{who} could not write the result file: {}",
                            end.result_error.as_deref().unwrap_or("unknown error")
                        ));
                        (end.exit, end.maxrss_kib)
                    }
                    None => {
                        if task_pid > 0 {
                            signal_task(task_pid, None, Signal::SIGKILL);
                        }
                        notes.push(format!(
                            "{who} exited while the task ran, which kills the task; its exit status and peak memory are unknown"
                        ));
                        (
                            Exit::Signal {
                                signal: Signal::SIGKILL as i32,
                            },
                            0,
                        )
                    }
                };
                let duration = (ended_at - handle.started_at).num_milliseconds();
                AttemptResult {
                    exit,
                    pid: (task_pid > 0).then_some(task_pid),
                    timed_out: false,
                    cancelled: false,
                    started_at: handle.started_at,
                    ended_at,
                    duration_ms: u64::try_from(duration).unwrap_or(0),
                    peak_rss_kib,
                    last_line: None,
                    error: None,
                    notes,
                    xcoms: None,
                }
            }
            Err(e) => {
                return ExecutorEvent::Lost {
                    key: handle.key.clone(),
                    reason: e.to_string(),
                };
            }
        };
        if kill_requested && matches!(result.exit, Exit::Signal { .. }) {
            result.cancelled = true;
        }
        ExecutorEvent::Finished {
            key: handle.key.clone(),
            result,
        }
    }

    async fn poll_adopted(&self, handle: &AttemptHandle) -> ExecutorEvent {
        let ProcessRef::Local(process) = &handle.process else {
            return self.no_result(handle, "");
        };
        loop {
            tokio::time::sleep(self.config.adopt_poll_interval).await;
            let alive = host::is_alive(process.supervisor_pid, process.supervisor_start_ticks);
            match read_result(&handle.result_path) {
                Ok(Some(result)) => {
                    return ExecutorEvent::Finished {
                        key: handle.key.clone(),
                        result,
                    };
                }
                Ok(None) if alive => {}
                Ok(None) => return self.no_result(handle, ""),
                Err(e) => {
                    return ExecutorEvent::Lost {
                        key: handle.key.clone(),
                        reason: e.to_string(),
                    };
                }
            }
        }
    }

    /// The supervisor ended without a result. After a kill request that is
    /// the kill arriving before the supervisor was ready to record it: report
    /// a cancelled attempt. Otherwise the attempt is lost.
    fn no_result(&self, handle: &AttemptHandle, detail: &str) -> ExecutorEvent {
        let key = handle.key.clone();
        let reason = match &handle.process {
            ProcessRef::Local(p) => format!("{}{detail}", lost(p, handle)),
            ProcessRef::Noop | ProcessRef::Pod(_) => "not a local attempt".to_owned(),
        };
        let kill_requested = self
            .lock()
            .attempts
            .get(&key)
            .is_some_and(|t| t.kill_requested);
        if !kill_requested {
            return ExecutorEvent::Lost { key, reason };
        }
        let ended_at = Utc::now();
        let duration = (ended_at - handle.started_at).num_milliseconds();
        let result = AttemptResult {
            exit: Exit::Signal {
                signal: Signal::SIGTERM as i32,
            },
            pid: None,
            timed_out: false,
            cancelled: true,
            started_at: handle.started_at,
            ended_at,
            duration_ms: u64::try_from(duration).unwrap_or(0),
            peak_rss_kib: 0,
            last_line: None,
            error: None,
            notes: vec![reason],
            xcoms: None,
        };
        ExecutorEvent::Finished { key, result }
    }

    /// Frees the attempt's slots, then reports it (so a scheduler reacting to
    /// the event finds the slots free).
    fn finish(&self, event: ExecutorEvent) {
        self.forget(event.key());
        // A closed channel means nobody listens any more; the result file stays.
        let _ = self.events.send(event);
    }
}

fn local_process(handle: &AttemptHandle) -> Result<&LocalProcess, ExecutorError> {
    match &handle.process {
        ProcessRef::Local(p) => Ok(p),
        ProcessRef::Noop => Err(ExecutorError::WrongExecutor {
            key: handle.key.clone(),
            expected: "local",
            found: "noop",
        }),
        ProcessRef::Pod(_) => Err(ExecutorError::WrongExecutor {
            key: handle.key.clone(),
            expected: "local",
            found: "kubernetes",
        }),
    }
}

/// The event of a start whose claim someone else held: nothing ran, and
/// any result file there belongs to whoever holds the claim.
fn already_claimed(handle: &AttemptHandle) -> ExecutorEvent {
    ExecutorEvent::Lost {
        key: handle.key.clone(),
        reason: format!(
            "attempt already claimed: {} existed when its supervisor started (fenced off \
             by a restarted scheduler, or run by another supervisor), so it ran nothing",
            claim_path(&handle.result_path).display()
        ),
    }
}

/// Signals a task a shared supervisor started: its process group and every
/// process of its session (it leads both), unless the pid now names
/// another process.
/// Returns whether any process was signalled.
fn signal_task(pid: u32, start_ticks: Option<u64>, signal: Signal) -> bool {
    if pid <= 1 {
        return false; // 0 would be our own process group
    }
    if let Some(stat) = host::proc_stat(pid)
        && start_ticks.is_some_and(|t| t != stat.start_ticks)
    {
        return false;
    }
    let group = i32::try_from(pid)
        .is_ok_and(|raw| nix::sys::signal::killpg(nix::unistd::Pid::from_raw(raw), signal).is_ok());
    host::signal_session(pid, start_ticks, signal) || group
}

/// Kills whatever is left of an attempt whose supervisor is gone without a
/// result, and says so.
fn lost(process: &LocalProcess, handle: &AttemptHandle) -> String {
    let (sup, ticks) = (process.supervisor_pid, process.supervisor_start_ticks);
    let killed = match &process.shared {
        // The shared supervisor's session is its own; its task leads another.
        Some(task) => task
            .pid
            .is_some_and(|pid| signal_task(pid, task.start_ticks, Signal::SIGKILL)),
        None => host::signal_session(sup, ticks, Signal::SIGKILL),
    };
    format!(
        "the supervisor (pid {sup}) of attempt {} is gone and left no result at {}{}",
        handle.key,
        handle.result_path.display(),
        if killed {
            "; its remaining processes were killed"
        } else {
            ""
        }
    )
}

/// The result file, if it exists yet.
pub(crate) fn read_result(path: &Path) -> Result<Option<AttemptResult>, ExecutorError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ExecutorError::BadResult {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExecutorError::BadResult {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test binary has no `pave-supervise` next to it (Cargo keeps test
    /// binaries in `deps/`): the default falls back to `<exe> supervise`.
    #[test]
    fn the_default_supervisor_falls_back_to_this_executable() {
        let exe = std::env::current_exe().expect("current exe");
        let sibling = exe
            .parent()
            .map(|d| d.join(SUPERVISOR_BIN))
            .expect("parent");
        let expected = if sibling.is_file() {
            vec![sibling.to_string_lossy().into_owned()]
        } else {
            vec![exe.to_string_lossy().into_owned(), "supervise".to_owned()]
        };
        assert_eq!(default_supervisor(), expected);
        assert_eq!(LocalExecutorConfig::default().supervisor, expected);
    }
}
