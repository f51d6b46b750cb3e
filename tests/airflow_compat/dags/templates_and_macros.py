"""Jinja templates in bash_command, env, op_kwargs and templates_dict: dates, macros, run ids, XCom pulls."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def check(**kwargs):
    d = kwargs["templates_dict"]
    assert d["ts"] == "2025-01-01T00:00:00+00:00", d["ts"]
    assert d["tomorrow"] == "2025-01-02", d["tomorrow"]
    assert d["fmt"] == "01/01/25", d["fmt"]
    assert d["run_id"] == kwargs["run_id"], (d["run_id"], kwargs["run_id"])
    assert d["dag_run_id"] == kwargs["dag_run"].run_id
    assert d["pulled"] == "20250101", d["pulled"]
    assert d["task"] == "check", d["task"]
    assert d["dag"] == "templates_and_macros", d["dag"]
    assert d["start"] == "2025-01-01T00:00:00+00:00", d["start"]


with DAG(
    dag_id="templates_and_macros",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"greeting": "hi"},
):
    producer = BashOperator(task_id="producer", bash_command="echo {{ ds_nodash }}")
    env_user = BashOperator(
        task_id="env_user",
        bash_command='test "$DAY" = "2025-01-01" && test "$GREETING" = "hi" && echo "$DAY"',
        env={"DAY": "{{ ds }}", "GREETING": "{{ params.greeting }}"},
        append_env=True,
    )
    pull_in_bash = BashOperator(
        task_id="pull_in_bash",
        bash_command="test \"{{ ti.xcom_pull(task_ids='producer') }}\" = 20250101",
    )
    checker = PythonOperator(
        task_id="check",
        python_callable=check,
        templates_dict={
            "ts": "{{ ts }}",
            "tomorrow": "{{ macros.ds_add(ds, 1) }}",
            "fmt": "{{ macros.ds_format(ds, '%Y-%m-%d', '%m/%d/%y') }}",
            "run_id": "{{ run_id }}",
            "dag_run_id": "{{ dag_run.run_id }}",
            "pulled": "{{ task_instance.xcom_pull(task_ids='producer') }}",
            "task": "{{ task.task_id }}",
            "dag": "{{ dag.dag_id }}",
            "start": "{{ data_interval_start.isoformat() }}",
        },
    )
    producer >> [pull_in_bash, checker]
