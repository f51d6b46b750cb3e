//! Direct tests of `decide` for what the scenario suite cannot script: time (retry
//! delays, dagrun_timeout), bad mapping sources, the map-length cap, deadlocks, and the
//! branch-result helper.

use chrono::{DateTime, TimeZone, Utc};
use pave_core::decide::{
    FlowResultError, check_mapping_source_push, decide, flow_result_from_return,
};
use pave_core::run::{Command, FlowResult, RunView, TiView, XcomMap};
use pave_core::{
    Dag, Flow, MapIndex, MapSource, Mapping, RunState, Task, TaskId, TaskKind, TaskState,
    TriggerRule, XcomRef,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid time")
}

fn task(id: &str, upstream: &[&str]) -> Task {
    let mut t = Task::new(
        id,
        TaskKind::Python {
            callable: id.into(),
        },
    );
    t.upstream = upstream.iter().map(|u| TaskId::new(*u)).collect();
    t
}

fn ti(id: &str, map_index: i32, state: TaskState) -> TiView {
    TiView {
        task_id: TaskId::new(id),
        map_index: MapIndex(map_index),
        state,
        try_number: u32::from(state != TaskState::NoStatus),
        next_retry_at: None,
        flow_result: None,
    }
}

fn dag(tasks: Vec<Task>) -> Dag {
    let mut d = Dag::new("d");
    d.tasks = tasks;
    d
}

fn run(dag: &Dag, tis: &[TiView], xcoms: &XcomMap, now: DateTime<Utc>) -> Vec<Command> {
    decide(
        &RunView {
            dag,
            run_state: RunState::Running,
            tis,
            xcoms,
            start_date: Some(t0()),
            max_map_length: 4,
        },
        now,
    )
}

fn mapped_over(id: &str, src: &str) -> Task {
    let mut m = task(id, &[src]);
    m.mapping = Some(Mapping::Expand {
        args: BTreeMap::from([(
            "x".to_owned(),
            MapSource::Xcom(XcomRef {
                task_id: TaskId::new(src),
                key: "return_value".into(),
            }),
        )]),
    });
    m
}

fn xcom(task_id: &str, value: Value) -> XcomMap {
    XcomMap::from([(
        (
            TaskId::new(task_id),
            MapIndex::UNMAPPED,
            "return_value".to_owned(),
        ),
        value,
    )])
}

