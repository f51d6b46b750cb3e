//! Bad input: every mistake exits non-zero with a message on stderr that
//! names the offending thing, and a bad DAG file never hides the good ones.

mod common;

use common::{Pave, copy_fixtures, dags_dir, fixture};
use serde_json::Value;

/// `pave dags test FIXTURE [EXTRA...]`; asserts failure, returns stderr.
fn dags_test_fails(file: &str, extra: &[&str]) -> String {
    let path = fixture(file);
    let mut args = vec!["dags", "test", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    Pave::new().fails(&args)
}

fn assert_mentions(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(stderr.contains(n), "stderr should mention {n:?}:\n{stderr}");
    }
}

#[test]
fn cycle_is_refused_and_the_message_shows_the_cycle() {
    let err = dags_test_fails("bad_cycle.yaml", &[]);
    assert_mentions(&err, &["cycle", "bad_cycle", "bad_cycle.yaml"]);
    // The cycle is printed as a path that comes back to where it started,
    // whichever task it starts from.
    let shown = ["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"];
    assert!(
        shown.iter().any(|s| err.contains(s)),
        "the cycle should be shown as a -> b -> c -> a:\n{err}"
    );
}

#[test]
fn unknown_upstream_is_refused_naming_it() {
    let err = dags_test_fails("bad_unknown_upstream.yaml", &[]);
    assert_mentions(&err, &["ghost", "train", "bad_unknown_upstream"]);
}

#[test]
fn unknown_trigger_rule_is_refused_with_a_suggestion() {
    let err = dags_test_fails("bad_trigger_rule.yaml", &[]);
    assert_mentions(&err, &["all_sucess", "trigger_rule", "all_success"]);
}

#[test]
fn malformed_cron_is_refused_naming_the_expression() {
    let err = dags_test_fails("bad_cron.yaml", &[]);
    assert_mentions(&err, &["61 * * * *", "cron", "schedule", "bad_cron"]);
}

#[test]
fn missing_file_is_refused_naming_it() {
    let err = Pave::new().fails(&["dags", "test", "no/such/dag_file.yaml"]);
    assert_mentions(&err, &["no/such/dag_file.yaml"]);
}

#[test]
fn txt_file_is_not_a_dag_file() {
    let err = dags_test_fails("not_a_dag.txt", &[]);
    assert_mentions(&err, &["not_a_dag.txt", ".yaml"]);
}

#[test]
fn invalid_conf_json_is_refused() {
    let err = dags_test_fails("hello.yaml", &["--conf", "{epochs: 5"]);
    assert_mentions(&err, &["--conf", "not valid JSON", "{epochs: 5"]);
}

#[test]
fn conf_that_is_not_an_object_is_refused() {
    let err = dags_test_fails("hello.yaml", &["--conf", "[1]"]);
    assert_mentions(&err, &["--conf", "object", "[1]"]);
}

#[test]
fn dag_id_the_file_does_not_define_is_refused() {
    let err = dags_test_fails("hello.yaml", &["--dag-id", "goodbye"]);
    assert_mentions(&err, &["goodbye", "hello.yaml"]);
}

#[test]
fn file_with_several_dags_needs_dag_id() {
    let err = dags_test_fails("two_dags.yaml", &[]);
    assert_mentions(&err, &["--dag-id", "first", "second"]);
    // ... and runs the one it is given.
    let path = fixture("two_dags.yaml");
    let v = Pave::new().json(&[
        "dags",
        "test",
        path.to_str().expect("utf-8"),
        "--dag-id",
        "second",
        "--json",
    ]);
    assert_eq!(v["dag_id"], "second");
    assert_eq!(v["state"], "success");
}

#[test]
fn tasks_logs_of_an_unknown_dag_is_refused() {
    let err = Pave::new().fails(&["tasks", "logs", "nope", "some_task"]);
    assert_mentions(&err, &["nope"]);
}

#[test]
fn dags_runs_of_an_unknown_dag_is_refused() {
    let err = Pave::new().fails(&["dags", "runs", "nope"]);
    assert_mentions(&err, &["nope"]);
}

#[test]
fn trigger_of_an_unknown_dag_is_refused_listing_the_known_ones() {
    let pave = Pave::new();
    let dir = dags_dir();
    copy_fixtures(dir.path(), &["hello.yaml"]);
    let dags = dir.path().to_str().expect("utf-8");
    let err = pave.fails(&["dags", "trigger", "nope", "--dags", dags]);
    assert_mentions(&err, &["nope", "hello"]);
}

