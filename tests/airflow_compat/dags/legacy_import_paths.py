"""Airflow 2 import paths that Airflow 3 still accepts: airflow.decorators, airflow.operators.*, airflow.models."""

from __future__ import annotations

from datetime import datetime

from airflow import DAG
from airflow.decorators import task, task_group
from airflow.operators.bash import BashOperator
from airflow.operators.empty import EmptyOperator
from airflow.operators.python import BranchPythonOperator, PythonOperator
from airflow.utils.task_group import TaskGroup
from airflow.utils.trigger_rule import TriggerRule

dag = DAG(dag_id="legacy_import_paths", schedule=None, start_date=datetime(2025, 1, 1), catchup=False)

start = EmptyOperator(task_id="start", dag=dag)
hello = BashOperator(task_id="hello", bash_command="echo hello", dag=dag)
branch = BranchPythonOperator(task_id="branch", python_callable=lambda: "grp.left", dag=dag)
join = EmptyOperator(task_id="join", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, dag=dag)

with dag:
    with TaskGroup("grp") as grp:
        left = PythonOperator(task_id="left", python_callable=lambda: "L")
        right = PythonOperator(task_id="right", python_callable=lambda: "R")

    @task
    def shout(word: str) -> str:
        return word.upper()

    @task_group
    def wrap():
        @task
        def inner() -> int:
            return 1

        inner()

    start >> hello >> branch >> [left, right] >> join
    shout(hello.output) >> wrap()
