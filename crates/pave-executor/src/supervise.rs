//! The supervisor: a small synchronous process that owns one attempt, so the
//! attempt's outcome survives a crash of the scheduler.
//!
//! `pave supervise --result FILE --log FILE [--claim FILE] [--gpus IDS]
//! [--timeout SECS] [--grace SECS] [--cwd DIR] -- PROGRAM ARGS...` does, in
//! order:
//! 1. `setsid()`: the supervisor leads a new session, so a Ctrl-C or a
//!    `kill -9` of the scheduler does not reach it or the task. The attempt
//!    keeps running and a restarted scheduler adopts it from its handle.
//!    It also becomes a child subreaper, so orphaned grandchildren are
//!    reaped by it (their peak RSS counts) instead of by init.
//! 2. With `--claim`: creates the claim file exclusively, recording its pid,
//!    process start ticks, start time and `--gpus` (see [`crate::Claim`]),
//!    so a scheduler that never stored the handle can still adopt the
//!    attempt. If the claim exists already (the attempt was fenced off by a
//!    restarted scheduler, or another supervisor runs it), it runs nothing,
//!    writes no result, notes why in the log and exits with
//!    [`EXIT_ALREADY_CLAIMED`]. If the claim cannot be created for another
//!    reason, the attempt fails without running (a result with `error`).
//! 3. Spawns the task in its own process group (pgid = its pid) inside that
//!    session: stdout piped, stderr appended straight to the log file, stdin
//!    from /dev/null. The supervisor prints nothing on its own stdout.
//! 4. Tees stdout into the log file and remembers its last non-empty line
//!    (stderr needs no copy: the task writes it to the log itself, which
//!    saves a pipe and a wake-up per chunk). On `--timeout`, or on
//!    SIGTERM/SIGINT sent to the supervisor itself (a kill request), it sends
//!    SIGTERM to the task's group and to every other process of its session,
//!    and SIGKILL after `--grace`.
//! 5. When the task's main process exits, what it left behind is SIGKILLed
//!    (a task must not outlive its attempt and its GPU slot): its process
//!    group, and orphans that were re-parented to the supervisor. The stdout
//!    pipe is drained (at most 2 s more if something still holds it), the
//!    peak RSS is read with `getrusage(RUSAGE_CHILDREN)`, and the
//!    [`AttemptResult`] is written as JSON to `FILE.tmp` and renamed to
//!    `FILE` (atomic: a reader sees the whole result or none). No fsync: this
//!    guards against process crashes, not power loss.
//!
//! There is no async runtime and no logging framework here: start-up cost is
//! paid per task.

use crate::attempt::{AttemptResult, Exit};
use crate::claim;
use crate::watch::{Watch, Watched, block_signals};
use chrono::Utc;
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{Signal, killpg};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Default time between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Longest stdout line kept for `last_line`; the rest of a longer line is dropped.
const MAX_LINE: usize = 1 << 20;

/// The supervisor's exit status when the attempt's claim file already
/// existed: it ran nothing and wrote no result (sysexits' `EX_CANTCREAT`,
/// "cannot create an output file"). The other statuses: 0, the result file
/// was written; 1, writing it failed; 2, bad arguments.
pub const EXIT_ALREADY_CLAIMED: i32 = 73;

/// Arguments of `pave supervise`. Plain fields, no clap: the `pave` binary
/// should hand everything after `supervise` to [`SuperviseArgs::from_args`]
/// before doing any other start-up work.
#[derive(Clone, Debug, PartialEq)]
pub struct SuperviseArgs {
    /// `--result FILE`: where the JSON result goes (via `FILE.tmp`).
    pub result: PathBuf,
    /// `--log FILE`: where stdout and stderr go (appended).
    pub log: PathBuf,
    /// `--claim FILE`: the attempt's claim, created exclusively before the
    /// task runs; without it the attempt is not fenced.
    pub claim: Option<PathBuf>,
    /// `--gpus 0,1`: the GPU ids reserved for the attempt, recorded in the
    /// claim (the task sees them through `CUDA_VISIBLE_DEVICES`).
    pub gpus: Vec<u32>,
    /// `--timeout SECS` (fractional allowed): the execution timeout.
    pub timeout: Option<Duration>,
    /// `--grace SECS`: SIGTERM to SIGKILL; default [`DEFAULT_GRACE`].
    pub grace: Duration,
    /// `--cwd DIR`: the task's working directory.
    pub cwd: Option<PathBuf>,
    /// Everything after `--`: the program and its arguments.
    pub argv: Vec<String>,
}

