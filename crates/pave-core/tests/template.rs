//! Template tests: Airflow's context variables, macros, `ti.xcom_pull` forms,
//! strict undefined names, fuel, syntax errors and JSON rendering.

use chrono::{DateTime, Utc};
use pave_core::run::XcomMap;
use pave_core::schedule::DataInterval;
use pave_core::template::{TemplateContext, TemplateError, render, render_json_strings};
use pave_core::{MapIndex, TaskId};
use serde_json::json;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn ctx() -> TemplateContext {
    let mut c = TemplateContext::new("etl", "load", "scheduled__2026-01-01T00:00:00+00:00");
    c.logical_date = Some(t("2026-01-01T00:00:00Z"));
    c.data_interval = Some(DataInterval {
        start: t("2026-01-01T00:00:00Z"),
        end: t("2026-01-02T00:00:00Z"),
    });
    c.run_after = Some(t("2026-01-02T00:00:00Z"));
    c.try_number = 2;
    c.map_index = MapIndex(3);
    c.conf.insert("target".into(), json!("prod"));
    c.params.insert("x".into(), json!(5));
    c.params.insert("name".into(), json!("alice"));
    c.args.insert("path".into(), json!("/data/in.csv"));
    let mut x = XcomMap::new();
    let rv = "return_value".to_owned();
    x.insert(
        (TaskId::new("extract"), MapIndex::UNMAPPED, rv.clone()),
        json!({"rows": 10}),
    );
    x.insert(
        (TaskId::new("extract"), MapIndex::UNMAPPED, "count".into()),
        json!(10),
    );
    for i in 0..3 {
        x.insert(
            (TaskId::new("split"), MapIndex(i), rv.clone()),
            json!(i * 10),
        );
    }
    x.insert((TaskId::new("one"), MapIndex(0), rv.clone()), json!("only"));
    x.insert((TaskId::new("load"), MapIndex::UNMAPPED, rv), json!("mine"));
    c.xcoms = x;
    c
}

fn ok(template: &str) -> String {
    render(template, &ctx()).unwrap_or_else(|e| panic!("`{template}`: {e}"))
}

#[test]
fn every_context_variable() {
    let cases = [
        ("{{ ds }}", "2026-01-01"),
        ("{{ ds_nodash }}", "20260101"),
        ("{{ ts }}", "2026-01-01T00:00:00+00:00"),
        ("{{ ts_nodash }}", "20260101T000000"),
        ("{{ ts_nodash_with_tz }}", "20260101T000000+0000"),
        ("{{ logical_date }}", "2026-01-01 00:00:00+00:00"),
        (
            "{{ logical_date.isoformat() }}",
            "2026-01-01T00:00:00+00:00",
        ),
        (
            "{{ logical_date.strftime('%Y/%m/%d %H') }}",
            "2026/01/01 00",
        ),
        ("{{ logical_date.year }}-{{ logical_date.month }}", "2026-1"),
        ("{{ data_interval_start }}", "2026-01-01 00:00:00+00:00"),
        ("{{ data_interval_end }}", "2026-01-02 00:00:00+00:00"),
        (
            "{{ data_interval_end.isoformat() }}",
            "2026-01-02T00:00:00+00:00",
        ),
        ("{{ run_id }}", "scheduled__2026-01-01T00:00:00+00:00"),
        (
            "{{ dag_run.run_id }}",
            "scheduled__2026-01-01T00:00:00+00:00",
        ),
        ("{{ dag_run.conf.target }}", "prod"),
        ("{{ dag_run.conf['target'] }}", "prod"),
        ("{{ dag_run.logical_date }}", "2026-01-01 00:00:00+00:00"),
        ("{{ dag_run.dag_id }}", "etl"),
        ("{{ dag.dag_id }}", "etl"),
        ("{{ task.task_id }}", "load"),
        ("{{ params.x + 1 }}", "6"),
        ("{{ params.name | upper }}", "ALICE"),
        ("{{ args.path }}", "/data/in.csv"),
        ("{{ ti.try_number }}", "2"),
        ("{{ ti.map_index }}", "3"),
        (
            "{{ ti.task_id }}/{{ ti.dag_id }}/{{ ti.run_id }}",
            "load/etl/scheduled__2026-01-01T00:00:00+00:00",
        ),
        ("{{ task_instance.task_id }}", "load"),
        ("{{ task_instance_key_str }}", "etl__load__20260101"),
        ("{{ macros.ds_add(ds, 7) }}", "2026-01-08"),
        ("{{ macros.ds_add(ds, -1) }}", "2025-12-31"),
        (
            "{{ macros.ds_format(ds, '%Y-%m-%d', '%d.%m.%Y') }}",
            "01.01.2026",
        ),
        (
            "{{ macros.ds_format('20260101', '%Y%m%d', '%Y-%m-%d') }}",
            "2026-01-01",
        ),
        ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
        ("plain text stays", "plain text stays"),
    ];
    for (template, want) in cases {
        assert_eq!(ok(template), want, "template `{template}`");
    }
}

