"""Mapping over an upstream task's return value, then over a mapped task's results, then reducing."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def mapping_over_xcom():
    @task
    def list_shards() -> list[str]:
        return ["s0", "s1", "s2"]

    @task
    def process(shard: str) -> int:
        return int(shard[1:]) + 1

    @task
    def square(n: int) -> int:
        return n * n

    @task
    def reduce(values) -> int:
        values = list(values)
        assert values == [1, 4, 9], values
        return sum(values)

    @task
    def empty_list() -> list:
        return []

    @task
    def never(item) -> None:
        raise RuntimeError("mapped over nothing, must not run")

    reduce(square.expand(n=process.expand(shard=list_shards())))
    never.expand(item=empty_list())


mapping_over_xcom()
