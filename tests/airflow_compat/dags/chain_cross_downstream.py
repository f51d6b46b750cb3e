"""chain() with lists and cross_downstream(), with a failure that propagates upstream_failed."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, chain, cross_downstream, task

with DAG(dag_id="chain_cross_downstream", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    e = {name: EmptyOperator(task_id=name) for name in ["t1", "t2a", "t2b", "t3a", "t3b", "t4", "x1", "x2"]}

    @task
    def fails() -> None:
        raise RuntimeError("boom")

    @task
    def y1() -> None:
        pass

    y2 = EmptyOperator(task_id="y2")
    failing = fails()
    chain(e["t1"], [e["t2a"], e["t2b"]], [e["t3a"], e["t3b"]], e["t4"])
    cross_downstream([e["x1"], failing], [y1(), y2])
    e["x2"] >> failing
