//! The supervision server: one long-lived supervisor process for the
//! command attempts of a pave home, so a command attempt costs the executor
//! a request on a unix socket instead of starting a `pave-supervise`
//! process (about 1.5 ms of CPU per attempt on a 2-core machine, the larger
//! part of the local executor's overhead above a bare spawn).
//!
//! `pave-supervise --serve SOCKET [--idle SECS]` (or `pave supervise
//! --serve ...`) binds `SOCKET`, prints `ready PID` and serves until it has
//! had nothing to do for `--idle` seconds (default [`DEFAULT_IDLE`]), or,
//! once idle, finds its socket removed or taken over ([`stop_server`]
//! removes it; so does deleting the folder). It leads a session of its own,
//! so a Ctrl-C or `kill -9` of the scheduler does not reach it. Per
//! request (the protocol of [`crate::handover`]; `supervise.log` names the
//! log file, no descriptor is passed) it does what a supervisor process
//! does for its one attempt ([`crate::supervise`]), in one event loop for
//! all of them:
//! 1. takes the attempt's claim in its own name (`shared`), or answers
//!    `{"claimed": true}` and runs nothing when someone else holds it;
//! 2. spawns the task, which leads a session of its own (its group and
//!    session are its pid) and dies with SIGKILL if the server dies
//!    (`PR_SET_PDEATHSIG`: a restarted scheduler then finds the attempt lost
//!    and retries it without a second copy still running): stdout piped
//!    here, stderr appended to the log, stdin from /dev/null; answers
//!    `{"pid": N}` (or writes a not-run result and answers `{"not_run":
//!    true}` when it cannot start);
//! 3. tees stdout into the log and keeps its last line; on the timeout sends
//!    SIGTERM to the task's group and session, SIGKILL after the grace;
//! 4. when the task's main process exits (reaped with `wait4`, which gives
//!    its peak RSS), SIGKILLs what is left of its group, and the orphans
//!    that were re-parented to the server (a subreaper) from its session;
//!    drains stdout for at most 2 s; writes the result file (`FILE.tmp`,
//!    renamed) and then answers `{"exit": .., "maxrss_kib": ..}`.
//!
//! The connection is no lease: the task goes on if the executor goes away,
//! and a restarted scheduler adopts it from its handle or its claim (both
//! name the server as the supervisor and, in the handle, the task's pid).
//! A kill request is a signal to the task (the executor's), never to the
//! server. A process that starts a session of its own escapes the clean-up
//! of step 4 (a per-attempt supervisor would kill it with its session).
//!
//! The executor's side is [`hand_over`] and [`start`]: when no server
//! listens it starts one (under `supervise.lock`, so two never start) and
//! sends the request again; whenever the server cannot be used, the
//! attempt runs under a supervisor process of its own as before.

use crate::attempt::{AttemptResult, Exit};
use crate::claim;
use crate::handover::{
    DIRECT_ANSWER_TIMEOUT, Handed, Lines, Supervised, Supervision, connect, frame, is_gone,
    is_not_listening, peer_pid,
};
use crate::supervise::{LastLine, append_note, open_log, write_result};
use crate::watch::{DRAIN_LIMIT, block_signals};
use chrono::{DateTime, Utc};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{Signal, killpg};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use serde::Deserialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `0` turns the supervision server off: every command attempt then gets a
/// supervisor process of its own.
pub const SERVER_ENV: &str = "PAVE_SUPERVISION_SERVER";

/// Seconds an unused server lives (default [`DEFAULT_IDLE`]).
pub const SERVER_IDLE_ENV: &str = "PAVE_SUPERVISION_SERVER_IDLE";

/// Default idle lifetime of a server.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// How often an idle server looks whether its socket is still its own.
const SOCKET_CHECK: Duration = Duration::from_secs(1);

/// Longest wait for a server to listen after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request accepted (the environment is most of it).
const MAX_REQUEST: usize = 16 << 20;

/// Longest a connection may take to send its whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads of 64 KiB a task's stdout gets per turn of the loop.
const PUMP_TURN: usize = 16;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);

