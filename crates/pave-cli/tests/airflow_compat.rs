//! Differential test against real Apache Airflow 3.
//!
//! Every DAG file in `tests/airflow_compat/dags/` (at the workspace root) is
//! written purely against Airflow's public API. `tools/airflow-truth/
//! run_dag_files.sh` ran each one with Airflow's own `airflow dags test` and
//! recorded the final run state and every task instance's
//! `(task_id, map_index, state, try_number)` in `tests/airflow_compat/truth/`.
//! This test runs the same files, unmodified, with the real `pave dags test
//! FILE --json` (same logical date) and requires the same results. All
//! mismatches of all files are reported in one failure.
//!
//! A DAG file listed in `tests/airflow_compat/KNOWN_DIFFERENCES.md` (a line
//! `- FILE.py: reason`) is skipped with its reason printed; set
//! `AIRFLOW_COMPAT_INCLUDE_KNOWN=1` to run those too (to see whether a fix
//! made one pass). `AIRFLOW_COMPAT_ONLY=a.py,b.py` runs just those files.

mod common;

use common::{Pave, single_json};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The logical date the truth was recorded with (`LOGICAL_DATE` in
/// `tools/airflow-truth/airflow_dag_files.py`).
const LOGICAL_DATE: &str = "2025-01-01T00:00:00+00:00";
/// DAG files run at the same time (each runs its own Python tasks).
const PARALLEL: usize = 2;

fn suite_dir() -> PathBuf {
    common::workspace_root().join("tests/airflow_compat")
}

/// `FILE.py -> reason` from KNOWN_DIFFERENCES.md: every line of the form
/// `- FILE.py: reason` (the file name may be in backquotes).
fn known_differences(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    let mut known = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("- ") else {
            continue;
        };
        let Some((file, reason)) = rest.split_once(':') else {
            continue;
        };
        let file = file.trim().trim_matches('`');
        if file.ends_with(".py") {
            known.insert(file.to_owned(), reason.trim().to_owned());
        }
    }
    known
}

/// One DAG to check: a DAG file and the truth recorded for one of its DAGs.
struct Case {
    file: PathBuf,
    truth_path: PathBuf,
    truth: Value,
}

impl Case {
    fn name(&self) -> String {
        self.truth_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// `(task_id, map_index) -> (state, try_number)`; a JSON null state reads "none".
fn instances(list: &Value) -> BTreeMap<(String, i64), (String, u64)> {
    list.as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                (
                    t["task_id"].as_str().unwrap_or("?").to_owned(),
                    t["map_index"].as_i64().unwrap_or(i64::MIN),
                ),
                (
                    t["state"].as_str().unwrap_or("none").to_owned(),
                    t["try_number"].as_u64().unwrap_or(u64::MAX),
                ),
            )
        })
        .collect()
}

fn show(ti: Option<&(String, u64)>) -> String {
    match ti {
        Some((state, n)) => format!("{state} (try {n})"),
        None => "no such task instance".to_owned(),
    }
}

/// Runs one case through pave and returns its mismatches (empty: same as Airflow).
fn check(case: &Case) -> Vec<String> {
    let dag_id = case.truth["dag_id"].as_str().unwrap_or_default().to_owned();
    let pave = Pave::new();
    let file = case.file.to_string_lossy().into_owned();
    let args = [
        "dags",
        "test",
        file.as_str(),
        "--dag-id",
        dag_id.as_str(),
        "--logical-date",
        LOGICAL_DATE,
        "--json",
    ];
    let out = pave.run(&args);
    if !out.success() {
        return vec![format!(
            "`pave dags test` did not complete the run ({}): {}",
            out.status,
            out.stderr.trim()
        )];
    }
    let got = single_json(&out.stdout);
    let mut problems = Vec::new();
    if got["dag_id"] != case.truth["dag_id"] {
        problems.push(format!(
            "dag_id: airflow {}, pave {}",
            case.truth["dag_id"], got["dag_id"]
        ));
    }
    let (want_state, got_state) = (
        case.truth["run_state"].as_str().unwrap_or("?"),
        got["state"].as_str().unwrap_or("?"),
    );
    if want_state != got_state {
        problems.push(format!("run state: airflow {want_state}, pave {got_state}"));
    }
    let want = instances(&case.truth["task_instances"]);
    let have = instances(&got["task_instances"]);
    let keys: BTreeSet<_> = want.keys().chain(have.keys()).collect();
    for key in keys {
        let (w, h) = (want.get(key), have.get(key));
        if w != h {
            problems.push(format!(
                "{}[{}]: airflow {}, pave {}",
                key.0,
                key.1,
                show(w),
                show(h)
            ));
        }
    }
    problems
}

