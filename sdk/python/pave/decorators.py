"""TaskFlow decorators: ``@task`` (= ``@task.python``), ``@task.bash``,
``@task.branch``, ``@task.short_circuit``, ``@setup`` and ``@teardown``.

Calling a decorated function inside a DAG creates a task and returns an
XComArg of its return value. Calling it again gives ``name__1``,
``name__2``... (Airflow's rule). ``.override(task_id=..., retries=...)``
changes the task arguments; ``.partial(...).expand(...)`` and
``.expand_kwargs(...)`` map it.

``@task.bash``: Airflow calls the function at run time to get the command.
pave cannot run Python on the command path, so such a task is a ``python``
task: the runtime calls the function, renders the returned string as a
template, runs it with ``bash -c`` (``env``, ``cwd``, ``skip_on_exit_code``
as BashOperator) and returns the last stdout line, like BashOperator.

Other ``@task.<kind>`` decorators (``virtualenv``, ``docker``,
``kubernetes``, ``sensor``, ...) are refused at parse time.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import types
from collections.abc import Mapping

from ._util import callable_name
from .context import KNOWN_CONTEXT_KEYS
from .exceptions import AirflowException, unsupported
from .mapped import make_expand_input
from .operators import BranchPythonOperator, PythonOperator, ShortCircuitOperator, context_merge, determine_kwargs, spec_args
from .xcom_arg import XComArg, resolve_value

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any, Callable


class _DecoratedMixin:
    """Shared by the operators that ``@task`` variants create."""

    custom_operator_name = "@task"

    def _bound_kwargs(self) -> dict[str, Any]:
        """Arguments by parameter name (positional ones too, where they bind)."""
        try:
            bound = inspect.signature(self.python_callable).bind_partial(*self.op_args, **self.op_kwargs)
        except (TypeError, ValueError):
            return dict(self.op_kwargs)
        out: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = bound.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                out[name] = value
        return out

    def _spec_args(self) -> dict[str, Any]:
        args = spec_args(self._bound_kwargs())
        if self.expand_input and self.expand_input[0] == "expand":
            for name in self.expand_input[1]:
                args.pop(name, None)
        return args

    def _spec_kind(self) -> dict[str, Any]:
        return PythonOperator._spec_kind(self)  # type: ignore[arg-type]

    def prepare_for_execution(self, context: Any, render: Callable[[str], Any], mapped_args: dict[str, Any],
                              *, in_place: bool = False) -> Any:
        op = self if in_place else copy.copy(self)
        op.op_args = resolve_value(list(self.op_args), context, render)
        op.op_kwargs = resolve_value(dict(self.op_kwargs), context, render)
        for name, value in mapped_args.items():
            op.op_kwargs[name] = resolve_value(value, context, render) if self._mapped_is_literal(name) else value
        op.templates_dict = resolve_value(self.templates_dict, context, render)
        return op


class _PythonDecoratedOperator(_DecoratedMixin, PythonOperator):
    pass


class _BranchDecoratedOperator(_DecoratedMixin, BranchPythonOperator):
    custom_operator_name = "@task.branch"


class _ShortCircuitDecoratedOperator(_DecoratedMixin, ShortCircuitOperator):
    custom_operator_name = "@task.short_circuit"

    def _spec_kind(self) -> dict[str, Any]:
        return ShortCircuitOperator._spec_kind(self)


class _BashDecoratedOperator(_DecoratedMixin, PythonOperator):
    """``@task.bash``: the function returns the command to run."""

    custom_operator_name = "@task.bash"

    def __init__(self, *, env: dict[str, Any] | None = None, append_env: bool = False,
                 cwd: str | None = None, skip_on_exit_code: int | list[int] = 99,
                 output_encoding: str = "utf-8", output_processor: Any = None, **kwargs: Any) -> None:
        if output_processor is not None:
            raise unsupported("the task argument 'output_processor'")
        super().__init__(env=env, **kwargs)
        if isinstance(skip_on_exit_code, (list, tuple)):
            if len(skip_on_exit_code) != 1:
                raise unsupported("more than one skip_on_exit_code (pave has one skip exit code per task)")
            skip_on_exit_code = skip_on_exit_code[0]
        self.skip_on_exit_code = int(skip_on_exit_code)
        self.cwd = cwd
        self.append_env = append_env
        if output_encoding.lower().replace("-", "") != "utf8":
            raise unsupported(f"the task argument 'output_encoding={output_encoding!r}'")

    def execute(self, context: Any) -> Any:
        from ._bash import run_bash
        from .context import render_template

        context_merge(context, self.op_kwargs, templates_dict=self.templates_dict)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        command = self.python_callable(*self.op_args, **kwargs)
        if not isinstance(command, str) or not command.strip():
            raise TypeError("The returned value from the TaskFlow callable must be a non-empty string.")
        if "{{" in command or "{%" in command:
            command = render_template(command)
        return run_bash(command, env=self.env, cwd=self.cwd,
                        skip_exit_code=self.skip_on_exit_code, task_id=self.task_id)


def get_unique_task_id(task_id: str, dag: Any, group: Any) -> str:
    """``task_id``, or ``task_id__N`` when the DAG already has it (Airflow's rule)."""
    if dag is None:
        return task_id
    full = group.child_id(task_id) if group is not None else task_id
    if full not in dag.task_dict:
        return task_id
    prefix = re.split(r"__\d+$", full)[0]
    suffixes = [0]
    for existing in dag.task_dict:
        m = re.match(rf"^{re.escape(prefix)}__(\d+)$", existing)
        if m:
            suffixes.append(int(m.group(1)))
    core = re.split(r"__\d+$", task_id)[0]
    return f"{core}__{max(suffixes) + 1}"


def _infer_multiple_outputs(func: Callable[..., Any]) -> bool:
    """Airflow's rule: a return annotation that is a Mapping type means multiple outputs.

    Only the return annotation counts, as in Airflow. A postponed one (a
    string, under ``from __future__ import annotations``) is evaluated in
    the function's globals, as ``typing.get_type_hints`` would, without
    importing ``typing`` (which would cost every task's interpreter its
    start-up and memory); one that cannot be evaluated means no."""
    annotations = getattr(func, "__annotations__", None) or {}
    if "return" not in annotations:
        return False
    ret = annotations["return"]
    if isinstance(ret, str):
        try:
            ret = eval(ret, getattr(func, "__globals__", {}))  # noqa: S307 -- as get_type_hints does
        except Exception:
            return False
    origin = getattr(ret, "__origin__", ret)
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _check_signature(func: Callable[..., Any], args: tuple, kwargs: dict[str, Any], partial: bool) -> None:
    """Bind the call as Airflow does (context keys default to None) to report bad calls at parse time."""
    sig = inspect.signature(func)
    faulty = [p.name for p in sig.parameters.values()
              if p.name in KNOWN_CONTEXT_KEYS and p.default not in (None, p.empty)]
    if faulty:
        raise ValueError(f"Context key parameter {faulty[0]} can't have a default other than None")
    params = [p.replace(default=None) if p.name in KNOWN_CONTEXT_KEYS and p.default is p.empty
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) else p
              for p in sig.parameters.values()]
    try:
        sig = sig.replace(parameters=params)
    except ValueError as e:
        raise ValueError(
            f"the signature of {func.__name__} cannot give context arguments a default of None: {e}"
        ) from None
    (sig.bind_partial if partial else sig.bind)(*args, **kwargs)


