"""A task returns a datetime (Airflow's XCom serde stores it); the next task receives a datetime back."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def xcom_datetime_value():
    @task
    def as_datetime():
        return datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)

    @task
    def use_value(dt) -> None:
        assert isinstance(dt, datetime), type(dt)
        assert dt.hour == 12, dt

    use_value(as_datetime())


xcom_datetime_value()
