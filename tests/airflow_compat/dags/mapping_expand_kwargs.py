"""expand_kwargs over a literal list of dicts and over an upstream's list of dicts."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import dag, task


def show(a, b):
    return a + b


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def mapping_expand_kwargs():
    @task
    def configs() -> list[dict]:
        return [{"lr": 0.1, "epochs": 1}, {"lr": 0.01, "epochs": 2}]

    @task
    def train(lr: float, epochs: int, seed: int) -> float:
        assert seed == 7
        return lr * epochs

    @task
    def best(scores) -> None:
        assert list(scores) == [0.1, 0.02], list(scores)

    best(train.partial(seed=7).expand_kwargs(configs()))

    PythonOperator.partial(task_id="classic_kwargs", python_callable=show).expand_kwargs(
        [{"op_args": [1, 2]}, {"op_args": [3, 4]}, {"op_kwargs": {"a": 5, "b": 6}}]
    )


mapping_expand_kwargs()
