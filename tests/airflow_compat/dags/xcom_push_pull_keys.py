"""ti.xcom_push / ti.xcom_pull with keys, task_ids lists and .output of a classic operator."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task


def push(ti=None):
    ti.xcom_push(key="model_uri", value="s3://bucket/model-7")
    ti.xcom_push(key="metrics", value={"acc": 0.93})
    return "pushed"


def pull(ti=None):
    assert ti.xcom_pull(task_ids="push", key="model_uri") == "s3://bucket/model-7"
    assert ti.xcom_pull(task_ids="push", key="metrics") == {"acc": 0.93}
    assert ti.xcom_pull(task_ids="push") == "pushed"
    both = ti.xcom_pull(task_ids=["push", "other"])
    assert both == ["pushed", 42], both
    return "pulled"


with DAG(dag_id="xcom_push_pull_keys", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    pusher = PythonOperator(task_id="push", python_callable=push)
    other = PythonOperator(task_id="other", python_callable=lambda: 42)
    puller = PythonOperator(task_id="pull", python_callable=pull)

    @task
    def from_output(value: str, other_value: int) -> None:
        assert value == "pulled", value
        assert other_value == 42, other_value

    [pusher, other] >> puller
    from_output(puller.output, other.output)
