//! The web UI in a real browser: `pave standalone` on a temporary home and
//! a free port with the bundled examples, driven by
//! `crates/pave-ui/e2e/ui.mjs` (npm's playwright-core with Debian's
//! chromium). The script logs in with the admin password standalone
//! prints, triggers the example pipeline from the UI, watches the run
//! finish in the grid, opens a task's log and saves screenshots under
//! `$CARGO_TARGET_DIR/ui-screenshots/` (or `target/ui-screenshots/`).
//!
//! The test installs what it needs itself: `npm ci` in the e2e folder, and
//! `apt-get install -y chromium` (or `nodejs npm`) when /usr/bin/chromium
//! (or node) is missing. It is skipped, with the reason printed, only when
//! that is impossible (not root and no passwordless sudo, no package);
//! `PAVE_UI_BROWSER=require` turns a skip into a failure.

mod common;

use common::{Pave, Running, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";

fn e2e_dir() -> PathBuf {
    workspace_root().join("crates/pave-ui/e2e")
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("ui-screenshots")
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `apt-get install -y PACKAGES` as root, or through passwordless sudo.
fn apt_install(packages: &[&str]) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null());
        succeeds(&mut cmd)
    };
    let mut install = vec!["install", "-y", "-qq"];
    install.extend_from_slice(packages);
    apt(&install) || (apt(&["update", "-qq"]) && apt(&install))
}

/// Why the browser test cannot run here, or None when it can.
fn prepare() -> Option<String> {
    let has_node = || succeeds(Command::new("node").arg("--version").stdout(Stdio::null()));
    if !has_node() {
        eprintln!("ui_browser: node is missing; installing Debian's nodejs and npm");
        if !apt_install(&["nodejs", "npm"]) || !has_node() {
            return Some(
                "node is missing and `apt-get install -y nodejs npm` failed (needs root or passwordless sudo)"
                    .into(),
            );
        }
    }
    if !Path::new(CHROMIUM).exists() {
        eprintln!("ui_browser: {CHROMIUM} is missing; installing Debian's chromium");
        if !apt_install(&["chromium"]) || !Path::new(CHROMIUM).exists() {
            return Some(format!(
                "{CHROMIUM} is missing and `apt-get install -y chromium` failed (needs root or passwordless sudo)"
            ));
        }
    }
    let dir = e2e_dir();
    let installed = dir
        .join("node_modules/playwright-core/package.json")
        .exists();
    if !installed
        && !succeeds(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
        )
    {
        return Some(format!("`npm ci` failed in {}", dir.display()));
    }
    None
}

fn after<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.split_once(needle).map(|(_, rest)| rest.trim()))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", lines.join("\n")))
}

#[test]
fn the_ui_triggers_and_watches_the_example_pipeline_in_a_browser() {
    if let Some(reason) = prepare() {
        let required = std::env::var("PAVE_UI_BROWSER").is_ok_and(|v| v == "require");
        assert!(!required, "the browser test cannot run: {reason}");
        eprintln!("ui_browser: SKIPPED: {reason}");
        return;
    }
    let pave = Pave::new();
    let mut standalone = Running::spawn(pave.command(&["standalone", "--port", "0"]));
    standalone.wait_for_line("web UI at http://", Duration::from_secs(120));
    standalone.wait_for_line("scheduling", Duration::from_secs(120));
    let password = after(&standalone.seen, "with password:").to_owned();
    let url = after(&standalone.seen, "web UI at ")
        .split_whitespace()
        .next()
        .expect("a URL")
        .trim_end_matches('/')
        .to_owned();
    let shots = screenshot_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let child = Command::new("node")
        .arg("ui.mjs")
        .current_dir(e2e_dir())
        .env("PAVE_URL", &url)
        .env("PAVE_USER", "admin")
        .env("PAVE_PASSWORD", &password)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let out = common::wait_with_timeout(child, Duration::from_secs(420), "the browser test");
    standalone.collect();
    println!("{}", out.stdout);
    assert!(
        out.success(),
        "the browser test failed:\n{}\n{}\n--- pave standalone ---\n{}",
        out.stdout,
        out.stderr,
        standalone.seen.join("\n")
    );
    for name in ["02-dag-list", "05-grid-finished", "10-task-log"] {
        let png = shots.join(format!("{name}.png"));
        assert!(png.is_file(), "missing screenshot {}", png.display());
    }
    println!("ui_browser: screenshots in {}", shots.display());
    standalone.kill9();
}
