//! The supervision loop that both kinds of attempt share: a task the
//! supervisor spawned itself ([`crate::supervise`]) and a task forked by a
//! pre-forked interpreter ([`crate::zygote`]). It tees the task's stdout into
//! the log and keeps its last line, enforces the execution timeout and turns
//! a kill request (SIGTERM or SIGINT to the supervisor) into SIGTERM, grace,
//! SIGKILL of the task, and drains stdout after the task's exit for at most
//! [`DRAIN_LIMIT`]. What differs, how the exit becomes known and whom a
//! signal reaches, is the [`Watched`] task's.

use crate::attempt::Exit;
use crate::supervise::{LastLine, SuperviseArgs};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// How long to keep reading stdout after the task's main process is gone.
pub(crate) const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// A supervised task, as the loop sees it.
pub(crate) trait Watched {
    /// The task's process group (and session), named in the log's notes.
    fn group(&self) -> Pid;
    /// A descriptor to wait on, besides signals and stdout, while the exit
    /// is unknown (the zygote's connection), if any.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
    /// The task's exit, if it is known now. `fd_ready`: [`Watched::fd`]
    /// became readable; `signalled`: a signal arrived (SIGCHLD among them)
    /// since the last call. Notes for the result go to `notes`.
    fn exit(&mut self, fd_ready: bool, signalled: bool, notes: &mut Vec<String>) -> Option<Exit>;
    /// Sends `signal` to the task's process group and to what else belongs
    /// to the attempt.
    fn kill(&self, signal: Signal);
}

/// What the loop found out, for the attempt's result.
#[derive(Default)]
pub(crate) struct Watch {
    pub timed_out: bool,
    pub cancelled: bool,
    pub notes: Vec<String>,
    pub last_line: LastLine,
    log_failed: bool,
}

impl Watch {
    /// Runs until the exit is known and stdout is closed (or stopped
    /// draining). `None`: the exit never became known (the loop failed).
    pub fn run(
        &mut self,
        args: &SuperviseArgs,
        mut log: File,
        signals: &SignalFd,
        task: &mut impl Watched,
        stdout: Option<File>,
    ) -> Option<Exit> {
        let group = task.group();
        let mut stdout = stdout;
        let deadline = args.timeout.map(|t| Instant::now() + t);
        let mut kill_at: Option<Instant> = None;
        let mut drain_until: Option<Instant> = None;
        let mut exit: Option<Exit> = None;
        let mut buf = [0u8; 16 * 1024];
        // Before the first wait: the task may have exited already.
        let (mut fd_ready, mut signalled) = (false, true);
        loop {
            if exit.is_none() {
                exit = task.exit(fd_ready, signalled, &mut self.notes);
                if exit.is_some() {
                    drain_until = Some(Instant::now() + DRAIN_LIMIT);
                }
            }
            let now = Instant::now();
            if exit.is_some() && stdout.is_none() {
                break;
            }
            if drain_until.is_some_and(|d| now >= d) {
                self.notes.push(format!(
                    "a process outside the task's process group kept its output open; stopped reading {}s after the task exited",
                    DRAIN_LIMIT.as_secs()
                ));
                break;
            }
            if exit.is_none() && !self.timed_out && deadline.is_some_and(|d| now >= d) {
                self.timed_out = true;
                let secs = args.timeout.map_or(0.0, |t| t.as_secs_f64());
                self.log_line(&mut log, &format!("[pave] execution_timeout of {secs}s exceeded: sending SIGTERM to process group {group}"));
                task.kill(Signal::SIGTERM);
                kill_at = Some(now + args.grace);
            }
            if exit.is_none() && kill_at.is_some_and(|k| now >= k) {
                self.log_line(
                    &mut log,
                    &format!(
                        "[pave] process group {group} still running after SIGTERM: sending SIGKILL"
                    ),
                );
                task.kill(Signal::SIGKILL);
                kill_at = None;
            }
            let wake = [
                if self.timed_out || exit.is_some() {
                    None
                } else {
                    deadline
                },
                if exit.is_some() { None } else { kill_at },
                drain_until,
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = wake.map_or(PollTimeout::NONE, |w| {
                poll_timeout(w.saturating_duration_since(now))
            });
            let (sig_ready, out_ready, task_ready) = {
                let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
                let out_at = stdout.as_ref().map(|out| {
                    fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                let task_at = if exit.is_none() {
                    task.fd().map(|fd| {
                        fds.push(PollFd::new(fd, PollFlags::POLLIN));
                        fds.len() - 1
                    })
                } else {
                    None
                };
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => {
                        self.notes
                            .push(format!("poll failed in the supervisor: {e}"));
                        break;
                    }
                }
                let ready = |i: Option<usize>| {
                    i.and_then(|i| fds.get(i))
                        .and_then(PollFd::any)
                        .unwrap_or(false)
                };
                (ready(Some(0)), ready(out_at), ready(task_at))
            };
            if out_ready && !self.pump(stdout.as_mut(), &mut log, &mut buf) {
                stdout = None;
            }
            fd_ready = task_ready;
            signalled = sig_ready;
            if sig_ready {
                while let Ok(Some(info)) = signals.read_signal() {
                    let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
                    if (signo == Signal::SIGTERM as i32 || signo == Signal::SIGINT as i32)
                        && exit.is_none()
                        && !self.cancelled
                    {
                        self.cancelled = true;
                        self.log_line(
                            &mut log,
                            &format!(
                                "[pave] kill requested: sending SIGTERM to process group {group}"
                            ),
                        );
                        task.kill(Signal::SIGTERM);
                        kill_at = Some(Instant::now() + args.grace);
                    }
                }
            }
        }
        if self.log_failed {
            self.notes.push(format!(
                "writing the log file {} failed; the log is incomplete",
                args.log.display()
            ));
        }
        exit
    }

    /// Reads what is available from stdout into the log. Returns false at EOF.
    fn pump(&mut self, pipe: Option<&mut File>, log: &mut File, buf: &mut [u8]) -> bool {
        let Some(p) = pipe else { return false };
        match p.read(buf) {
            Ok(0) => false,
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                self.last_line.feed(chunk);
                if !self.log_failed && log.write_all(chunk).is_err() {
                    self.log_failed = true;
                }
                true
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::Interrupted
                    || e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                true
            }
            Err(_) => false,
        }
    }

    fn log_line(&mut self, log: &mut File, line: &str) {
        if log.write_all(format!("{line}\n").as_bytes()).is_err() {
            self.log_failed = true;
        }
    }
}

/// Blocks SIGCHLD, SIGTERM, SIGINT and SIGHUP in this thread and returns a
/// signalfd that reads them: signals become readable events of the loop
/// instead of handlers.
pub(crate) fn block_signals() -> nix::Result<SignalFd> {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    mask.thread_block()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// A poll timeout for `d`, rounded up so the loop never spins on a
/// sub-millisecond remainder.
pub(crate) fn poll_timeout(d: Duration) -> PollTimeout {
    PollTimeout::try_from(d + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX)
}
