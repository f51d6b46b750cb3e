"""1000-way fan-out of no-op Python tasks (bench/compare)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

WIDTH = 1000


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False, max_active_tasks=WIDTH)
def cmp_fanout():
    @task
    def noop() -> None:
        return None

    for i in range(WIDTH):
        noop.override(task_id=f"t{i:04d}")()


cmp_fanout()
