"""BranchPythonOperator following two of three paths; joins with different trigger rules."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
from airflow.sdk import DAG
from airflow.utils.trigger_rule import TriggerRule


def choose(**context):
    assert context["ti"].task_id == "choose"
    return ["path_a", "path_b"]


with DAG(dag_id="branch_python_operator", schedule=None, start_date=datetime(2025, 1, 1), catchup=False):
    choose_op = BranchPythonOperator(task_id="choose", python_callable=choose)
    paths = [PythonOperator(task_id=f"path_{c}", python_callable=lambda: None) for c in "abc"]
    join = EmptyOperator(task_id="join", trigger_rule="none_failed_min_one_success")
    join_all_success = EmptyOperator(task_id="join_all_success")
    join_none_skipped = EmptyOperator(task_id="join_none_skipped", trigger_rule=TriggerRule.NONE_SKIPPED)
    choose_op >> paths
    paths >> join
    paths >> join_all_success
    paths >> join_none_skipped