class _TaskDecorator:
    """A decorated function: call it in a DAG to create a task."""

    def __init__(self, function: Callable[..., Any], operator_class: type,
                 kwargs: dict[str, Any], multiple_outputs: bool | None = None,
                 role: dict[str, Any] | None = None) -> None:
        if not callable(function):
            raise TypeError(f"@task needs a function, got {function!r}")
        self.function = function
        self.operator_class = operator_class
        self.kwargs = dict(kwargs)
        self.multiple_outputs = (
            _infer_multiple_outputs(function) if multiple_outputs is None else bool(multiple_outputs)
        )
        self.role = dict(role or {})
        functools.update_wrapper(self, function)

    # -- creating the task ----------------------------------------------------
    def _create(self, op_args: tuple, op_kwargs: dict[str, Any], extra: dict[str, Any]) -> Any:
        from .dag import current_dag

        kwargs = {**self.kwargs, **extra}
        dag = kwargs.get("dag") or current_dag()
        group = kwargs.get("task_group") or (dag._group_stack[-1] if dag is not None else None)
        task_id = get_unique_task_id(kwargs.pop("task_id", self.function.__name__), dag, group)
        if self.function.__doc__ and not any(kwargs.get(k) for k in ("doc", "doc_md")):
            kwargs["doc_md"] = inspect.cleandoc(self.function.__doc__)
        op = self.operator_class(
            task_id=task_id, python_callable=self.function, op_args=op_args,
            op_kwargs=op_kwargs, multiple_outputs=self.multiple_outputs, **kwargs,
        )
        if self.role.get("setup"):
            op.as_setup()
        if self.role.get("teardown"):
            op.as_teardown(on_failure_fail_dagrun=self.role.get("on_failure_fail_dagrun"))
        return op

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        _check_signature(self.function, args, kwargs, partial=False)
        return XComArg(self._create(args, kwargs, {}))

    def override(self, **kwargs: Any) -> "_TaskDecorator":
        """The same task with other task arguments (``task_id``, ``retries``, ...)."""
        multiple_outputs = kwargs.pop("multiple_outputs", self.multiple_outputs)
        return _TaskDecorator(self.function, self.operator_class, {**self.kwargs, **kwargs},
                              multiple_outputs, self.role)

    def partial(self, **kwargs: Any) -> "_TaskPartial":
        _refuse_mapped_context_keys(kwargs, "partial")
        _check_signature(self.function, (), kwargs, partial=True)
        return _TaskPartial(self, kwargs)

    def expand(self, **mapped: Any) -> XComArg:
        return self.partial().expand(**mapped)

    def expand_kwargs(self, kwargs: Any, *, strict: bool = True) -> XComArg:
        return self.partial().expand_kwargs(kwargs)

    def _with_role(self, **role: Any) -> "_TaskDecorator":
        if role.get("setup") and self.role.get("teardown") or role.get("teardown") and self.role.get("setup"):
            raise AirflowException(f"task `{self.function.__name__}` cannot be both a setup and a teardown")
        return _TaskDecorator(self.function, self.operator_class, self.kwargs,
                              self.multiple_outputs, {**self.role, **role})

    @property
    def is_setup(self) -> bool:
        return bool(self.role.get("setup"))

    @property
    def is_teardown(self) -> bool:
        return bool(self.role.get("teardown"))

    def __repr__(self) -> str:
        return f"<TaskDecorator {callable_name(self.function)}>"


