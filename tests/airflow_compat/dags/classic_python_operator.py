"""PythonOperator with op_args, op_kwargs, templates_dict and context arguments."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def add(x, y, scale=1, ti=None, **kwargs):
    assert ti is not None and ti.task_id == "add"
    return (x + y) * scale


def templated(templates_dict=None, **context):
    assert templates_dict["day"] == "2025-01-01", templates_dict
    assert templates_dict["task"] == "templated", templates_dict
    assert context["ds"] == "2025-01-01", context["ds"]
    return templates_dict["day"]


def rendered_kwargs(day, label):
    assert day == "2025-01-01", day
    assert label == "run-20250101", label


def consume(ti=None):
    assert ti.xcom_pull(task_ids="add") == 21
    assert ti.xcom_pull(task_ids="templated") == "2025-01-01"


with DAG(
    dag_id="classic_python_operator",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
):
    a = PythonOperator(task_id="add", python_callable=add, op_args=[3, 4], op_kwargs={"scale": 3})
    t = PythonOperator(
        task_id="templated",
        python_callable=templated,
        templates_dict={"day": "{{ ds }}", "task": "{{ task.task_id }}"},
    )
    r = PythonOperator(
        task_id="rendered_kwargs",
        python_callable=rendered_kwargs,
        op_args=["{{ ds }}"],
        op_kwargs={"label": "run-{{ ds_nodash }}"},
    )
    c = PythonOperator(task_id="consume", python_callable=consume)
    [a, t, r] >> c
