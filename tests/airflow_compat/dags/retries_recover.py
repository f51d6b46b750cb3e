"""A task that fails twice and then succeeds within its retries."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task


@dag(
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 3, "retry_delay": timedelta(seconds=0)},
)
def retries_recover():
    @task
    def flaky() -> int:
        try_number = get_current_context()["ti"].try_number
        if try_number < 3:
            raise RuntimeError(f"transient failure on try {try_number}")
        return try_number

    @task(retries=0)
    def after(n: int) -> None:
        assert n == 3, n

    after(flaky())


retries_recover()