/// A request, as [`crate::handover`] describes it.
#[derive(Debug, Deserialize)]
struct Request {
    argv: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    supervise: Supervise,
}

#[derive(Debug, Deserialize)]
struct Supervise {
    claim: PathBuf,
    result: PathBuf,
    log: PathBuf,
    timeout_ms: Option<u64>,
    #[serde(default = "default_grace_ms")]
    grace_ms: u64,
    #[serde(default)]
    gpu_ids: Vec<u32>,
}

fn default_grace_ms() -> u64 {
    u64::try_from(crate::supervise::DEFAULT_GRACE.as_millis()).unwrap_or(10_000)
}

// ------------------------------------------------------------ the server

/// Parses the arguments after `--serve` and serves; what `pave supervise
/// --serve` runs. Returns the process's exit code.
pub fn serve_cli(args: &[String]) -> i32 {
    let usage = "usage: pave supervise --serve SOCKET [--idle SECS]";
    let Some((socket, rest)) = args.split_first() else {
        eprintln!("pave supervise --serve: the socket path is missing; {usage}");
        return 2;
    };
    let idle = match rest {
        [] => DEFAULT_IDLE,
        [flag, secs] if flag == "--idle" => match secs
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
        {
            Some(d) => d,
            None => {
                eprintln!("pave supervise --serve: --idle takes seconds, not `{secs}`; {usage}");
                return 2;
            }
        },
        _ => {
            eprintln!("pave supervise --serve: unexpected arguments {rest:?}; {usage}");
            return 2;
        }
    };
    match Server::bind(Path::new(socket), idle) {
        Ok(None) => {
            println!("ready (another server listens)");
            0
        }
        Ok(Some(mut server)) => {
            println!("ready {}", std::process::id());
            let _ = std::io::stdout().flush();
            server.run();
            0
        }
        Err(e) => {
            eprintln!("pave supervise --serve: {e}");
            1
        }
    }
}

/// One running attempt.
struct Task {
    pid: Pid,
    /// For the end report; `None` once the executor went away.
    conn: Option<UnixStream>,
    stdout: Option<(Token, File)>,
    log: File,
    log_path: PathBuf,
    result: PathBuf,
    grace: Duration,
    timeout: Option<Duration>,
    started_at: DateTime<Utc>,
    clock: Instant,
    exit: Option<Exit>,
    maxrss_kib: u64,
    timed_out: bool,
    last_line: LastLine,
    notes: Vec<String>,
    log_failed: bool,
}

