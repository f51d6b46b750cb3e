//! Helpers shared by the end-to-end tests: run the real `pave` binary with a
//! temporary `PAVE_HOME`, bound every wait with a timeout, parse JSON output.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a one-shot command (`dags test`, `dags list`, ...) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variables of the developer's shell that would change what
/// the binary does; every spawned `pave` starts without them.
const SCRUBBED_ENV: &[&str] = &[
    "PAVE_HOME",
    "PAVE_DAGS_FOLDER",
    "PAVE_XCOM_MAX_BYTES",
    "PAVE_LOG",
];

/// The `pave` binary Cargo built for these tests.
pub fn pave_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pave")
}

/// The workspace root (where `examples/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// A DAG file under `crates/pave-cli/tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    assert!(path.is_file(), "missing fixture {}", path.display());
    path
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Reads a pipe to its end on a thread, so a chatty child never blocks on a
/// full pipe while the test waits for it.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let mut bytes = Vec::new();
            let _ = p.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// Waits for `child` at most `timeout`; on timeout kills it and panics with
/// what it printed, so a hang fails the test instead of stalling the suite.
pub fn wait_with_timeout(mut child: Child, timeout: Duration, what: &str) -> Out {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on a child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("stdout reader thread");
    let stderr = stderr.join().expect("stderr reader thread");
    match status {
        Some(status) => Out {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "`{what}` did not finish within {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        ),
    }
}

/// A pave installation in a temporary `PAVE_HOME`, removed when dropped.
pub struct Pave {
    pub home: tempfile::TempDir,
}

impl Default for Pave {
    fn default() -> Self {
        Self::new()
    }
}

impl Pave {
    pub fn new() -> Pave {
        Pave {
            home: tempfile::Builder::new()
                .prefix("pave-home-")
                .tempdir()
                .expect("create a temporary PAVE_HOME"),
        }
    }

    pub fn home_path(&self) -> &Path {
        self.home.path()
    }

    /// `pave ARGS` with this home, run from the workspace root, with no
    /// stdin and both outputs piped.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(pave_bin());
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.env("PAVE_HOME", self.home.path())
            .current_dir(workspace_root())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `pave ARGS` to the end (bounded by [`COMMAND_TIMEOUT`]).
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Out {
        self.run_cmd(self.command(args), args)
    }

    /// Runs a prepared command (e.g. with extra env) to the end.
    pub fn run_cmd<S: AsRef<std::ffi::OsStr>>(&self, mut cmd: Command, args: &[S]) -> Out {
        let what = describe(args);
        let child = cmd.spawn().expect("spawn the pave binary");
        wait_with_timeout(child, COMMAND_TIMEOUT, &what)
    }

    /// Runs `pave ARGS`, asserts it exited 0 and returns its stdout.
    /// An `Authorization` header value: a new API token of the admin user.
    pub fn admin_bearer(&self) -> String {
        let token = self.ok(&["tokens", "create", "--username", "admin"]);
        format!("Bearer {}", token.trim())
    }

    pub fn ok<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert!(out.success(), "`{}` failed:\n{out}", describe(args));
        out.stdout
    }

    /// Runs `pave ARGS`, asserts it exited non-zero with a message on stderr,
    /// and returns that message.
    pub fn fails<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert!(
            !out.success(),
            "`{}` should have failed:\n{out}",
            describe(args)
        );
        assert!(
            !out.stderr.trim().is_empty(),
            "`{}` failed without a message on stderr:\n{out}",
            describe(args)
        );
        out.stderr
    }

    /// Runs `pave ARGS` (which should include `--json`), asserts success and
    /// parses stdout as exactly one JSON value.
    pub fn json<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Value {
        let stdout = self.ok(args);
        single_json(&stdout)
    }
}

/// `pave a b c` for messages.
pub fn describe<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let parts: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    format!("pave {}", parts.join(" "))
}

/// Parses `text` as exactly one JSON value (and nothing else but whitespace).
pub fn single_json(text: &str) -> Value {
    let values: Vec<Value> = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{text}"));
    assert_eq!(
        values.len(),
        1,
        "stdout should hold exactly one JSON value:\n{text}"
    );
    values.into_iter().next().expect("one value")
}

/// The task instances of a `dags test --json` / `tasks list --json` output.
pub fn task_instances(v: &Value) -> &Vec<Value> {
    v["task_instances"]
        .as_array()
        .unwrap_or_else(|| panic!("no task_instances array in {v}"))
}