#[test]
fn airflow_dag_files_behave_as_in_airflow() {
    let dir = suite_dir();
    let known = known_differences(&dir.join("KNOWN_DIFFERENCES.md"));
    let include_known = std::env::var("AIRFLOW_COMPAT_INCLUDE_KNOWN").is_ok_and(|v| v == "1");
    let only: Option<BTreeSet<String>> = std::env::var("AIRFLOW_COMPAT_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());

    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("dags"))
        .expect("tests/airflow_compat/dags exists")
        .map(|e| e.expect("read a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    files.sort();
    let mut truths: Vec<PathBuf> = std::fs::read_dir(dir.join("truth"))
        .expect("tests/airflow_compat/truth exists")
        .map(|e| e.expect("read a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    truths.sort();

    let mut failures: Vec<String> = Vec::new();
    // The suite's own bookkeeping: every DAG file has truth, every truth a
    // DAG file, every known difference a DAG file.
    let stem_of = |p: &Path| -> String {
        let stem = p.file_stem().unwrap_or_default().to_string_lossy();
        stem.split('@').next().unwrap_or_default().to_owned()
    };
    for truth in &truths {
        if !dir
            .join("dags")
            .join(format!("{}.py", stem_of(truth)))
            .is_file()
        {
            failures.push(format!(
                "{}: truth without a DAG file; delete it",
                truth.display()
            ));
        }
    }
    for name in known.keys() {
        if !dir.join("dags").join(name).is_file() {
            failures.push(format!(
                "KNOWN_DIFFERENCES.md names {name}, which is not in tests/airflow_compat/dags/"
            ));
        }
    }

    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if only.as_ref().is_some_and(|o| !o.contains(&name)) {
            continue;
        }
        let stem = stem_of(file);
        let mine: Vec<&PathBuf> = truths.iter().filter(|t| stem_of(t) == stem).collect();
        if mine.is_empty() {
            failures.push(format!(
                "{name}: no truth file; record it with tools/airflow-truth/run_dag_files.sh"
            ));
            continue;
        }
        if let Some(reason) = known.get(&name)
            && !include_known
        {
            skipped.push(format!("{name}: {reason}"));
            continue;
        }
        for truth_path in mine {
            let text = std::fs::read_to_string(truth_path).expect("read a truth file");
            let truth: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", truth_path.display()));
            cases.push(Case {
                file: file.clone(),
                truth_path: truth_path.clone(),
                truth,
            });
        }
    }

    for s in &skipped {
        eprintln!("skipped (known difference) {s}");
    }

    let queue = Mutex::new(cases.iter().collect::<Vec<_>>());
    let results: Mutex<Vec<(String, Vec<String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue lock").pop();
                    let Some(case) = next else { break };
                    let problems = check(case);
                    eprintln!(
                        "{} {}",
                        if problems.is_empty() {
                            "same as airflow:"
                        } else {
                            "DIFFERS:"
                        },
                        case.name()
                    );
                    results
                        .lock()
                        .expect("results lock")
                        .push((case.name(), problems));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort();
    let passed = results.iter().filter(|(_, p)| p.is_empty()).count();
    for (name, problems) in &results {
        if !problems.is_empty() {
            failures.push(format!("{name}:\n    {}", problems.join("\n    ")));
        }
    }
    eprintln!(
        "airflow_compat: {passed} of {} DAG(s) same as Airflow; {} skipped as known differences",
        results.len(),
        skipped.len()
    );
    assert!(
        failures.is_empty(),
        "{} problem(s) comparing pave with Airflow {} (truth: tests/airflow_compat/truth/; \
         a deliberate or known difference goes in tests/airflow_compat/KNOWN_DIFFERENCES.md):\n{}",
        failures.len(),
        cases
            .first()
            .and_then(|c| c.truth["airflow_version"].as_str())
            .unwrap_or("3"),
        failures.join("\n")
    );
}
