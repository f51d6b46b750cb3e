"""``default_args={"start_date": ...}`` reaches every task (a task's own start_date wins),
and is the DAG's start_date when the DAG sets none; a task never starts before its DAG."""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

# The DAG starts in 2024; default_args push every task to 2030 unless it says otherwise.
with DAG(
    "task_start_date_default_args",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    default_args={"start_date": datetime(2030, 1, 1)},
):
    EmptyOperator(task_id="from_default_args")
    EmptyOperator(task_id="own_start_date", start_date=datetime(2020, 1, 1))
    EmptyOperator(task_id="own_start_date_2024", start_date=datetime(2024, 6, 1))

# No DAG start_date: the one in default_args (2025-06-01, after the logical
# date) becomes the DAG's, and a task's earlier own start_date is raised to it.
with DAG(
    "task_start_date_default_args_only",
    schedule=None,
    default_args={"start_date": datetime(2025, 6, 1)},
):
    EmptyOperator(task_id="from_default_args")
    EmptyOperator(task_id="own_start_date", start_date=datetime(2020, 1, 1))