/// A connection whose request is not complete yet.
struct Pending {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Dropped if the request is not whole by then (a stuck client must
    /// not keep the server from idling out).
    deadline: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Timeout,
    Kill,
    Drain,
}

struct Server {
    poll: Poll,
    listener: Option<UnixListener>,
    signals: SignalFd,
    /// The socket's name (the server runs in its folder) and identity.
    name: PathBuf,
    bound: Option<(u64, u64)>,
    idle: Duration,
    last_busy: Instant,
    stopping: bool,
    me: Pid,
    my_ticks: Option<u64>,
    next_token: usize,
    next_task: u64,
    pending: HashMap<Token, Pending>,
    tasks: HashMap<u64, Task>,
    by_pid: HashMap<Pid, u64>,
    by_pipe: HashMap<Token, u64>,
    due: BinaryHeap<Reverse<(Instant, u64, Due)>>,
    /// Tasks whose stdout may still hold data after their turn.
    backlog: Vec<u64>,
}

impl Server {
    /// Binds the socket; `None` when another server already listens on it.
    fn bind(socket: &Path, idle: Duration) -> std::io::Result<Option<Server>> {
        // A session of our own: a Ctrl-C or kill of the scheduler's group
        // does not reach us. A subreaper: orphans of the tasks become ours.
        let _ = nix::unistd::setsid();
        let _ = nix::sys::prctl::set_child_subreaper(true);
        let (Some(dir), Some(name)) = (socket.parent(), socket.file_name()) else {
            return Err(std::io::Error::other(format!(
                "`{}` is not a socket path",
                socket.display()
            )));
        };
        // Bound by its name from its folder: a long path fits `sun_path`.
        if !dir.as_os_str().is_empty() {
            std::env::set_current_dir(dir).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot enter {}: {e}", dir.display()))
            })?;
        }
        let name = PathBuf::from(name);
        match UnixStream::connect(&name) {
            Ok(_) => return Ok(None),
            Err(e) if is_not_listening(&e) => {}
            Err(e) => return Err(e),
        }
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&name)?;
        listener.set_nonblocking(true)?;
        let bound = fingerprint(&name);
        let signals = block_signals().map_err(std::io::Error::from)?;
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        poll.registry().register(
            &mut SourceFd(&signals.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        let me = nix::unistd::getpid();
        Ok(Some(Server {
            poll,
            listener: Some(listener),
            signals,
            name,
            bound,
            idle,
            last_busy: Instant::now(),
            stopping: false,
            me,
            my_ticks: u32::try_from(me.as_raw())
                .ok()
                .and_then(crate::host::proc_stat)
                .map(|s| s.start_ticks),
            next_token: 2,
            next_task: 0,
            pending: HashMap::new(),
            tasks: HashMap::new(),
            by_pid: HashMap::new(),
            by_pipe: HashMap::new(),
            due: BinaryHeap::new(),
            backlog: Vec::new(),
        }))
    }

    fn busy(&self) -> bool {
        !self.tasks.is_empty() || !self.pending.is_empty()
    }

    /// Serves until idle, or stopped and every task ended.
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            if self.busy() {
                self.last_busy = now;
            } else if self.stopping
                || now.duration_since(self.last_busy) >= self.idle
                || fingerprint(&self.name) != self.bound
            {
                self.stop_listening();
                return;
            }
            self.fire_due(now);
            self.drop_stuck_requests(now);
            let next_due = self.due.peek().map(|Reverse((at, _, _))| *at);
            let idle_check = (!self.busy()).then(|| now + SOCKET_CHECK.min(self.idle));
            let stuck_check = self.pending.values().map(|p| p.deadline).min();
            let wake = next_due
                .into_iter()
                .chain(idle_check)
                .chain(stuck_check)
                .min();
            let timeout = if self.backlog.is_empty() {
                wake.map(|w| w.saturating_duration_since(now) + Duration::from_micros(500))
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("pave supervise --serve: poll failed: {e}");
                    self.stopping = true;
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(),
                    SIGNALS => self.on_signals(),
                    token => {
                        if self.pending.contains_key(&token) {
                            self.read_request(token);
                        } else if let Some(&id) = self.by_pipe.get(&token) {
                            self.pump(id);
                        }
                    }
                }
            }
            // Pipes that had more than one turn's worth: their turn again,
            // after everything else that was ready.
            for id in std::mem::take(&mut self.backlog) {
                self.pump(id);
            }
        }
    }

    /// Closes the connections whose request did not arrive in time
    /// (nothing was claimed for them; their sender sees the connection close).
    fn drop_stuck_requests(&mut self, now: Instant) {
        let stuck: Vec<Token> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in stuck {
            if let Some(p) = self.pending.remove(&token) {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&p.stream.as_raw_fd()));
            }
        }
    }

    /// Stops accepting: removes the socket if it is still ours.
    fn stop_listening(&mut self) {
        if let Some(listener) = self.listener.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&listener.as_raw_fd()));
            if fingerprint(&self.name) == self.bound {
                let _ = std::fs::remove_file(&self.name);
            }
        }
    }

    fn token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let token = self.token();
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut SourceFd(&stream.as_raw_fd()),
                            token,
                            Interest::READABLE,
                        )
                        .is_ok()
                    {
                        self.pending.insert(
                            token,
                            Pending {
                                stream,
                                buf: Vec::new(),
                                deadline: Instant::now() + REQUEST_TIMEOUT,
                            },
                        );
                        // The request usually arrived with the connection.
                        self.read_request(token);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads what the connection has; handles the request once complete.
    fn read_request(&mut self, token: Token) {
        let Some(p) = self.pending.get_mut(&token) else {
            return;
        };
        let mut chunk = [0u8; 64 * 1024];
        let mut closed = false;
        loop {
            match p.stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => p.buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let need = p
            .buf
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize);
        let complete = need.is_some_and(|n| n > MAX_REQUEST || p.buf.len() >= 4 + n);
        if !complete && !closed {
            return;
        }
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&p.stream.as_raw_fd()));
        if !complete {
            return; // it went away before the request was whole
        }
        let mut stream = p.stream;
        let body = need.and_then(|n| p.buf.get(4..4 + n));
        let request = match body.map(serde_json::from_slice::<Request>) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                answer(
                    &mut stream,
                    &serde_json::json!({"refused": format!("not a request: {e}")}),
                );
                return;
            }
            None => {
                answer(
                    &mut stream,
                    &serde_json::json!({"refused": "the request is too large"}),
                );
                return;
            }
        };
        self.start_task(stream, request);
    }

    /// Claims the attempt, spawns it and answers.
    fn start_task(&mut self, mut stream: UnixStream, req: Request) {
        let sup = &req.supervise;
        let started_at = Utc::now();
        let clock = Instant::now();
        let me = u32::try_from(self.me.as_raw()).unwrap_or(0);
        let claimed = claim::take(
            &sup.claim,
            me,
            self.my_ticks,
            &sup.gpu_ids,
            started_at,
            true,
        );
        match claimed {
            Ok(()) => {}
            Err(claim::CreateError::Exists) => {
                append_note(
                    &sup.log,
                    &format!("[pave] {}\n", claim::refusal(&sup.claim)),
                );
                answer(&mut stream, &serde_json::json!({"claimed": true}));
                return;
            }
            Err(claim::CreateError::Io(e)) => {
                let why = format!("cannot claim the attempt at {}: {e}", sup.claim.display());
                self.not_run(stream, &req, started_at, clock, why);
                return;
            }
        }
        let (log, mut child) = match spawn(&req, self.me) {
            Ok(spawned) => spawned,
            Err(why) => {
                self.not_run(stream, &req, started_at, clock, why);
                return;
            }
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        answer(
            &mut stream,
            &serde_json::json!({"pid": pid.as_raw(), "start_ticks": self.my_ticks}),
        );
        let id = self.next_task;
        self.next_task += 1;
        let stdout = child
            .stdout
            .take()
            .map(|out| File::from(OwnedFd::from(out)))
            .and_then(|out| {
                let token = self.token();
                set_nonblocking(&out).ok()?;
                self.poll
                    .registry()
                    .register(&mut SourceFd(&out.as_raw_fd()), token, Interest::READABLE)
                    .ok()?;
                self.by_pipe.insert(token, id);
                Some((token, out))
            });
        let timeout = sup.timeout_ms.map(Duration::from_millis);
        if let Some(t) = timeout {
            self.due.push(Reverse((clock + t, id, Due::Timeout)));
        }
        self.by_pid.insert(pid, id);
        self.tasks.insert(
            id,
            Task {
                pid,
                conn: Some(stream),
                stdout,
                log,
                log_path: sup.log.clone(),
                result: sup.result.clone(),
                grace: Duration::from_millis(sup.grace_ms),
                timeout,
                started_at,
                clock,
                exit: None,
                maxrss_kib: 0,
                timed_out: false,
                last_line: LastLine::default(),
                notes: Vec::new(),
                log_failed: false,
            },
        );
        // Not waited for here: the signal loop reaps it (`wait4`, for its
        // peak RSS). An exit before this point is not lost: the zombie and
        // the pending SIGCHLD wait for the loop.
        drop(child);
    }

    fn stdout_open(&self, id: u64) -> bool {
        self.tasks.get(&id).is_some_and(|t| t.stdout.is_some())
    }

    /// A claimed attempt that could not start: its result says why.
    fn not_run(
        &mut self,
        mut stream: UnixStream,
        req: &Request,
        started_at: DateTime<Utc>,
        clock: Instant,
        why: String,
    ) {
        append_note(&req.supervise.log, &format!("[pave] {why}\n"));
        let result = AttemptResult {
            exit: Exit::NotRun,
            pid: None,
            timed_out: false,
            cancelled: false,
            started_at,
            ended_at: Utc::now(),
            duration_ms: millis(clock.elapsed()),
            peak_rss_kib: 0,
            last_line: None,
            error: Some(why),
            notes: Vec::new(),
            xcoms: None,
        };
        match write_result(&req.supervise.result, &result) {
            Ok(()) => answer(&mut stream, &serde_json::json!({"not_run": true})),
            Err(e) => answer(
                &mut stream,
                &serde_json::json!({"not_run": true, "result_error": e.to_string()}),
            ),
        }
    }

    fn on_signals(&mut self) {
        let mut child_exited = false;
        while let Ok(Some(info)) = self.signals.read_signal() {
            let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
            if signo == Signal::SIGCHLD as i32 {
                child_exited = true;
            } else if signo == Signal::SIGTERM as i32 || signo == Signal::SIGINT as i32 {
                // Stop taking attempts; the running ones finish.
                self.stopping = true;
                self.stop_listening();
            }
        }
        if child_exited {
            self.reap();
        }
    }

    fn reap(&mut self) {
        while let Ok(Some(reaped)) = crate::sys::reap_one() {
            let Some(&id) = self.by_pid.get(&reaped.pid) else {
                continue; // an orphan of some task
            };
            self.by_pid.remove(&reaped.pid);
            let main_pid = reaped.pid;
            if let Some(task) = self.tasks.get_mut(&id) {
                task.exit = Some(reaped.exit);
                task.maxrss_kib = reaped.maxrss_kib;
            }
            self.kill_leftovers(main_pid);
            if self.stdout_open(id) {
                self.due
                    .push(Reverse((Instant::now() + DRAIN_LIMIT, id, Due::Drain)));
            } else {
                self.finish(id);
            }
        }
    }

    /// After a task's main process exited: SIGKILL what is left in its
    /// group, and the orphans re-parented to us from its session.
    fn kill_leftovers(&self, main_pid: Pid) {
        let _ = killpg(main_pid, Signal::SIGKILL);
        for pid in crate::host::own_children() {
            let Some(p) = crate::host::pid_of(pid) else {
                continue;
            };
            if self.by_pid.contains_key(&p) {
                continue; // another task's main process
            }
            if crate::host::proc_stat(pid).is_some_and(|s| s.session == main_pid.as_raw()) {
                let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
            }
        }
    }

    fn fire_due(&mut self, now: Instant) {
        while let Some(Reverse((at, id, due))) = self.due.peek().copied() {
            if at > now {
                return;
            }
            self.due.pop();
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            match due {
                Due::Timeout if task.exit.is_none() => {
                    task.timed_out = true;
                    let secs = task.timeout.map_or(0.0, |t| t.as_secs_f64());
                    let group = task.pid;
                    task.log_line(&format!(
                        "[pave] execution_timeout of {secs}s exceeded: sending SIGTERM to process group {group}"
                    ));
                    crate::host::signal_group_and_session(group, Signal::SIGTERM);
                    self.due.push(Reverse((now + task.grace, id, Due::Kill)));
                }
                Due::Kill if task.exit.is_none() => {
                    let group = task.pid;
                    task.log_line(&format!(
                        "[pave] process group {group} still running after SIGTERM: sending SIGKILL"
                    ));
                    crate::host::signal_group_and_session(group, Signal::SIGKILL);
                }
                Due::Drain if task.stdout.is_some() => {
                    task.notes.push(format!(
                        "a process outside the task's process group kept its output open; stopped reading {}s after the task exited",
                        DRAIN_LIMIT.as_secs()
                    ));
                    self.close_stdout(id);
                    self.finish(id);
                }
                Due::Timeout | Due::Kill | Due::Drain => {}
            }
        }
    }

    /// Reads what the task wrote to stdout into its log: at most
    /// [`PUMP_TURN`] reads, so a task that writes without a pause cannot
    /// keep the loop from the others (its pipe goes to the backlog and gets
    /// another turn after them; the pipe is edge-triggered, so it must be
    /// read until it is empty).
    fn pump(&mut self, id: u64) {
        let Some(task) = self.tasks.get_mut(&id) else {
            return;
        };
        let mut buf = [0u8; 64 * 1024];
        let mut eof = false;
        if let Some((_, out)) = task.stdout.as_mut() {
            let mut reads = 0;
            loop {
                if reads == PUMP_TURN {
                    self.backlog.push(id);
                    break;
                }
                reads += 1;
                match out.read(&mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        let chunk = buf.get(..n).unwrap_or_default();
                        task.last_line.feed(chunk);
                        if !task.log_failed && task.log.write_all(chunk).is_err() {
                            task.log_failed = true;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        eof = true;
                        break;
                    }
                }
            }
        }
        if eof {
            self.close_stdout(id);
            if self.tasks.get(&id).is_some_and(|t| t.exit.is_some()) {
                self.finish(id);
            }
        }
    }

    fn close_stdout(&mut self, id: u64) {
        if let Some((token, out)) = self.tasks.get_mut(&id).and_then(|t| t.stdout.take()) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&out.as_raw_fd()));
            self.by_pipe.remove(&token);
        }
    }

    /// Writes the ended task's result file, then reports its end.
    fn finish(&mut self, id: u64) {
        let Some(task) = self.tasks.remove(&id) else {
            return;
        };
        let Some(exit) = task.exit else {
            self.tasks.insert(id, task);
            return;
        };
        let mut notes = task.notes;
        if task.log_failed {
            notes.push(format!(
                "writing the log file {} failed; the log is incomplete",
                task.log_path.display()
            ));
        }
        let result = AttemptResult {
            exit,
            pid: u32::try_from(task.pid.as_raw()).ok(),
            timed_out: task.timed_out,
            cancelled: false,
            started_at: task.started_at,
            ended_at: Utc::now(),
            duration_ms: millis(task.clock.elapsed()),
            peak_rss_kib: task.maxrss_kib,
            last_line: task.last_line.finish(),
            error: None,
            notes,
            xcoms: None,
        };
        let written = write_result(&task.result, &result);
        if let Some(mut conn) = task.conn {
            let mut end = serde_json::json!({"exit": exit, "maxrss_kib": task.maxrss_kib});
            if let (Err(e), Some(map)) = (&written, end.as_object_mut()) {
                map.insert("result_error".to_owned(), e.to_string().into());
            }
            answer(&mut conn, &end);
        }
    }
}

