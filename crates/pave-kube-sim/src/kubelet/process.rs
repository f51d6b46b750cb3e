//! Process mode: the pod's first container runs as a local child process in
//! its own process group; stdout and stderr become the pod log.

use super::{Stop, Termination, stopped};
use crate::logs::PodLog;
use k8s_openapi::api::core::v1::Pod;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

/// What to run for a pod: `command` + `args` of its first container (or
/// `args` alone when there is no command), its literal `env` and `workingDir`.
#[derive(Debug, Clone)]
pub(crate) struct ProcessSpec {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: Option<String>,
    hostname: String,
}

impl ProcessSpec {
    pub fn from_pod(pod: &Pod) -> Self {
        let c = pod.spec.as_ref().and_then(|s| s.containers.first());
        let mut argv: Vec<String> = c.and_then(|c| c.command.clone()).unwrap_or_default();
        argv.extend(c.and_then(|c| c.args.clone()).unwrap_or_default());
        let env = c
            .and_then(|c| c.env.as_ref())
            .map(|env| {
                env.iter()
                    .filter_map(|e| e.value.as_ref().map(|v| (e.name.clone(), v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        ProcessSpec {
            argv,
            env,
            working_dir: c.and_then(|c| c.working_dir.clone()),
            hostname: pod.metadata.name.clone().unwrap_or_default(),
        }
    }
}

fn start_error(message: String) -> Termination {
    Termination {
        exit_code: 128,
        reason: "StartError".into(),
        message: Some(message),
    }
}

fn pump(
    reader: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<PodLog>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    log.push(line.trim_end_matches(['\n', '\r']).to_string());
                }
            }
        }
    })
}

fn signal_group(pgid: Option<u32>, sig: Signal) {
    if let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        // The group may be gone already; that is fine.
        let _ = killpg(Pid::from_raw(pid), sig);
    }
}

/// Runs the process until it exits or the kubelet is asked to stop it.
pub(crate) async fn run(
    spec: &ProcessSpec,
    log: &Arc<PodLog>,
    stop: &mut watch::Receiver<Option<Stop>>,
    max_grace: Duration,
) -> (Termination, Option<Stop>) {
    let Some((program, args)) = spec.argv.split_first() else {
        return (
            start_error("no command to run: the simulator runs the first container's command and args as a local process".into()),
            None,
        );
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("HOSTNAME", &spec.hostname)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("failed to start container process: exec: {program:?}: {e}");
            log.push(msg.clone());
            return (start_error(msg), None);
        }
    };
    let pgid = child.id();
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(pump(out, log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(pump(err, log.clone()));
    }
    let (status, req) = tokio::select! {
        st = child.wait() => (st, None),
        req = stopped(stop) => {
            let grace = match &req {
                Stop::Delete { grace } => (*grace).min(max_grace),
                Stop::Kill | Stop::Fail { .. } => Duration::ZERO,
            };
            if grace.is_zero() {
                signal_group(pgid, Signal::SIGKILL);
            } else {
                signal_group(pgid, Signal::SIGTERM);
            }
            let st = match tokio::time::timeout(grace, child.wait()).await {
                Ok(st) => st,
                Err(_) => {
                    signal_group(pgid, Signal::SIGKILL);
                    child.wait().await
                }
            };
            (st, Some(req))
        }
    };
    // A container's end takes the rest of its processes with it.
    signal_group(pgid, Signal::SIGKILL);
    for p in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }
    let term = match status {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(code), _) => Termination::exited(code),
            (None, Some(sig)) => Termination::exited(128 + sig),
            (None, None) => Termination::exited(1),
        },
        Err(e) => start_error(format!("waiting for the process failed: {e}")),
    };
    (term, req)
}
