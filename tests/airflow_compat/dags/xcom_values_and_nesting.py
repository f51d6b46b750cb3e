"""XCom values: a tuple, None, do_xcom_push=False, and XComArgs nested in lists and dicts."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def xcom_values_and_nesting():
    @task
    def a() -> int:
        return 1

    @task
    def b() -> str:
        return "two"

    @task
    def nothing() -> None:
        return None

    @task
    def combine(items: list, mapping: dict, none_value) -> None:
        assert items == [1, "two"], items
        assert mapping == {"x": 1, "y": {"z": "two"}}, mapping
        assert none_value is None, none_value

    @task
    def as_tuple():
        return (1, 2)

    @task
    def use_values(t) -> None:
        assert list(t) == [1, 2], t

    quiet = BashOperator(task_id="quiet", bash_command="echo hidden", do_xcom_push=False)

    @task
    def pull_quiet(ti=None) -> None:
        assert ti.xcom_pull(task_ids="quiet") is None

    x, y = a(), b()
    combine([x, y], {"x": x, "y": {"z": y}}, nothing())
    use_values(as_tuple())
    quiet >> pull_quiet()


xcom_values_and_nesting()
