//! Streaming a Pod's log into the attempt's log file while it runs, so the
//! log stays readable after the Pod is deleted; and remembering the last
//! stdout line (a command task's result).

use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What streaming a pod's log found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogTail {
    /// The last non-empty line, right-trimmed.
    pub last_line: Option<String>,
    /// Lines written to the log file.
    pub lines: u64,
    /// Why the log could not be read completely, if it could not.
    pub error: Option<String>,
}

/// Follows the log of `container` in pod `name` into `path` (appending)
/// until the container ends. `skip` lines are not written again (they are
/// in the file from before a restart). Never fails: problems are in
/// [`LogTail::error`] and noted in the file.
pub async fn follow(
    api: Api<Pod>,
    name: String,
    container: String,
    path: PathBuf,
    skip: u64,
) -> LogTail {
    let mut tail = LogTail::default();
    let mut file = match open(&path) {
        Ok(f) => f,
        Err(e) => {
            tail.error = Some(format!("cannot open log file {}: {e}", path.display()));
            return tail;
        }
    };
    let mut seen: u64 = 0;
    let mut failures = 0u32;
    loop {
        let params = LogParams {
            follow: true,
            container: Some(container.clone()),
            ..LogParams::default()
        };
        match api.log_stream(&name, &params).await {
            Ok(reader) => {
                failures = 0;
                let mut lines = reader.lines();
                while let Some(line) = lines.next().await {
                    let line = match line {
                        Ok(l) => l,
                        Err(e) => {
                            tail.error = Some(format!("log stream broke: {e}"));
                            break;
                        }
                    };
                    seen += 1;
                    // Skipped lines are already in the file, but still count
                    // for the result line.
                    let trimmed = line.trim_end();
                    if !trimmed.is_empty() {
                        tail.last_line = Some(trimmed.to_owned());
                    }
                    if seen <= skip + tail.lines {
                        continue;
                    }
                    let _ = writeln!(file, "{line}");
                    tail.lines += 1;
                }
            }
            Err(e) => {
                failures += 1;
                tail.error = Some(format!("cannot read the pod's log: {e}"));
            }
        }
        // The stream ended: the container ended, or the connection broke.
        match api.get_opt(&name).await {
            Ok(Some(pod)) if !container_ended(&pod) && failures < 50 => {
                seen = 0;
                tokio::time::sleep(Duration::from_millis(if failures > 0 { 200 } else { 20 }))
                    .await;
                continue;
            }
            _ => break,
        }
    }
    if tail.error.is_some() && tail.lines == 0 {
        let _ = writeln!(
            file,
            "[pave] {}",
            tail.error
                .as_deref()
                .unwrap_or("the pod's log is unreadable")
        );
    } else {
        tail.error = None;
    }
    let _ = file.flush();
    tail
}

/// Whether the pod's containers are done (or the pod itself is).
fn container_ended(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return true;
    }
    status.container_statuses.as_ref().is_some_and(|cs| {
        cs.first()
            .and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.terminated.is_some())
    })
}

/// Lines already in a log file that came from the pod (not pave's own
/// `[pave]` notes): skipped when the log is followed again after a restart.
pub fn lines_in(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .map(|s| s.lines().filter(|l| !l.starts_with("[pave] ")).count() as u64)
        .unwrap_or(0)
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Appends a note from pave to an attempt's log.
pub fn note(path: &Path, line: &str) {
    if let Ok(mut f) = open(path) {
        let _ = writeln!(f, "[pave] {line}");
    }
}
