"""The DAG object, the ``@dag`` decorator and the DAG context.

DAG arguments pave accepts and records (see docs/dag-spec.md): ``dag_id``,
``description``, ``schedule``, ``start_date``, ``end_date``, ``catchup``,
``params``, ``default_args``, ``max_active_runs``, ``max_active_tasks``,
``dagrun_timeout``, ``tags``, ``doc_md`` (the spec's ``description`` when
no description is given) and pave's ``timezone`` (else taken from
``start_date``'s time zone, as Airflow does). Without a ``start_date`` the
DAG takes ``default_args["start_date"]``, as Airflow does; tasks get
theirs from ``default_args`` like any other task argument.

Accepted and ignored (no effect on how runs behave): ``owner_links``,
``is_paused_upon_creation``, ``default_view``, ``orientation``,
``access_control``, ``dag_display_name``, ``auto_register``,
``max_consecutive_failed_dag_runs``, ``template_undefined``,
``disable_bundle_versioning``, ``fail_fast=False``,
``render_template_as_native_obj=False``.

Refused with an error naming them: callbacks (``on_success_callback``,
``on_failure_callback``, ``sla_miss_callback``), ``user_defined_macros``,
``user_defined_filters``, ``jinja_environment_kwargs``,
``template_searchpath``, ``render_template_as_native_obj=True``,
``fail_fast=True``, timetables, asset schedules, ``@continuous`` and the
Airflow 2 names ``schedule_interval``/``timetable``/``concurrency``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect

from ._util import NOTSET, caller_line, check_id, duration_seconds, timezone_name
from .assets import BaseAsset
from .exceptions import DuplicateTaskIdFound, unsupported
from .params import ParamsDict
from .xcom_arg import DagParamRef

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any, Callable


_PRESETS = {
    "@once": "@once",
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_IGNORED_DAG_ARGS = {
    "owner_links", "is_paused_upon_creation", "default_view", "orientation", "access_control",
    "dag_display_name", "auto_register", "max_consecutive_failed_dag_runs", "template_undefined",
    "disable_bundle_versioning",
}
_FALSE_ONLY_DAG_ARGS = {"fail_fast", "fail_stop", "render_template_as_native_obj"}
_REFUSED_DAG_ARGS = {
    "on_success_callback": "DAG callbacks (`on_success_callback`)",
    "on_failure_callback": "DAG callbacks (`on_failure_callback`)",
    "sla_miss_callback": "SLA callbacks (`sla_miss_callback`)",
    "user_defined_macros": "the DAG argument 'user_defined_macros'",
    "user_defined_filters": "the DAG argument 'user_defined_filters'",
    "jinja_environment_kwargs": "the DAG argument 'jinja_environment_kwargs'",
    "template_searchpath": "the DAG argument 'template_searchpath'",
    "timetable": "timetables (write `schedule` as a preset, a cron expression or a timedelta)",
    "deadline": "the DAG argument 'deadline'",
}
_AIRFLOW2_DAG_ARGS = {
    "schedule_interval": "Airflow 3 calls it `schedule`",
    "concurrency": "Airflow 3 calls it `max_active_tasks`",
}

# -- the DAG context --------------------------------------------------------
_dag_stack: list["DAG"] = []
_registered: list["DAG"] = []


def current_dag() -> "DAG | None":
    """The DAG of the innermost ``with DAG(...)`` block or ``@dag`` call."""
    return _dag_stack[-1] if _dag_stack else None


def take_registered() -> list["DAG"]:
    """The DAGs registered since the last call (``with`` blocks and ``@dag`` calls)."""
    out = list(_registered)
    _registered.clear()
    return out


class DAG:
    """A DAG: tasks and their dependencies, with a schedule."""

    def __init__(
        self,
        dag_id: str,
        description: str | None = None,
        schedule: Any = None,
        start_date: _dt.datetime | None = None,
        end_date: _dt.datetime | None = None,
        catchup: bool = False,
        params: dict[str, Any] | None = None,
        default_args: dict[str, Any] | None = None,
        max_active_runs: int | None = None,
        max_active_tasks: int | None = None,
        dagrun_timeout: _dt.timedelta | float | None = None,
        tags: list[str] | None = None,
        doc_md: str | None = None,
        timezone: str | None = None,
        **kwargs: Any,
    ) -> None:
        for name, value in kwargs.items():
            _check_dag_kwarg(name, value)
        self.dag_id = check_id(dag_id, "DAG id")
        self.description = description
        self.schedule = schedule
        self._spec_schedule = _normalize_schedule(schedule)
        self.default_args: dict[str, Any] = dict(default_args or {})
        if start_date is None:
            # Airflow's `_default_start_date`: a start_date in default_args is also the DAG's.
            start_date = self.default_args.get("start_date")
        self.start_date = start_date
        self.end_date = end_date
        self.catchup = bool(catchup)
        self.params = ParamsDict(params or {})
        self.max_active_runs = max_active_runs
        self.max_active_tasks = max_active_tasks
        self.dagrun_timeout = dagrun_timeout
        duration_seconds(dagrun_timeout, "dagrun_timeout")
        self.tags = list(tags or [])
        self.doc_md = doc_md
        self.timezone = timezone or timezone_name(start_date) or None
        self.fileloc, self._def_line = caller_line()
        self.task_dict: dict[str, Any] = {}
        self._edges: list[tuple[Any, Any]] = []
        self._edge_set: set[tuple[int, int]] = set()
        from .task_group import TaskGroup

        self.task_group = TaskGroup._root(self)
        self._group_stack: list[Any] = [self.task_group]
        # Checked by default_args users at task creation (only that they are a mapping).
        if not isinstance(self.default_args, dict):
            raise TypeError("default_args must be a dict")

    # -- context manager ----------------------------------------------------
    def __enter__(self) -> "DAG":
        _dag_stack.append(self)
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        _dag_stack.pop()
        if exc_type is None and self not in _registered:
            _registered.append(self)

    # -- tasks ----------------------------------------------------------------
    @property
    def tasks(self) -> list[Any]:
        return list(self.task_dict.values())

    @property
    def task_ids(self) -> list[str]:
        return list(self.task_dict)

    def has_task(self, task_id: str) -> bool:
        return task_id in self.task_dict

    def get_task(self, task_id: str) -> Any:
        try:
            return self.task_dict[task_id]
        except KeyError:
            raise KeyError(f"Task {task_id} not found in DAG {self.dag_id}") from None

    def add_task(self, task: Any) -> None:
        if task.task_id in self.task_dict and self.task_dict[task.task_id] is not task:
            raise DuplicateTaskIdFound(f"Task id '{task.task_id}' has already been added to the DAG")
        self.task_dict[task.task_id] = task

    def add_tasks(self, tasks: list[Any]) -> None:
        for t in tasks:
            self.add_task(t)

    def _add_edge(self, up: Any, down: Any) -> None:
        key = (id(up), id(down))
        if key not in self._edge_set:
            self._edge_set.add(key)
            self._edges.append((up, down))

    def param(self, name: str, default: Any = NOTSET) -> DagParamRef:
        """A reference to the param ``name`` (set to ``default`` when given)."""
        if default is not NOTSET:
            self.params[name] = default
        return DagParamRef(name, default)

    def test(self, *args: Any, **kwargs: Any) -> Any:
        raise unsupported("dag.test(); run `pave dags test FILE` instead")

    def __repr__(self) -> str:
        return f"<DAG: {self.dag_id}>"


def _check_dag_kwarg(name: str, value: Any) -> None:
    if name in _IGNORED_DAG_ARGS:
        return
    if name in _FALSE_ONLY_DAG_ARGS:
        if value:
            raise unsupported(f"the DAG argument '{name}={value!r}'")
        return
    if name in _REFUSED_DAG_ARGS:
        if value is None:
            return
        raise unsupported(_REFUSED_DAG_ARGS[name])
    if name in _AIRFLOW2_DAG_ARGS:
        raise TypeError(f"DAG() got the argument '{name}': {_AIRFLOW2_DAG_ARGS[name]}")
    raise TypeError(f"DAG() got an unexpected keyword argument '{name}'")


def _normalize_schedule(schedule: Any) -> Any:
    """The spec's ``schedule``: None, ``@once``, a cron string or ``{"interval": s}``."""
    if schedule is None:
        return None
    if isinstance(schedule, str):
        text = schedule.strip()
        if text.startswith("@"):
            if text == "@continuous":
                raise unsupported("the `@continuous` schedule")
            if text not in _PRESETS:
                raise ValueError(f"unknown schedule preset {text!r}; the presets are {', '.join(_PRESETS)}")
            return _PRESETS[text]
        if len(text.split()) != 5:
            raise ValueError(
                f"schedule {text!r} is not a 5-field cron expression (pave accepts no seconds or years field)"
            )
        return text
    if isinstance(schedule, _dt.timedelta):
        seconds = duration_seconds(schedule, "schedule")
        if not seconds:
            raise ValueError("a timedelta schedule must be longer than 0")
        return {"interval": seconds}
    if isinstance(schedule, BaseAsset) or (
        isinstance(schedule, (list, tuple)) and any(isinstance(s, BaseAsset) for s in schedule)
    ):
        raise unsupported("asset-based scheduling (`schedule=[Asset(...)]`)")
    name = type(schedule).__name__
    if "relativedelta" in name:
        raise unsupported("relativedelta schedules; use a cron expression")
    raise unsupported(f"the schedule {schedule!r} ({name}); use None, a preset, a cron expression or a timedelta")


