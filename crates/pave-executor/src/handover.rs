//! The protocol between the executor and a shared supervisor: a Python
//! attempt's pre-forked interpreter (`sdk/python/pave/zygote.py`, driven by
//! [`crate::zygote`]) or the supervision server of command attempts
//! ([`crate::serve`]). Both take a request, `u32` big-endian length then
//! JSON (`argv`, `env`, `cwd`, and for a supervised attempt `supervise`:
//! `claim`, `result`, `timeout_ms`, `grace_ms`, `gpu_ids`), with the
//! attempt's log file passed as `SCM_RIGHTS`; and answer with JSON lines:
//! `{"pid": N, "start_ticks": T}` once the task runs (T, the supervisor's
//! own start time, may be missing from an older one; or `{"claimed":
//! true}`, `{"not_run": true}`, `{"refused": WHY, "retry": BOOL}`), then
//! `{"exit": .., "maxrss_kib": ..}` when it ended and its result file is
//! written. A zygote's request
//! carries only the attempt's own variables in `env` and the digest of the
//! rest ([`env_digest`]) in `base_env_sha1`.

use crate::attempt::Exit;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::watch::poll_timeout;

/// The same for a request the executor hands over itself, which the
/// scheduler waits for (see [`Handed::Silent`]).
pub(crate) const DIRECT_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest `sun_path` (108 bytes with the terminating NUL).
pub(crate) const SUN_PATH_MAX: usize = 107;

/// What a shared supervisor is asked to do for one attempt besides running
/// it: the request's `supervise` object (its files, timeout, grace and
/// GPUs), the same for a zygote and for the supervision server.
pub(crate) struct Supervision {
    pub claim: PathBuf,
    pub result: PathBuf,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    pub gpu_ids: Vec<u32>,
}

impl Supervision {
    /// The request's `supervise` object.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        serde_json::json!({
            "claim": self.claim,
            "result": self.result,
            "timeout_ms": self.timeout.map(millis),
            "grace_ms": millis(self.grace),
            "gpu_ids": self.gpu_ids,
        })
    }
}

/// What handing an attempt to a shared supervisor did
/// ([`crate::zygote::hand_over`], [`crate::serve::hand_over`]).
pub(crate) enum Handed {
    /// The supervisor took the claim and started the task, which it supervises.
    Running(Supervised),
    /// Someone else holds the attempt's claim: nothing ran.
    Claimed,
    /// The supervisor claimed the attempt but could not start it; its
    /// result file says why.
    NotRun,
    /// The supervisor did not answer in time, and may still claim and start
    /// the attempt: whoever takes the claim first (the executor fencing it
    /// off, or the supervisor) decides whether it runs. The pid is not known.
    Silent(Supervised),
    /// No zygote listens (none started yet, or it idled out): nothing was
    /// sent. A supervisor process starts one, and runs the attempt in it.
    NotListening,
    /// Nothing was started and nothing claimed, and the shared supervisor
    /// cannot serve the attempt: run it under a supervisor process of its
    /// own. `Some` note says why, for the attempt's log.
    Unservable(Option<String>),
}

/// A task a shared supervisor supervises: it took the claim, enforces the
/// timeout, and writes the result file when the task ends, then reports
/// the end on this connection. The connection is no lease: the task goes
/// on if the executor goes away (a crash of the scheduler), and is adopted
/// from its claim and result files.
pub(crate) struct Supervised {
    /// The connection, for the end report (blocking mode).
    pub stream: UnixStream,
    pub(crate) lines: Lines,
    pub task_pid: u32,
    /// The shared supervisor (the claim's), from `SO_PEERCRED`.
    pub supervisor_pid: u32,
    /// Its start time in clock ticks, when it said so with the pid.
    pub supervisor_start_ticks: Option<u64>,
    /// How messages name it ("its zygote", "the supervision server").
    pub who: &'static str,
}

