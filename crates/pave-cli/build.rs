//! Embeds the Python SDK (`sdk/python/pave`) into the binary, so that a
//! `cargo build` alone gives a `pave` that can run Python DAGs: at run time
//! the files are written under `$PAVE_HOME/sdk/<hash>/` and put on the
//! PYTHONPATH of the Python processes pave starts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let sdk = manifest.join("../../sdk/python");
    println!("cargo:rerun-if-changed={}", sdk.join("pave").display());
    let mut files = Vec::new();
    collect(&sdk.join("pave"), &sdk, &mut files);
    files.sort();
    let mut out = String::from(
        "/// (path relative to the SDK folder, contents)\npub const SDK_FILES: &[(&str, &str)] = &[\n",
    );
    for (rel, abs) in &files {
        println!("cargo:rerun-if-changed={}", abs.display());
        let _ = writeln!(
            out,
            "    ({rel:?}, include_str!({:?})),",
            abs.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("sdk_files.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("cannot write {}: {e}", dest.display());
    }
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "__pycache__" {
                // Each folder is watched too, so a new file triggers a rebuild.
                println!("cargo:rerun-if-changed={}", path.display());
                collect(&path, root, out);
            }
        } else if (name.ends_with(".py") || name.ends_with(".typed"))
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push((rel.display().to_string(), path.clone()));
        }
    }
}
