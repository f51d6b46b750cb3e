"""``airflow.models``: the authoring names pave supports."""

from pave.baseoperator import BaseOperator  # noqa: F401
from pave.dag import DAG  # noqa: F401
from pave.params import Param  # noqa: F401
from pave.xcom_arg import XComArg  # noqa: F401
