"""The core operators: Empty, Bash, Python, BranchPython, ShortCircuit,
plus ``chain``/``cross_downstream``/``chain_linear``.

``BaseOperator`` lives in ``baseoperator.py`` and is re-exported here.

* ``EmptyOperator`` is the spec's ``empty: true``.
* ``BashOperator`` is a ``command`` task: pave runs the (Jinja) command with
  ``bash -c``; the last stdout line is the result. ``skip_on_exit_code``
  (one code) is ``skip_exit_code``; ``env`` is passed as the task's
  environment on top of pave's (``append_env`` is accepted, and the
  environment is always appended to — a documented difference).
  ``output_processor`` is refused. A BashOperator whose command comes from
  an XComArg, or that is mapped, runs as a ``python`` task through the
  runtime, which renders and runs the command the same way.
* ``PythonOperator`` and friends are ``python`` tasks run by
  ``python -m pave.runtime``.
"""

from __future__ import annotations

import inspect
import os
import weakref
from collections.abc import Sequence

from ._util import callable_name, is_json
from .baseoperator import BaseOperator
from .context import check_context_parameters
from .exceptions import AirflowException, PaveSpecError, unsupported
from .xcom_arg import XComArg

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = [
    "BaseOperator", "EmptyOperator", "BashOperator", "PythonOperator", "BranchPythonOperator",
    "ShortCircuitOperator", "chain", "chain_linear", "cross_downstream",
]


class EmptyOperator(BaseOperator):
    """Does nothing; the scheduler marks it ``success`` without running it."""

    ui_color = "#e8f7e4"

    def execute(self, context: Any) -> None:
        return None

    def _spec_kind(self) -> dict[str, Any]:
        return {"empty": True}


