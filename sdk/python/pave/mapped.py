"""Dynamic task mapping: ``Operator.partial(...).expand(...)`` and
``.expand_kwargs(...)`` for classic operators (decorated tasks use the
same ``expand_input`` in decorators.py).

An ``expand`` value must be an XComArg (``task()``, ``task()["key"]``,
``op.output``) or a list of JSON values; an ``expand_kwargs`` source an
XComArg or a list of JSON mappings. ``XComArg.map``/``zip`` are refused.
At run time the runtime builds the real operator from the partial
arguments plus the map index's ``mapped_args`` (Airflow's unmapping).
"""

from __future__ import annotations

import copy

from ._util import callable_name, json_problem
from .baseoperator import BaseOperator, _init_arg_names
from .exceptions import PaveSpecError, unsupported
from .xcom_arg import XComArg, iter_xcom_args, resolve_value

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any, Callable

#: Placeholder for a constructor argument whose value comes from the mapping.
MAPPED: Any = type("Mapped", (), {"__repr__": lambda self: "MAPPED"})()

_BASE_ARGS = frozenset(_init_arg_names(BaseOperator))


def make_expand_input(kind: str, value: Any, task_label: str) -> tuple[str, Any]:
    """Check a mapping's inputs; ``("expand", {...})`` or ``("expand_kwargs", src)``."""
    where = f"task `{task_label}`: {kind}()"
    if kind == "expand":
        if not value:
            raise TypeError(f"{where} needs at least one argument")
        for name, src in value.items():
            if isinstance(src, XComArg):
                continue
            if not isinstance(src, (list, tuple)):
                if isinstance(src, dict):
                    raise unsupported(f"mapping over a dict ({where} argument `{name}`); pass a list")
                raise TypeError(f"{where} argument `{name}` must be a list or an XComArg, got {type(src).__name__}")
            if any(True for _ in iter_xcom_args(src)):
                raise unsupported(f"XComArgs inside the list of {where} argument `{name}`")
            problem = json_problem(list(src))
            if problem:
                raise unsupported(f"a non-JSON value in {where} argument `{name}`: {problem}")
        return ("expand", dict(value))
    if isinstance(value, XComArg):
        return ("expand_kwargs", value)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, dict) for v in value):
        raise TypeError(f"{where} takes an XComArg or a list of dicts")
    if any(True for _ in iter_xcom_args(value)):
        raise unsupported(f"XComArgs inside the mappings of {where}")
    problem = json_problem(list(value))
    if problem:
        raise unsupported(f"a non-JSON value in {where}: {problem}")
    return ("expand_kwargs", list(value))


def expand_input_spec(expand_input: tuple[str, Any]) -> dict[str, Any]:
    """The spec's ``expand`` or ``expand_kwargs`` field."""
    kind, value = expand_input
    if kind == "expand":
        return {"expand": {k: (v.to_spec() if isinstance(v, XComArg) else list(v)) for k, v in value.items()}}
    return {"expand_kwargs": value.to_spec() if isinstance(value, XComArg) else value}


class OperatorPartial:
    """What ``Operator.partial(...)`` returns."""

    def __init__(self, operator_class: type, kwargs: dict[str, Any]) -> None:
        if "task_id" not in kwargs:
            raise TypeError(f"{operator_class.__name__}.partial() needs a task_id")
        accepted = _init_arg_names(operator_class)
        unknown = [k for k in kwargs if k not in accepted and k != "default_args"]
        if unknown:
            raise TypeError(f"Invalid arguments were passed to {operator_class.__name__}.partial(): {unknown}")
        self.operator_class = operator_class
        self.kwargs = kwargs

    def expand(self, **mapped: Any) -> "MappedOperator":
        return self._build(make_expand_input("expand", mapped, self.kwargs["task_id"]))

    def expand_kwargs(self, kwargs: Any, *, strict: bool = True) -> "MappedOperator":
        return self._build(make_expand_input("expand_kwargs", kwargs, self.kwargs["task_id"]))

    def _build(self, expand_input: tuple[str, Any]) -> "MappedOperator":
        accepted = _init_arg_names(self.operator_class)
        if expand_input[0] == "expand":
            for name in expand_input[1]:
                if name not in accepted or name in _BASE_ARGS and name not in ("env",):
                    raise TypeError(
                        f"{self.operator_class.__name__}.expand() got an argument it cannot map: '{name}'"
                    )
                if name in self.kwargs:
                    raise TypeError(f"argument '{name}' cannot be both partial and mapped")
        self._check_context_parameters(expand_input)
        base = {k: v for k, v in self.kwargs.items() if k in _BASE_ARGS or k == "default_args"}
        own = {k: v for k, v in self.kwargs.items() if k not in base}
        return MappedOperator(
            operator_class=self.operator_class, partial_kwargs=own, expand_input=expand_input, **base
        )


    def _check_context_parameters(self, expand_input: tuple[str, Any]) -> None:
        """A mapped PythonOperator's callable may not take a context key pave cannot
        provide (``check_context_parameters``), for every instance whose arguments are
        known at parse time; one mapped over an XCom is checked when it runs."""
        from .context import check_context_parameters
        from .operators import PythonOperator

        func = self.kwargs.get("python_callable")
        if not issubclass(self.operator_class, PythonOperator) or not callable(func):
            return
        kind, value = expand_input
        if kind == "expand":
            if any(isinstance(value.get(n), XComArg) for n in ("op_args", "op_kwargs")):
                return
            rows = [{}] if not value.get("op_args") and not value.get("op_kwargs") else None
            if rows is None:
                rows = ([{"op_args": a} for a in value.get("op_args") or [[]]]
                        if "op_args" in value else [{}])
                if "op_kwargs" in value:
                    rows = [{**r, "op_kwargs": k} for r in rows for k in value["op_kwargs"]]
        else:
            if isinstance(value, XComArg):
                return
            rows = list(value)
        for row in rows:
            args = row.get("op_args", self.kwargs.get("op_args")) or []
            kwargs = row.get("op_kwargs", self.kwargs.get("op_kwargs")) or {}
            if isinstance(args, XComArg) or isinstance(kwargs, XComArg) or not isinstance(kwargs, dict):
                continue
            check_context_parameters(func, self.kwargs["task_id"], len(args), kwargs)


