from pave.task_group import TaskGroup  # noqa: F401
