"""One no-op Python task mapped over 1000 inputs (bench/compare)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

WIDTH = 1000


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False, max_active_tasks=WIDTH)
def cmp_mapped():
    @task
    def noop(x: int) -> None:
        return None

    noop.expand(x=list(range(WIDTH)))


cmp_mapped()
