"""TaskFlow XCom passing: return values, multiple_outputs, indexing an XComArg."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False, tags=["compat"])
def taskflow_xcom():
    @task
    def extract() -> dict:
        return {"a": 1, "b": 2, "c": 3}

    @task(multiple_outputs=True)
    def transform(data: dict) -> dict:
        return {"total": sum(data.values()), "count": len(data)}

    @task
    def load(total: int, count: int) -> float:
        assert (total, count) == (6, 3), (total, count)
        return total / count

    @task
    def check(mean: float, whole: dict) -> None:
        assert mean == 2.0, mean
        assert whole == {"total": 6, "count": 3}, whole

    summary = transform(extract())
    mean = load(summary["total"], summary["count"])
    check(mean, summary)


taskflow_xcom()
