//! Helpers shared by the end-to-end tests: run the real `pave` binary with a
//! temporary `PAVE_HOME`, bound every wait with a timeout, parse JSON output.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Read;
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

/// `(state, try_number)` of a task instance, for compact assertions.
pub fn state_try(v: &Value, task_id: &str, map_index: i64) -> (String, u64) {
    let t = ti(v, task_id, map_index);
    (
        t["state"].as_str().expect("state is a string").to_owned(),
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
