//! The Python SDK embedded in the binary (see build.rs), unpacked under
//! `$PAVE_HOME/sdk/<hash>/` for the Python processes pave starts.

use anyhow::{Context, Result};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// Writes the SDK under `home/sdk/<content hash>` unless it is already
/// there, and returns that folder (the one to put on PYTHONPATH).
pub fn unpack(home: &Path) -> Result<PathBuf> {
    if SDK_FILES.is_empty() {
        anyhow::bail!(
            "this pave binary was built without the Python SDK (sdk/python/pave was missing)"
        );
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    SDK_FILES.hash(&mut h);
    let dir = home.join("sdk").join(format!("{:016x}", h.finish()));
    let marker = dir.join(".complete");
    if marker.exists() {
        return Ok(dir);
    }
    for (rel, text) in SDK_FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    std::fs::write(&marker, b"").with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(dir)
}
