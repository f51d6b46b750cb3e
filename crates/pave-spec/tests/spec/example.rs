//! `examples/ml_pipeline.yaml` loads, validates and means what its comments say.

use crate::{manifest_path, opts};
use pave_core::{Flow, MapSource, Mapping, OutputFormat, Schedule, TaskKind, TaskRole};
use std::time::Duration;

#[test]
fn the_example_pipeline_loads_with_the_promised_shape() {
    let text = std::fs::read_to_string(manifest_path("../../examples/ml_pipeline.yaml")).unwrap();
    let dags = pave_spec::load_file("examples/ml_pipeline.yaml", &text, &opts())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dags.len(), 1);
    let dag = &dags[0];
    assert_eq!(dag.dag_id.as_str(), "ml_pipeline");
    assert_eq!(
        dag.schedule,
        Schedule::Cron {
            expr: "0 0 * * *".into()
        }
    );
    assert!(!dag.catchup);
    assert_eq!(dag.params["epochs"].default, Some(serde_json::json!(3)));

    let task = |id: &str| dag.task(id).unwrap_or_else(|| panic!("no task {id}"));
    let command = |id: &str| match &task(id).kind {
        TaskKind::Command { command, .. } => command.clone(),
        other => panic!("{id} is {other:?}"),
    };
    let ids: Vec<&str> = dag.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "provision",
            "extract",
            "validate_data",
            "flaky",
            "train",
            "evaluate",
            "choose",
            "deploy",
            "notify_rejected",
            "cleanup"
        ]
    );

    assert!(matches!(
        &task("extract").kind,
        TaskKind::Command {
            output: OutputFormat::Json,
            ..
        }
    ));
    let Some(Mapping::Expand { args }) = &task("train").mapping else {
        panic!("train is not mapped");
    };
    assert!(matches!(&args["shard"], MapSource::Xcom(r) if r.task_id.as_str() == "extract"));
    let train_up: Vec<&str> = task("train").upstream.iter().map(|u| u.as_str()).collect();
    assert!(train_up.contains(&"extract") && train_up.contains(&"flaky"));
    assert_eq!(task("choose").flow, Flow::Branch);
    assert_eq!(task("deploy").retry.retries, 2);
    assert_eq!(task("deploy").retry.retry_delay, Duration::from_secs(1));
    assert!(task("provision").role.is_setup());
    assert!(
        matches!(&task("cleanup").role, TaskRole::Teardown { setups, .. } if setups[0].as_str() == "provision")
    );

    assert!(command("flaky").contains("{{ ti.try_number }}"));
    assert!(command("train").contains("{{ args.shard }}"));
    assert!(command("train").contains("{{ params.epochs }}"));
    assert!(command("extract").contains("{{ ds }}"));
    assert!(command("deploy").contains("{{ run_id }}"));
}

/// The fenced ```yaml and ```json blocks of `docs/dag-spec.md`.
fn doc_blocks(lang: &str) -> Vec<String> {
    let text = std::fs::read_to_string(manifest_path("../../docs/dag-spec.md")).unwrap();
    let fence = format!("```{lang}\n");
    text.split(fence.as_str())
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_owned())
        .collect()
}

#[test]
fn the_full_example_in_the_docs_reads_the_same_in_yaml_and_json() {
    let yaml = doc_blocks("yaml");
    let json = doc_blocks("json");
    let from_yaml = pave_spec::parse_yaml(&yaml[0], "dags/train_and_ship.yaml", &opts())
        .unwrap_or_else(|e| panic!("{e}"));
    let json_doc = json.last().unwrap();
    let from_json = pave_spec::parse_json(json_doc, "dags/train_and_ship.json", &opts())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut from_yaml = from_yaml;
    from_yaml[0].fileloc = Some("dags/train_and_ship.py".into());
    assert_eq!(from_yaml, from_json);
}
