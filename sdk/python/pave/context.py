"""The task context: what ``get_current_context()`` returns while a task runs.

The runtime builds it from ``GET /ti/context`` (docs/execution-api.md):
``ti``/``task_instance``, ``task``, ``dag``, ``dag_run`` (with ``conf``),
``run_id``, ``params``, ``ds``, ``ds_nodash``,
``ts``, ``ts_nodash``, ``ts_nodash_with_tz``, ``logical_date``,
``data_interval_start``/``data_interval_end`` (datetimes), ``run_after``,
``task_instance_key_str``, ``templates_dict``, ``inlets``/``outlets``,
``macros`` (``pave.macros``), ``task_reschedule_count`` (always 0: pave has
no reschedules) and ``partition_key``/``partition_date`` (always None: pave
has no partitioned runs). As in Airflow 3, a run without a logical date has
no ``ds``/``ts``/``logical_date``/data interval keys.

The keys Airflow 3 provides and pave does not (``UNSUPPORTED_CONTEXT_KEYS``)
are refused at parse time when a task's callable declares one as a
parameter (``check_context_parameters``), rather than leaving the
parameter at its default at run time; reading one from the context dict
raises a ``KeyError`` saying so.
"""

from __future__ import annotations

import inspect

from .exceptions import AirflowException, PaveUnsupportedError

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

#: Names a task function may declare to receive from the context (Airflow 3's
#: ``KNOWN_CONTEXT_KEYS``, plus ``run_after`` and ``start_date``).
KNOWN_CONTEXT_KEYS = frozenset({
    "conn", "dag", "dag_run", "data_interval_end", "data_interval_start", "ds", "ds_nodash",
    "expanded_ti_count", "exception", "inlets", "inlet_events", "logical_date", "macros",
    "map_index_template", "outlets", "outlet_events", "params", "partition_key", "partition_date",
    "prev_data_interval_start_success", "prev_data_interval_end_success", "prev_start_date_success",
    "prev_end_date_success", "reason", "run_id", "start_date", "task", "task_reschedule_count",
    "task_instance", "task_instance_key_str", "task_state_store", "asset_state_store", "test_mode",
    "templates_dict", "ti", "triggering_asset_events", "ts", "ts_nodash", "ts_nodash_with_tz",
    "try_number", "var", "run_after",
})

#: Context keys Airflow 3's task runner provides (``get_template_context``) that pave's
#: runtime does not, with what they are. (``exception``, ``reason``, ``expanded_ti_count``,
#: ``test_mode`` and ``try_number`` are not in Airflow's task context either: a
#: parameter of that name keeps its default in both.)
UNSUPPORTED_CONTEXT_KEYS = {
    "var": "Airflow Variables",
    "conn": "Airflow Connections",
    "inlet_events": "asset events of the task's inlets",
    "outlet_events": "asset events and extras of the task's outlets",
    "triggering_asset_events": "the asset events that triggered the run",
    "task_state_store": "the task state store",
    "asset_state_store": "the asset state store",
    "prev_data_interval_start_success": "the previous successful run's dates",
    "prev_data_interval_end_success": "the previous successful run's dates",
    "prev_start_date_success": "the previous successful run's dates",
    "prev_end_date_success": "the previous successful run's dates",
}

_REFUSED_KEYS = {
    **{k: f"pave does not support {what} (`{k}`) yet" for k, what in UNSUPPORTED_CONTEXT_KEYS.items()},
    "conf": "Airflow's configuration is not available in pave; the run's conf is `dag_run.conf`",
}


def check_context_parameters(func: Callable[..., Any], task_id: str, n_args: int, supplied: Iterable[str],
                             obj: Any = None) -> None:
    """Refuse a callable that declares a context key pave's runtime cannot provide.

    ``n_args`` positional arguments and the ``supplied`` keyword names are
    given by the task itself (they take precedence over the context, as in
    Airflow), so such parameters are fine."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return
    supplied = set(supplied)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    supplied.update(p.name for p in positional[:n_args])
    for p in params:
        if p.name in UNSUPPORTED_CONTEXT_KEYS and p.name not in supplied and p.kind in (
                p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            name = getattr(func, "__name__", None) or type(func).__name__
            raise PaveUnsupportedError(
                f"task `{task_id}`: its callable `{name}` takes the context argument `{p.name}` "
                f"({UNSUPPORTED_CONTEXT_KEYS[p.name]}), which pave does not support yet; "
                "remove the parameter (with `**context`, reading it raises a KeyError instead)",
                obj,
            )


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
