"""Templates that call Python methods: dict .get on dag_run.conf and params, string methods, filters."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(
    dag_id="template_python_expressions",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"name": "pave"},
):
    BashOperator(
        task_id="conf_get",
        bash_command='test "{{ dag_run.conf.get("message", "none") }}" = none && echo ok',
    )
    BashOperator(
        task_id="params_get",
        bash_command='test "{{ params.get("name") }}" = pave && echo ok',
    )
    BashOperator(
        task_id="string_method",
        bash_command='test "{{ params.name.upper() }}" = PAVE && echo ok',
    )
    BashOperator(
        task_id="jinja_filter",
        bash_command='test "{{ params.name | upper }}" = PAVE && echo ok',
    )