class BashOperator(BaseOperator):
    """Runs a shell command with ``bash -c`` (pave's ``command`` task)."""

    template_fields = ("bash_command", "env", "cwd")
    template_ext = (".sh", ".bash")

    def __init__(
        self,
        *,
        bash_command: Any,
        env: dict[str, Any] | None = None,
        append_env: bool = False,
        output_encoding: str = "utf-8",
        skip_on_exit_code: int | Sequence[int] | None = 99,
        cwd: str | None = None,
        output_processor: Callable[[str], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(env=env, **kwargs)
        if output_processor is not None:
            raise unsupported("the task argument 'output_processor'")
        if output_encoding.lower().replace("-", "") != "utf8":
            raise unsupported(f"the task argument 'output_encoding={output_encoding!r}'")
        if isinstance(skip_on_exit_code, (list, tuple, set)):
            codes = list(skip_on_exit_code)
            if len(codes) != 1:
                raise unsupported("more than one skip_on_exit_code (pave has one skip exit code per task)")
            skip_on_exit_code = codes[0]
        if skip_on_exit_code is None:
            raise unsupported("skip_on_exit_code=None (every command task has a skip exit code; the default is 99)")
        self.skip_on_exit_code = int(skip_on_exit_code)
        self.append_env = append_env
        self.cwd = cwd
        if isinstance(bash_command, str) and bash_command.endswith(self.template_ext):
            bash_command = _read_script(bash_command, self)
        self.bash_command = bash_command

    def execute(self, context: Any) -> Any:
        from ._bash import run_bash

        return run_bash(self.bash_command, env=self.env, cwd=self.cwd,
                        skip_exit_code=self.skip_on_exit_code, task_id=self.task_id)

    def _runs_in_python(self) -> bool:
        return self.expand_input is not None or not isinstance(self.bash_command, str)

    def _spec_kind(self) -> dict[str, Any]:
        if self._runs_in_python():
            return {"python": "BashOperator.execute"}
        if not self.bash_command.strip():
            raise PaveSpecError(f"task `{self.task_id}`: bash_command is empty", self)
        out: dict[str, Any] = {"command": self.bash_command}
        if self.cwd is not None:
            out["cwd"] = self.cwd
        if self.skip_on_exit_code != 99:
            out["skip_exit_code"] = self.skip_on_exit_code
        return out


def _read_script(path: str, op: BaseOperator) -> str:
    """Airflow reads a ``bash_command`` ending in ``.sh``/``.bash`` as a template file."""
    base = os.path.dirname(op._def_file or "") if op._def_file else os.getcwd()
    full = path if os.path.isabs(path) else os.path.join(base, path)
    try:
        with open(full, encoding="utf-8") as fh:
            return fh.read()
    except OSError as e:
        raise PaveSpecError(
            f"task `{op.task_id}`: bash_command {path!r} ends in .sh/.bash, so it is read as a "
            f"script template, but {full} cannot be read ({e.strerror}); add a space after the name "
            "to run it as a command",
            op,
        ) from None


class PythonOperator(BaseOperator):
    """Calls ``python_callable(*op_args, **op_kwargs)`` (plus context variables it asks for)."""

    template_fields = ("templates_dict", "op_args", "op_kwargs")
    ui_color = "#ffefeb"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: dict[str, Any] | None = None,
        templates_dict: dict[str, Any] | None = None,
        templates_exts: Sequence[str] | None = None,
        show_return_value_in_logs: bool = True,
        **kwargs: Any,
    ) -> None:
        if callable(python_callable):  # before the task joins its DAG
            check_context_parameters(python_callable, str(kwargs.get("task_id")), len(op_args or []),
                                     op_kwargs or {})
        super().__init__(**kwargs)
        if not callable(python_callable) and not _is_mapped_placeholder(python_callable):
            raise AirflowException("`python_callable` param must be callable")
        if templates_exts:
            raise unsupported("the task argument 'templates_exts'")
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.templates_dict = templates_dict
        self.show_return_value_in_logs = show_return_value_in_logs

    def execute(self, context: Any) -> Any:
        context_merge(context, self.op_kwargs, templates_dict=self.templates_dict)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        return self.execute_callable(kwargs)

    def execute_callable(self, kwargs: dict[str, Any]) -> Any:
        return self.python_callable(*self.op_args, **kwargs)

    def _spec_kind(self) -> dict[str, Any]:
        out: dict[str, Any] = {"python": callable_name(self.python_callable)}
        if self._is_branch:
            out["branch"] = True
        return out

    def _spec_args(self) -> dict[str, Any]:
        return spec_args(self.op_kwargs)


class BranchPythonOperator(PythonOperator):
    """Its callable returns the task id(s) to follow; the other direct downstream tasks are skipped."""

    _is_branch = True


class ShortCircuitOperator(PythonOperator):
    """A falsy result of its callable skips the downstream tasks."""

    _is_short_circuit = True

    def __init__(self, *, ignore_downstream_trigger_rules: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_downstream_trigger_rules = ignore_downstream_trigger_rules

    def _spec_kind(self) -> dict[str, Any]:
        out = super()._spec_kind()
        out["short_circuit"] = True if self.ignore_downstream_trigger_rules else {
            "ignore_downstream_trigger_rules": False
        }
        return out


def _is_mapped_placeholder(value: Any) -> bool:
    from .mapped import MAPPED

    return value is MAPPED


def spec_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``args`` for the spec: JSON literals as they are (mappings that would
    read as a reference wrapped in ``{"literal": ...}``), top-level XComArgs
    as references; anything else (objects, nested XComArgs) left out."""
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        if not name.isidentifier():
            continue
        if isinstance(value, XComArg):
            out[name] = value.to_spec()
        elif is_json(value):
            if isinstance(value, dict) and ("xcom" in value or set(value) == {"literal"}):
                value = {"literal": value}
            out[name] = value
    return out


# -- calling a Python callable with the context (Airflow's KeywordParameters) --

def context_merge(context: dict[str, Any], op_kwargs: dict[str, Any], templates_dict: Any = None) -> None:
    context.update(op_kwargs)
    context["templates_dict"] = templates_dict


def determine_kwargs(func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments to call ``func`` with: all of ``kwargs`` when it
    takes ``**kwargs``, else only the names it declares."""
    names, has_wildcard = callable_params(func)
    for name in names[:len(args)]:
        if name in kwargs:
            raise ValueError(f"The key {name!r} in args is a part of kwargs and therefore reserved.")
    if has_wildcard:
        return dict(kwargs)
    positional = set(names[:len(args)])
    return {k: v for k, v in kwargs.items() if k in names and k not in positional}


#: ``callable_params`` of the callables seen so far (weakly keyed: a DAG's
#: callables live as long as it does).
_PARAMS: weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], bool]] = weakref.WeakKeyDictionary()


