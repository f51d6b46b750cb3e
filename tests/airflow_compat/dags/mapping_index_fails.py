"""One mapped instance fails; an all_success reducer is upstream_failed, an all_done one runs."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def mapping_index_fails():
    @task(retries=1, retry_delay=timedelta(seconds=0))
    def divide(d: int) -> float:
        return 12 / d

    @task
    def reduce(values) -> None:
        raise AssertionError("must not run")

    @task(trigger_rule="all_done")
    def report(values) -> None:
        got = list(values)
        assert got == [6.0, 4.0], got

    results = divide.expand(d=[2, 0, 3])
    reduce(results)
    report(results)


mapping_index_fails()
