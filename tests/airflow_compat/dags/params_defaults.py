"""Param defaults read by tasks through params, templates and @dag function arguments."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Param, dag, task


@dag(
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={
        "epochs": Param(3, type="integer", minimum=1),
        "model": Param("resnet", type="string", enum=["resnet", "vit"]),
        "lr": 0.01,
    },
)
def params_defaults(batch_size: int = 32):
    @task
    def read_params(params=None) -> int:
        assert params["epochs"] == 3, params
        assert params["model"] == "resnet"
        assert params["lr"] == 0.01
        assert params["batch_size"] == 32
        return params["epochs"] * params["batch_size"]

    @task
    def use_arg(size: int) -> None:
        assert size == 32, size

    steps = read_params()
    use_arg(batch_size)
    templated = BashOperator(
        task_id="templated",
        bash_command='test "{{ params.model }}-{{ params.epochs }}" = "resnet-3" && echo {{ params.batch_size }}',
    )

    @task
    def check(n: int, text: str) -> None:
        assert n == 96 and text == "32", (n, text)

    check(steps, templated.output)


params_defaults()
