"""Dynamic task mapping over literal lists, with .partial, and a reducer over all mapped results."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def mapping_literal_partial():
    @task
    def scale(x: int, factor: int) -> int:
        return x * factor

    @task
    def pair(a: int, b: str) -> str:
        return f"{b}{a}"

    @task
    def total(values) -> int:
        values = list(values)
        assert values == [10, 20, 30], values
        return sum(values)

    @task
    def names(values) -> None:
        assert sorted(values) == ["x1", "x2", "y1", "y2"], list(values)

    total(scale.partial(factor=10).expand(x=[1, 2, 3]))
    names(pair.expand(a=[1, 2], b=["x", "y"]))


mapping_literal_partial()