#[test]
fn xcom_pull_forms() {
    let cases = [
        ("{{ ti.xcom_pull(task_ids='extract') }}", r#"{'rows': 10}"#),
        ("{{ ti.xcom_pull('extract')['rows'] }}", "10"),
        ("{{ ti.xcom_pull(task_ids='extract').rows }}", "10"),
        ("{{ ti.xcom_pull(task_ids='extract', key='count') }}", "10"),
        ("{{ ti.xcom_pull('extract', key='count') }}", "10"),
        // A list of task ids returns a list.
        (
            "{{ ti.xcom_pull(task_ids=['extract']) }}",
            r#"[{'rows': 10}]"#,
        ),
        (
            "{{ ti.xcom_pull(task_ids=['extract', 'load']) }}",
            r#"[{'rows': 10}, 'mine']"#,
        ),
        // A mapped upstream without map_indexes: all instances' values in order.
        ("{{ ti.xcom_pull(task_ids='split') }}", "[0, 10, 20]"),
        ("{{ ti.xcom_pull(task_ids='split') | sum }}", "30"),
        // ...but a single value is returned as itself (Airflow's len == 1 rule).
        ("{{ ti.xcom_pull(task_ids='one') }}", "only"),
        ("{{ ti.xcom_pull(task_ids='split', map_indexes=1) }}", "10"),
        (
            "{{ ti.xcom_pull(task_ids='split', map_indexes=[2, 0]) }}",
            "[20, 0]",
        ),
        (
            "{{ ti.xcom_pull(task_ids='split', map_indexes=7, default='none') }}",
            "none",
        ),
        // No task_ids: the current task.
        ("{{ ti.xcom_pull() }}", "mine"),
        // Missing: None, as in Airflow.
        ("{{ ti.xcom_pull(task_ids='ghost') is none }}", "True"),
        (
            "{{ ti.xcom_pull(task_ids=['ghost', 'load']) }}",
            r#"[None, 'mine']"#,
        ),
    ];
    for (template, want) in cases {
        assert_eq!(ok(template), want, "template `{template}`");
    }
    let cross = render("{{ ti.xcom_pull(task_ids='a', dag_id='other') }}", &ctx())
        .expect_err("cross-dag")
        .to_string();
    assert!(cross.contains("another DAG (`other`)"), "{cross}");
    let bad_kw = render("{{ ti.xcom_pull(task_ids='a', nope=1) }}", &ctx())
        .expect_err("kw")
        .to_string();
    assert!(bad_kw.contains("nope"), "{bad_kw}");
}

#[test]
fn undefined_names_are_errors_that_name_them() {
    let err = render("echo {{ parms.x }}", &ctx()).expect_err("undefined");
    let TemplateError::Undefined {
        name,
        template,
        available,
    } = &err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(name, "parms");
    assert_eq!(template, "echo {{ parms.x }}");
    assert!(available.contains(&"params".to_owned()) && available.contains(&"ds".to_owned()));
    let msg = err.to_string();
    assert!(
        msg.starts_with("undefined variable `parms` in template `echo {{ parms.x }}`; available: "),
        "{msg}"
    );

    let err = render("{{ params.missing }}", &ctx()).expect_err("undefined attribute");
    assert!(
        matches!(&err, TemplateError::Undefined { name, available, .. }
            if name == "params.missing" && available == &vec!["name".to_owned(), "x".to_owned()]),
        "{err:?}"
    );
    let err = render("{{ dag_run.conf.nope }}", &ctx()).expect_err("undefined conf key");
    assert!(err.to_string().contains("`dag_run.conf.nope`"), "{err}");

    // Without a logical date there is no ds, as in Airflow.
    let mut manual = ctx();
    manual.logical_date = None;
    manual.data_interval = None;
    let err = render("{{ ds }}", &manual).expect_err("no ds");
    assert!(
        matches!(&err, TemplateError::Undefined { name, .. } if name == "ds"),
        "{err:?}"
    );
    assert_eq!(
        render("{{ dag_run.logical_date is none }}", &manual).expect("ok"),
        "True"
    );
}

#[test]
fn unsupported_names_say_so() {
    for (template, name) in [
        ("{{ var.value.x }}", "var"),
        ("{{ conn.my_db.host }}", "conn"),
        ("{{ prev_ds }}", "prev_ds"),
        ("{{ macros.datetime.now() }}", "macros.datetime"),
    ] {
        let err = render(template, &ctx()).expect_err(template);
        assert!(
            matches!(&err, TemplateError::Unsupported { name: n, .. } if n == name),
            "`{template}`: {err:?}"
        );
        assert!(err.to_string().contains("not supported"), "{err}");
    }
}

#[test]
fn fuel_stops_runaway_loops() {
    let template =
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
    let err = render(template, &ctx()).expect_err("out of fuel");
    assert!(matches!(err, TemplateError::OutOfFuel { .. }), "{err:?}");
    assert!(err.to_string().contains("ran out of fuel"), "{err}");
}

#[test]
fn syntax_errors_name_the_template_and_line() {
    for template in ["{{ ds ", "{% for x in y %}", "line1\n{{ ds | }}"] {
        let err = render(template, &ctx()).expect_err(template);
        assert!(
            matches!(err, TemplateError::Syntax { .. }),
            "`{template}`: {err:?}"
        );
        assert!(
            err.to_string().starts_with("syntax error in template"),
            "{err}"
        );
    }
    let err = render("line1\n{{ ds | }}", &ctx()).expect_err("syntax");
    assert!(err.to_string().contains("(line 2)"), "{err}");
}

#[test]
fn render_json_strings_renders_every_string() {
    let value = json!({
        "date": "{{ ds }}",
        "nested": {"list": ["{{ params.x }}", 3, true, null, "plain"]},
        "{{ not_a_key_template }}": "{{ ti.map_index }}"
    });
    let got = render_json_strings(&value, &ctx()).expect("rendered");
    assert_eq!(
        got,
        json!({
            "date": "2026-01-01",
            "nested": {"list": ["5", 3, true, null, "plain"]},
            "{{ not_a_key_template }}": "3"
        })
    );
    let err = render_json_strings(&json!(["{{ nope }}"]), &ctx()).expect_err("undefined");
    assert!(err.to_string().contains("`nope`"), "{err}");
}

/// Airflow templates are evaluated by Python's Jinja, so DAG files call
/// Python methods on context values; they work in pave too.
#[test]
fn python_methods_work_as_in_airflow_templates() {
    let c = ctx();
    let cases = [
        (r#"{{ dag_run.conf.get("target", "dev") }}"#, "prod"),
        (r#"{{ dag_run.conf.get("missing", "dev") }}"#, "dev"),
        (r#"{{ params.get("x") }}"#, "5"),
        ("{{ params.name.upper() }}", "ALICE"),
        (r#"{{ "a,b".split(",") | length }}"#, "2"),
    ];
    for (template, want) in cases {
        assert_eq!(render(template, &c).as_deref(), Ok(want), "{template}");
    }
}