fn failed_reason(cmds: &[Command]) -> String {
    cmds.iter()
        .find_map(|c| match c {
            Command::SetState {
                state: TaskState::Failed,
                reason,
                ..
            } => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no failure in {cmds:?}"))
}

#[test]
fn roots_are_scheduled_in_dag_order() {
    let d = dag(vec![task("b", &[]), task("a", &[]), task("c", &["a"])]);
    let tis = [
        ti("a", -1, TaskState::NoStatus),
        ti("b", -1, TaskState::NoStatus),
        ti("c", -1, TaskState::NoStatus),
    ];
    let cmds = run(&d, &tis, &XcomMap::new(), t0());
    assert_eq!(
        cmds,
        vec![
            Command::Schedule {
                task_id: "b".into(),
                map_index: MapIndex::UNMAPPED
            },
            Command::Schedule {
                task_id: "a".into(),
                map_index: MapIndex::UNMAPPED
            },
        ]
    );
}

#[test]
fn up_for_retry_waits_for_its_delay() {
    let d = dag(vec![task("a", &[])]);
    let mut waiting = ti("a", -1, TaskState::UpForRetry);
    waiting.next_retry_at = Some(t0() + chrono::Duration::seconds(30));
    let cmds = run(&d, std::slice::from_ref(&waiting), &XcomMap::new(), t0());
    assert!(cmds.is_empty(), "{cmds:?}");
    let cmds = run(
        &d,
        &[waiting],
        &XcomMap::new(),
        t0() + chrono::Duration::seconds(30),
    );
    assert_eq!(
        cmds,
        vec![Command::Schedule {
            task_id: "a".into(),
            map_index: MapIndex::UNMAPPED
        }]
    );
}

#[test]
fn dagrun_timeout_skips_unfinished_and_fails_the_run() {
    let mut d = dag(vec![task("a", &[]), task("b", &["a"])]);
    d.dagrun_timeout = Some(Duration::from_secs(60));
    let tis = [
        ti("a", -1, TaskState::Running),
        ti("b", -1, TaskState::NoStatus),
    ];
    assert!(
        run(
            &d,
            &tis,
            &XcomMap::new(),
            t0() + chrono::Duration::seconds(60)
        )
        .is_empty()
    );
    let cmds = run(
        &d,
        &tis,
        &XcomMap::new(),
        t0() + chrono::Duration::seconds(61),
    );
    assert_eq!(cmds.len(), 3, "{cmds:?}");
    assert!(matches!(
        &cmds[0],
        Command::SetState {
            state: TaskState::Skipped,
            ..
        }
    ));
    assert!(matches!(
        &cmds[1],
        Command::SetState {
            state: TaskState::Skipped,
            ..
        }
    ));
    assert!(matches!(
        &cmds[2],
        Command::FinishRun {
            state: RunState::Failed,
            ..
        }
    ));
}

#[test]
fn xcom_that_is_not_a_list_fails_the_placeholder() {
    let d = dag(vec![task("src", &[]), mapped_over("m", "src")]);
    let tis = [
        ti("src", -1, TaskState::Success),
        ti("m", -1, TaskState::NoStatus),
    ];
    let reason = failed_reason(&run(&d, &tis, &xcom("src", json!(5)), t0()));
    assert!(
        reason.contains("`m`") && reason.contains("`src`") && reason.contains("a number"),
        "{reason}"
    );
    let reason = failed_reason(&run(&d, &tis, &XcomMap::new(), t0()));
    assert!(reason.contains("pushed no value"), "{reason}");
}

#[test]
fn dict_xcom_maps_over_its_items() {
    let d = dag(vec![task("src", &[]), mapped_over("m", "src")]);
    let tis = [
        ti("src", -1, TaskState::Success),
        ti("m", -1, TaskState::NoStatus),
    ];
    let cmds = run(&d, &tis, &xcom("src", json!({"a": 1, "b": 2})), t0());
    assert_eq!(
        cmds,
        vec![Command::Expand {
            task_id: "m".into(),
            count: 2
        }]
    );
}

#[test]
fn expansion_over_the_cap_names_task_length_and_cap() {
    let d = dag(vec![task("src", &[]), mapped_over("m", "src")]);
    let tis = [
        ti("src", -1, TaskState::Success),
        ti("m", -1, TaskState::NoStatus),
    ];
    let reason = failed_reason(&run(&d, &tis, &xcom("src", json!([1, 2, 3, 4, 5])), t0()));
    assert!(
        reason.contains("`m`") && reason.contains('5') && reason.contains('4'),
        "{reason}"
    );
    assert!(reason.contains("max_map_length"), "{reason}");
}

#[test]
fn expand_kwargs_needs_dicts() {
    let mut m = task("m", &["src"]);
    m.mapping = Some(Mapping::ExpandKwargs {
        source: MapSource::Xcom(XcomRef {
            task_id: "src".into(),
            key: "return_value".into(),
        }),
    });
    let d = dag(vec![task("src", &[]), m]);
    let tis = [
        ti("src", -1, TaskState::Success),
        ti("m", -1, TaskState::NoStatus),
    ];
    let reason = failed_reason(&run(&d, &tis, &xcom("src", json!([{"x": 1}, 2])), t0()));
    assert!(reason.contains("dicts"), "{reason}");
    let cmds = run(&d, &tis, &xcom("src", json!([{"x": 1}, {"x": 2}])), t0());
    assert_eq!(
        cmds,
        vec![Command::Expand {
            task_id: "m".into(),
            count: 2
        }]
    );
}

#[test]
fn a_rule_that_can_never_be_met_deadlocks_the_run() {
    // all_success over a removed upstream waits forever in Airflow, which then fails the
    // run as deadlocked.
    let d = dag(vec![task("a", &[]), task("b", &["a"])]);
    let tis = [
        ti("a", -1, TaskState::Removed),
        ti("b", -1, TaskState::NoStatus),
    ];
    let cmds = run(&d, &tis, &XcomMap::new(), t0());
    match cmds.as_slice() {
        [
            Command::FinishRun {
                state: RunState::Failed,
                reason,
            },
        ] => {
            assert!(
                reason.contains("deadlock") && reason.contains("`b`"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_upstream_without_task_instance_is_waited_for_and_named() {
    // A run created without `future` (its start_date is after the logical date,
    // `pave_core::run_tasks`): all_success after it deadlocks, one_success and
    // always do not need it, and a leaf without instance does not count
    // (Airflow 3.3.2: tests/airflow_compat/truth/task_start_date_blocks_downstream.json).
    let mut join = task("join", &["first", "future"]);
    join.trigger_rule = TriggerRule::OneSuccess;
    let mut always = task("always", &["future"]);
    always.trigger_rule = TriggerRule::Always;
    let d = dag(vec![
        task("first", &[]),
        task("future", &["first"]),
        task("after", &["future"]),
        join,
        always,
    ]);
    let tis = [
        ti("first", -1, TaskState::Success),
        ti("after", -1, TaskState::NoStatus),
        ti("join", -1, TaskState::NoStatus),
        ti("always", -1, TaskState::NoStatus),
    ];
    let cmds = run(&d, &tis, &XcomMap::new(), t0());
    let scheduled: Vec<&str> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Schedule { task_id, .. } => Some(task_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(scheduled, ["join", "always"], "{cmds:?}");

    let tis = [
        ti("first", -1, TaskState::Success),
        ti("after", -1, TaskState::NoStatus),
        ti("join", -1, TaskState::Success),
        ti("always", -1, TaskState::Success),
    ];
    match run(&d, &tis, &XcomMap::new(), t0()).as_slice() {
        [
            Command::FinishRun {
                state: RunState::Failed,
                reason,
            },
        ] => assert!(
            reason.contains("deadlock")
                && reason.contains("`future` has no task instance in this run"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }

    // A leaf without instance: the run's state is that of the others.
    let d = dag(vec![task("first", &[]), task("expired", &[])]);
    let tis = [ti("first", -1, TaskState::Success)];
    match run(&d, &tis, &XcomMap::new(), t0()).as_slice() {
        [
            Command::FinishRun {
                state: RunState::Success,
                ..
            },
        ] => {}
        other => panic!("{other:?}"),
    }
    // And a run without any task instance succeeds, as in Airflow
    // (truth/task_start_date_default_args@task_start_date_default_args_only.json).
    match run(&d, &[], &XcomMap::new(), t0()).as_slice() {
        [
            Command::FinishRun {
                state: RunState::Success,
                ..
            },
        ] => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn task_instances_of_unknown_tasks_are_removed() {
    let d = dag(vec![task("a", &[])]);
    let tis = [
        ti("a", -1, TaskState::Success),
        ti("gone", -1, TaskState::NoStatus),
    ];
    let cmds = run(&d, &tis, &XcomMap::new(), t0());
    assert!(
        matches!(
            &cmds[0],
            Command::SetState {
                state: TaskState::Removed,
                ..
            }
        ),
        "{cmds:?}"
    );
    assert!(
        matches!(
            &cmds[1],
            Command::FinishRun {
                state: RunState::Success,
                ..
            }
        ),
        "{cmds:?}"
    );
}

#[test]
fn branch_results_are_validated() {
    let mut br = task("br", &[]);
    br.flow = Flow::Branch;
    let mut x = task("grp.x", &["br"]);
    x.group = Some("grp".into());
    let d = dag(vec![br.clone(), x]);
    assert_eq!(
        flow_result_from_return(&d, &br, &json!("grp")),
        Ok(Some(FlowResult::Branch {
            follow: vec!["grp".into()]
        }))
    );
    assert_eq!(
        flow_result_from_return(&d, &br, &Value::Null),
        Ok(Some(FlowResult::Branch { follow: vec![] }))
    );
    assert!(matches!(
        flow_result_from_return(&d, &br, &json!(["nope"])),
        Err(FlowResultError::UnknownIds { .. })
    ));
    assert!(matches!(
        flow_result_from_return(&d, &br, &json!(3)),
        Err(FlowResultError::NotTaskIds { .. })
    ));
    let mut sc = task("sc", &[]);
    sc.flow = Flow::ShortCircuit {
        ignore_downstream_trigger_rules: true,
    };
    for (v, proceed) in [
        (json!(0), false),
        (json!([]), false),
        (json!("x"), true),
        (json!({"a": 1}), true),
    ] {
        assert_eq!(
            flow_result_from_return(&d, &sc, &v),
            Ok(Some(FlowResult::ShortCircuit { proceed }))
        );
    }
    assert_eq!(
        flow_result_from_return(&d, &task("n", &[]), &json!(1)),
        Ok(None)
    );
}

#[test]
fn the_always_rule_with_an_unfinished_xcom_source_is_upstream_failed() {
    // Airflow expands as soon as the rule passes; with the source not done there is
    // nothing to expand, so the mapped task is upstream_failed.
    let mut m = mapped_over("m", "src");
    m.trigger_rule = TriggerRule::Always;
    let d = dag(vec![task("src", &[]), m]);
    let tis = [
        ti("src", -1, TaskState::Running),
        ti("m", -1, TaskState::NoStatus),
    ];
    let cmds = run(&d, &tis, &XcomMap::new(), t0());
    assert!(
        matches!(
            &cmds[..],
            [Command::SetState {
                state: TaskState::UpstreamFailed,
                ..
            }]
        ),
        "{cmds:?}"
    );
}

#[test]
fn a_producer_must_push_something_mappable() {
    let src = task("src", &[]);
    let d = dag(vec![src.clone(), mapped_over("m", "src")]);
    assert_eq!(
        check_mapping_source_push(&d, &src, Some(&json!([1, 2])), 4),
        Ok(())
    );
    assert_eq!(
        check_mapping_source_push(&d, &src, Some(&json!({"a": 1})), 4),
        Ok(())
    );
    for bad in [None, Some(json!(null)), Some(json!(5)), Some(json!("abc"))] {
        let err = check_mapping_source_push(&d, &src, bad.as_ref(), 4).expect_err("refused");
        assert!(err.contains("`src`") && err.contains("`m`"), "{err}");
    }
    let err = check_mapping_source_push(&d, &src, Some(&json!([1, 2, 3, 4, 5])), 4)
        .expect_err("too long");
    assert!(err.contains("max_map_length") && err.contains('5'), "{err}");
    // A task nobody maps over may return anything.
    let other = task("other", &[]);
    assert_eq!(
        check_mapping_source_push(&d, &other, Some(&json!(5)), 4),
        Ok(())
    );
}