impl Task {
    fn log_line(&mut self, line: &str) {
        if self.log.write_all(format!("{line}\n").as_bytes()).is_err() {
            self.log_failed = true;
        }
    }
}

/// Opens the log and spawns the task; the reason it cannot run otherwise,
/// worded for the task's author.
fn spawn(req: &Request, me: Pid) -> Result<(File, std::process::Child), String> {
    if let Some(cwd) = &req.cwd
        && !cwd.is_dir()
    {
        return Err(format!(
            "working directory `{}` does not exist or is not a directory",
            cwd.display()
        ));
    }
    let log_path = &req.supervise.log;
    let log = open_log(log_path)
        .map_err(|e| format!("cannot open log file {}: {e}", log_path.display()))?;
    let (program, rest) = req.argv.split_first().ok_or("no command to run")?;
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .env_clear()
        .envs(&req.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(
            log.try_clone()
                .map_err(|e| format!("cannot share the log file with the task: {e}"))?,
        );
    if let Some(cwd) = &req.cwd {
        cmd.current_dir(cwd);
    }
    crate::sys::detach_dying_with(&mut cmd, me);
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("cannot execute `{program}`: program not found"),
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot execute `{program}`: permission denied")
        }
        _ => format!("cannot execute `{program}`: {e}"),
    })?;
    Ok((log, child))
}