/// A malformed `pave supervise` command line.
#[derive(Debug, thiserror::Error)]
#[error(
    "pave supervise: {0}; usage: pave supervise --result FILE --log FILE [--claim FILE] [--gpus IDS] [--timeout SECS] [--grace SECS] [--cwd DIR] -- PROGRAM [ARGS...]"
)]
pub struct SuperviseArgsError(String);

impl SuperviseArgs {
    /// Parses the arguments that follow `supervise` (not the program name).
    pub fn from_args(args: Vec<String>) -> Result<SuperviseArgs, SuperviseArgsError> {
        let mut result = None;
        let mut log = None;
        let mut claim = None;
        let mut gpus = Vec::new();
        let mut timeout = None;
        let mut grace = DEFAULT_GRACE;
        let mut cwd = None;
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                let argv: Vec<String> = it.collect();
                if argv.is_empty() {
                    return Err(SuperviseArgsError("no program after `--`".into()));
                }
                let result =
                    result.ok_or_else(|| SuperviseArgsError("--result is required".into()))?;
                let log = log.ok_or_else(|| SuperviseArgsError("--log is required".into()))?;
                return Ok(SuperviseArgs {
                    result,
                    log,
                    claim,
                    gpus,
                    timeout,
                    grace,
                    cwd,
                    argv,
                });
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| SuperviseArgsError(format!("{name} needs a value")))
            };
            match name.as_str() {
                "--result" => result = Some(PathBuf::from(value()?)),
                "--log" => log = Some(PathBuf::from(value()?)),
                "--claim" => claim = Some(PathBuf::from(value()?)),
                "--gpus" => gpus = parse_gpus(&value()?)?,
                "--cwd" => cwd = Some(PathBuf::from(value()?)),
                "--timeout" => timeout = Some(parse_secs("--timeout", &value()?)?),
                "--grace" => grace = parse_secs("--grace", &value()?)?,
                other => return Err(SuperviseArgsError(format!("unknown argument `{other}`"))),
            }
        }
        Err(SuperviseArgsError("missing `--` before the program".into()))
    }

    /// The inverse of [`SuperviseArgs::from_args`].
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--result".to_owned(),
            self.result.to_string_lossy().into_owned(),
            "--log".to_owned(),
            self.log.to_string_lossy().into_owned(),
        ];
        if let Some(claim) = &self.claim {
            args.extend(["--claim".to_owned(), claim.to_string_lossy().into_owned()]);
        }
        if !self.gpus.is_empty() {
            let ids: Vec<String> = self.gpus.iter().map(u32::to_string).collect();
            args.extend(["--gpus".to_owned(), ids.join(",")]);
        }
        if let Some(t) = self.timeout {
            args.extend(["--timeout".to_owned(), t.as_secs_f64().to_string()]);
        }
        if self.grace != DEFAULT_GRACE {
            args.extend(["--grace".to_owned(), self.grace.as_secs_f64().to_string()]);
        }
        if let Some(cwd) = &self.cwd {
            args.extend(["--cwd".to_owned(), cwd.to_string_lossy().into_owned()]);
        }
        args.push("--".to_owned());
        args.extend(self.argv.iter().cloned());
        args
    }
}

fn parse_secs(flag: &str, s: &str) -> Result<Duration, SuperviseArgsError> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| {
            SuperviseArgsError(format!("{flag} takes seconds (e.g. 30 or 0.5), not `{s}`"))
        })
}

fn parse_gpus(s: &str) -> Result<Vec<u32>, SuperviseArgsError> {
    s.split(',')
        .filter(|id| !id.trim().is_empty())
        .map(|id| {
            id.trim().parse::<u32>().map_err(|_| {
                SuperviseArgsError(format!(
                    "--gpus takes comma-separated GPU ids (e.g. 0,1), not `{s}`"
                ))
            })
        })
        .collect()
}

