"""multiple_outputs inferred from a dict return annotation, pulled by key, and xcom_pull of mapped tasks."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def multiple_outputs_inferred():
    @task
    def stats() -> dict[str, int]:
        return {"rows": 100, "cols": 4}

    @task
    def use(rows: int, cols: int) -> int:
        return rows * cols

    @task
    def per_shard(x: int) -> int:
        return x * 100

    @task
    def pull_by_key() -> None:
        ti = get_current_context()["ti"]
        assert ti.xcom_pull(task_ids="stats", key="rows") == 100
        assert ti.xcom_pull(task_ids="stats") == {"rows": 100, "cols": 4}
        assert list(ti.xcom_pull(task_ids="per_shard")) == [100, 200, 300]
        assert ti.xcom_pull(task_ids="per_shard", map_indexes=1) == 200
        assert ti.xcom_pull(task_ids="use") == 400

    s = stats()
    u = use(s["rows"], s["cols"])
    shards = per_shard.expand(x=[1, 2, 3])
    [u, shards] >> pull_by_key()


multiple_outputs_inferred()