fn answer(stream: &mut UnixStream, message: &serde_json::Value) {
    let mut line = message.to_string().into_bytes();
    line.push(b'\n');
    // The executor reads its answers; two short lines fit any socket buffer.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&line);
}

fn set_nonblocking(file: &File) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL)?);
    fcntl(file, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(|_| ())
}

fn fingerprint(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ------------------------------------------------------------ the executor's side

/// One supervision server of a folder, as the executor uses it: shard `i`
/// has `supervise-I.sock`, `.lock` and `.log`.
#[derive(Clone, Debug)]
pub(crate) struct ServerFiles {
    dir: PathBuf,
    sock: PathBuf,
    lock: PathBuf,
    log: PathBuf,
}

impl ServerFiles {
    pub fn shard(dir: &Path, i: usize) -> ServerFiles {
        ServerFiles {
            dir: dir.to_owned(),
            sock: dir.join(format!("supervise-{i}.sock")),
            lock: dir.join(format!("supervise-{i}.lock")),
            log: dir.join(format!("supervise-{i}.log")),
        }
    }
}

/// How many servers a folder gets: one per core (each serves its attempts
/// one event at a time, so one alone would leave cores idle while it
/// creates files and forks), at most [`MAX_SHARDS`].
pub(crate) fn shards() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, MAX_SHARDS))
}

