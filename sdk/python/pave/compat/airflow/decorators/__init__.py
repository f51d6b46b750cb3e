"""``airflow.decorators`` (Airflow 2's path, still used by many DAG files)."""

from pave.dag import dag  # noqa: F401
from pave.decorators import setup, task, teardown  # noqa: F401
from pave.task_group import task_group  # noqa: F401
