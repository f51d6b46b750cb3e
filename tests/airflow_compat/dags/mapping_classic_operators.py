"""Classic operators mapped with .partial().expand(): PythonOperator op_args and BashOperator commands."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task


def double(x):
    return 2 * x


with DAG(dag_id="mapping_classic_operators", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    doubled = PythonOperator.partial(task_id="double", python_callable=double).expand(
        op_args=[[1], [2], [3]]
    )
    echoed = BashOperator.partial(task_id="echo").expand(
        bash_command=["echo one", "echo two", "exit 99"]
    )

    @task
    def check(values) -> None:
        assert list(values) == [2, 4, 6], list(values)

    @task(trigger_rule="none_failed")
    def check_words(words) -> None:
        assert list(words) == ["one", "two"], list(words)

    check(doubled.output)
    check_words(echoed.output)
