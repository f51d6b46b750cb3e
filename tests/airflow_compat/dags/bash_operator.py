"""BashOperator: templated bash_command, XCom of the last line, exit 99 skip, retry on a bash failure."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task

with DAG(dag_id="bash_operator", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    dated = BashOperator(
        task_id="dated",
        bash_command='test "{{ ds }}" = "2025-01-01" && echo "day {{ ds_nodash }} try {{ ti.try_number }}"',
    )
    skipper = BashOperator(task_id="skipper", bash_command="echo going to skip; exit 99")
    after_skip = BashOperator(task_id="after_skip", bash_command="echo never")
    flaky = BashOperator(
        task_id="flaky",
        bash_command='if [ "{{ ti.try_number }}" -lt 2 ]; then exit 3; fi; echo "ok on {{ ti.try_number }}"',
        retries=2,
        retry_delay=timedelta(seconds=0),
    )

    @task
    def check(dated_out: str, flaky_out: str) -> None:
        assert dated_out == "day 20250101 try 1", dated_out
        assert flaky_out == "ok on 2", flaky_out

    skipper >> after_skip
    check(dated.output, flaky.output)