/// Parses `args` (everything after `supervise`) and supervises; prints usage
/// and returns 2 on bad arguments. What `pave supervise` should call.
/// `--serve SOCKET ...` runs the supervision server instead ([`crate::serve`]).
pub fn supervise_cli(args: Vec<String>) -> i32 {
    if args.first().is_some_and(|a| a == "--serve") {
        return crate::serve::serve_cli(args.get(1..).unwrap_or_default());
    }
    match SuperviseArgs::from_args(args) {
        Ok(args) => supervise_main(args),
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}

/// Runs one attempt to its end and writes its result file. Returns the
/// supervisor's exit code: 0 when the result file was written (whatever the
/// task did), 1 when even that failed, [`EXIT_ALREADY_CLAIMED`] when the
/// claim was taken and nothing ran.
pub fn supervise_main(args: SuperviseArgs) -> i32 {
    // Fails with EPERM only if we already lead a process group (e.g. started
    // by an interactive shell); then we simply stay where we are.
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_child_subreaper(true);

    let started_at = Utc::now();
    let clock = Instant::now();
    let mut run = Run::new();

    let claimed = match &args.claim {
        Some(path) => match claim_attempt(path, &args.gpus, started_at) {
            Ok(()) => Ok(()),
            Err(claim::CreateError::Exists) => {
                let why = claim::refusal(path);
                append_note(&args.log, &format!("[pave] {why}\n"));
                eprintln!("pave supervise: {why}");
                return EXIT_ALREADY_CLAIMED;
            }
            Err(claim::CreateError::Io(e)) => Err(format!(
                "cannot claim the attempt at {}: {e}",
                path.display()
            )),
        },
        None => Ok(()),
    };

    // A Python task may run as a child of a pre-forked interpreter instead
    // (crate::zygote), which writes the result itself; `None`: nothing was
    // forked, run it as below.
    if claimed.is_ok()
        && let Some(code) = crate::zygote::run_attempt(&args, started_at, clock)
    {
        return code;
    }

    let outcome = match claimed.and_then(|()| prepare(&args)) {
        Ok((log, signals, child)) => {
            run.pid = Some(child.id());
            run.supervise(&args, log, &signals, child)
        }
        Err(error) => {
            append_note(&args.log, &format!("[pave] {error}\n"));
            run.error = Some(error);
            Exit::NotRun
        }
    };

    let result = AttemptResult {
        exit: outcome,
        pid: run.pid,
        timed_out: run.watch.timed_out,
        cancelled: run.watch.cancelled,
        started_at,
        ended_at: Utc::now(),
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        peak_rss_kib: peak_rss_kib(),
        last_line: run.watch.last_line.finish(),
        error: run.error,
        notes: run.watch.notes,
        xcoms: None,
    };
    match write_result(&args.result, &result) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "pave supervise: cannot write result file {}: {e}",
                args.result.display()
            );
            1
        }
    }
}

/// Creates the attempt's claim in this supervisor's name.
fn claim_attempt(
    path: &Path,
    gpus: &[u32],
    started_at: chrono::DateTime<Utc>,
) -> Result<(), claim::CreateError> {
    let pid = std::process::id();
    let ticks = crate::host::proc_stat(pid).map(|s| s.start_ticks);
    claim::take(path, pid, ticks, gpus, started_at, false)
}

