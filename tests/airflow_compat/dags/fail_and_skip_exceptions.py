"""AirflowFailException ends a task with retries left; AirflowSkipException skips it."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.exceptions import AirflowFailException, AirflowSkipException
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def fail_and_skip_exceptions():
    @task(retries=3, retry_delay=timedelta(seconds=0))
    def fail_now() -> None:
        raise AirflowFailException("bad input, retrying will not help")

    @task(retries=3, retry_delay=timedelta(seconds=0))
    def skip_me() -> None:
        raise AirflowSkipException("nothing to do today")

    after_fail = EmptyOperator(task_id="after_fail")
    after_skip = EmptyOperator(task_id="after_skip")
    after_skip_none_failed = EmptyOperator(task_id="after_skip_none_failed", trigger_rule="none_failed")
    after_both_all_done = EmptyOperator(task_id="after_both_all_done", trigger_rule="all_done")

    failed = fail_now()
    skipped = skip_me()
    failed >> after_fail
    skipped >> [after_skip, after_skip_none_failed]
    [failed, skipped] >> after_both_all_done


fail_and_skip_exceptions()
