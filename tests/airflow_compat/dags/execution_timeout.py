"""execution_timeout kills a slow task (retried once); a fast one with a timeout succeeds."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def execution_timeout():
    @task(execution_timeout=timedelta(seconds=1), retries=1, retry_delay=timedelta(seconds=0))
    def too_slow() -> None:
        time.sleep(3)

    @task(execution_timeout=timedelta(seconds=30))
    def fast_enough() -> int:
        return 1

    slow_bash = BashOperator(
        task_id="slow_bash", bash_command="sleep 3", execution_timeout=timedelta(seconds=1)
    )

    @task(trigger_rule="all_failed")
    def both_timed_out() -> None:
        pass

    [too_slow(), slow_bash] >> both_timed_out()
    fast_enough()


execution_timeout()
