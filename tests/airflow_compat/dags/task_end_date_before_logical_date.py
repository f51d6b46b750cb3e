"""Task date ranges around the logical date (2025-01-01T00:00:00Z).

A task whose end_date is before it gets no task instance, and its downstream
task waits for one forever (the run deadlocks and fails); start and end dates
equal to the logical date are included, in UTC and in another time zone; a
task start_date before the DAG's is raised to the DAG's.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, task

with DAG(
    "task_end_date_before_logical_date",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
):

    @task(end_date=datetime(2024, 6, 1, tzinfo=timezone.utc))
    def expired() -> int:
        return 1

    @task
    def after_expired() -> int:
        return 2

    expired() >> after_expired()

    EmptyOperator(task_id="ends_at_logical_date", end_date=datetime(2025, 1, 1, tzinfo=timezone.utc))
    EmptyOperator(task_id="starts_at_logical_date", start_date=datetime(2025, 1, 1, tzinfo=timezone.utc))
    # 01:00 in Paris is midnight UTC: the same instant as the logical date.
    EmptyOperator(
        task_id="starts_at_logical_date_paris",
        start_date=datetime(2025, 1, 1, 1, 0, tzinfo=ZoneInfo("Europe/Paris")),
    )
    EmptyOperator(task_id="starts_one_second_later", start_date=datetime(2025, 1, 1, 0, 0, 1, tzinfo=timezone.utc))
    EmptyOperator(task_id="ends_one_second_earlier", end_date=datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone.utc))
    # Before the DAG's start_date: the DAG's (2024-01-01) applies, so it runs.
    EmptyOperator(task_id="starts_before_dag", start_date=datetime(2020, 1, 1, tzinfo=timezone.utc))
