"""A chain of 100 no-op Python tasks (bench/compare)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import chain, dag, task

LENGTH = 100


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def cmp_chain():
    @task
    def noop() -> None:
        return None

    chain(*[noop.override(task_id=f"t{i:03d}")() for i in range(LENGTH)])


cmp_chain()
