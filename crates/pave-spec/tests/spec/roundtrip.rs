//! parse -> model -> spec -> parse gives the same model, for random valid models.

use crate::opts;
use chrono::{DateTime, Utc};
use pave_core::{
    Arg, Dag, Flow, MapSource, Mapping, OutputFormat, Param, Resources, Schedule, Task, TaskGroup,
    TaskId, TaskKind, TaskRole, TriggerRule, WeightRule, XcomRef,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z {}%]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            // Literals that look like XCom references must survive the trip.
            "[a-z]{1,4}".prop_map(|t| json!({ "xcom": t })),
            "[a-z]{1,4}".prop_map(|t| json!({ "literal": t })),
        ]
    })
}

fn duration() -> impl Strategy<Value = Duration> {
    (0u64..10_000_000).prop_map(Duration::from_millis)
}

fn date() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_000_000_000).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

/// One task's fields that do not depend on other tasks.
#[derive(Debug, Clone)]
struct TaskSeed {
    kind: TaskKind,
    flow: u8,
    trigger: usize,
    retries: u32,
    retry_delay: Duration,
    backoff: bool,
    max_retry_delay: Option<Duration>,
    timeout: Option<Duration>,
    priority: i64,
    weight: u8,
    pool: bool,
    slots: u32,
    max_tis: Option<u32>,
    resources: (u64, u64, u32),
    env: BTreeMap<String, String>,
    literal_args: BTreeMap<String, Value>,
    role: u8,
    group: u8,
    push: bool,
    doc: Option<String>,
    upstream_mask: u32,
    xcom_mask: u32,
    mapping: u8,
    map_values: Vec<Value>,
    dates: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
}

fn task_seed() -> impl Strategy<Value = TaskSeed> {
    let kind = prop_oneof![
        Just(TaskKind::Empty),
        (
            "[a-z][a-z {}.]{0,19}",
            proptest::option::of("/[a-z]{1,5}"),
            any::<bool>(),
            proptest::option::of(-5i32..300)
        )
            .prop_map(|(command, cwd, json, skip)| TaskKind::Command {
                command,
                cwd,
                output: if json {
                    OutputFormat::Json
                } else {
                    OutputFormat::Text
                },
                skip_exit_code: skip,
            }),
        "[a-z]{1,5}(\\.[a-z]{1,5})?".prop_map(|callable| TaskKind::Python { callable }),
    ];
    (
        (
            kind,
            0u8..3,
            0usize..13,
            0u32..10,
            duration(),
            any::<bool>(),
        ),
        (
            proptest::option::of(duration()),
            proptest::option::of(duration()),
            any::<i64>(),
            0u8..3,
            any::<bool>(),
            1u32..5,
            proptest::option::of(1u32..10),
        ),
        (
            (0u64..200_000, 0u64..(1 << 40), 0u32..8),
            prop::collection::btree_map("[A-Z]{1,5}", "[a-z0-9 ]{0,6}", 0..3),
            prop::collection::btree_map("[a-z]{1,4}", json_value(), 0..3),
            0u8..3,
            0u8..3,
            any::<bool>(),
            proptest::option::of("[a-z ]{0,10}"),
        ),
        (
            any::<u32>(),
            any::<u32>(),
            0u8..3,
            prop::collection::vec(json_value(), 0..4),
            (proptest::option::of(date()), proptest::option::of(date())),
        ),
    )
        .prop_map(
            |(
                (kind, flow, trigger, retries, retry_delay, backoff),
                (max_retry_delay, timeout, priority, weight, pool, slots, max_tis),
                (resources, env, literal_args, role, group, push, doc),
                (upstream_mask, xcom_mask, mapping, map_values, dates),
            )| TaskSeed {
                kind,
                flow,
                trigger,
                retries,
                retry_delay,
                backoff,
                max_retry_delay,
                timeout,
                priority,
                weight,
                pool,
                slots,
                max_tis,
                resources,
                env,
                literal_args,
                role,
                group,
                push,
                doc,
                upstream_mask,
                xcom_mask,
                mapping,
                map_values,
                dates,
            },
        )
}