/// The most servers per folder.
const MAX_SHARDS: usize = 8;

/// A command attempt for the server.
pub(crate) struct Handover<'a> {
    pub argv: &'a [String],
    pub cwd: &'a Path,
    /// The attempt's whole environment.
    pub env: &'a BTreeMap<String, String>,
    pub log: &'a Path,
    pub supervision: &'a Supervision,
}

/// Sends the attempt to the server; [`Handed::NotListening`] when none
/// listens (nothing was sent). Blocking, for as long as the server takes to
/// answer (at most [`DIRECT_ANSWER_TIMEOUT`]).
pub(crate) fn hand_over(files: &ServerFiles, h: &Handover<'_>) -> Handed {
    // The server opens the log itself (no descriptor is passed).
    let mut supervise = h.supervision.to_json();
    if let Some(fields) = supervise.as_object_mut() {
        fields.insert("log".to_owned(), serde_json::json!(h.log));
    }
    let body = serde_json::json!({
        "argv": h.argv,
        "env": h.env,
        "cwd": h.cwd,
        "supervise": supervise,
    });
    let request = match frame(&body) {
        Ok(r) => r,
        Err(why) => return Handed::Unservable(Some(why)),
    };
    // A server that idles out between our connect and its accept closes
    // the connection unread: nothing ran, ask again (a new one is started).
    for _ in 0..3 {
        let mut stream = match connect(&files.sock) {
            Ok(s) => s,
            Err(e) if is_not_listening(&e) => return Handed::NotListening,
            Err(e) => {
                return Handed::Unservable(Some(format!(
                    "cannot connect to the supervision server: {e}"
                )));
            }
        };
        match stream.write_all(&request) {
            Ok(()) => {}
            Err(e) if is_gone(&e) => continue,
            Err(e) => {
                return Handed::Unservable(Some(format!(
                    "cannot reach the supervision server: {e}"
                )));
            }
        }
        let mut lines = Lines::default();
        let deadline = Instant::now() + DIRECT_ANSWER_TIMEOUT;
        let supervisor_pid = peer_pid(&stream);
        let answer = match lines.read_answer(&mut &stream, deadline) {
            Ok(Some(a)) => a,
            Ok(None) => continue,
            Err(e) if is_gone(&e) => continue,
            // The request may still be served: no lease, so the caller
            // fences the claim (see Handed::Silent).
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Handed::Silent(Supervised {
                    stream,
                    lines,
                    task_pid: 0,
                    supervisor_pid,
                    supervisor_start_ticks: None,
                    who: WHO,
                });
            }
            Err(e) => {
                return Handed::Unservable(Some(format!(
                    "the supervision server did not answer: {e}"
                )));
            }
        };
        if let Some(pid) = answer.pid.filter(|p| *p > 0) {
            return Handed::Running(Supervised {
                stream,
                lines,
                task_pid: u32::try_from(pid).unwrap_or(0),
                supervisor_pid,
                supervisor_start_ticks: answer.start_ticks,
                who: WHO,
            });
        }
        if answer.claimed == Some(true) {
            return Handed::Claimed;
        }
        if answer.not_run == Some(true) {
            return Handed::NotRun;
        }
        return Handed::Unservable(Some(format!(
            "the supervision server refused the attempt: {}",
            answer.refused.as_deref().unwrap_or("no reason given")
        )));
    }
    Handed::Unservable(Some(
        "the supervision server closed the connection three times in a row".to_owned(),
    ))
}