/// Opens the log, sets up signal handling and spawns the task. An `Err` is
/// the reason the task could not run, worded for the task's author.
fn prepare(args: &SuperviseArgs) -> Result<(File, SignalFd, Child), String> {
    if let Some(cwd) = &args.cwd
        && !cwd.is_dir()
    {
        return Err(format!(
            "working directory `{}` does not exist or is not a directory",
            cwd.display()
        ));
    }
    let log = open_log(&args.log)
        .map_err(|e| format!("cannot open log file {}: {e}", args.log.display()))?;

    let (program, rest) = args.argv.split_first().ok_or("no command to run")?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(
            log.try_clone()
                .map_err(|e| format!("cannot share the log file with the task: {e}"))?,
        )
        .process_group(0);
    if let Some(cwd) = &args.cwd {
        cmd.current_dir(cwd);
    }
    // Spawn before blocking signals: the signal mask survives fork and exec
    // (std does not reset it), and a task with SIGTERM blocked would ignore
    // our timeout. A SIGCHLD sent before the block is not lost (the zombie
    // waits for `reap`); a SIGTERM in that window of microseconds kills the
    // supervisor, which the executor reports as a lost attempt.
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("cannot execute `{program}`: program not found"),
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot execute `{program}`: permission denied")
        }
        _ => format!("cannot execute `{program}`: {e}"),
    })?;

    match block_signals() {
        Ok(signals) => Ok((log, signals, child)),
        Err(e) => {
            let _ = killpg(
                Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)),
                Signal::SIGKILL,
            );
            let _ = child.wait();
            Err(format!(
                "cannot set up signal handling in the supervisor: {e}"
            ))
        }
    }
}

