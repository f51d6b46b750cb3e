//! Python attempts through a pre-forked interpreter (a "zygote"), the
//! supervisor's side: find or start the zygote of the attempt's DAG file,
//! hand it the attempt, and supervise the forked task.
//!
//! A Python attempt is `PYTHON -m pave.runtime` with `PAVE_ZYGOTE_DIR` in its
//! environment (the scheduler sets it when pre-forking is on). Instead of
//! spawning that interpreter, the supervisor connects to the zygote for the
//! attempt's interpreter, working directory and environment (less the
//! variables that differ per attempt, [`ATTEMPT_VARS`]): a Python process
//! (`sdk/python/pave/zygote.py`) that has imported the DAG file once and
//! forks one child per attempt. It sends the attempt's environment, working
//! directory and argv, and passes the task's stdout (a pipe the supervisor
//! tees, as before) and stderr (the log file) with `SCM_RIGHTS`. The zygote
//! answers with the child's pid, which is also the task's process group and
//! session, and later with its exit status and peak RSS (`wait4`).
//!
//! The supervisor keeps everything it owns: the claim (taken before this
//! runs), the log, the timeout and kill request (SIGTERM, grace, SIGKILL to
//! the task's process group and session), and the result file, written the
//! same way. If the supervisor dies, the zygote sees the connection close
//! and SIGKILLs the task; if the zygote dies, its children die with it
//! (`PR_SET_PDEATHSIG`) and the supervisor records a SIGKILL.
//!
//! Nothing here is needed for correctness: whenever the zygote cannot be
//! used before the fork (no zygote can start, the DAG file fails to import
//! or is unsafe to fork from, a socket error, `PAVE_PYTHON_PREFORK=0`),
//! [`run_attempt`] returns `None` and the supervisor runs the interpreter
//! as before. A start-up that failed is remembered next to the socket for a
//! minute (while the DAG file is unchanged), so the other attempts of a
//! broken DAG file do not each pay for a failed start.
//!
//! [`prestart`] starts a zygote ahead of its attempts, from the environment
//! they will have (`pave dags test` does, and lets it parse the DAG file
//! too: one interpreter instead of a parser's and then a zygote's).
//!
//! Files, under `PAVE_ZYGOTE_DIR` (mode 0700), per zygote key: `KEY.sock`,
//! `KEY.lock` (held while starting one, so two supervisors never start two),
//! `KEY.log` (the zygote's own stderr) and `KEY.unusable`.

use crate::attempt::{AttemptResult, Exit};
use crate::handover::{
    DIRECT_ANSWER_TIMEOUT, Handed, Lines, Supervised, Supervision, connect, env_digest, frame,
    is_gone, is_not_listening, peer_pid, send_request,
};
use crate::supervise::{SuperviseArgs, append_note, open_log, write_result};
use crate::watch::{Watch, Watched, block_signals};
use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Set by the scheduler on a Python attempt when pre-forking is on: the
/// folder of the zygotes' sockets, locks and logs.
pub const ZYGOTE_DIR_ENV: &str = "PAVE_ZYGOTE_DIR";

/// `0` turns pre-forking off (the scheduler then does not set
/// [`ZYGOTE_DIR_ENV`]; the supervisor checks it too).
pub const PREFORK_ENV: &str = "PAVE_PYTHON_PREFORK";

/// How the executor's messages name a zygote.
pub(crate) const WHO: &str = "its zygote";

/// Seconds an unused zygote lives (default [`DEFAULT_IDLE_SECS`]).
pub const IDLE_ENV: &str = "PAVE_PYTHON_PREFORK_IDLE";

/// Default idle lifetime of a zygote, in seconds.
pub const DEFAULT_IDLE_SECS: u32 = 60;

