//! `examples/ml_pipeline.py`, the paved-path ML example, run end to end with
//! `pave dags test`: data-quality gate, a mapped hyperparameter grid, the SLO
//! gate, and publishing to the model registry under `$PAVE_HOME`.
//!
//! The example trains real scikit-learn models, so `python3` needs
//! `python3 -m pip install -r examples/requirements.txt`.

mod common;

use common::{Pave, single_json, state_try, task_instances, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};

const REGISTRY: &str = "registry/digits-classifier";

/// Fails with the fix when the example's dependencies are missing.
fn require_sklearn() {
    let python = std::env::var("PAVE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = std::process::Command::new(&python)
        .args(["-c", "import numpy, sklearn"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "examples/ml_pipeline.py needs numpy and scikit-learn for `{python}`; run \
         `{python} -m pip install -r examples/requirements.txt`\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pave dags test examples/ml_pipeline.py --json [--conf CONF]` with the
/// home's `PAVE_HOME` in the environment (the tasks write there).
fn run_example(pave: &Pave, conf: Option<&str>) -> Value {
    let example = workspace_root().join("examples/ml_pipeline.py");
    let mut args = vec![
        "dags".to_owned(),
        "test".to_owned(),
        example.display().to_string(),
        "--json".to_owned(),
    ];
    if let Some(conf) = conf {
        args.extend(["--conf".to_owned(), conf.to_owned()]);
    }
    let out = pave.run(&args);
    assert!(out.success(), "dags test failed:\n{out}");
    let v = single_json(&out.stdout);
    assert_eq!(v["dag_id"], "digits_classifier", "{v:#}");
    v
}

fn state(v: &Value, task_id: &str) -> String {
    state_try(v, task_id, -1).0
}

fn train_indexes(v: &Value) -> Vec<i64> {
    let mut idx: Vec<i64> = task_instances(v)
        .iter()
        .filter(|t| t["task_id"] == "train")
        .map(|t| t["map_index"].as_i64().expect("map_index"))
        .collect();
    idx.sort_unstable();
    idx
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The folder a `file://` URI names.
fn uri_path(uri: &Value) -> PathBuf {
    let uri = uri.as_str().expect("a URI string");
    PathBuf::from(
        uri.strip_prefix("file://")
            .unwrap_or_else(|| panic!("not a file:// URI: {uri}")),
    )
}

/// Asserts `v<version>` holds the model of run `v` and returns its metadata.
fn assert_published(home: &Path, version: u32, v: &Value) -> Value {
    let dir = home.join(REGISTRY).join(format!("v{version}"));
    let model = dir.join("model.pkl");
    let size = std::fs::metadata(&model)
        .unwrap_or_else(|e| panic!("no model {}: {e}", model.display()))
        .len();
    assert!(size > 0, "{} is empty", model.display());
    let meta = read_json(&dir.join("metadata.json"));
    assert_eq!(meta["run_id"], v["run_id"], "{meta:#}");
    assert_eq!(meta["dag_id"], "digits_classifier", "{meta:#}");
    let accuracy = meta["metrics"]["accuracy"].as_f64().expect("accuracy");
    assert!(accuracy >= 0.9, "deployed below the default SLO: {meta:#}");
    assert!(meta["params"]["model"].is_string(), "{meta:#}");
    assert!(meta["created_at"].is_string(), "{meta:#}");
    let data = uri_path(&meta["data_uri"]);
    assert!(data.is_file(), "the data URI names no file: {meta:#}");
    assert!(
        data.starts_with(home.join("artifacts/digits_classifier")),
        "artifacts belong under $PAVE_HOME/artifacts/<dag_id>/: {meta:#}"
    );
    meta
}

fn current(home: &Path) -> String {
    let link = home.join(REGISTRY).join("current");
    std::fs::read_link(&link)
        .unwrap_or_else(|e| panic!("{} is not a symlink: {e}", link.display()))
        .display()
        .to_string()
}

#[test]
fn ml_example_trains_the_grid_and_publishes_a_new_version_each_run() {
    require_sklearn();
    let pave = Pave::new();
    let home = pave.home_path();

    // Run 1: the default grid (6 points) -> v1, current -> v1.
    let v = run_example(&pave, None);
    assert_eq!(v["state"], "success", "{v:#}");
    assert_eq!(
        train_indexes(&v),
        (0..6).collect::<Vec<_>>(),
        "one train per grid point"
    );
    for i in 0..6 {
        assert_eq!(state_try(&v, "train", i).0, "success", "train[{i}]");
    }
    for task in [
        "workspace",
        "load_data",
        "check_data",
        "quality_gate",
        "make_grid",
        "pick_best",
        "slo_gate",
        "deploy",
        "report",
    ] {
        assert_eq!(state(&v, task), "success", "{task}: {v:#}");
    }
    assert_eq!(state(&v, "halt"), "skipped");
    assert_eq!(state(&v, "alert"), "skipped");
    let meta = assert_published(home, 1, &v);
    assert_eq!(current(home), "v1");

    // The run's folder holds the data, one model per trial and the summary.
    let run_dir = uri_path(&meta["data_uri"])
        .parent()
        .expect("run folder")
        .to_path_buf();
    for i in 0..6 {
        assert!(run_dir.join(format!("model-{i}.pkl")).is_file());
    }
    let summary = read_json(&run_dir.join("summary.json"));
    assert_eq!(summary["trials"].as_array().map(Vec::len), Some(6));
    assert_eq!(summary["deployed"]["version"], 1, "{summary:#}");

    // Run 2, same home, a smaller grid (the `grid_size` param) -> v2.
    let v2 = run_example(&pave, Some(r#"{"grid_size": 2}"#));
    assert_eq!(v2["state"], "success", "{v2:#}");
    assert_eq!(train_indexes(&v2), [0, 1]);
    assert_eq!(state(&v2, "deploy"), "success");
    assert_eq!(state(&v2, "alert"), "skipped");
    assert_published(home, 2, &v2);
    assert_published(home, 1, &v); // v1 is left as it was
    assert_eq!(current(home), "v2");

    // Run 3: an SLO no model meets -> alert, nothing published, v2 stays current.
    let v3 = run_example(&pave, Some(r#"{"grid_size": 1, "min_accuracy": 0.9999}"#));
    assert_eq!(v3["state"], "success", "{v3:#}");
    assert_eq!(state(&v3, "deploy"), "skipped");
    assert_eq!(state(&v3, "alert"), "success");
    assert!(!home.join(REGISTRY).join("v3").exists());
    assert_eq!(current(home), "v2");
    let alerts: Vec<_> = std::fs::read_dir(home.join(REGISTRY).join("alerts"))
        .expect("an alerts folder")
        .collect();
    assert_eq!(alerts.len(), 1, "one alert file");
}

#[test]
fn ml_example_halts_on_bad_data_before_training() {
    require_sklearn();
    let pave = Pave::new();
    // More rows than the dataset has: the data-quality gate fails.
    let v = run_example(&pave, Some(r#"{"min_rows": 1000000}"#));
    assert_eq!(v["state"], "failed", "{v:#}");
    assert_eq!(state_try(&v, "halt", -1), ("failed".to_owned(), 1));
    assert_eq!(state(&v, "make_grid"), "skipped");
    assert_eq!(train_indexes(&v), [-1], "train is skipped unexpanded");
    assert_eq!(state(&v, "train"), "skipped");
    assert_eq!(state(&v, "deploy"), "skipped");
    assert_eq!(state(&v, "report"), "success", "the teardown still reports");
    assert!(!pave.home_path().join(REGISTRY).exists());
}
