from pave.context import get_current_context  # noqa: F401
from pave.operators import BranchPythonOperator, PythonOperator, ShortCircuitOperator  # noqa: F401