/// The environment variables that differ from one attempt to the next (a
/// trailing `*` makes a prefix): a zygote is started without them, serves
/// every attempt whose other variables equal its own, and refuses to serve
/// a DAG file that reads one of them at import time.
pub const ATTEMPT_VARS: &[&str] = &[
    "PAVE_TASK_TOKEN",
    "PAVE_TASK_CONTEXT",
    "PAVE_API_URL",
    "PAVE_DAG_ID",
    "PAVE_TASK_ID",
    "PAVE_RUN_ID",
    "PAVE_TRY_NUMBER",
    "PAVE_MAP_INDEX",
    "PAVE_LOGICAL_DATE",
    "PAVE_GPU_FALLBACK",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    // Set with the two above when the executor has GPUs: a zygote started
    // ahead of the attempts ([`prestart`]) cannot know it.
    "CUDA_DEVICE_ORDER",
    "AIRFLOW_CTX_*",
];

/// Longest wait for a zygote to import its DAG file and listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for a zygote's answer to a request (the pid of the fork).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a failed start is remembered (while the DAG file is unchanged).
const UNUSABLE_TTL: Duration = Duration::from_secs(60);

/// Requests sent before giving up on the zygote (a zygote may step aside
/// between our connect and its answer: idle, or its DAG file changed).
const TRIES: usize = 3;

/// Runs the attempt in a forked child of its zygote, supervises it and
/// writes its result file, when the attempt is a Python attempt with
/// pre-forking on. Returns the supervisor's exit code (as
/// [`crate::supervise_main`]), or `None` when nothing was forked and the
/// caller must run the attempt as usual. The claim is taken by then.
pub(crate) fn run_attempt(
    args: &SuperviseArgs,
    started_at: DateTime<Utc>,
    clock: Instant,
) -> Option<i32> {
    let plan = Plan::new(args)?;
    let log = open_log(&args.log).ok()?;
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    let start_timeout = args.timeout.map_or(START_TIMEOUT, |t| t.min(START_TIMEOUT));
    let task = match plan.launch(&log, out_w, start_timeout) {
        Ok(task) => task,
        Err(Fallback(note)) => {
            if let Some(note) = note {
                append_note(
                    &args.log,
                    &format!("[pave] running in a fresh interpreter: {note}\n"),
                );
            }
            return None;
        }
    };

    let pid = task.pid;
    let mut forked = Forked {
        task,
        peak_rss_kib: 0,
    };
    let mut watch = Watch::default();
    let killed = Exit::Signal {
        signal: Signal::SIGKILL as i32,
    };
    let exit = match block_signals() {
        Ok(signals) => watch
            .run(args, log, &signals, &mut forked, Some(File::from(out_r)))
            .unwrap_or(killed),
        Err(e) => {
            crate::host::signal_group_and_session(pid, Signal::SIGKILL);
            watch.notes.push(format!(
                "cannot set up signal handling in the supervisor: {e}"
            ));
            killed
        }
    };
    let result = AttemptResult {
        exit,
        pid: u32::try_from(pid.as_raw()).ok(),
        timed_out: watch.timed_out,
        cancelled: watch.cancelled,
        started_at,
        ended_at: Utc::now(),
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        peak_rss_kib: forked.peak_rss_kib,
        last_line: watch.last_line.finish(),
        error: None,
        notes: watch.notes,
        xcoms: None,
    };
    Some(match write_result(&args.result, &result) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "pave supervise: cannot write result file {}: {e}",
                args.result.display()
            );
            1
        }
    })
}

/// A Python attempt that the executor hands to its zygote itself, without a
/// supervisor process (see [`hand_over`]).
pub(crate) struct Handover<'a> {
    /// `PYTHON -m pave.runtime`.
    pub argv: &'a [String],
    pub cwd: Option<&'a Path>,
    /// The attempt's whole environment.
    pub env: BTreeMap<String, String>,
    /// The attempt's log, opened for appending: the task's stdout and stderr.
    pub log: &'a File,
    pub supervision: &'a Supervision,
}

/// Whether an attempt may go to a zygote: a Python attempt
/// (`PYTHON -m pave.runtime`) with `PAVE_ZYGOTE_DIR` set in `env`. Whether
/// pre-forking is turned off is [`hand_over`]'s to find (`Plan::from_parts`,
/// on the attempt's whole environment).
pub(crate) fn applies(argv: &[String], env: &BTreeMap<String, String>) -> bool {
    is_python_runtime(argv) && env.get(ZYGOTE_DIR_ENV).is_some_and(|d| !d.is_empty())
}

