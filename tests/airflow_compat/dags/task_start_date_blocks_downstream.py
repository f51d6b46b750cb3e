"""Downstream of a task that has no task instance (its start_date is after the logical date).

An all_success task after it waits for an instance that never comes (the run
deadlocks); one_success and always do not need it.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def task_start_date_blocks_downstream():
    @task
    def first() -> int:
        return 1

    @task(start_date=datetime(2030, 1, 1))
    def future(x: int) -> int:
        return x + 1

    @task
    def after_future(y: int) -> int:
        return y + 1

    start = first()
    later = future(start)
    after_future(later)
    [start, later] >> EmptyOperator(task_id="join_one_success", trigger_rule="one_success")
    later >> EmptyOperator(task_id="after_future_always", trigger_rule="always")


task_start_date_blocks_downstream()
