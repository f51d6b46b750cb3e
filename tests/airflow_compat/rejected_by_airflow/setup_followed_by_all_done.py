"""Airflow refuses this DAG at parse time (a setup task directly followed by an all_done task:
"ValueError: Setup tasks must be followed with trigger rule ALL_SUCCESS."); pave accepts and runs it."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, setup, task, teardown


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def setup_fails():
    @setup
    def provision() -> None:
        raise RuntimeError("no capacity")

    @task
    def work() -> None:
        pass

    @task(trigger_rule="all_done")
    def work_all_done() -> None:
        pass

    @teardown
    def deprovision() -> None:
        pass

    @task
    def unrelated() -> None:
        pass

    p = provision()
    d = deprovision()
    p >> [work(), work_all_done()] >> d
    p >> d
    unrelated() >> EmptyOperator(task_id="unrelated_done")


setup_fails()
