from pave.operators import BashOperator  # noqa: F401
