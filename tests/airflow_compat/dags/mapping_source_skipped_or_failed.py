"""Mapped tasks whose XCom source is skipped or failed, and a mapped task inside a branch not followed."""

from __future__ import annotations

from datetime import datetime

from airflow.exceptions import AirflowSkipException
from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def mapping_source_skipped_or_failed():
    @task
    def skipped_source() -> list[int]:
        raise AirflowSkipException("no input today")

    @task
    def failed_source() -> list[int]:
        raise RuntimeError("listing failed")

    @task
    def none_source():
        return None

    @task
    def consume(x: int) -> int:
        return x

    @task(trigger_rule="all_done")
    def consume_all_done(x: int) -> int:
        return x

    @task.branch
    def decide() -> str:
        return "other"

    @task
    def other() -> None:
        pass

    consume.override(task_id="on_skipped")(x=0)  # unmapped, for contrast
    consume.override(task_id="mapped_on_skipped").expand(x=skipped_source())
    consume_all_done.override(task_id="mapped_on_failed").expand(x=failed_source())
    consume.override(task_id="mapped_on_none").expand(x=none_source())
    d = decide()
    d >> other()
    d >> consume.override(task_id="mapped_not_followed").expand(x=[1, 2])


mapping_source_skipped_or_failed()
