//! Architecture invariant: pave-core stays pure. It must not gain an IO or
//! async dependency, directly or transitively, and its source must not reach
//! for the filesystem, the network, processes or a clock.

#![allow(clippy::disallowed_types)] // this test itself runs `cargo tree`

use std::path::Path;
use std::process::Command;

/// Crates that would bring IO, async or a runtime into the core.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "futures",
    "mio",
    "sqlx",
    "rusqlite",
    "kube",
    "k8s-openapi",
    "axum",
    "hyper",
    "reqwest",
    "tower",
    "object_store",
    "nix",
    "libc-print",
    "tracing-subscriber",
];

#[test]
fn core_has_no_io_or_async_dependency() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "pave-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let offenders: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| FORBIDDEN.contains(name))
        .collect();
    assert!(
        offenders.is_empty(),
        "pave-core must stay pure, but depends on {offenders:?}:\n{tree}"
    );
}

#[test]
fn core_source_does_no_io_and_reads_no_clock() {
    let forbidden = [
        "std::fs",
        "std::net",
        "std::process",
        "std::thread",
        "std::env",
        "Utc::now",
        "Local::now",
        "SystemTime::now",
        "Instant::now",
        "tokio",
        "async fn",
        ".await",
    ];
    let mut problems = Vec::new();
    visit(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut |path, text| {
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for f in forbidden {
                    if code.contains(f) {
                        problems.push(format!("{}:{}: uses `{f}`", path.display(), n + 1));
                    }
                }
            }
        },
    );
    assert!(
        problems.is_empty(),
        "pave-core must stay pure:\n{}",
        problems.join("\n")
    );
}

fn visit(dir: &Path, f: &mut dyn FnMut(&Path, &str)) {
    for entry in std::fs::read_dir(dir).expect("src dir readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            visit(&path, f);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source readable");
            f(&path, &text);
        }
    }
}
