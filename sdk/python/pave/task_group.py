"""Task groups (``TaskGroup`` and ``@task_group``).

Group ids are qualified by their parents (``outer.inner``), and so are the
ids of the tasks inside (``group.task``) unless ``prefix_group_id=False``.
A group on either side of ``>>`` is recorded as a group dependency; pave
expands it to the group's roots or leaves (docs/dag-spec.md).
Mapped task groups (``@task_group(...).expand()``) are not supported yet.
"""

from __future__ import annotations

import functools
import inspect
import re

from ._deps import DependencyMixin
from ._util import caller_line, check_id
from .exceptions import DuplicateTaskIdFound, unsupported

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any, Callable


_IGNORED_GROUP_ARGS = {"ui_color", "ui_fgcolor", "group_display_name"}


class TaskGroup(DependencyMixin):
    """A named set of tasks (and nested groups) of one DAG."""

    def __init__(
        self,
        group_id: str | None,
        prefix_group_id: bool = True,
        parent_group: "TaskGroup | None" = None,
        dag: Any = None,
        default_args: dict[str, Any] | None = None,
        tooltip: str = "",
        add_suffix_on_collision: bool = False,
        **kwargs: Any,
    ) -> None:
        for name in kwargs:
            if name not in _IGNORED_GROUP_ARGS:
                raise TypeError(f"TaskGroup() got an unexpected keyword argument '{name}'")
        from .dag import current_dag

        self.prefix_group_id = prefix_group_id
        self.default_args = dict(default_args or {})
        self.tooltip = tooltip or ""
        self.children: dict[str, Any] = {}
        self._def_file, self._def_line = caller_line()
        if group_id is None:  # the DAG's root group
            self.dag, self.parent_group, self._group_id = dag, None, None
            return
        dag = dag or (parent_group.dag if parent_group else None) or current_dag()
        if dag is None:
            raise TypeError(f"TaskGroup {group_id!r} is not inside a DAG; create it inside `with DAG(...)` or pass dag=...")
        self.dag = dag
        self.parent_group = parent_group or dag._group_stack[-1]
        check_id(group_id, "task group id")
        self._group_id = group_id
        if self.group_id in self.parent_group.children or self.group_id in dag.task_dict or self.group_id in _all_group_ids(dag):
            if not add_suffix_on_collision:
                raise DuplicateTaskIdFound(f"group_id '{self.group_id}' has already been added to the DAG")
            base = re.split(r"__\d+$", group_id)[0]
            n = 1
            while True:
                self._group_id = f"{base}__{n}"
                if self.group_id not in _all_group_ids(dag) and self.group_id not in dag.task_dict:
                    break
                n += 1
        self.parent_group.children[self.group_id] = self

    @classmethod
    def _root(cls, dag: Any) -> "TaskGroup":
        return cls(None, dag=dag)

    @property
    def is_root(self) -> bool:
        return self._group_id is None

    @property
    def group_id(self) -> str | None:
        """The fully qualified id (``outer.inner``), Airflow's rule."""
        parent = self.parent_group
        if parent is not None and parent.prefix_group_id and parent._group_id:
            return parent.child_id(self._group_id)
        return self._group_id

    @property
    def label(self) -> str | None:
        return self._group_id

    def child_id(self, label: str) -> str:
        """The full id of a child named ``label``."""
        if self.prefix_group_id and self.group_id:
            return f"{self.group_id}.{label}"
        return label

    def add(self, node: Any) -> None:
        self.children[node.task_id if hasattr(node, "task_id") else node.group_id] = node

    def iter_tasks(self) -> list[Any]:
        out = []
        for child in self.children.values():
            out.extend(child.iter_tasks() if isinstance(child, TaskGroup) else [child])
        return out

    def iter_groups(self) -> list["TaskGroup"]:
        out = []
        for child in self.children.values():
            if isinstance(child, TaskGroup):
                out.append(child)
                out.extend(child.iter_groups())
        return out

    # -- dependencies -------------------------------------------------------
    def _dep_nodes(self) -> list[Any]:
        return [self]

    def _dep_dag(self) -> Any:
        return self.dag

    # -- context manager ----------------------------------------------------
    def __enter__(self) -> "TaskGroup":
        self.dag._group_stack.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.dag._group_stack.pop()

    def expand(self, **kwargs: Any) -> Any:
        raise unsupported("mapped task groups (`@task_group(...).expand()`)")

    def __repr__(self) -> str:
        return f"<TaskGroup: {self.group_id}>"


def _all_group_ids(dag: Any) -> set[str]:
    return {g.group_id for g in dag.task_group.iter_groups()}


def current_group(dag: Any) -> TaskGroup | None:
    return dag._group_stack[-1] if dag is not None else None


class _TaskGroupFactory:
    """What ``@task_group`` returns: calling it builds a group."""

    def __init__(self, function: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        self.function = function
        self.kwargs = kwargs
        functools.update_wrapper(self, function)

    def override(self, **kwargs: Any) -> "_TaskGroupFactory":
        return _TaskGroupFactory(self.function, {**self.kwargs, **kwargs})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        group_kwargs = dict(self.kwargs)
        group_kwargs.setdefault("group_id", self.function.__name__)
        with TaskGroup(add_suffix_on_collision=True, **group_kwargs) as group:
            if self.function.__doc__ and not group.tooltip:
                group.tooltip = inspect.cleandoc(self.function.__doc__)
            result = self.function(*args, **kwargs)
        if result is not None:
            return result
        return group

    def partial(self, **kwargs: Any) -> Any:
        raise unsupported("mapped task groups (`@task_group(...).partial()`)")

    def expand(self, **kwargs: Any) -> Any:
        raise unsupported("mapped task groups (`@task_group(...).expand()`)")

    def expand_kwargs(self, *args: Any, **kwargs: Any) -> Any:
        raise unsupported("mapped task groups (`@task_group(...).expand_kwargs()`)")


def task_group(group_id: Any = None, **kwargs: Any) -> Any:
    """``@task_group`` / ``@task_group(group_id=..., tooltip=...)``."""
    if callable(group_id) and not isinstance(group_id, str):
        return _TaskGroupFactory(group_id, kwargs)
    if group_id is not None:
        kwargs["group_id"] = group_id

    def decorator(f: Callable[..., Any]) -> _TaskGroupFactory:
        return _TaskGroupFactory(f, kwargs)

    return decorator
