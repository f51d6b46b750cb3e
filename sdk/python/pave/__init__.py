"""pave's Python SDK: author DAGs the Airflow TaskFlow way.

    from pave import dag, task

    @dag(schedule="@daily", start_date=datetime(2025, 1, 1))
    def pipeline():
        @task
        def extract() -> list[str]:
            return ["s0", "s1"]

        @task(retries=2, resources={"cpu": 2, "memory": "8Gi", "gpu": 1})
        def train(shard: str) -> dict:
            ...

        train.expand(shard=extract())

    pipeline()

``python -m pave.parse FILE`` prints a DAG file's JSON spec;
``python -m pave.runtime`` runs one task attempt (started by pave).
"""

from __future__ import annotations

from .assets import Asset, AssetAlias, AssetAll, AssetAny, Dataset
from .baseoperator import BaseOperator
from .context import Context, get_current_context
from .dag import DAG, dag
from .decorators import setup, task, teardown
from .exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    PaveUnsupportedError,
    TaskFailed,
    TaskSkipped,
)
from .operators import (
    BashOperator,
    BranchPythonOperator,
    EmptyOperator,
    PythonOperator,
    ShortCircuitOperator,
    chain,
    chain_linear,
    cross_downstream,
)
from .params import Param
from .task_group import TaskGroup, task_group
from .trigger_rule import TriggerRule
from .xcom_arg import XComArg

__version__ = "0.1.0"

__all__ = [
    "DAG", "dag", "task", "setup", "teardown", "task_group", "TaskGroup",
    "BaseOperator", "EmptyOperator", "BashOperator", "PythonOperator", "BranchPythonOperator",
    "ShortCircuitOperator", "chain", "chain_linear", "cross_downstream", "XComArg",
    "Param", "Asset", "AssetAlias", "AssetAll", "AssetAny", "Dataset", "Context", "get_current_context",
    "AirflowException", "AirflowSkipException", "AirflowFailException", "TaskSkipped", "TaskFailed",
    "PaveUnsupportedError", "TriggerRule",
]