#: ``callable_params`` of the tasks' callables, learned by a pre-forked
#: interpreter before it forks (``learn_callable_params``): a plain dict,
#: which a forked task reads without the weak dictionary's Python-level
#: lookup (whose objects' pages it would copy). It holds the callables of
#: the zygote's DAG file, which live as long as the zygote anyway.
_LEARNED: dict[Any, tuple[tuple[str, ...], bool]] = {}


def learn_callable_params(func: Callable[..., Any]) -> None:
    """Work out ``callable_params(func)`` now and keep it in ``_LEARNED``."""
    found = callable_params(func)
    try:
        _LEARNED[func] = found
    except TypeError:  # not hashable
        pass


def callable_params(func: Callable[..., Any]) -> tuple[tuple[str, ...], bool]:
    """The parameter names of ``func`` (``inspect.signature`` order) and
    whether it takes ``**kwargs``; remembered per callable. A pre-forked
    interpreter (``pave.zygote``) works them out for every task before it
    forks, so that a task's process reads them instead of building a
    signature (about 60 pages of the interpreter's memory it would
    otherwise write, and so copy)."""
    try:
        return _LEARNED[func]
    except (KeyError, TypeError):  # TypeError: not hashable
        pass
    try:
        return _PARAMS[func]
    except (KeyError, TypeError):  # TypeError: not weakly referenceable (or hashable)
        pass
    params = inspect.signature(func).parameters
    found = (tuple(params), any(p.kind is p.VAR_KEYWORD for p in params.values()))
    try:
        _PARAMS[func] = found
    except TypeError:
        pass
    return found


# -- dependency helpers -------------------------------------------------------

def chain(*tasks: Any) -> None:
    """``chain(a, [b, c], [d, e], f)``: a >> b, a >> c, b >> d, c >> e, d >> f, e >> f."""
    from ._deps import DependencyMixin

    for up, down in zip(tasks, tasks[1:]):
        if isinstance(up, DependencyMixin):
            up.set_downstream(down)
            continue
        if isinstance(down, DependencyMixin):
            down.set_upstream(up)
            continue
        if not isinstance(up, Sequence) or not isinstance(down, Sequence):
            raise TypeError(f"chain() does not support {type(up).__name__} and {type(down).__name__}")
        if len(up) != len(down):
            raise ValueError(
                f"chain() needs lists of the same length to pair them up, got {len(up)} and {len(down)}"
            )
        for u, d in zip(up, down):
            u.set_downstream(d)


def chain_linear(*elements: Any) -> None:
    """Every task of each element upstream of every task of the next."""
    if len(elements) < 2:
        raise ValueError("chain_linear() needs at least two elements")
    for up, down in zip(elements, elements[1:]):
        ups = up if isinstance(up, Sequence) else [up]
        downs = down if isinstance(down, Sequence) else [down]
        for u in ups:
            u.set_downstream(downs)


def cross_downstream(from_tasks: Sequence[Any], to_tasks: Any) -> None:
    """Every task of ``from_tasks`` upstream of every task of ``to_tasks``."""
    for task in from_tasks:
        task.set_downstream(to_tasks)
