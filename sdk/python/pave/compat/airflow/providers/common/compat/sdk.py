"""``airflow.providers.common.compat.sdk``: the common.compat provider's single import
path for Airflow's authoring names (Airflow's example DAGs import ``TriggerRule``,
``timezone`` and ``Context`` from it). Only the names pave supports are here; any
other fails with ``ImportError: pave does not support NAME from ... yet``."""

from airflow.utils import timezone  # noqa: F401
from pave.assets import Asset, AssetAlias, AssetAll, AssetAny  # noqa: F401
from pave.baseoperator import BaseOperator  # noqa: F401
from pave.context import Context, get_current_context  # noqa: F401
from pave.dag import DAG, dag  # noqa: F401
from pave.decorators import setup, task, teardown  # noqa: F401
from pave.edges import EdgeModifier, Label  # noqa: F401
from pave.exceptions import (  # noqa: F401
    AirflowException, AirflowFailException, AirflowSkipException, AirflowTaskTimeout,
    ParamValidationError, XComNotFound,
)
from pave.operators import chain, chain_linear, cross_downstream, determine_kwargs  # noqa: F401
from pave.params import Param  # noqa: F401
from pave.task_group import TaskGroup, task_group  # noqa: F401
from pave.trigger_rule import TriggerRule  # noqa: F401
from pave.xcom_arg import XComArg  # noqa: F401


def context_merge(context, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
    """Merge values into a context dict (Airflow's ``context_merge``)."""
    context.update(*args, **kwargs)
