"""@task_group with arguments, called twice (ids get __1), group-level dependencies and a group's XCom output."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, task, task_group


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def task_group_decorator():
    @task
    def source() -> int:
        return 5

    @task_group
    def etl(value: int):
        @task
        def extract(v: int) -> int:
            return v * 2

        @task
        def load(v: int) -> int:
            return v + 1

        return load(extract(value))

    @task
    def collect(a: int, b: int) -> None:
        assert (a, b) == (11, 11), (a, b)

    start = EmptyOperator(task_id="start")
    first = etl(source())
    second = etl(source())
    start >> first
    collect(first, second)

    @task_group(group_id="side")
    def side_group():
        EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")

    end = EmptyOperator(task_id="end")
    start >> side_group() >> end


task_group_decorator()