/// The end of a supervised task, as its supervisor reported it.
pub(crate) struct ReportedEnd {
    pub exit: Exit,
    pub maxrss_kib: u64,
    /// Why the supervisor could not write the result file.
    pub result_error: Option<String>,
}

/// Reads a supervised task's end report from the bytes of its connection.
pub(crate) struct EndReport {
    lines: Lines,
}

impl Supervised {
    /// The connection, and what reads the end report from its bytes.
    pub fn split(self) -> (UnixStream, EndReport) {
        (self.stream, EndReport { lines: self.lines })
    }
}

impl EndReport {
    /// Takes bytes read from the connection; the end once it was reported.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<ReportedEnd> {
        self.lines.buf.extend_from_slice(bytes);
        while let Some(answer) = self.lines.next_answer() {
            if let Some(exit) = answer.exit {
                return Some(ReportedEnd {
                    exit,
                    maxrss_kib: answer.maxrss_kib.unwrap_or(0),
                    result_error: answer.result_error,
                });
            }
        }
        None
    }
}

/// The process at the other end of a unix socket (`SO_PEERCRED`); 0 if unknown.
pub(crate) fn peer_pid(stream: &UnixStream) -> u32 {
    nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .and_then(|c| u32::try_from(c.pid()).ok())
        .unwrap_or(0)
}

/// What a shared supervisor writes, one JSON object per line (see
/// `pave/zygote.py` and [`crate::serve`]).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Answer {
    pub pid: Option<i32>,
    /// With the pid: the answering supervisor's own start time (field 22
    /// of its `/proc/PID/stat`), so the executor need not read it for every
    /// attempt to tell it from a later process with the same pid.
    pub start_ticks: Option<u64>,
    pub refused: Option<String>,
    #[serde(default)]
    pub retry: bool,
    pub exit: Option<Exit>,
    pub maxrss_kib: Option<u64>,
    pub ready: Option<bool>,
    pub unusable: Option<String>,
    /// With `--spec`: what `python -m pave.parse` prints for the DAG file.
    pub spec: Option<String>,
    /// A supervised request's claim was held by someone else: nothing ran.
    pub claimed: Option<bool>,
    /// A supervised attempt's result file could not be written (why).
    pub result_error: Option<String>,
    /// A supervised attempt was claimed but could not be forked: the
    /// zygote wrote its result (not run, with the error).
    pub not_run: Option<bool>,
}

/// Connects to a unix socket, also when its path is longer than `sun_path`
/// (through `/proc/self/fd/N/NAME` of an open folder).
pub(crate) fn connect(path: &Path) -> std::io::Result<UnixStream> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return UnixStream::connect(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::other("not a socket path"));
    };
    let dir = File::open(dir)?;
    let mut short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    short.push(name);
    UnixStream::connect(short)
}

/// Nobody listens on the socket (yet, or any more).
pub(crate) fn is_not_listening(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENOENT | Errno::ECONNREFUSED)
    )
}

/// The zygote closed the connection under us.
pub(crate) fn is_gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EPIPE | Errno::ECONNRESET)
    )
}

/// A request as it goes on the wire: `u32` big-endian length, then the
/// JSON; the reason it cannot be sent otherwise.
pub(crate) fn frame(body: &serde_json::Value) -> Result<Vec<u8>, String> {
    let body = serde_json::to_vec(body).map_err(|e| format!("cannot encode the request: {e}"))?;
    let len = u32::try_from(body.len()).map_err(|_| "the environment is too large to send")?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    Ok(framed)
}