/// How the executor's messages name the server.
pub(crate) const WHO: &str = "the supervision server";

/// Starts the server of `files` with `supervisor` (the supervisor program
/// and its leading arguments) unless one listens, and waits until it does.
/// Blocking. The reason it cannot be used otherwise.
pub(crate) fn start(
    files: &ServerFiles,
    supervisor: &[String],
    idle: Duration,
) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&files.dir)
        .map_err(|e| format!("cannot create {}: {e}", files.dir.display()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&files.lock)
        .map_err(|e| format!("cannot open {}: {e}", files.lock.display()))?;
    // Whoever holds the lock starts the server; the others then find it.
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", files.lock.display()))?;
    match connect(&files.sock) {
        Ok(_) => return Ok(()),
        Err(e) if is_not_listening(&e) => {}
        Err(e) => return Err(format!("cannot connect to the supervision server: {e}")),
    }
    let (program, leading) = supervisor
        .split_first()
        .ok_or("the supervisor command is empty")?;
    let log = File::create(&files.log)
        .map_err(|e| format!("cannot create {}: {e}", files.log.display()))?;
    let mut child = Command::new(program)
        .args(leading)
        .arg("--serve")
        .arg(&files.sock)
        .arg("--idle")
        .arg(idle.as_secs_f64().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start `{program} --serve`: {e}"))?;
    let ready = child.stdout.take().map(|out| {
        // The first line says it listens; a thread so a stuck start is
        // given up after START_TIMEOUT.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        rx.recv_timeout(START_TIMEOUT).unwrap_or_default()
    });
    let ready = ready.unwrap_or_default();
    if !ready.starts_with("ready") {
        let _ = child.kill();
        let _ = child.wait();
        let why = std::fs::read_to_string(&files.log).unwrap_or_default();
        return Err(format!(
            "`{program} --serve` did not start{}",
            if why.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", why.trim())
            }
        ));
    }
    // It outlives us if need be; while we live, we reap it when it ends.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

/// Removes the servers' sockets, so each exits once its running attempts
/// have ended (a clean stop of `pave standalone`). Returns how many there were.
pub fn stop_server(dir: &Path) -> usize {
    (0..MAX_SHARDS)
        .map(|i| ServerFiles::shard(dir, i))
        .filter(|files| {
            let Ok(lock) = std::fs::OpenOptions::new()
                .create(false)
                .write(true)
                .open(&files.lock)
            else {
                return false;
            };
            lock.try_lock().is_ok() && std::fs::remove_file(&files.sock).is_ok()
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_with_defaults() {
        let req: Request = serde_json::from_str(
            r#"{"argv": ["bash", "-c", "true"], "cwd": "/tmp",
                "supervise": {"claim": "/c", "result": "/r", "log": "/l"}}"#,
        )
        .expect("parse");
        assert_eq!(req.argv, ["bash", "-c", "true"]);
        assert!(req.env.is_empty());
        assert_eq!(req.supervise.timeout_ms, None);
        assert_eq!(req.supervise.grace_ms, default_grace_ms());
        assert!(req.supervise.gpu_ids.is_empty());
    }

    #[test]
    fn bad_serve_arguments_are_named() {
        assert_eq!(serve_cli(&[]), 2);
        assert_eq!(
            serve_cli(&[
                "/tmp/x.sock".to_owned(),
                "--idle".to_owned(),
                "soon".to_owned()
            ]),
            2
        );
        assert_eq!(
            serve_cli(&["/tmp/x.sock".to_owned(), "--bogus".to_owned()]),
            2
        );
    }
}