/// The task instance `task_id` (unmapped, or with the given map index).
pub fn ti<'a>(v: &'a Value, task_id: &str, map_index: i64) -> &'a Value {
    task_instances(v)
        .iter()
        .find(|t| t["task_id"] == task_id && t["map_index"] == map_index)
        .unwrap_or_else(|| panic!("no task instance {task_id}[{map_index}] in {v:#}"))
}

/// `(state, try_number)` of a task instance, for compact assertions. A
/// task instance with no state (JSON `null`, as in Airflow's API) reads
/// as "none".
pub fn state_try(v: &Value, task_id: &str, map_index: i64) -> (String, u64) {
    let t = ti(v, task_id, map_index);
    (
        t["state"].as_str().unwrap_or("none").to_owned(),
        t["try_number"].as_u64().expect("try_number is a number"),
    )
}

/// A fresh temporary folder for DAG files.
pub fn dags_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pave-dags-")
        .tempdir()
        .expect("create a temporary DAGs folder")
}

/// Copies fixtures into `dir` (under their own names).
pub fn copy_fixtures(dir: &Path, names: &[&str]) {
    for name in names {
        std::fs::copy(fixture(name), dir.join(name)).expect("copy a fixture");
    }
}

/// A long-running `pave` process (e.g. `standalone`) whose output lines are
/// collected as they come, so a test can wait for one of them.
pub struct Running {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line seen so far (stdout and stderr, interleaved).
    pub seen: Vec<String>,
    readers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Spawns a prepared command; both outputs must be piped.
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().expect("spawn the pave binary");
        let (tx, rx) = std::sync::mpsc::channel();
        let mut readers = Vec::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for pipe in [
            Box::new(stdout) as Box<dyn Read + Send>,
            Box::new(stderr) as Box<dyn Read + Send>,
        ] {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }));
        }
        Running {
            child,
            lines: rx,
            seen: Vec::new(),
            readers,
        }
    }

    /// Waits until a line contains `needle`; panics (after killing the
    /// process) if it does not come within `timeout`.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) {
        if self.seen.iter().any(|l| l.contains(needle)) {
            return;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "no line containing {needle:?} within {timeout:?}; output so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Collects whatever lines have arrived, without waiting.
    pub fn collect(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// SIGKILLs the process (only it: the task supervisors run in their own
    /// sessions and survive) and reaps it.
    pub fn kill9(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finish_output()
    }

    /// Waits for the process to exit by itself within `timeout`; panics
    /// (after killing it) otherwise. Returns its status and output.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on a child") {
                return (status, self.finish_output());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let seen = self.finish_output();
                panic!(
                    "the process did not exit within {timeout:?}; output:\n{}",
                    seen.join("\n")
                );
            }
            self.collect();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish_output(mut self) -> Vec<String> {
        // The pipes may stay open in task processes that outlive a killed
        // scheduler (they inherit nothing from it, but be safe): do not
        // join the readers, just take what has arrived.
        std::thread::sleep(Duration::from_millis(20));
        self.collect();
        drop(std::mem::take(&mut self.readers));
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Never leave a scheduler behind when a test panics.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Http {
    pub addr: String,
}

pub struct HttpReply {
    pub status: u16,
    pub body: Value,
    pub raw: String,
}

impl Http {
    /// The REST API of a `pave standalone` that is starting: waits until it
    /// prints the API's address.
    pub fn of(standalone: &mut Running, timeout: Duration) -> Http {
        standalone.wait_for_line("REST API at http://", timeout);
        let base = after(&standalone.seen, "REST API at http://")
            .split_whitespace()
            .next()
            .expect("an address");
        Http {
            addr: base.trim_end_matches("/api/v1").to_owned(),
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> HttpReply {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to the REST API");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a read timeout");
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            payload.len()
        );
        if body.is_some() {
            request.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&payload);
        stream
            .write_all(request.as_bytes())
            .expect("send the request");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("read the reply");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP reply");
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body_text = if chunked {
            dechunk(rest)
        } else {
            rest.to_owned()
        };
        HttpReply {
            status,
            body: serde_json::from_str(&body_text).unwrap_or(Value::Null),
            raw: text,
        }
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The text after `marker` on the first line that has it.
pub fn after<'a>(lines: &'a [String], marker: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.split_once(marker).map(|(_, rest)| rest.trim()))
        .unwrap_or_else(|| panic!("no line with {marker:?} in:\n{}", lines.join("\n")))
}
