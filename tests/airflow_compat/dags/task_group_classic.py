"""TaskGroup context manager, nested groups, group-level dependencies, and a failure inside a group."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup, task

with DAG(dag_id="task_group_classic", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    start = EmptyOperator(task_id="start")

    with TaskGroup("prepare") as prepare:
        @task
        def fetch() -> int:
            return 3

        @task
        def clean(n: int) -> int:
            return n + 1

        with TaskGroup("inner"):
            leaf = EmptyOperator(task_id="leaf")

        clean(fetch()) >> leaf

    with TaskGroup("evaluate", tooltip="fails") as evaluate:
        @task
        def broken() -> None:
            raise RuntimeError("evaluation failed")

        ok = EmptyOperator(task_id="ok")
        broken()

    end = EmptyOperator(task_id="end", trigger_rule="all_done")
    after_eval = EmptyOperator(task_id="after_eval")

    start >> prepare >> evaluate >> [end, after_eval]
