"""XComArg: a reference to a task's XCom, usable as another task's argument.

Passing an XComArg to a task (directly or nested in lists, tuples and
dicts) makes the producing task upstream of the consuming one, as in
Airflow. At run time the runtime replaces it by the pulled value.
"""

from __future__ import annotations

from ._deps import DependencyMixin
from .exceptions import XComNotFound, unsupported

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Iterator

    from .operators import BaseOperator

XCOM_RETURN_KEY = "return_value"


class XComArg(DependencyMixin):
    """The XCom ``key`` of ``operator`` (``return_value`` by default)."""

    def __init__(self, operator: "BaseOperator", key: str = XCOM_RETURN_KEY) -> None:
        self.operator = operator
        self.key = key

    # -- dependencies -------------------------------------------------------
    def _dep_nodes(self) -> list[Any]:
        return [self.operator]

    def _dep_dag(self) -> Any:
        return self.operator.dag

    # -- the Airflow surface ------------------------------------------------
    def __getitem__(self, key: str) -> "XComArg":
        """``task_output["key"]``: another XCom key of the same task."""
        if not isinstance(key, str):
            raise TypeError(f"XCom keys are strings, got {key!r}")
        return XComArg(self.operator, key)

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("'XComArg' object is not iterable")

    def __repr__(self) -> str:
        return f"XComArg({self.operator.task_id!r}, key={self.key!r})"

    @property
    def roots(self) -> list[Any]:
        return [self.operator]

    @property
    def leaves(self) -> list[Any]:
        return [self.operator]

    def as_setup(self) -> "XComArg":
        self.operator.as_setup()
        return self

    def as_teardown(self, *, setups: Any = None, on_failure_fail_dagrun: bool | None = None) -> "XComArg":
        self.operator.as_teardown(setups=setups, on_failure_fail_dagrun=on_failure_fail_dagrun)
        return self

    def map(self, f: Any) -> Any:
        raise unsupported("XComArg.map()")

    def zip(self, *others: Any, **kwargs: Any) -> Any:
        raise unsupported("XComArg.zip()")

    def concat(self, *others: Any) -> Any:
        raise unsupported("XComArg.concat()")

    def to_spec(self) -> dict[str, str]:
        """``{"xcom": TASK_ID, "key": KEY}`` (key left out for return_value)."""
        ref = {"xcom": self.operator.task_id}
        if self.key != XCOM_RETURN_KEY:
            ref["key"] = self.key
        return ref

    def resolve(self, context: Any) -> Any:
        """Pull the value (the runtime's side), with Airflow's missing-value rules."""
        ti = context["ti"]
        found, value = ti._pull_one(self.operator.task_id, self.key, None)
        if found:
            return value
        if self.key == XCOM_RETURN_KEY or getattr(self.operator, "multiple_outputs", False):
            return None
        raise XComNotFound(ti.dag_id, self.operator.task_id, self.key)


class DagParamRef:
    """Reference to a DAG param (what a ``@dag`` function's arguments are)."""

    def __init__(self, name: str, default: Any) -> None:
        self.name = name
        self.default = default

    def __repr__(self) -> str:
        return f"DagParam({self.name!r})"

    def resolve(self, context: Any) -> Any:
        return context["params"].get(self.name, self.default)


def iter_xcom_args(value: Any) -> Iterator[XComArg]:
    """Every XComArg inside ``value`` (nested lists, tuples, sets, dicts)."""
    if isinstance(value, XComArg):
        yield value
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from iter_xcom_args(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_xcom_args(item)


def resolve_value(value: Any, context: Any, render: Any = None) -> Any:
    """``value`` with XComArgs (and DAG params) pulled; literal strings that
    contain a template are passed through ``render`` when it is given."""
    if isinstance(value, (XComArg, DagParamRef)):
        return value.resolve(context)
    if isinstance(value, str):
        if render is not None and ("{{" in value or "{%" in value):
            return render(value)
        return value
    if isinstance(value, list):
        return [resolve_value(v, context, render) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve_value(v, context, render) for v in value)
    if isinstance(value, dict):
        return {k: resolve_value(v, context, render) for k, v in value.items()}
    return value
