"""A short circuit that returns False inside a setup/teardown scope: the teardown still runs."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, setup, task, teardown


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def short_circuit_spares_teardown():
    @setup
    def acquire() -> str:
        return "lease-1"

    @task.short_circuit
    def has_work(lease: str) -> bool:
        return False

    @task
    def work() -> None:
        raise AssertionError("must be skipped")

    @teardown
    def release(lease: str) -> None:
        assert lease == "lease-1"

    lease = acquire()
    released = release(lease)
    has_work(lease) >> work() >> released
    released >> EmptyOperator(task_id="after_release", trigger_rule="all_done")


short_circuit_spares_teardown()
