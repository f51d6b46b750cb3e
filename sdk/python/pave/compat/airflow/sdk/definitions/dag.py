from pave.dag import DAG, dag  # noqa: F401
