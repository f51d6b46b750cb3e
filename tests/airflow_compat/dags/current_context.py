"""get_current_context() inside TaskFlow tasks and classic callables."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import dag, get_current_context, task


def classic() -> str:
    context = get_current_context()
    assert context["ti"].task_id == "classic"
    assert context["task"].task_id == "classic"
    return context["ds"]


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False, params={"who": "pave"})
def current_context():
    @task
    def inspect() -> dict:
        context = get_current_context()
        ti = context["ti"]
        assert ti.dag_id == "current_context", ti.dag_id
        assert ti.task_id == "inspect"
        assert ti.map_index == -1
        assert ti.try_number == 1
        assert context["ds"] == "2025-01-01", context["ds"]
        assert context["ds_nodash"] == "20250101"
        assert context["run_id"] == context["dag_run"].run_id
        assert context["params"]["who"] == "pave"
        assert context["dag"].dag_id == "current_context"
        return {"run_id": context["run_id"]}

    @task
    def mapped(x: int) -> int:
        ti = get_current_context()["ti"]
        assert ti.map_index == x, (ti.map_index, x)
        return ti.map_index

    @task
    def kwargs_context(ti=None, ds=None, **context) -> None:
        assert ti.task_id == "kwargs_context"
        assert ds == "2025-01-01"
        assert "dag_run" in context

    inspect() >> mapped.expand(x=[0, 1]) >> kwargs_context()
    PythonOperator(task_id="classic", python_callable=classic)


current_context()