pub(crate) fn open_log(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

pub(crate) fn append_note(log: &Path, note: &str) {
    if let Ok(mut f) = open_log(log) {
        let _ = f.write_all(note.as_bytes());
    }
}

/// The state of one supervised attempt.
struct Run {
    pid: Option<u32>,
    error: Option<String>,
    watch: Watch,
}

impl Run {
    fn new() -> Run {
        Run {
            pid: None,
            error: None,
            watch: Watch::default(),
        }
    }

    /// Supervises the spawned task ([`Watch::run`]) until its main process
    /// is reaped and its stdout closed; then reaps what is left.
    fn supervise(
        &mut self,
        args: &SuperviseArgs,
        log: File,
        signals: &SignalFd,
        mut child: Child,
    ) -> Exit {
        let main_pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let stdout = child
            .stdout
            .take()
            .map(|out| File::from(std::os::fd::OwnedFd::from(out)));
        let mut task = Spawned { main_pid };
        let exit = self.watch.run(args, log, signals, &mut task, stdout);
        // Reap what is left (the killed group, adopted orphans) without blocking.
        let reaped = reap(main_pid);
        match exit.or(reaped) {
            Some(e) => e,
            None => match child.wait() {
                Ok(status) => exit_of(status),
                Err(e) => {
                    self.watch
                        .notes
                        .push(format!("cannot wait for the task: {e}"));
                    Exit::NotRun
                }
            },
        }
    }
}

/// A task this supervisor spawned: its own process group, our child.
struct Spawned {
    main_pid: Pid,
}

impl Watched for Spawned {
    fn group(&self) -> Pid {
        self.main_pid
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    /// Reaps on SIGCHLD; when the main process is gone, what it left
    /// behind is killed.
    fn exit(&mut self, _fd_ready: bool, signalled: bool, _notes: &mut Vec<String>) -> Option<Exit> {
        if !signalled {
            return None;
        }
        let exit = reap(self.main_pid)?;
        kill_leftovers(self.main_pid);
        Some(exit)
    }

    fn kill(&self, signal: Signal) {
        kill_tree(self.main_pid, signal);
    }
}

/// Signals the task's process group and every other process of our session
/// (processes that moved to a group of their own). The session scan reads
/// `/proc`, which is fine on this rare path.
fn kill_tree(group: Pid, signal: Signal) {
    let _ = killpg(group, signal);
    crate::host::signal_session(std::process::id(), None, signal);
}

/// After the main process exited: SIGKILL what is left in its group, and
/// the orphans re-parented to us (we are a subreaper). Cheap: one `killpg`
/// and one read of our children list; a process that left the group and
/// whose parent is still alive is not found here (its parent, if in the
/// group, dies now, and it becomes our orphan too late to be seen).
fn kill_leftovers(group: Pid) {
    let _ = killpg(group, Signal::SIGKILL);
    for pid in crate::host::own_children() {
        if let Some(p) = crate::host::pid_of(pid) {
            let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
        }
    }
}

/// Reaps every child that has exited (the task's main process, and orphans
/// we adopted as subreaper). Returns the main process's exit, if it was reaped.
fn reap(main_pid: Pid) -> Option<Exit> {
    let mut main = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main_pid => {
                main = Some(Exit::Code { code })
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main_pid => {
                main = Some(Exit::Signal { signal: sig as i32 })
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return main,
            Ok(_) => {}
        }
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code { code },
        (None, Some(signal)) => Exit::Signal { signal },
        (None, None) => Exit::NotRun,
    }
}

/// Peak RSS in KiB over all reaped children (Linux reports `ru_maxrss` in KiB).
fn peak_rss_kib() -> u64 {
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0, |u| u64::try_from(u.max_rss()).unwrap_or(0))
}

/// Writes `result` to `path.tmp`, then renames it over `path`.
pub(crate) fn write_result(path: &Path, result: &AttemptResult) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let json = serde_json::to_vec(result).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// Tracks the last non-empty line of a byte stream, chunk by chunk.
#[derive(Default)]
pub(crate) struct LastLine {
    /// The line being read (no newline seen yet), at most [`MAX_LINE`] bytes.
    partial: Vec<u8>,
    /// The last complete non-empty line.
    last: Option<Vec<u8>>,
}

impl LastLine {
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            self.push_partial(&rest[..nl]);
            self.end_line();
            rest = &rest[nl + 1..];
        }
        self.push_partial(rest);
    }

    fn push_partial(&mut self, bytes: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self) {
        if self.partial.iter().any(|b| !b.is_ascii_whitespace()) {
            let line = std::mem::take(&mut self.partial);
            self.last = Some(line);
        } else {
            self.partial.clear();
        }
    }

    pub(crate) fn finish(mut self) -> Option<String> {
        self.end_line();
        self.last
            .map(|l| String::from_utf8_lossy(l.trim_ascii_end()).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_and_round_trips_arguments() {
        let parsed = SuperviseArgs::from_args(args(&[
            "--result",
            "/r.json",
            "--log=/l.log",
            "--claim",
            "/c.claim",
            "--gpus",
            "0,3",
            "--timeout",
            "1.5",
            "--cwd",
            "/tmp",
            "--",
            "bash",
            "-c",
            "echo --x",
        ]))
        .expect("parse");
        assert_eq!(parsed.result, PathBuf::from("/r.json"));
        assert_eq!(parsed.log, PathBuf::from("/l.log"));
        assert_eq!(parsed.claim, Some(PathBuf::from("/c.claim")));
        assert_eq!(parsed.gpus, vec![0, 3]);
        assert_eq!(parsed.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(parsed.grace, DEFAULT_GRACE);
        assert_eq!(parsed.argv, args(&["bash", "-c", "echo --x"]));
        assert_eq!(
            SuperviseArgs::from_args(parsed.to_args()).expect("round trip"),
            parsed
        );
    }

    #[test]
    fn rejects_bad_arguments_with_a_reason() {
        let cases: &[(&[&str], &str)] = &[
            (&["--log", "l", "--", "true"], "--result is required"),
            (&["--result", "r", "--log", "l"], "missing `--`"),
            (&["--result", "r", "--log", "l", "--"], "no program"),
            (
                &[
                    "--result",
                    "r",
                    "--log",
                    "l",
                    "--timeout",
                    "soon",
                    "--",
                    "true",
                ],
                "--timeout takes seconds",
            ),
            (&["--bogus", "--", "true"], "unknown argument `--bogus`"),
            (&["--result"], "--result needs a value"),
            (&["--gpus", "a,b", "--", "true"], "--gpus takes"),
        ];
        for (input, expected) in cases {
            let err = SuperviseArgs::from_args(args(input))
                .expect_err("must fail")
                .to_string();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
    }

    #[test]
    fn last_line_skips_blank_lines_and_spans_chunks() {
        let mut l = LastLine::default();
        for chunk in [&b"first\nsec"[..], b"ond  \r\n", b"\n  \n"] {
            l.feed(chunk);
        }
        assert_eq!(l.finish().as_deref(), Some("second"));

        let mut unterminated = LastLine::default();
        unterminated.feed(b"a\nb");
        assert_eq!(unterminated.finish().as_deref(), Some("b"));
        assert_eq!(LastLine::default().finish(), None);
    }
}
