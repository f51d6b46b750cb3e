"""as_setup() / as_teardown(setups=...) with a failing work task and on_failure_fail_dagrun."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, task

with DAG(dag_id="setup_teardown_methods", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    create = BashOperator(task_id="create_bucket", bash_command="echo bucket").as_setup()
    delete = BashOperator(task_id="delete_bucket", bash_command="echo deleted").as_teardown(setups=create)

    @task
    def write() -> None:
        pass

    @task
    def read() -> None:
        raise RuntimeError("read failed")

    create >> write() >> read() >> delete

    db_up = EmptyOperator(task_id="db_up").as_setup()
    db_down = BashOperator(task_id="db_down", bash_command="exit 1").as_teardown(
        setups=db_up, on_failure_fail_dagrun=True
    )
    query = EmptyOperator(task_id="query")
    db_up >> query >> db_down
