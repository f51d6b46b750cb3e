"""A branch that follows a task group by its id; skips cascade down all_success chains."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup, task

with DAG(dag_id="branch_to_group_skip_cascade", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):

    @task.branch
    def route() -> str:
        return "fast"

    with TaskGroup("fast") as fast:
        f1 = EmptyOperator(task_id="f1")
        f2 = EmptyOperator(task_id="f2")
        f1 >> f2

    with TaskGroup("slow") as slow:
        s1 = EmptyOperator(task_id="s1")
        s2 = EmptyOperator(task_id="s2")
        s1 >> s2

    s3 = EmptyOperator(task_id="after_slow")
    s4 = EmptyOperator(task_id="after_after_slow")
    rescue = EmptyOperator(task_id="rescue", trigger_rule="none_failed")
    join = EmptyOperator(task_id="join", trigger_rule="none_failed_min_one_success")

    r = route()
    r >> [fast, slow]
    slow >> s3 >> s4 >> rescue
    [fast, s4] >> join