def dag(dag_id: Any = None, **dag_kwargs: Any) -> Any:
    """``@dag`` / ``@dag(...)``: calling the decorated function builds the DAG.

    The function's arguments become DAG params (their defaults the params'
    defaults); inside the function they are references to the params.
    """
    if callable(dag_id) and not isinstance(dag_id, str):
        return dag()(dag_id)

    def decorator(f: Callable[..., Any]) -> Callable[..., DAG]:
        @functools.wraps(f)
        def factory(*args: Any, **kwargs: Any) -> DAG:
            sig = inspect.signature(f)
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            with DAG(dag_id or f.__name__, **dag_kwargs) as dag_obj:
                dag_obj.fileloc, dag_obj._def_line = caller_line()
                if f.__doc__ and not dag_obj.doc_md:
                    dag_obj.doc_md = inspect.cleandoc(f.__doc__)
                f_args: list[Any] = []
                f_kwargs: dict[str, Any] = {}
                for name, value in bound.arguments.items():
                    kind = sig.parameters[name].kind
                    if kind is inspect.Parameter.VAR_POSITIONAL:
                        f_args.extend(value)
                    elif kind is inspect.Parameter.VAR_KEYWORD:
                        f_kwargs.update(value)
                    elif kind is inspect.Parameter.POSITIONAL_ONLY:
                        f_args.append(dag_obj.param(name, value))
                    else:
                        f_kwargs[name] = dag_obj.param(name, value)
                f(*f_args, **f_kwargs)
            return dag_obj

        factory.__wrapped__ = f  # type: ignore[attr-defined]
        return factory

    return decorator
