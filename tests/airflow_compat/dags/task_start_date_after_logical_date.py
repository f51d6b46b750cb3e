"""A task whose own start_date is after the run's logical date gets no task instance in Airflow."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def task_start_date_after_logical_date():
    @task
    def now_task() -> int:
        return 1

    @task(start_date=datetime(2030, 1, 1))
    def future_task() -> int:
        return 2

    now_task()
    future_task()


task_start_date_after_logical_date()
