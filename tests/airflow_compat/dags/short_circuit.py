"""@task.short_circuit and ShortCircuitOperator, with and without ignore_downstream_trigger_rules."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def short_circuit():
    @task.short_circuit
    def gate_false() -> bool:
        return False

    @task.short_circuit
    def gate_true() -> int:
        return 5

    stopped = EmptyOperator(task_id="stopped")
    stopped_deep = EmptyOperator(task_id="stopped_deep", trigger_rule="all_done")
    passed = EmptyOperator(task_id="passed")

    soft_gate = ShortCircuitOperator(
        task_id="soft_gate",
        python_callable=lambda: [],
        ignore_downstream_trigger_rules=False,
    )
    soft_child = EmptyOperator(task_id="soft_child")
    soft_all_done = EmptyOperator(task_id="soft_all_done", trigger_rule="all_done")

    gate_false() >> stopped >> stopped_deep
    gate_true() >> passed
    soft_gate >> soft_child >> soft_all_done


short_circuit()
