"""Trigger rules over one success, one failure and one skip: all_done, one_failed, none_failed, always, ..."""

from __future__ import annotations

from datetime import datetime

from airflow.exceptions import AirflowSkipException
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, task
from airflow.utils.trigger_rule import TriggerRule


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def trigger_rules():
    @task
    def good() -> None:
        pass

    @task
    def bad() -> None:
        raise RuntimeError("boom")

    # Runs after `bad`, so that every task below sees the failure no later than
    # the skip (all_success reacts to whichever it sees first).
    @task(trigger_rule="all_done")
    def skipped() -> None:
        raise AirflowSkipException("skip")

    failing = bad()
    upstream = [good(), failing, skipped()]
    failing >> upstream[2]
    ok_and_skip = [upstream[0], upstream[2]]
    rules = {
        "all_done": TriggerRule.ALL_DONE,
        "all_success": TriggerRule.ALL_SUCCESS,
        "all_failed": TriggerRule.ALL_FAILED,
        "one_failed": TriggerRule.ONE_FAILED,
        "one_success": TriggerRule.ONE_SUCCESS,
        "none_failed": TriggerRule.NONE_FAILED,
        "none_skipped": TriggerRule.NONE_SKIPPED,
        "always": TriggerRule.ALWAYS,
        "one_done": TriggerRule.ONE_DONE,
        "all_skipped": TriggerRule.ALL_SKIPPED,
    }
    for name, rule in rules.items():
        upstream >> EmptyOperator(task_id=f"on_all_{name}", trigger_rule=rule)
    for name in ("none_failed", "none_failed_min_one_success", "all_done_min_one_success"):
        ok_and_skip >> EmptyOperator(task_id=f"on_ok_skip_{name}", trigger_rule=name)


trigger_rules()