/// The digest a request sends instead of the variables of `env` (its
/// `base_env_sha1`): SHA-1, in hex, of each variable in order of name,
/// as `NAME NUL VALUE NUL`. `sdk/python/pave/zygote.py` (`env_digest`)
/// computes the same over its own environment.
pub(crate) fn env_digest(env: &BTreeMap<String, String>) -> String {
    use sha1::{Digest, Sha1};
    use std::fmt::Write as _;
    let mut h = Sha1::new();
    for (name, value) in env {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .fold(String::with_capacity(40), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// Sends the request, with `fds` (the task's stdio) attached to its first
/// bytes.
pub(crate) fn send_request(
    stream: &UnixStream,
    request: &[u8],
    fds: &[std::os::fd::RawFd],
) -> std::io::Result<()> {
    let cmsg = [ControlMessage::ScmRights(fds)];
    let sent = loop {
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(request)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => break n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    };
    let mut rest = request.get(sent..).unwrap_or_default();
    let mut writer = stream;
    while !rest.is_empty() {
        match writer.write(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// JSON lines read from the zygote, possibly in pieces.
#[derive(Default)]
pub(crate) struct Lines {
    pub buf: Vec<u8>,
    pub eof: bool,
}

impl Lines {
    /// The next complete line as an [`Answer`] (a line that is not one is skipped).
    pub fn next_answer(&mut self) -> Option<Answer> {
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            if let Ok(answer) = serde_json::from_slice::<Answer>(&line) {
                return Some(answer);
            }
        }
        None
    }

    /// Reads what is there (one `read`); false at end of file.
    pub fn fill(&mut self, source: &mut impl Read) -> std::io::Result<bool> {
        let mut chunk = [0u8; 4096];
        match source.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default());
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) =>
            {
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// The next answer from `source`, waiting until `deadline`; `None` at end of file.
    pub fn read_answer<S: Read + AsFd>(
        &mut self,
        source: &mut S,
        deadline: Instant,
    ) -> std::io::Result<Option<Answer>> {
        loop {
            if let Some(a) = self.next_answer() {
                return Ok(Some(a));
            }
            if self.eof {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            let mut fds = [PollFd::new(source.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, poll_timeout(left)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
            self.fill(&mut *source)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_line_by_line_across_chunks() {
        let mut lines = Lines::default();
        lines.buf.extend_from_slice(
            b"{\"pid\": 12, \"start_ticks\": 345}\nnot json\n{\"exit\": {\"type\": \"co",
        );
        let first = lines.next_answer().expect("pid");
        assert_eq!((first.pid, first.start_ticks), (Some(12), Some(345)));
        assert!(lines.next_answer().is_none());
        lines
            .buf
            .extend_from_slice(b"de\", \"code\": 98}, \"maxrss_kib\": 2048}\n");
        let second = lines.next_answer().expect("exit");
        assert_eq!(second.exit, Some(Exit::Code { code: 98 }));
        assert_eq!(second.maxrss_kib, Some(2048));
        let refused: Answer =
            serde_json::from_str(r#"{"refused": "changed", "retry": true}"#).expect("refused");
        assert!(refused.retry && refused.pid.is_none());
    }

    #[test]
    fn long_socket_paths_connect_through_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("d".repeat(120));
        std::fs::create_dir_all(&deep).expect("mkdir");
        let path = deep.join("k.sock");
        assert!(path.as_os_str().len() > SUN_PATH_MAX);
        let err = connect(&path).expect_err("nobody listens");
        assert!(is_not_listening(&err), "{err}");
    }

    #[test]
    fn the_environment_digest_is_the_zygotes() {
        // The same vectors as sdk/python/tests/test_zygote.py's
        // `test_the_digest_is_the_executors`.
        let env: BTreeMap<String, String> = [
            ("PATH", "/bin"),
            ("B", "x=y"),
            ("A", "1"),
            ("\u{dc}NI", "wert \u{2713}"),
            ("EMPTY", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(env_digest(&env), "e8b9f15698e1b645d67364f12f81a65815b8246f");
        assert_eq!(
            env_digest(&BTreeMap::new()),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        // A variable's boundary is part of it: `A=1, B=` is not `A=1B=`.
        let split = |pairs: &[(&str, &str)]| {
            env_digest(
                &pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        assert_ne!(
            split(&[("A", "1B"), ("C", "")]),
            split(&[("A", "1"), ("BC", "")])
        );
    }
}
