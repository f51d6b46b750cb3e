//! Claim files: the fence that makes every local attempt discoverable
//! without its stored handle.
//!
//! Before it spawns the task, the supervisor creates `attempt=N.claim`
//! (next to the result file, see [`claim_path`]) exclusively and records
//! who it is in it. An attempt therefore runs only if its supervisor won the
//! claim, and a scheduler that lost the handle (killed between spawning the
//! supervisor and storing the handle) can look at the claim instead:
//! [`crate::Executor::adopt_claimed`]. When there is no claim yet, the
//! executor takes it itself (a [`Claim::Fence`]), so a supervisor that is
//! still starting up finds it taken and exits without running anything
//! ([`crate::supervise::EXIT_ALREADY_CLAIMED`]).
//!
//! A claim is created with complete content or not at all: the JSON is
//! written to a private temporary file that is then hard-linked to the claim
//! name; `link(2)` fails with `EEXIST` if the name exists, which gives
//! `O_EXCL` semantics. Claims are never removed: a finished attempt keeps
//! its claim beside its result and log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Who holds an attempt's claim (the JSON content of the claim file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "claimed_by", rename_all = "snake_case")]
pub enum Claim {
    /// A supervisor runs (or ran) the attempt: the same identity as
    /// [`crate::LocalProcess`], so the attempt can be adopted from it.
    Supervisor {
        pid: u32,
        /// `/proc/PID/stat` field 22, so a reused pid is not mistaken for it.
        start_ticks: Option<u64>,
        started_at: DateTime<Utc>,
        /// The GPU ids the executor reserved for the attempt (`--gpus`).
        #[serde(default)]
        gpu_ids: Vec<u32>,
    },
    /// The scheduler, through the executor, fenced the attempt off before any
    /// supervisor claimed it: it never ran and never will.
    Fence {
        fenced_at: DateTime<Utc>,
        /// Always starts with "fenced by the scheduler".
        note: String,
    },
}

/// The claim file of the attempt whose result goes to `result_path`:
/// `attempt=N.result.json` -> `attempt=N.claim`; any other name gets
/// `.claim` appended.
pub fn claim_path(result_path: &Path) -> PathBuf {
    let name = result_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let claim = match name.strip_suffix(".result.json") {
        Some(stem) => format!("{stem}.claim"),
        None => format!("{name}.claim"),
    };
    result_path.with_file_name(claim)
}

/// Why a claim could not be created.
#[derive(Debug)]
pub(crate) enum CreateError {
    /// Someone else holds the claim.
    Exists,
    Io(std::io::Error),
}

/// Creates the claim file with `claim` as its content, unless it exists.
pub(crate) fn create(path: &Path, claim: &Claim) -> Result<(), CreateError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let json = serde_json::to_vec(claim).map_err(|e| CreateError::Io(std::io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, json).map_err(CreateError::Io)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(CreateError::Exists),
        Err(e) => Err(CreateError::Io(e)),
    }
}

/// The claim, if the file exists. `Err` is a reason: the file exists but
/// cannot be read or parsed.
pub(crate) fn read(path: &Path) -> Result<Option<Claim>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_path_sits_next_to_the_result() {
        assert_eq!(
            claim_path(Path::new("/l/task_id=t/attempt=3.result.json")),
            PathBuf::from("/l/task_id=t/attempt=3.claim")
        );
        assert_eq!(
            claim_path(Path::new("/r/t.json")),
            PathBuf::from("/r/t.json.claim")
        );
    }

    #[test]
    fn a_claim_is_created_once_with_its_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("attempt=1.claim");
        assert_eq!(read(&path), Ok(None));
        let first = Claim::Supervisor {
            pid: 42,
            start_ticks: Some(7),
            started_at: Utc::now(),
            gpu_ids: vec![1],
        };
        create(&path, &first).expect("first claim");
        let second = Claim::Fence {
            fenced_at: Utc::now(),
            note: "fenced by the scheduler".into(),
        };
        assert!(matches!(create(&path, &second), Err(CreateError::Exists)));
        assert_eq!(read(&path), Ok(Some(first)));
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
