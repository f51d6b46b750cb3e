"""One mapped instance raises AirflowSkipException; downstream reducers with different trigger rules."""

from __future__ import annotations

from datetime import datetime

from airflow.exceptions import AirflowSkipException
from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def mapping_index_skips():
    @task
    def items() -> list[int]:
        return [1, 2, 3]

    @task
    def keep_odd(x: int) -> int:
        if x % 2 == 0:
            raise AirflowSkipException(f"{x} is even")
        return x

    @task
    def strict(values) -> None:
        raise AssertionError("must be skipped")

    @task(trigger_rule="none_failed")
    def lenient(values) -> None:
        assert list(values) == [1, 3], list(values)

    @task
    def per_item(v: int) -> int:
        return v * 10

    kept = keep_odd.expand(x=items())
    strict(kept)
    lenient(kept)
    per_item.expand(v=kept)


mapping_index_skips()
