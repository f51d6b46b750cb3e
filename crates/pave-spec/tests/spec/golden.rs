//! Golden files: each input under `tests/golden/v1` has its expected model
//! (`expected/NAME.model.json`) and canonical spec (`expected/NAME.spec.json`);
//! each input under `errors/` has its expected error report
//! (`NAME.errors.txt`). `UPDATE_GOLDEN=1 cargo test -p pave-spec` rewrites them.

use crate::{manifest_path, opts};
use pave_spec::{load_file, parse_json, to_spec_json};
use std::path::{Path, PathBuf};

fn update() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

/// Compares `actual` with the file at `path`, or rewrites it under UPDATE_GOLDEN=1.
fn check_text(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if update() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => {
            let line = expected
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
            failures.push(format!(
                "{} differs from the actual output at line {}:\n  expected: {:?}\n  actual:   {:?}\n(rerun with UPDATE_GOLDEN=1 to accept)",
                path.display(),
                line + 1,
                expected.lines().nth(line).unwrap_or("<end>"),
                actual.lines().nth(line).unwrap_or("<end>"),
            ));
        }
        Err(_) => failures.push(format!(
            "{} is missing (rerun with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )),
    }
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn golden_models_and_canonical_specs() {
    let dir = manifest_path("tests/golden/v1");
    let mut cases: Vec<(String, PathBuf)> = inputs(&dir)
        .into_iter()
        .map(|p| {
            (
                format!("golden/v1/{}", p.file_name().unwrap().to_str().unwrap()),
                p,
            )
        })
        .collect();
    cases.push((
        "examples/ml_pipeline.yaml".to_owned(),
        manifest_path("../../examples/ml_pipeline.yaml"),
    ));
    assert!(cases.len() >= 4, "golden inputs are missing: {cases:?}");
    let mut failures = Vec::new();
    for (file, path) in cases {
        let text = std::fs::read_to_string(&path).unwrap();
        let dags = match load_file(&file, &text, &opts()) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{file} does not load:\n{e}"));
                continue;
            }
        };
        let name = path.file_name().unwrap().to_str().unwrap();
        let model = serde_json::to_string_pretty(&dags).unwrap() + "\n";
        check_text(
            &dir.join(format!("expected/{name}.model.json")),
            &model,
            &mut failures,
        );
        let spec = serde_json::to_string_pretty(&to_spec_json(&dags)).unwrap() + "\n";
        check_text(
            &dir.join(format!("expected/{name}.spec.json")),
            &spec,
            &mut failures,
        );
        // The canonical spec reads back to the same model.
        match parse_json(&spec, "canonical.json", &opts()) {
            Ok(again) if again == dags => {}
            Ok(again) => failures.push(format!(
                "{file}: the canonical spec reads back to a different model:\n{}",
                serde_json::to_string_pretty(&again).unwrap()
            )),
            Err(e) => failures.push(format!(
                "{file}: the canonical spec does not read back:\n{e}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn golden_error_reports() {
    let dir = manifest_path("tests/golden/v1/errors");
    let files = inputs(&dir);
    assert!(files.len() >= 5, "error inputs are missing");
    let mut failures = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        match load_file(&name, &text, &opts()) {
            Ok(_) => failures.push(format!("{name} loaded, but it should not")),
            Err(errors) => {
                assert!(!errors.is_empty());
                let report: String = errors.iter().map(|e| format!("{e}\n")).collect();
                check_text(
                    &dir.join(format!("{name}.errors.txt")),
                    &report,
                    &mut failures,
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
