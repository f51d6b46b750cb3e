from pave.decorators import setup, task, teardown  # noqa: F401
from pave.task_group import task_group  # noqa: F401