/// A valid task built from its seed; tasks only depend on earlier ones.
fn build_task(i: usize, seed: TaskSeed, earlier: &[Task]) -> Task {
    let mut t = Task::new(format!("t{i}"), seed.kind.clone());
    let pick =
        |mask: u32| -> Vec<usize> { (0..i).filter(|j| mask & (1 << (j % 32)) != 0).collect() };
    t.upstream = pick(seed.upstream_mask)
        .into_iter()
        .map(|j| TaskId::from(format!("t{j}")))
        .collect();
    t.flow = match (seed.flow, &seed.kind) {
        (_, TaskKind::Empty) | (0, _) => Flow::Normal,
        (1, _) => Flow::Branch,
        _ => Flow::ShortCircuit {
            ignore_downstream_trigger_rules: seed.backoff,
        },
    };
    t.trigger_rule = TriggerRule::ALL[seed.trigger];
    t.retry.retries = seed.retries;
    t.retry.retry_delay = seed.retry_delay;
    t.retry.retry_exponential_backoff = seed.backoff;
    t.retry.max_retry_delay = seed.max_retry_delay;
    t.execution_timeout = seed.timeout;
    t.priority_weight = seed.priority;
    t.weight_rule = [
        WeightRule::Downstream,
        WeightRule::Upstream,
        WeightRule::Absolute,
    ][seed.weight as usize];
    t.pool = if seed.pool {
        "gpu".into()
    } else {
        "default_pool".into()
    };
    t.pool_slots = seed.slots;
    t.max_active_tis_per_dag = seed.max_tis;
    t.resources = Resources {
        cpu_millis: seed.resources.0,
        memory_bytes: seed.resources.1,
        gpu: seed.resources.2,
        ..Resources::default()
    };
    t.env = seed.env;
    t.args = seed
        .literal_args
        .into_iter()
        .map(|(k, v)| (k, Arg::Literal { value: v }))
        .collect();
    let xcoms = pick(seed.xcom_mask);
    if let Some(&j) = xcoms.first() {
        t.args.insert(
            "from_xcom".into(),
            Arg::Xcom(XcomRef {
                task_id: format!("t{j}").into(),
                key: if j % 2 == 0 {
                    "return_value".into()
                } else {
                    "other".into()
                },
            }),
        );
    }
    t.mapping = match (seed.mapping, xcoms.last()) {
        (1, _) => Some(Mapping::Expand {
            args: [(
                "mapped".to_owned(),
                MapSource::Literal {
                    values: seed.map_values,
                },
            )]
            .into(),
        }),
        (2, Some(&j)) => Some(Mapping::ExpandKwargs {
            source: MapSource::Xcom(XcomRef {
                task_id: format!("t{j}").into(),
                key: "return_value".into(),
            }),
        }),
        (2, None) => Some(Mapping::ExpandKwargs {
            source: MapSource::Literal {
                values: vec![json!({"a": 1}), json!({})],
            },
        }),
        _ => None,
    };
    let setups: Vec<TaskId> = earlier
        .iter()
        .filter(|e| e.role.is_setup())
        .map(|e| e.task_id.clone())
        .take(2)
        .collect();
    t.role = match seed.role {
        1 => TaskRole::Setup,
        2 => {
            t.trigger_rule = TriggerRule::AllDoneSetupSuccess;
            TaskRole::Teardown {
                setups,
                on_failure_fail_dagrun: seed.push,
            }
        }
        _ => TaskRole::Normal,
    };
    t.group = match seed.group {
        1 => Some("g".into()),
        2 => Some("g.h".into()),
        _ => None,
    };
    t.do_xcom_push = seed.push;
    t.doc = seed.doc;
    // A valid task does not end before it starts.
    (t.start_date, t.end_date) = match seed.dates {
        (Some(s), Some(e)) if e < s => (Some(e), Some(s)),
        dates => dates,
    };
    // What the reader adds itself: XCom sources and setups are upstream.
    let mut implied: Vec<TaskId> = xcoms
        .iter()
        .map(|j| TaskId::from(format!("t{j}")))
        .collect();
    if let TaskRole::Teardown { setups, .. } = &t.role {
        implied.extend(setups.iter().cloned());
    }
    for id in implied {
        if !t.upstream.contains(&id)
            && (t
                .args
                .values()
                .any(|a| matches!(a, Arg::Xcom(r) if r.task_id == id))
                || matches!(&t.mapping, Some(Mapping::ExpandKwargs { source: MapSource::Xcom(r) }) if r.task_id == id)
                || matches!(&t.role, TaskRole::Teardown { setups, .. } if setups.contains(&id)))
        {
            t.upstream.push(id);
        }
    }
    // Airflow (and pave's validation) require all_success right after a setup.
    let follows_setup = t
        .upstream
        .iter()
        .any(|u| earlier.iter().any(|e| &e.task_id == u && e.role.is_setup()));
    if follows_setup && !t.role.is_teardown() {
        t.trigger_rule = TriggerRule::AllSuccess;
    }
    t
}

