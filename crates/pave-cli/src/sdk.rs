//! The Python SDK embedded in the binary (see build.rs), unpacked under
//! `$PAVE_HOME/sdk/<hash>/` for the Python processes pave starts, and
//! compiled there once so that none of them compiles it again.

use anyhow::{Context, Result};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// Writes the SDK under `home/sdk/<content hash>` unless it is already
/// there, and returns that folder (the one to put on PYTHONPATH). The
/// folder is written aside and renamed into place, so a Python process
/// never reads a half-written SDK of another pave process sharing the home.
/// Its modules are then compiled in the background ([`precompile`]).
pub fn unpack(home: &Path) -> Result<PathBuf> {
    if SDK_FILES.is_empty() {
        anyhow::bail!(
            "this pave binary was built without the Python SDK (sdk/python/pave was missing)"
        );
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    SDK_FILES.hash(&mut h);
    let dir = home.join("sdk").join(format!("{:016x}", h.finish()));
    if !dir.join(".complete").exists() {
        write_aside(&dir)?;
    }
    precompile(&dir, &python());
    Ok(dir)
}

/// Writes the files into a fresh sibling folder and renames it to `dir`
/// (someone else's complete copy that got there first is kept).
fn write_aside(dir: &Path) -> Result<()> {
    let parent = dir.parent().context("the SDK folder has no parent")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a folder in {}", parent.display()))?;
    for (rel, text) in SDK_FILES {
        let path = tmp.path().join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let marker = tmp.path().join(".complete");
    std::fs::write(&marker, b"").with_context(|| format!("cannot write {}", marker.display()))?;
    let tmp = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp, dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join(".complete").exists() {
            return Err(e).with_context(|| format!("cannot create {}", dir.display()));
        }
    }
    Ok(())
}

/// The interpreter pave's Python processes run (as `services` picks it).
fn python() -> String {
    std::env::var("PAVE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Compiles the SDK's modules for `python` in the background, once per
/// interpreter (a `.compiled-<hash>` marker): pave's Python processes often
/// run with `PYTHONDONTWRITEBYTECODE` (the DAG parser sets it, and so may
/// the user), and would otherwise compile the SDK from source at every
/// start (about 30 ms of an interpreter's start-up). `compileall` writes
/// each `.pyc` atomically; until it is done, imports compile as before.
pub fn precompile(dir: &Path, python: &str) {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    python.hash(&mut h);
    let marker = dir.join(format!(".compiled-{:016x}", h.finish()));
    if marker.exists() {
        return;
    }
    let spawned = std::process::Command::new(python)
        .args(["-m", "compileall", "-q"])
        .arg(dir.join("pave"))
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Ok(mut child) = spawned {
        // Waited for on a thread, so that it is reaped; if pave exits first
        // the compile goes on and the next start writes the marker.
        let _ = std::thread::Builder::new()
            .name("pave-sdk-compile".into())
            .spawn(move || {
                if child.wait().is_ok_and(|s| s.success()) {
                    let _ = std::fs::write(&marker, b"");
                }
            });
    }
}