def _refuse_mapped_context_keys(mapped: dict[str, Any], func: str) -> None:
    """Airflow's rule: a context variable cannot be mapped over."""
    keys = sorted(KNOWN_CONTEXT_KEYS.intersection(mapped))
    if len(keys) == 1:
        raise ValueError(f"cannot call {func}() on task context variable {keys[0]!r}")
    if keys:
        raise ValueError(f"cannot call {func}() on task context variables {', '.join(repr(k) for k in keys)}")


class _TaskPartial:
    """``decorated.partial(...)``: the fixed arguments of a mapped task."""

    def __init__(self, decorator: _TaskDecorator, kwargs: dict[str, Any]) -> None:
        self.decorator = decorator
        self.kwargs = kwargs

    def _label(self) -> str:
        return self.decorator.kwargs.get("task_id", self.decorator.function.__name__)

    def expand(self, **mapped: Any) -> XComArg:
        _refuse_mapped_context_keys(mapped, "expand")
        expand_input = make_expand_input("expand", mapped, self._label())
        for name in mapped:
            if name in self.kwargs:
                raise TypeError(f"argument '{name}' cannot be both partial and mapped")
        _check_signature(self.decorator.function, (), {**self.kwargs, **mapped}, partial=True)
        return self._build(expand_input)

    def expand_kwargs(self, kwargs: Any, *, strict: bool = True) -> XComArg:
        return self._build(make_expand_input("expand_kwargs", kwargs, self._label()))

    def _build(self, expand_input: tuple[str, Any]) -> XComArg:
        op = self.decorator._create((), dict(self.kwargs), {})
        op.expand_input = expand_input
        op._wire_xcom_args()
        return XComArg(op)


