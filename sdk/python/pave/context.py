"""The task context: what ``get_current_context()`` returns while a task runs.

The runtime builds it from ``GET /ti/context`` (docs/execution-api.md):
``ti``/``task_instance``, ``task``, ``dag``, ``dag_run`` (with ``conf``),
``run_id``, ``params``, ``ds``, ``ds_nodash``,
``ts``, ``ts_nodash``, ``ts_nodash_with_tz``, ``logical_date``,
``data_interval_start``/``data_interval_end`` (datetimes), ``run_after``,
``task_instance_key_str``, ``templates_dict``, ``inlets``/``outlets``. As in
Airflow 3, a run without a logical date has no ``ds``/``ts``/
``logical_date``/data interval keys.
"""

from __future__ import annotations

from typing import Any

from .exceptions import AirflowException

#: Names a task function may declare to receive from the context (Airflow's list).
KNOWN_CONTEXT_KEYS = frozenset({
    "conn", "dag", "dag_run", "data_interval_end", "data_interval_start", "ds", "ds_nodash",
    "expanded_ti_count", "exception", "inlets", "inlet_events", "logical_date", "macros",
    "map_index_template", "outlets", "outlet_events", "params", "prev_data_interval_start_success",
    "prev_data_interval_end_success", "prev_start_date_success", "prev_end_date_success",
    "reason", "run_id", "start_date", "task", "task_reschedule_count", "task_instance",
    "task_instance_key_str", "test_mode", "templates_dict", "ti", "triggering_asset_events",
    "ts", "ts_nodash", "ts_nodash_with_tz", "try_number", "var", "run_after",
})

_REFUSED_KEYS = {
    "var": "Airflow Variables are not supported by pave yet",
    "conn": "Airflow Connections are not supported by pave yet",
    "conf": "Airflow's configuration is not available in pave; the run's conf is `dag_run.conf`",
}


class Context(dict):
    """A dict of the context; reading a key pave cannot provide says why."""

    def __missing__(self, key: str) -> Any:
        if key in _REFUSED_KEYS:
            raise KeyError(f"{key!r}: {_REFUSED_KEYS[key]}")
        if key in ("ds", "ds_nodash", "ts", "ts_nodash", "ts_nodash_with_tz", "logical_date",
                   "data_interval_start", "data_interval_end"):
            raise KeyError(f"{key!r}: this run has no logical date (a manual run triggered without one)")
        raise KeyError(key)


_current: list[Context] = []
_renderer: list[Any] = []


def render_template(template: str) -> Any:
    """Render a Jinja template with the running attempt's context (``POST /render``)."""
    if not _renderer:
        raise AirflowException("templates can only be rendered while a task runs")
    return _renderer[-1](template)


def get_current_context() -> Context:
    """The running task's context (only inside a task, at run time)."""
    if not _current:
        raise AirflowException(
            "Current context was requested but no context was found! Are you running within a task?"
        )
    return _current[-1]


class set_current_context:
    """Context manager that makes ``context`` the current one."""

    def __init__(self, context: Context, renderer: Any = None) -> None:
        self.context = context
        self.renderer = renderer

    def __enter__(self) -> Context:
        _current.append(self.context)
        _renderer.append(self.renderer)
        return self.context

    def __exit__(self, *exc: Any) -> None:
        _current.pop()
        _renderer.pop()
