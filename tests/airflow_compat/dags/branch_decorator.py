"""@task.branch into two paths that join with none_failed_min_one_success."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, task
from airflow.utils.trigger_rule import TriggerRule


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def branch_decorator():
    @task
    def score() -> float:
        return 0.91

    @task.branch
    def pick(value: float) -> str:
        return "ship" if value > 0.9 else "retrain"

    @task
    def ship() -> str:
        return "shipped"

    @task
    def retrain() -> str:
        return "retrained"

    after_retrain = EmptyOperator(task_id="after_retrain")
    join = EmptyOperator(task_id="join", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    strict_join = EmptyOperator(task_id="strict_join")

    choice = pick(score())
    shipped = ship()
    retrained = retrain()
    choice >> [shipped, retrained]
    retrained >> after_retrain
    [shipped, after_retrain] >> join
    [shipped, after_retrain] >> strict_join


branch_decorator()