/// Hands a Python attempt to its zygote, if one listens, which takes the
/// attempt's claim, forks it and supervises it: the executor needs no
/// supervisor process per attempt. Anything that fails before the fork
/// answers [`Handed::NotListening`] or [`Handed::Unservable`]. Blocking, for
/// as long as a listening zygote takes to answer.
pub(crate) fn hand_over(h: &Handover<'_>) -> Handed {
    let Some(plan) = Plan::from_parts(h.argv, h.cwd, h.env.clone()) else {
        return Handed::Unservable(None);
    };
    let request = match plan.request(Some(h.supervision.to_json())) {
        Ok(r) => r,
        Err(Fallback(note)) => return Handed::Unservable(note),
    };
    // Starting a zygote takes as long as importing the DAG file, which the
    // scheduler must not wait for: a supervisor process does that.
    if plan.known_unusable().is_some() {
        return Handed::Unservable(None);
    }
    match plan.ask(&request, &[h.log.as_raw_fd()], None) {
        Ok(Asked::NotListening) => Handed::NotListening,
        Ok(Asked::Forked(task)) => Handed::Running(Supervised {
            task_pid: u32::try_from(task.pid.as_raw()).unwrap_or(0),
            supervisor_pid: peer_pid(&task.stream),
            supervisor_start_ticks: task.zygote_start_ticks,
            who: WHO,
            stream: task.stream,
            lines: task.lines,
        }),
        Ok(Asked::Claimed) => Handed::Claimed,
        Ok(Asked::NotRun) => Handed::NotRun,
        Ok(Asked::Silent(task)) => Handed::Silent(Supervised {
            supervisor_pid: peer_pid(&task.stream),
            supervisor_start_ticks: None,
            task_pid: 0,
            who: WHO,
            stream: task.stream,
            lines: task.lines,
        }),
        Err(Fallback(note)) => Handed::Unservable(note),
    }
}

/// A zygote asked for ahead of the attempts ([`prestart`]): the command
/// line, working directory and whole environment a supervisor of the
/// attempts will have (the scheduler's environment of a Python attempt over
/// the scheduler process's own), so that it computes the same zygote key.
#[derive(Clone, Debug)]
pub struct Prestart {
    /// `PYTHON -m pave.runtime`.
    pub argv: Vec<String>,
    /// The attempts' working directory; `None`: this process's.
    pub cwd: Option<PathBuf>,
    /// The attempts' environment; the per-attempt variables ([`ATTEMPT_VARS`])
    /// may be left out. `PAVE_ZYGOTE_DIR` and `PAVE_DAG_FILE` must be there.
    pub env: BTreeMap<String, String>,
    /// Also parse the DAG file in the zygote (what `pave.parse` prints).
    pub parse: bool,
    /// Longest wait for the zygote to import the DAG file and listen.
    pub timeout: Duration,
    /// Address-space cap (KiB) while the zygote imports the DAG file, as
    /// the DAG processor caps `pave.parse`; lifted once the import is done,
    /// so the forked tasks do not inherit it. `None`: no cap.
    pub import_memory_kib: Option<u64>,
}

/// What [`prestart`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Prestarted {
    /// It started the zygote, which listens now. `spec`: with
    /// [`Prestart::parse`], the DAG file's spec document as `python -m
    /// pave.parse` prints it.
    Started { spec: Option<String> },
    /// The zygote could not start, and the attempts will run in fresh
    /// interpreters (remembered as when an attempt's start fails). `spec` as
    /// above: a file can import fine and still be unfit for forking.
    Unusable { why: String, spec: Option<String> },
    /// The zygote did not get ready in [`Prestart::timeout`] and was killed
    /// (its DAG file's import hangs or is slow).
    TimedOut { why: String },
    /// Nothing started: one listens already, pre-forking is off or does not
    /// apply to this command line, or a recent start failed.
    NotStarted,
}

