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
//! written to an unnamed file in the claim's folder (`O_TMPFILE`; where the
//! filesystem lacks it, a private temporary file) that is then hard-linked
//! to the claim name; `link(2)` fails with `EEXIST` if the name exists,
//! which gives `O_EXCL` semantics. Claims are never removed: a finished attempt keeps
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
        /// The supervisor serves many attempts (the attempt's pre-forked
        /// interpreter, or the supervision server of command attempts; see
        /// [`crate::LocalProcess`]). The Python zygote writes it as `zygote`.
        #[serde(default, alias = "zygote")]
        shared: bool,
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
    let json = serde_json::to_vec(claim).map_err(|e| CreateError::Io(std::io::Error::other(e)))?;
    match create_unnamed(path, &json) {
        Some(created) => created,
        None => create_via_temporary(path, &json),
    }
}

/// The content in an unnamed file of the claim's folder (`O_TMPFILE`), then
/// linked to the claim's name: complete or absent, like
/// [`create_via_temporary`], but nothing is deleted. On ext4 without a
/// journal, every inode freed in the last minute (five while its inode
/// table block is unwritten) is skipped, its deletion time read, by each
/// later allocation in its group (`recently_deleted` in the kernel's
/// `fs/ext4/ialloc.c`): one deleted temporary file per
/// attempt made a run's file creations cost more with each attempt (a
/// 100-task chain spent a third of its time there). `None` when the
/// filesystem has no `O_TMPFILE`.
fn create_unnamed(path: &Path, json: &[u8]) -> Option<Result<(), CreateError>> {
    use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, open};
    use nix::sys::stat::Mode;
    use std::os::fd::AsRawFd;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let fd = open(
        dir,
        OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o666),
    )
    .ok()?;
    let mut file = std::fs::File::from(fd);
    if let Err(e) = std::io::Write::write_all(&mut file, json) {
        return Some(Err(CreateError::Io(e)));
    }
    let linked = nix::unistd::linkat(
        AT_FDCWD,
        format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
        AT_FDCWD,
        path,
        AtFlags::AT_SYMLINK_FOLLOW,
    );
    Some(match linked {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EEXIST) => Err(CreateError::Exists),
        // No /proc: the named temporary file does the same.
        Err(nix::errno::Errno::ENOENT) if !Path::new("/proc/self/fd").exists() => {
            return None;
        }
        Err(e) => Err(CreateError::Io(e.into())),
    })
}

/// The content in a private temporary file, hard-linked to the claim's name
/// (`link(2)` fails with `EEXIST` if the name exists: `O_EXCL` semantics),
/// then the temporary name removed.
fn create_via_temporary(path: &Path, json: &[u8]) -> Result<(), CreateError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
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

/// Claims the attempt at `path` in the name of supervisor `pid` (creating
/// the folder), as [`create`] does.
pub(crate) fn take(
    path: &Path,
    pid: u32,
    start_ticks: Option<u64>,
    gpu_ids: &[u32],
    started_at: DateTime<Utc>,
    shared: bool,
) -> Result<(), CreateError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(CreateError::Io)?;
    }
    create(
        path,
        &Claim::Supervisor {
            pid,
            start_ticks,
            started_at,
            gpu_ids: gpu_ids.to_vec(),
            shared,
        },
    )
}

/// Why a supervisor runs nothing when [`take`] found the claim held, for
/// the attempt's log: who holds it.
pub(crate) fn refusal(path: &Path) -> String {
    let held_by = match read(path) {
        Ok(Some(Claim::Fence { note, .. })) => note,
        Ok(Some(Claim::Supervisor { pid, .. })) => format!("supervisor pid {pid}"),
        Ok(None) | Err(_) => "an unreadable claim".to_owned(),
    };
    format!(
        "not running this attempt: it is already claimed ({}: {held_by})",
        path.display()
    )
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
            shared: false,
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

    #[test]
    fn a_zygote_claim_reads_as_the_python_zygote_writes_it() {
        // What sdk/python/pave/zygote.py writes for a supervised request.
        let text = r#"{"claimed_by": "supervisor", "pid": 4242, "start_ticks": 99, "started_at": "2026-11-29T02:36:22.123456Z", "gpu_ids": [0, 2], "zygote": true}"#;
        let claim: Claim = serde_json::from_str(text).expect("claim");
        assert!(matches!(
            claim,
            Claim::Supervisor { pid: 4242, start_ticks: Some(99), shared: true, ref gpu_ids, .. }
                if gpu_ids == &[0, 2]
        ));
        // And a supervisor's, written before the field existed.
        let old = r#"{"claimed_by":"supervisor","pid":7,"start_ticks":null,"started_at":"2026-01-01T00:00:00Z"}"#;
        let claim: Claim = serde_json::from_str(old).expect("old claim");
        assert!(matches!(claim, Claim::Supervisor { shared: false, .. }));
    }

    #[test]
    fn both_ways_of_creating_a_claim_keep_it_exclusive_and_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let claim = |pid| Claim::Supervisor {
            pid,
            start_ticks: None,
            started_at: Utc::now(),
            gpu_ids: vec![],
            shared: false,
        };
        let unnamed = dir.path().join("a.claim");
        let made = create_unnamed(&unnamed, &serde_json::to_vec(&claim(1)).expect("json"));
        assert!(
            matches!(made, Some(Ok(()))),
            "this filesystem has O_TMPFILE"
        );
        let again = create_unnamed(&unnamed, &serde_json::to_vec(&claim(2)).expect("json"));
        assert!(matches!(again, Some(Err(CreateError::Exists))));
        assert!(matches!(
            create_via_temporary(&unnamed, b"{}"),
            Err(CreateError::Exists)
        ));
        let named = dir.path().join("b.claim");
        create_via_temporary(&named, &serde_json::to_vec(&claim(3)).expect("json"))
            .expect("created");
        assert!(matches!(
            create_unnamed(&named, b"{}"),
            Some(Err(CreateError::Exists))
        ));
        let pid = |p: &Path| match read(p) {
            Ok(Some(Claim::Supervisor { pid, .. })) => pid,
            other => panic!("{other:?}"),
        };
        assert_eq!((pid(&unnamed), pid(&named)), (1, 3));
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 2);
    }
}
