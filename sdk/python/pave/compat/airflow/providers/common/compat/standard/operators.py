"""``airflow.providers.common.compat.standard.operators``: the standard provider's
operators through the common.compat provider (those pave supports)."""

from pave.baseoperator import BaseOperator  # noqa: F401
from pave.context import get_current_context  # noqa: F401
from pave.operators import PythonOperator, ShortCircuitOperator  # noqa: F401