fn dag() -> impl Strategy<Value = Dag> {
    let schedule = prop_oneof![
        Just(Schedule::None),
        Just(Schedule::Once),
        prop::sample::select(vec![
            "0 0 * * *",
            "*/5 * * * *",
            "30 2 1 * MON-FRI",
            "0 0 L * *"
        ])
        .prop_map(|e| Schedule::Cron { expr: e.to_owned() }),
        (1u64..100_000).prop_map(|s| Schedule::Interval {
            every: Duration::from_secs(s)
        }),
    ];
    let param = prop_oneof![
        json_value().prop_map(|v| Param {
            default: Some(v),
            type_: None,
            description: None,
            enum_: None,
            minimum: None,
            maximum: None,
        }),
        (0i64..10, proptest::option::of("[a-z ]{0,8}")).prop_map(|(d, desc)| Param {
            default: Some(json!(d)),
            type_: Some(vec!["integer".into()]),
            description: desc,
            enum_: None,
            minimum: Some(0.0),
            maximum: Some(10.5),
        }),
        Just(Param {
            default: None,
            type_: Some(vec!["string".into(), "null".into()]),
            description: None,
            enum_: Some(vec![json!("a"), Value::Null]),
            minimum: None,
            maximum: None,
        }),
    ];
    (
        (
            "[a-z][a-z0-9_]{0,8}",
            proptest::option::of("[a-zA-Z ]{0,12}"),
            prop::collection::vec("[a-z]{1,5}", 0..3),
            schedule,
            prop::sample::select(vec!["UTC", "Europe/Paris", "America/New_York"]),
            proptest::option::of(date()),
            proptest::option::of(duration()),
            any::<bool>(),
        ),
        (
            prop::collection::btree_map("[a-z]{1,5}", param, 0..3),
            proptest::option::of(1u32..20),
            proptest::option::of(1u32..20),
            proptest::option::of(duration()),
            proptest::option::of("[a-z/]{1,10}\\.py"),
            prop::collection::vec(task_seed(), 0..8),
        ),
    )
        .prop_map(
            |(
                (id, description, tags, schedule, tz, start, span, catchup),
                (params, runs, tasks, timeout, fileloc, seeds),
            )| {
                let mut dag = Dag::new(id.as_str());
                dag.description = description;
                dag.tags = tags;
                dag.schedule = schedule;
                dag.timezone = tz.to_owned();
                dag.start_date = start;
                dag.end_date = start
                    .zip(span)
                    .map(|(s, d)| s + chrono::Duration::from_std(d).unwrap());
                dag.catchup = catchup;
                dag.params = params;
                dag.max_active_runs = runs;
                dag.max_active_tasks = tasks;
                dag.dagrun_timeout = timeout;
                dag.fileloc = fileloc;
                dag.groups = vec![
                    TaskGroup {
                        group_id: "g".into(),
                        tooltip: Some("G".into()),
                        parent: None,
                    },
                    TaskGroup {
                        group_id: "g.h".into(),
                        tooltip: None,
                        parent: Some("g".into()),
                    },
                ];
                for (i, seed) in seeds.into_iter().enumerate() {
                    let t = build_task(i, seed, &dag.tasks);
                    dag.tasks.push(t);
                }
                dag
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn model_to_spec_to_model_is_the_identity(dags in prop::collection::vec(dag(), 1..3)) {
        // Distinct DAG ids, as one file requires.
        let mut dags = dags;
        for (i, d) in dags.iter_mut().enumerate() {
            d.dag_id = format!("{}_{i}", d.dag_id).into();
        }
        let problems = pave_spec::validate(&dags, &opts());
        prop_assert!(problems.is_empty(), "generated model is invalid: {:?}", problems);
        let spec = pave_spec::to_spec_json(&dags);
        let text = serde_json::to_string(&spec).unwrap();
        let again = pave_spec::parse_json(&text, "rt.json", &opts())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&again, &dags);
        // And once more: the canonical form is a fixed point.
        prop_assert_eq!(pave_spec::to_spec_json(&again), spec);
    }
}