/// Starts the zygote that the attempts described by `req` will use, unless
/// one listens already, and waits until it listens (or gave up). The first
/// attempt then finds it ready instead of paying for its start; and with
/// [`Prestart::parse`] the zygote's import of the DAG file doubles as its
/// parse, so one interpreter does the work of two (`pave dags test`).
/// Supervisors that come meanwhile wait on the zygote's start lock, as they
/// do for one another. Blocking.
pub fn prestart(req: &Prestart) -> Prestarted {
    let Some(plan) = Plan::from_parts(&req.argv, req.cwd.as_deref(), req.env.clone()) else {
        return Prestarted::NotStarted;
    };
    if connect(&plan.files.sock).is_ok() || plan.known_unusable().is_some() {
        return Prestarted::NotStarted;
    }
    let dir_ok = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&plan.files.dir)
        .is_ok();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&plan.files.lock);
    let Some(lock) = lock.ok().filter(|_| dir_ok) else {
        return Prestarted::NotStarted;
    };
    if lock.lock().is_err() || connect(&plan.files.sock).is_ok() || plan.known_unusable().is_some()
    {
        return Prestarted::NotStarted;
    }
    let start = plan.start(req.timeout, req.parse, req.import_memory_kib);
    match start.outcome {
        Ok(()) => Prestarted::Started { spec: start.spec },
        Err(why) => {
            plan.remember_unusable(&why);
            if start.timed_out {
                Prestarted::TimedOut { why }
            } else {
                Prestarted::Unusable {
                    why,
                    spec: start.spec,
                }
            }
        }
    }
}

/// Asks every zygote under `dir` (a `PAVE_ZYGOTE_DIR`) to stop, for a
/// clean shutdown of the scheduler that started them: removes their socket
/// files, which makes each stop accepting within a second and exit once its
/// running tasks ended (those keep running and are adopted on restart). A
/// socket whose start lock is held (a supervisor is starting that zygote
/// now) is left alone; that zygote idles out as usual. Returns how many
/// sockets were removed.
pub fn stop_zygotes(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut stopped = 0;
    for entry in entries.flatten() {
        let sock = entry.path();
        if sock.extension().is_none_or(|e| e != "sock") {
            continue;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(sock.with_extension("lock"));
        let Ok(lock) = lock else {
            continue;
        };
        if lock.try_lock().is_ok() && std::fs::remove_file(&sock).is_ok() {
            stopped += 1;
        }
    }
    stopped
}

/// How a zygote's start went ([`Plan::start`]).
struct Start {
    /// `Err`: why it is unusable.
    outcome: Result<(), String>,
    /// With `--spec`: what it printed as the DAG file's spec.
    spec: Option<String>,
    /// It did not get ready in time (and was killed).
    timed_out: bool,
}

/// Why the zygote was not used; `Some` note goes to the attempt's log.
struct Fallback(Option<String>);

impl Fallback {
    fn silent() -> Fallback {
        Fallback(None)
    }
    fn note(note: impl Into<String>) -> Fallback {
        Fallback(Some(note.into()))
    }
}

/// What a zygote did with a request.
enum Asked {
    /// It forked the attempt.
    Forked(Task),
    /// A supervised request whose claim someone else holds: nothing ran.
    Claimed,
    /// Nobody listens, and starting a zygote was not asked for.
    NotListening,
    /// A supervised request the zygote claimed but could not fork: its
    /// result file says so.
    NotRun,
    /// A supervised request the zygote did not answer in time: it may
    /// still claim and fork it (the connection is no lease).
    Silent(Task),
}

/// A forked task, as the zygote announced it.
struct Task {
    stream: UnixStream,
    lines: Lines,
    pid: Pid,
    /// The zygote's start time, as it answered it.
    zygote_start_ticks: Option<u64>,
}

/// The zygote an attempt needs and the request it sends it.
struct Plan {
    python: String,
    cwd: PathBuf,
    /// The whole environment of the attempt (what the child gets).
    env: BTreeMap<String, String>,
    /// The environment less [`ATTEMPT_VARS`] (what the zygote starts with).
    base_env: BTreeMap<String, String>,
    /// [`env_digest`] of `base_env`: what a request sends instead of it.
    base_digest: String,
    dag_file: PathBuf,
    idle_secs: String,
    files: Files,
}

/// The paths of one zygote.
struct Files {
    dir: PathBuf,
    sock: PathBuf,
    lock: PathBuf,
    log: PathBuf,
    unusable: PathBuf,
}

fn is_attempt_var(name: &str) -> bool {
    ATTEMPT_VARS.iter().any(|v| match v.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *v,
    })
}