class MappedOperator(BaseOperator):
    """A classic operator mapped over its inputs."""

    def __init__(self, *, operator_class: type, partial_kwargs: dict[str, Any],
                 expand_input: tuple[str, Any], **base_kwargs: Any) -> None:
        self._base_kwargs = {k: v for k, v in base_kwargs.items() if k not in ("dag", "task_group", "task_id")}
        super().__init__(**base_kwargs)
        self.operator_class = operator_class
        self.partial_kwargs = partial_kwargs
        self.expand_input = expand_input
        self._is_branch = getattr(operator_class, "_is_branch", False)
        self._is_short_circuit = getattr(operator_class, "_is_short_circuit", False)
        self.template_fields = tuple(getattr(operator_class, "template_fields", ()))
        self._wire_xcom_args()

    def _referenced_xcom_args(self) -> list[XComArg]:
        out = list(iter_xcom_args(self.partial_kwargs))
        out.extend(iter_xcom_args(self.expand_input[1]))
        return out

    def _spec_kind(self) -> dict[str, Any]:
        from .operators import EmptyOperator, PythonOperator, ShortCircuitOperator

        cls = self.operator_class
        if issubclass(cls, EmptyOperator):
            return {"empty": True}
        if issubclass(cls, PythonOperator):
            func = self.partial_kwargs.get("python_callable")
            out: dict[str, Any] = {"python": callable_name(func) if func else f"{cls.__qualname__}.execute"}
            if self._is_branch:
                out["branch"] = True
            if issubclass(cls, ShortCircuitOperator):
                ignore = self.partial_kwargs.get("ignore_downstream_trigger_rules", True)
                out["short_circuit"] = True if ignore else {"ignore_downstream_trigger_rules": False}
            return out
        return {"python": f"{cls.__qualname__}.execute"}

    def _spec_args(self) -> dict[str, Any]:
        from .operators import PythonOperator, spec_args

        if issubclass(self.operator_class, PythonOperator):
            return spec_args(self.partial_kwargs.get("op_kwargs") or {})
        return {}

    def unmap(self, mapped_args: dict[str, Any]) -> BaseOperator:
        """The real operator of one map index (built outside any DAG)."""
        kwargs = {**self._base_kwargs, **self.partial_kwargs, **mapped_args}
        real = self.operator_class(task_id=self.task_id, **kwargs)
        real.dag = self.dag
        real.expand_input = self.expand_input
        return real

    def prepare_for_execution(self, context: Any, render: Callable[[str], Any], mapped_args: dict[str, Any],
                              *, in_place: bool = False) -> BaseOperator:
        real = self.unmap(mapped_args)  # a new operator either way
        for name in real.template_fields:
            if name in mapped_args and not self._mapped_is_literal(name):
                continue
            setattr(real, name, resolve_value(getattr(real, name, None), context, render))
        return real

    def execute(self, context: Any) -> Any:  # pragma: no cover - the runtime unmaps first
        raise PaveSpecError(f"task `{self.task_id}` is mapped; it runs through unmap()")

    def __copy__(self) -> "MappedOperator":
        new = MappedOperator.__new__(MappedOperator)
        new.__dict__.update(copy.copy(self.__dict__))
        return new
