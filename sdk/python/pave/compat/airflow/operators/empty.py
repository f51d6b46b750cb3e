from pave.operators import EmptyOperator  # noqa: F401
