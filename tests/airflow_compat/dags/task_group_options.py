"""TaskGroup prefix_group_id=False, group default_args, .override inside a group, chain over groups."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup, chain, get_current_context, task

with DAG(dag_id="task_group_options", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):

    @task
    def flaky() -> int:
        n = get_current_context()["ti"].try_number
        if n == 1:
            raise RuntimeError("first try fails")
        return n

    with TaskGroup("unprefixed", prefix_group_id=False) as g1:
        EmptyOperator(task_id="plain")

    with TaskGroup("retrying", default_args={"retries": 2, "retry_delay": timedelta(seconds=0)}) as g2:
        flaky()
        flaky.override(task_id="renamed", retries=0)()

    with TaskGroup("last") as g3:
        EmptyOperator(task_id="one") >> EmptyOperator(task_id="two")

    chain(g1, g2, g3)