class _TaskNamespace:
    """The ``task`` object: ``@task``, ``@task(...)``, ``@task.bash``, ..."""

    def __call__(self, python_callable: Any = None, multiple_outputs: bool | None = None, **kwargs: Any) -> Any:
        return _decorate(_PythonDecoratedOperator, python_callable, multiple_outputs, kwargs)

    def python(self, python_callable: Any = None, multiple_outputs: bool | None = None, **kwargs: Any) -> Any:
        return _decorate(_PythonDecoratedOperator, python_callable, multiple_outputs, kwargs)

    def branch(self, python_callable: Any = None, multiple_outputs: bool | None = None, **kwargs: Any) -> Any:
        return _decorate(_BranchDecoratedOperator, python_callable, multiple_outputs, kwargs)

    def short_circuit(self, python_callable: Any = None, multiple_outputs: bool | None = None, **kwargs: Any) -> Any:
        return _decorate(_ShortCircuitDecoratedOperator, python_callable, multiple_outputs, kwargs)

    def bash(self, python_callable: Any = None, multiple_outputs: bool | None = None, **kwargs: Any) -> Any:
        return _decorate(_BashDecoratedOperator, python_callable, bool(multiple_outputs), kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise unsupported(f"@task.{name}")


def _decorate(operator_class: type, python_callable: Any, multiple_outputs: bool | None,
              kwargs: dict[str, Any]) -> Any:
    if python_callable is not None:
        return _TaskDecorator(python_callable, operator_class, kwargs, multiple_outputs)
    return lambda f: _TaskDecorator(f, operator_class, kwargs, multiple_outputs)


task = _TaskNamespace()


def setup(func: Any) -> _TaskDecorator:
    """``@setup``: a task that sets something up (``as_setup()``)."""
    from .task_group import _TaskGroupFactory

    if isinstance(func, _TaskGroupFactory):
        raise unsupported("@setup on a task group")
    if isinstance(func, types.FunctionType):
        func = task(func)
    if not isinstance(func, _TaskDecorator):
        raise TypeError(f"@setup decorates a function or a @task, got {func!r}")
    return func._with_role(setup=True)


def teardown(_func: Any = None, *, on_failure_fail_dagrun: bool = False) -> Any:
    """``@teardown`` / ``@teardown(on_failure_fail_dagrun=True)``."""
    from .task_group import _TaskGroupFactory

    def wrap(func: Any) -> _TaskDecorator:
        if isinstance(func, _TaskGroupFactory):
            raise unsupported("@teardown on a task group")
        if isinstance(func, types.FunctionType):
            func = task(func)
        if not isinstance(func, _TaskDecorator):
            raise TypeError(f"@teardown decorates a function or a @task, got {func!r}")
        return func._with_role(teardown=True, on_failure_fail_dagrun=on_failure_fail_dagrun)

    return wrap(_func) if _func is not None else wrap