/// Whether `argv` is a Python attempt's command line (`PYTHON -m pave.runtime`).
fn is_python_runtime(argv: &[String]) -> bool {
    matches!(argv, [python, dash_m, module]
        if dash_m == "-m" && module == "pave.runtime" && !python.is_empty())
}

/// This process's environment; `None` when a variable is not UTF-8 (it
/// could not be sent as JSON).
pub(crate) fn process_env() -> Option<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        env.insert(k.into_string().ok()?, v.into_string().ok()?);
    }
    Some(env)
}

impl Plan {
    /// The plan of a Python attempt with pre-forking on; `None` otherwise
    /// (or when the environment cannot be sent as JSON: not UTF-8).
    fn new(args: &SuperviseArgs) -> Option<Plan> {
        if !is_python_runtime(&args.argv) {
            return None;
        }
        Plan::from_parts(&args.argv, args.cwd.as_deref(), process_env()?)
    }

    /// The plan of the attempt `argv` run in `cwd` (default: this process's)
    /// with the whole environment `env`, as its supervisor would see them.
    fn from_parts(
        argv: &[String],
        cwd: Option<&Path>,
        env: BTreeMap<String, String>,
    ) -> Option<Plan> {
        let [python, _, _] = argv else {
            return None;
        };
        if !is_python_runtime(argv) {
            return None;
        }
        let dir = env.get(ZYGOTE_DIR_ENV).filter(|d| !d.is_empty())?.clone();
        if env.get(PREFORK_ENV).is_some_and(|v| v == "0") {
            return None;
        }
        let dag_file = PathBuf::from(env.get("PAVE_DAG_FILE")?);
        let cwd = match cwd {
            Some(cwd) => cwd.to_path_buf(),
            None => std::env::current_dir().ok()?,
        };
        let cwd = std::fs::canonicalize(cwd).ok()?;
        let base_env: BTreeMap<String, String> = env
            .iter()
            .filter(|(k, _)| !is_attempt_var(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let idle_secs = env
            .get(IDLE_ENV)
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or_else(|| DEFAULT_IDLE_SECS.to_string(), |s| s.to_string());
        let mut h = DefaultHasher::new();
        (argv, &cwd, &base_env).hash(&mut h);
        let key = format!("{:016x}", h.finish());
        let dir = PathBuf::from(dir);
        let files = Files {
            sock: dir.join(format!("{key}.sock")),
            lock: dir.join(format!("{key}.lock")),
            log: dir.join(format!("{key}.log")),
            unusable: dir.join(format!("{key}.unusable")),
            dir,
        };
        let base_digest = env_digest(&base_env);
        Some(Plan {
            python: python.clone(),
            cwd,
            env,
            base_env,
            base_digest,
            dag_file,
            idle_secs,
            files,
        })
    }

    /// Gets the attempt forked by a zygote (starting one if needed).
    fn launch(
        &self,
        log: &File,
        stdout: OwnedFd,
        start_timeout: Duration,
    ) -> Result<Task, Fallback> {
        let request = self.request(None)?;
        let asked = self.ask(
            &request,
            &[stdout.as_raw_fd(), log.as_raw_fd()],
            Some(start_timeout),
        );
        // Only the child holds the write end now: its exit closes the pipe.
        drop(stdout);
        match asked? {
            Asked::Forked(task) => Ok(task),
            Asked::Claimed | Asked::NotListening | Asked::NotRun | Asked::Silent(_) => Err(
                Fallback::note("the zygote answered as if the attempt were supervised"),
            ),
        }
    }

    /// Sends `request` with `fds` to the zygote (starting one if nobody
    /// listens and `start` gives how long it may take; otherwise answering
    /// [`Asked::NotListening`]) until it forks the attempt, takes its claim
    /// away, or refuses.
    fn ask(
        &self,
        request: &[u8],
        fds: &[std::os::fd::RawFd],
        start: Option<Duration>,
    ) -> Result<Asked, Fallback> {
        for _ in 0..TRIES {
            let stream = match start {
                Some(timeout) => self.connect_or_start(timeout)?,
                None => match connect(&self.files.sock) {
                    Ok(s) => s,
                    Err(e) if is_not_listening(&e) => return Ok(Asked::NotListening),
                    Err(e) => {
                        return Err(Fallback::note(format!("cannot connect to the zygote: {e}")));
                    }
                },
            };
            match send_request(&stream, request, fds) {
                Ok(()) => {}
                // The zygote stepped aside after accepting: try again.
                Err(e) if is_gone(&e) => continue,
                Err(e) => return Err(Fallback::note(format!("cannot reach the zygote: {e}"))),
            }
            let mut lines = Lines::default();
            let wait = if start.is_some() {
                ANSWER_TIMEOUT
            } else {
                DIRECT_ANSWER_TIMEOUT
            };
            let answer = match lines.read_answer(&mut &stream, Instant::now() + wait) {
                Ok(Some(a)) => a,
                // Closed before answering: it stepped aside (nothing was forked).
                Ok(None) => continue,
                // Reset before answering: the connection was never accepted
                // (a zygote killed a moment ago, whose listening socket a
                // child forked just before lived on for a few microseconds,
                // took it into its backlog), or the zygote died before it
                // reported a pid, which its children do not survive. Nothing
                // runs: start or find a zygote again.
                Err(e) if is_gone(&e) => continue,
                // A supervised request is no lease: closing the connection
                // would not stop what the zygote may still fork for it.
                Err(e) if start.is_none() && e.kind() == std::io::ErrorKind::TimedOut => {
                    return Ok(Asked::Silent(Task {
                        stream,
                        lines,
                        pid: Pid::from_raw(0),
                        zygote_start_ticks: None,
                    }));
                }
                Err(e) => {
                    return Err(Fallback::note(format!(
                        "the zygote did not answer ({e}); closing the connection stops anything it forked"
                    )));
                }
            };
            if let Some(pid) = answer.pid.filter(|p| *p > 0) {
                return Ok(Asked::Forked(Task {
                    stream,
                    lines,
                    pid: Pid::from_raw(pid),
                    zygote_start_ticks: answer.start_ticks,
                }));
            }
            if answer.claimed == Some(true) {
                return Ok(Asked::Claimed);
            }
            if answer.not_run == Some(true) {
                return Ok(Asked::NotRun);
            }
            match answer.refused {
                Some(_) if answer.retry => continue,
                Some(why) => return Err(Fallback::note(format!("the zygote refused: {why}"))),
                None => return Err(Fallback::note("the zygote answered without a pid")),
            }
        }
        Err(Fallback::note(format!(
            "the zygote stepped aside {TRIES} times in a row"
        )))
    }

    /// The request: length-prefixed JSON; with `supervise`, a request whose
    /// zygote supervises the attempt (see [`hand_over`]). Of the environment
    /// it sends the per-attempt variables and the digest of the rest: the
    /// zygote, whose children share its pages, then decodes and compares a
    /// dozen strings per attempt rather than some fifty.
    fn request(&self, supervise: Option<serde_json::Value>) -> Result<Vec<u8>, Fallback> {
        let attempt: BTreeMap<&str, &str> = self
            .env
            .iter()
            .filter(|(k, _)| is_attempt_var(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut body = serde_json::json!({
            "argv": [self.python, "-m", "pave.runtime"],
            "env": attempt,
            "base_env_sha1": self.base_digest,
            "cwd": self.cwd,
        });
        if let (Some(supervise), Some(map)) = (supervise, body.as_object_mut()) {
            map.insert("supervise".to_owned(), supervise);
        }
        frame(&body).map_err(Fallback::note)
    }

    fn connect_or_start(&self, start_timeout: Duration) -> Result<UnixStream, Fallback> {
        match connect(&self.files.sock) {
            Ok(s) => return Ok(s),
            Err(e) if is_not_listening(&e) => {}
            Err(e) => return Err(Fallback::note(format!("cannot connect to the zygote: {e}"))),
        }
        if self.known_unusable().is_some() {
            return Err(Fallback::silent());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.files.dir)
            .map_err(|e| {
                Fallback::note(format!("cannot create {}: {e}", self.files.dir.display()))
            })?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&self.files.lock)
            .map_err(|e| {
                Fallback::note(format!("cannot open {}: {e}", self.files.lock.display()))
            })?;
        // Whoever holds the lock starts the zygote; the others wait here,
        // then find it listening. Released when `lock` is dropped.
        lock.lock().map_err(|e| {
            Fallback::note(format!("cannot lock {}: {e}", self.files.lock.display()))
        })?;
        match connect(&self.files.sock) {
            Ok(s) => return Ok(s),
            Err(e) if is_not_listening(&e) => {}
            Err(e) => return Err(Fallback::note(format!("cannot connect to the zygote: {e}"))),
        }
        if self.known_unusable().is_some() {
            return Err(Fallback::silent());
        }
        if let Err(why) = self.start(start_timeout, false, None).outcome {
            self.remember_unusable(&why);
            return Err(Fallback::note(why));
        }
        connect(&self.files.sock).map_err(|e| {
            Fallback::note(format!("cannot connect to the zygote it just started: {e}"))
        })
    }

    /// Starts a zygote and waits until it listens; the reason it is unusable
    /// otherwise. With `spec`, the zygote also parses the DAG file: its
    /// spec, when the import and the spec succeeded (even if the file
    /// cannot be served).
    fn start(&self, timeout: Duration, spec: bool, memory_kib: Option<u64>) -> Start {
        let mut start = Start {
            outcome: Ok(()),
            spec: None,
            timed_out: false,
        };
        start.outcome = self.start_inner(timeout, spec, memory_kib, &mut start);
        start
    }

    fn start_inner(
        &self,
        timeout: Duration,
        spec: bool,
        memory_kib: Option<u64>,
        start: &mut Start,
    ) -> Result<(), String> {
        let zlog = File::create(&self.files.log)
            .map_err(|e| format!("cannot create {}: {e}", self.files.log.display()))?;
        // The zygote detaches (fork, setsid) and its parent exits at once.
        // Were we a subreaper (a supervisor is), the detached zygote would
        // become our child, and ours to kill when the attempt ends.
        let subreaper = nix::sys::prctl::get_child_subreaper().unwrap_or(false);
        if subreaper {
            let _ = nix::sys::prctl::set_child_subreaper(false);
        }
        let mut cmd = Command::new(&self.python);
        cmd.args(["-m", "pave.zygote", "--socket"])
            .arg(&self.files.sock)
            .arg("--lock")
            .arg(&self.files.lock)
            .args(["--idle", &self.idle_secs, "--attempt-vars"])
            .arg(ATTEMPT_VARS.join(","));
        if spec {
            cmd.arg("--spec");
        }
        if let Some(kib) = memory_kib {
            cmd.arg("--import-memory-kib").arg(kib.to_string());
        }
        let spawned = cmd
            .env_clear()
            .envs(&self.base_env)
            .current_dir(&self.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(zlog)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                if subreaper {
                    let _ = nix::sys::prctl::set_child_subreaper(true);
                }
                return Err(format!(
                    "cannot start `{} -m pave.zygote`: {e}",
                    self.python
                ));
            }
        };
        // The environment again, as JSON on stdin: the zygote compares
        // requests with it, not with its own environment, which a wrapper
        // of the interpreter (a pyenv shim) may have changed.
        if let Some(mut stdin) = child.stdin.take() {
            let env = serde_json::to_vec(&self.base_env).unwrap_or_default();
            let _ = stdin.write_all(&env);
        }
        let launcher = child.wait();
        if subreaper {
            let _ = nix::sys::prctl::set_child_subreaper(true);
        }
        if let Ok(status) = launcher
            && !status.success()
        {
            return Err(format!(
                "`{} -m pave.zygote` exited with {status} (its log: {})",
                self.python,
                self.files.log.display()
            ));
        }
        let Some(mut out) = child.stdout.take() else {
            return Err("the zygote's stdout was not captured".to_owned());
        };
        let deadline = Instant::now() + timeout;
        let mut lines = Lines::default();
        let mut zygote_pid = None;
        loop {
            let answer = match lines.read_answer(&mut out, deadline) {
                Ok(Some(a)) => a,
                Ok(None) => {
                    return Err(format!(
                        "the zygote exited while starting (its log: {})",
                        self.files.log.display()
                    ));
                }
                Err(e) => {
                    if let Some(pid) = zygote_pid {
                        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                    start.timed_out = e.kind() == std::io::ErrorKind::TimedOut;
                    return Err(format!(
                        "the zygote did not get ready in {}s ({e})",
                        timeout.as_secs_f64()
                    ));
                }
            };
            if let Some(pid) = answer.pid {
                zygote_pid = Some(pid);
            }
            if answer.spec.is_some() {
                start.spec = answer.spec;
            }
            if answer.ready == Some(true) {
                return Ok(());
            }
            if let Some(why) = answer.unusable {
                return Err(why);
            }
        }
    }

    /// What the DAG file looks like now, to tell whether a remembered failure still holds.
    fn dag_fingerprint(&self) -> String {
        std::fs::metadata(&self.dag_file).map_or_else(
            |_| "missing".to_owned(),
            |m| format!("{}.{}:{}:{}", m.mtime(), m.mtime_nsec(), m.size(), m.ino()),
        )
    }

    /// The reason a recent start failed, if the DAG file has not changed since.
    fn known_unusable(&self) -> Option<String> {
        let meta = std::fs::metadata(&self.files.unusable).ok()?;
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())?;
        if age > UNUSABLE_TTL {
            return None;
        }
        let text = std::fs::read_to_string(&self.files.unusable).ok()?;
        let (fingerprint, why) = text.split_once('\n')?;
        (fingerprint == self.dag_fingerprint()).then(|| why.to_owned())
    }

    fn remember_unusable(&self, why: &str) {
        let tmp = self.files.unusable.with_extension("unusable.tmp");
        let text = format!("{}\n{why}", self.dag_fingerprint());
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.files.unusable);
        }
    }
}

