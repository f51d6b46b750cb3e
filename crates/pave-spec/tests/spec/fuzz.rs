//! Never panic: random text, mutated valid documents and random trees built
//! from the spec's own vocabulary all give `Ok` or `Err`, never a panic.

use crate::{manifest_path, opts};
use pave_spec::{SpecErrors, parse_json, parse_yaml};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Parses `text` both ways; a panic fails the test, an `Err` must say something.
fn feed(text: &str) {
    for result in [
        parse_json(text, "f.json", &opts()),
        parse_yaml(text, "f.yaml", &opts()),
    ] {
        if let Err(SpecErrors(errors)) = result {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(!e.message.is_empty());
                let _ = e.to_string();
            }
        }
    }
}

fn seeds() -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["tests/golden/v1", "tests/golden/v1/errors"] {
        for entry in std::fs::read_dir(manifest_path(dir)).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() && !p.to_string_lossy().ends_with(".txt") {
                out.push(std::fs::read_to_string(p).unwrap());
            }
        }
    }
    out.push(std::fs::read_to_string(manifest_path("../../examples/ml_pipeline.yaml")).unwrap());
    out
}

const VOCAB: &[&str] = &[
    "dag_id",
    "tasks",
    "task_id",
    "upstream",
    "command",
    "python",
    "empty",
    "expand",
    "expand_kwargs",
    "xcom",
    "key",
    "literal",
    "teardown",
    "setups",
    "setup",
    "task_groups",
    "group_id",
    "parent",
    "group",
    "downstream",
    "schedule",
    "interval",
    "params",
    "default",
    "type",
    "enum",
    "minimum",
    "maximum",
    "resources",
    "cpu",
    "memory",
    "gpu",
    "retries",
    "retry_delay",
    "pool",
    "pool_slots",
    "trigger_rule",
    "default_args",
    "spec_version",
    "dags",
    "start_date",
    "end_date",
    "timezone",
    "short_circuit",
    "branch",
    "args",
    "env",
    "output",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "@daily",
            "@once",
            "@nope",
            "* * * * *",
            "61 * * * *",
            "0 0 31 2 *",
            "8Gi",
            "500m",
            "1e30Ei",
            "1h30m",
            "-5s",
            "1e400",
            "2025-01-01",
            "2025-13-45T99:00:00Z",
            "Europe/Paris",
            "Nowhere",
            "all_done",
            "json",
            "",
            "a",
            "b",
            "t0",
            "g",
            "g.a",
            "\u{0}",
            "é",
            "L W #",
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::vec((prop::sample::select(VOCAB.to_vec()), inner), 0..6).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        feed(&text);
    }

    #[test]
    fn mutated_documents_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, prop::sample::select(vec![
            "{", "}", "[", "]", ":", ",", "\"", "- ", "\n", "  ", "null", "-1", "1.5", "&a", "*a",
            "!!str ", "'", "#", "tasks", "upstream", "expand", "xcom", "@daily",
        ])), 1..6),
    ) {
        let seeds = seeds();
        let mut text: Vec<char> = which.get(&seeds).chars().collect();
        for (at, op, token) in edits {
            if text.is_empty() {
                text.extend(token.chars());
                continue;
            }
            let i = at.index(text.len());
            match op {
                0 => { text.remove(i); }
                1 => { for (k, c) in token.chars().enumerate() { text.insert(i + k, c); } }
                2 => { let end = (i + 8).min(text.len()); text.drain(i..end); }
                _ => { let end = (i + 16).min(text.len()); let piece: Vec<char> = text[i..end].to_vec(); text.splice(i..i, piece); }
            }
        }
        feed(&text.into_iter().collect::<String>());
    }

    #[test]
    fn random_trees_never_panic(task in tree(), dag_extra in tree(), top in tree()) {
        let mut dag = json!({"dag_id": "d", "tasks": [task.clone()], "task_groups": [dag_extra.clone()]});
        if let (Some(d), Value::Object(extra)) = (dag.as_object_mut(), &dag_extra) {
            for (k, v) in extra {
                d.insert(k.clone(), v.clone());
            }
        }
        for doc in [
            json!({"spec_version": 1, "dags": [dag]}),
            json!({"dag_id": "d", "tasks": {"t": task}}),
            top,
        ] {
            let text = doc.to_string();
            feed(&text);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Arbitrary text in every field that is parsed beyond "is a string":
    /// cron expressions, time zones, dates, durations, quantities, rules.
    #[test]
    fn arbitrary_field_text_never_panics(
        at in prop::sample::select(vec![
            "schedule", "timezone", "start_date", "end_date", "dagrun_timeout",
            "task.retry_delay", "task.execution_timeout", "task.trigger_rule", "task.weight_rule",
            "task.output", "task.cpu", "task.memory", "task.upstream", "task.pool",
        ]),
        text in prop_oneof!["\\PC{0,30}", "[0-9*/,LW#?@ -]{0,20}", "[0-9.eEkMGTPEimun+-]{0,12}"],
    ) {
        let mut task = json!({"task_id": "t", "command": "x"});
        let mut dag = json!({"dag_id": "d"});
        match at.strip_prefix("task.") {
            Some("cpu" | "memory") => task["resources"] = json!({ at.trim_start_matches("task."): text }),
            Some(field) => task[field] = json!(text),
            None => dag[at] = json!(text),
        }
        dag["tasks"] = json!([task]);
        feed(&dag.to_string());
    }
}

#[test]
fn hostile_inputs_are_errors_not_crashes() {
    let deep_json = "[".repeat(100_000);
    let deep_yaml = "- ".repeat(10_000) + "x";
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    let huge_numbers = r#"{"dag_id": "d", "tasks": [{"task_id": "t", "command": "x", "retries": 1e308, "retry_delay": 1e308, "priority_weight": 99999999999999999999999, "resources": {"cpu": 1e308, "memory": "99999999999999999999999999999Ei"}}]}"#;
    let self_loops = r#"{"dag_id": "d", "task_groups": [{"group_id": "g", "parent": "g", "upstream": "g", "downstream": "g"}], "tasks": [{"task_id": "t", "group": "g", "upstream": ["t", "g"], "teardown": {"setups": ["t"]}, "command": "x"}]}"#;
    for text in [
        deep_json.as_str(),
        deep_yaml.as_str(),
        laughs,
        huge_numbers,
        self_loops,
        "\u{feff}",
        "\0",
        "---\n---\n",
        "!!binary aGVsbG8=",
    ] {
        feed(text);
    }
    assert!(parse_json(huge_numbers, "h.json", &opts()).is_err());
    assert!(parse_json(self_loops, "s.json", &opts()).is_err());
}
