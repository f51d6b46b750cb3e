"""``airflow.sdk``: Airflow 3's authoring interface, backed by pave."""

from pave.assets import Asset, AssetAlias, AssetAll, AssetAny
from pave.baseoperator import BaseOperator
from pave.context import Context, get_current_context
from pave.dag import DAG, dag
from pave.decorators import setup, task, teardown
from pave.edges import EdgeModifier, Label
from pave.operators import chain, chain_linear, cross_downstream
from pave.params import Param, ParamsDict
from pave.task_group import TaskGroup, task_group
from pave.trigger_rule import TriggerRule
from pave.xcom_arg import XComArg

__all__ = [
    "Asset", "AssetAlias", "AssetAll", "AssetAny", "BaseOperator", "Context", "DAG", "EdgeModifier", "Label", "Param",
    "ParamsDict", "TaskGroup", "TriggerRule", "XComArg", "chain", "chain_linear",
    "cross_downstream", "dag", "get_current_context", "setup", "task", "task_group", "teardown",
]