/// A forked attempt, as the zygote announced it: its exit comes from the
/// zygote's report.
struct Forked {
    task: Task,
    peak_rss_kib: u64,
}

impl Watched for Forked {
    fn group(&self) -> Pid {
        self.task.pid
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(self.task.stream.as_fd())
    }

    /// The task's exit, once the zygote reported it; a SIGKILL when the
    /// zygote went away without a report (its children die with it).
    fn exit(&mut self, fd_ready: bool, _signalled: bool, notes: &mut Vec<String>) -> Option<Exit> {
        let task = &mut self.task;
        if fd_ready && task.lines.fill(&mut &task.stream).is_err() {
            task.lines.eof = true;
        }
        while let Some(answer) = task.lines.next_answer() {
            if let Some(exit) = answer.exit {
                self.peak_rss_kib = answer.maxrss_kib.unwrap_or(0);
                return Some(exit);
            }
        }
        if task.lines.eof {
            crate::host::signal_group_and_session(task.pid, Signal::SIGKILL);
            notes.push(
                "the zygote (the pre-forked interpreter) exited while the task ran, which kills the task; its exit status and peak memory are unknown".to_owned(),
            );
            return Some(Exit::Signal {
                signal: Signal::SIGKILL as i32,
            });
        }
        None
    }

    fn kill(&self, signal: Signal) {
        crate::host::signal_group_and_session(self.task.pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_variables_are_named_or_prefixed() {
        for name in [
            "PAVE_TASK_TOKEN",
            "AIRFLOW_CTX_DAG_ID",
            "CUDA_VISIBLE_DEVICES",
            "CUDA_DEVICE_ORDER",
        ] {
            assert!(is_attempt_var(name), "{name}");
        }
        for name in [
            "PAVE_HOME",
            "PAVE_DAG_FILE",
            "PYTHONPATH",
            "AIRFLOW_CTX",
            "CUDA_HOME",
        ] {
            assert!(!is_attempt_var(name), "{name}");
        }
    }
}
