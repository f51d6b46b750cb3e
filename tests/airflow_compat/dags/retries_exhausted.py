"""A task that fails on every try: its retries run out, and downstream tasks react by trigger rule."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def retries_exhausted():
    @task(retries=2, retry_delay=timedelta(seconds=0))
    def always_fails() -> None:
        raise ValueError("this never works")

    @task
    def downstream() -> None:
        pass

    cleanup = EmptyOperator(task_id="cleanup", trigger_rule="all_done")
    alert = EmptyOperator(task_id="alert", trigger_rule="one_failed")
    after_downstream = EmptyOperator(task_id="after_downstream")

    failing = always_fails()
    failing >> downstream() >> after_downstream
    failing >> [cleanup, alert]


retries_exhausted()
