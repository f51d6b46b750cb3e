from pave.task_group import TaskGroup, task_group  # noqa: F401