#[test]
fn missing_dags_folder_is_refused_naming_it() {
    let pave = Pave::new();
    let err = pave.fails(&["dags", "list", "--dags", "/no/such/pave/dags"]);
    assert_mentions(&err, &["/no/such/pave/dags"]);
}

fn listed_ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v["dags"]
        .as_array()
        .expect("dags array")
        .iter()
        .map(|d| d["dag_id"].as_str().expect("dag_id").to_owned())
        .collect();
    ids.sort();
    ids
}

fn import_errors(v: &Value) -> Vec<(String, String)> {
    v["import_errors"]
        .as_array()
        .expect("import_errors array")
        .iter()
        .map(|e| {
            (
                e["fileloc"].as_str().expect("fileloc").to_owned(),
                e["error"].as_str().expect("error").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_bad_file_in_the_dags_folder_does_not_hide_the_good_dags() {
    let pave = Pave::new();
    let dir = dags_dir();
    copy_fixtures(dir.path(), &["hello.yaml", "branch_on_param.yaml"]);
    let dags = dir.path().to_str().expect("utf-8");

    let v = pave.json(&["dags", "list", "--json", "--dags", dags]);
    assert_eq!(listed_ids(&v), ["branch_on_param", "hello"]);
    assert!(import_errors(&v).is_empty(), "{v:#}");
    // Something stored that must survive: a queued run of `hello`.
    pave.ok(&["dags", "trigger", "hello", "--dags", dags]);

    // A broken file appears, and `hello.yaml` itself is broken by an edit.
    copy_fixtures(dir.path(), &["bad_cycle.yaml", "bad_trigger_rule.yaml"]);
    let broken_hello = std::fs::read_to_string(fixture("bad_unknown_upstream.yaml"))
        .expect("read fixture")
        .replace("dag_id: bad_unknown_upstream", "dag_id: hello");
    std::fs::write(dir.path().join("hello.yaml"), broken_hello).expect("edit hello.yaml");

    let v = pave.json(&["dags", "list", "--json", "--dags", dags]);
    // The good DAG is listed; the last good version of `hello` is kept.
    assert_eq!(listed_ids(&v), ["branch_on_param", "hello"], "{v:#}");
    let errors = import_errors(&v);
    assert_eq!(errors.len(), 3, "{v:#}");
    let error_of = |file: &str| -> &str {
        &errors
            .iter()
            .find(|(loc, _)| loc.ends_with(file))
            .unwrap_or_else(|| panic!("no import error for {file} in {v:#}"))
            .1
    };
    assert!(error_of("bad_cycle.yaml").contains("cycle"));
    assert!(error_of("bad_trigger_rule.yaml").contains("all_sucess"));
    assert!(error_of("hello.yaml").contains("ghost"));

    // The table form reports the import errors on stderr and exits 0.
    let out = pave.run(&["dags", "list", "--dags", dags]);
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("branch_on_param"), "{out}");
    assert!(
        out.stderr.contains("bad_cycle.yaml") && out.stderr.contains("cycle"),
        "{out}"
    );

    // The run triggered before the file broke is still there.
    let runs = pave.json(&["dags", "runs", "hello", "--json"]);
    let runs = runs.as_array().expect("runs array");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["state"], "queued");

    // Fixing the file clears its import error.
    copy_fixtures(dir.path(), &["hello.yaml"]);
    let v = pave.json(&["dags", "list", "--json", "--dags", dags]);
    let errors = import_errors(&v);
    assert!(
        !errors.iter().any(|(loc, _)| loc.ends_with("/hello.yaml")),
        "{v:#}"
    );
    assert_eq!(errors.len(), 2, "{v:#}");
}

#[test]
fn deleting_a_broken_file_clears_its_import_error() {
    let pave = Pave::new();
    let dir = dags_dir();
    copy_fixtures(dir.path(), &["hello.yaml", "bad_cycle.yaml"]);
    let dags = dir.path().to_str().expect("utf-8");
    let v = pave.json(&["dags", "list", "--json", "--dags", dags]);
    assert_eq!(import_errors(&v).len(), 1, "{v:#}");

    std::fs::remove_file(dir.path().join("bad_cycle.yaml")).expect("remove the bad file");
    let v = pave.json(&["dags", "list", "--json", "--dags", dags]);
    assert!(
        import_errors(&v).is_empty(),
        "the import error of a deleted file is still reported: {v:#}"
    );
    assert_eq!(listed_ids(&v), ["hello"]);
}
