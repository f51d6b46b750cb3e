"""``BaseOperator``: what every task is, and the task arguments pave knows.

Task arguments pave supports (written into the spec; docs/dag-spec.md):
``task_id``, ``retries``, ``retry_delay`` (timedelta or seconds),
``retry_exponential_backoff``, ``max_retry_delay``, ``execution_timeout``,
``pool``, ``pool_slots``, ``priority_weight``, ``weight_rule``,
``trigger_rule``, ``max_active_tis_per_dag``, ``start_date`` and
``end_date`` (a datetime; a naive one is UTC, as in Airflow: runs whose
logical date is outside the task's range, narrowed by the DAG's own dates,
get no instance of the task), ``resources`` (``{"cpu": 2,
"memory": "8Gi", "gpu": 1}``; Airflow's ``cpus``/``ram`` (MiB)/``gpus`` are
translated), ``env``, ``doc``/``doc_md``/``doc_rst``/``doc_json``/
``doc_yaml``, ``do_xcom_push``, ``multiple_outputs``, ``dag``,
``task_group``, ``default_args``, ``inlets``/``outlets`` (recorded only).

Accepted and ignored (they do not change how a run behaves): ``owner``,
``email``, ``email_on_failure``, ``email_on_retry``, ``queue``,
``task_display_name``, ``map_index_template``, ``ui_color``,
``ui_fgcolor``, ``allow_nested_operators``,
``logger_name``, ``ignore_first_depends_on_past``, and
``depends_on_past``/``wait_for_downstream``/
``wait_for_past_depends_before_skipping`` when False.

Refused at parse time with ``pave does not support the task argument 'X'
yet``: callbacks (``on_execute_callback``, ``on_failure_callback``,
``on_success_callback``, ``on_retry_callback``, ``on_skipped_callback``),
``pre_execute``, ``post_execute``, ``executor``, ``executor_config``,
``run_as_user``, ``max_active_tis_per_dagrun``, task-level ``params``,
``depends_on_past=True`` and friends. Any other unknown argument is a
``TypeError``, as in Airflow.
"""

from __future__ import annotations

import copy
import functools
import inspect

from ._deps import DependencyMixin
from ._util import caller_line, check_id, duration_seconds, task_date
from . import placement
from .exceptions import AirflowException, PaveSpecError, unsupported
from .trigger_rule import TriggerRule, check_trigger_rule
from .xcom_arg import XComArg, iter_xcom_args, resolve_value

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any, Callable


IGNORED_TASK_ARGS = {
    "owner", "email", "email_on_failure", "email_on_retry", "queue", "task_display_name",
    "map_index_template", "ui_color", "ui_fgcolor",
    "allow_nested_operators", "logger_name", "ignore_first_depends_on_past",
}
FALSE_ONLY_TASK_ARGS = {"depends_on_past", "wait_for_downstream", "wait_for_past_depends_before_skipping"}
REFUSED_TASK_ARGS = {
    "on_execute_callback", "on_failure_callback", "on_success_callback", "on_retry_callback",
    "on_skipped_callback", "pre_execute", "post_execute", "executor_config",
    "run_as_user", "max_active_tis_per_dagrun", "params", "sla", "inlet_events",
}
_RENAMED_TASK_ARGS = {"task_concurrency": "Airflow 3 calls it `max_active_tis_per_dag`"}
_WEIGHT_RULES = ("downstream", "upstream", "absolute")
_DOC_ARGS = ("doc", "doc_md", "doc_rst", "doc_json", "doc_yaml")


def check_task_kwargs(kwargs: dict[str, Any], where: str) -> None:
    """Refuse unsupported and unknown arguments; drop the ignored ones."""
    for name in list(kwargs):
        value = kwargs[name]
        if name in IGNORED_TASK_ARGS:
            del kwargs[name]
        elif name in FALSE_ONLY_TASK_ARGS:
            if value:
                raise unsupported(f"the task argument '{name}={value!r}'")
            del kwargs[name]
        elif name in REFUSED_TASK_ARGS:
            if value is None or (name == "params" and not value):
                del kwargs[name]
                continue
            raise unsupported(f"the task argument '{name}'")
        elif name in _RENAMED_TASK_ARGS:
            raise TypeError(f"{where} got the argument '{name}': {_RENAMED_TASK_ARGS[name]}")
        else:
            raise TypeError(f"Invalid arguments were passed to {where}: '{name}'")


@functools.lru_cache(maxsize=None)
def _init_arg_names(cls: type) -> frozenset[str]:
    """Argument names of every ``__init__`` in the class's MRO."""
    names: set[str] = set(IGNORED_TASK_ARGS | FALSE_ONLY_TASK_ARGS | REFUSED_TASK_ARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        init = getattr(init, "__wrapped__", init)
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.add(p.name)
    names.discard("self")
    return frozenset(names)


def _apply_defaults(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap an operator ``__init__``: merge ``default_args`` (DAG, groups,
    the call's own) into the arguments it did not get, then wire the
    dependencies its XComArg arguments imply (Airflow's metaclass work)."""

    @functools.wraps(init)
    def wrapper(self: "BaseOperator", *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_pave_init_started", False):
            init(self, *args, **kwargs)
            return
        self._pave_init_started = True
        from .dag import current_dag

        dag = kwargs.get("dag") or current_dag()
        group = kwargs.get("task_group") or (dag._group_stack[-1] if dag is not None else None)
        defaults: dict[str, Any] = {}
        if dag is not None:
            defaults.update(dag.default_args)
        chain: list[Any] = []
        while group is not None:
            chain.append(group)
            group = group.parent_group
        for g in reversed(chain):
            defaults.update(g.default_args)
        defaults.update(kwargs.pop("default_args", None) or {})
        accepted = _init_arg_names(type(self))
        for name, value in defaults.items():
            if name in accepted and name not in kwargs and name != "task_id":
                kwargs[name] = value
        init(self, *args, **kwargs)
        self._wire_xcom_args()

    return wrapper


class BaseOperator(DependencyMixin):
    """A task. Subclasses implement ``execute(context)``."""

    template_fields: tuple[str, ...] = ()
    template_ext: tuple[str, ...] = ()
    ui_color = "#fff"
    ui_fgcolor = "#000"
    #: The spec field ``branch``/``short_circuit`` of this kind of operator.
    _is_branch = False
    _is_short_circuit = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not hasattr(init, "__wrapped__"):
            cls.__init__ = _apply_defaults(init)  # type: ignore[method-assign]

    def __init__(
        self,
        task_id: str,
        *,
        retries: int | None = None,
        retry_delay: Any = None,
        retry_exponential_backoff: bool | None = None,
        max_retry_delay: Any = None,
        execution_timeout: Any = None,
        pool: str | None = None,
        pool_slots: int | None = None,
        priority_weight: int | None = None,
        weight_rule: str | None = None,
        trigger_rule: str | TriggerRule | None = None,
        max_active_tis_per_dag: int | None = None,
        start_date: Any = None,
        end_date: Any = None,
        resources: dict[str, Any] | None = None,
        env: dict[str, Any] | None = None,
        executor: str | None = None,
        image: str | None = None,
        spot: str | None = None,
        pod_override: dict[str, Any] | None = None,
        doc: str | None = None,
        doc_md: str | None = None,
        doc_rst: str | None = None,
        doc_json: str | None = None,
        doc_yaml: str | None = None,
        do_xcom_push: bool = True,
        multiple_outputs: bool = False,
        dag: Any = None,
        task_group: Any = None,
        inlets: Any = None,
        outlets: Any = None,
        **kwargs: Any,
    ) -> None:
        from .dag import current_dag

        check_task_kwargs(kwargs, f"{type(self).__name__} (task_id: {task_id})")
        self.dag = dag or current_dag()
        self.task_group = task_group or (self.dag._group_stack[-1] if self.dag is not None else None)
        self.task_id = self.task_group.child_id(task_id) if self.task_group is not None else task_id
        check_id(self.task_id, "task id")
        self._def_file, self._def_line = caller_line()
        self.retries = _check_int(retries, "retries", 0, self.task_id)
        self.retry_delay = retry_delay
        duration_seconds(retry_delay, f"task `{self.task_id}`: retry_delay")
        self.retry_exponential_backoff = retry_exponential_backoff
        self.max_retry_delay = max_retry_delay
        duration_seconds(max_retry_delay, f"task `{self.task_id}`: max_retry_delay")
        self.execution_timeout = execution_timeout
        duration_seconds(execution_timeout, f"task `{self.task_id}`: execution_timeout")
        self.pool = pool
        self.pool_slots = _check_int(pool_slots, "pool_slots", 1, self.task_id)
        self.priority_weight = _check_int(priority_weight, "priority_weight", None, self.task_id)
        weight_rule = getattr(weight_rule, "value", weight_rule)
        if weight_rule is not None and weight_rule not in _WEIGHT_RULES:
            raise AirflowException(
                f"task `{self.task_id}`: unknown weight rule {weight_rule!r}; valid weight rules: {', '.join(_WEIGHT_RULES)}"
            )
        self.weight_rule = weight_rule
        self._explicit_trigger_rule = trigger_rule is not None
        self.trigger_rule = check_trigger_rule(trigger_rule or TriggerRule.ALL_SUCCESS, self.task_id)
        self.max_active_tis_per_dag = _check_int(max_active_tis_per_dag, "max_active_tis_per_dag", 1, self.task_id)
        self.start_date = task_date(start_date, f"task `{self.task_id}`: start_date")
        self.end_date = task_date(end_date, f"task `{self.task_id}`: end_date")
        self.resources = _check_resources(resources, self.task_id)
        self.executor = placement.check_executor(executor, self.task_id)
        self.image = placement.check_image(image, self.task_id)
        self.spot = placement.check_spot(spot, self.task_id)
        self.pod_override = placement.check_pod_override(pod_override, self.task_id)
        self.env = env
        self.doc = next((d for d in (doc, doc_md, doc_rst, doc_json, doc_yaml) if d), None)
        self.doc_md = doc_md
        self.do_xcom_push = bool(do_xcom_push)
        self.multiple_outputs = bool(multiple_outputs)
        self.inlets = list(inlets) if isinstance(inlets, (list, tuple)) else ([inlets] if inlets else [])
        self.outlets = list(outlets) if isinstance(outlets, (list, tuple)) else ([outlets] if outlets else [])
        self.is_setup = False
        self.is_teardown = False
        self.on_failure_fail_dagrun = False
        self._setups: list[BaseOperator] = []
        #: ``None``, ``("expand", {name: list | XComArg})`` or ``("expand_kwargs", list | XComArg)``.
        self.expand_input: Any = None
        if self.dag is not None:
            self.dag.add_task(self)
            self.task_group.add(self)

    # -- dependencies -----------------------------------------------------------
    def _dep_nodes(self) -> list[Any]:
        return [self]

    def _dep_dag(self) -> Any:
        return self.dag

    def _wire_xcom_args(self) -> None:
        """Make the producers of XComArgs in template fields upstream of this task."""
        for ref in self._referenced_xcom_args():
            if ref.operator is not self and self.dag is not None:
                self.dag._add_edge(ref.operator, self)

    def _referenced_xcom_args(self) -> list[XComArg]:
        out: list[XComArg] = []
        for name in self.template_fields:
            out.extend(iter_xcom_args(getattr(self, name, None)))
        if self.expand_input is not None:
            out.extend(iter_xcom_args(self.expand_input[1]))
        return out

    @property
    def upstream_task_ids(self) -> set[str]:
        if self.dag is None:
            return set()
        return {u.task_id for u, d in self.dag._edges if d is self and isinstance(u, BaseOperator)}

    @property
    def downstream_task_ids(self) -> set[str]:
        if self.dag is None:
            return set()
        return {d.task_id for u, d in self.dag._edges if u is self and isinstance(d, BaseOperator)}

    @property
    def output(self) -> XComArg:
        """This task's return value, as an XComArg."""
        return XComArg(self)

    @property
    def roots(self) -> list["BaseOperator"]:
        return [self]

    @property
    def leaves(self) -> list["BaseOperator"]:
        return [self]

    @property
    def is_mapped(self) -> bool:
        return self.expand_input is not None

    # -- setup and teardown -----------------------------------------------------
    def as_setup(self) -> "BaseOperator":
        """Mark this task as a setup task."""
        if self.is_teardown:
            raise AirflowException(f"task `{self.task_id}` cannot be both a setup and a teardown")
        self.is_setup = True
        return self

    def as_teardown(self, *, setups: Any = None, on_failure_fail_dagrun: bool | None = None) -> "BaseOperator":
        """Mark this task as a teardown (of ``setups``, which become setups upstream of it)."""
        if self.is_setup:
            raise AirflowException(f"task `{self.task_id}` cannot be both a setup and a teardown")
        if self._explicit_trigger_rule and self.trigger_rule != TriggerRule.ALL_DONE_SETUP_SUCCESS.value:
            raise AirflowException(
                f"task `{self.task_id}`: setting trigger rule {self.trigger_rule!r} on a teardown task is not supported"
            )
        self.is_teardown = True
        self.trigger_rule = TriggerRule.ALL_DONE_SETUP_SUCCESS.value
        if on_failure_fail_dagrun is not None:
            self.on_failure_fail_dagrun = bool(on_failure_fail_dagrun)
        if setups is not None:
            items = setups if isinstance(setups, (list, tuple)) else [setups]
            for s in items:
                op = s.operator if isinstance(s, XComArg) else s
                if not isinstance(op, BaseOperator):
                    raise TypeError(f"as_teardown(setups=...) takes tasks, got {s!r}")
                op.as_setup()
                op.set_downstream(self)
                if op not in self._setups:
                    self._setups.append(op)
        return self

    # -- mapping -----------------------------------------------------------------
    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """``Operator.partial(task_id=..., ...)``: the fixed arguments of a mapped task."""
        from .mapped import OperatorPartial

        return OperatorPartial(cls, kwargs)

    # -- the runtime's side -----------------------------------------------------
    def execute(self, context: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement execute()")

    def prepare_for_execution(self, context: Any, render: Callable[[str], Any], mapped_args: dict[str, Any],
                              *, in_place: bool = False) -> "BaseOperator":
        """A copy of this task with XComArgs pulled, templates rendered and
        this map index's arguments applied (Airflow's unmapping + rendering).
        ``in_place``: this task itself, for a process that runs one attempt
        and exits (copying it would write to, and so copy, the pages of
        every attribute's value in a forked task)."""
        op = self if in_place else copy.copy(self)
        for name, value in mapped_args.items():
            setattr(op, name, value)
        for name in self.template_fields:
            value = getattr(op, name, None)
            if name in mapped_args and not self._mapped_is_literal(name):
                continue  # values pulled from XComs are not templates
            setattr(op, name, resolve_value(value, context, render))
        return op

    def _mapped_is_literal(self, name: str) -> bool:
        """Whether the mapped argument ``name`` came from a literal list
        (rendered as a template, as Airflow does) rather than an XCom."""
        if not self.expand_input:
            return False
        kind, value = self.expand_input
        if kind == "expand":
            return name in value and not isinstance(value[name], XComArg)
        return not isinstance(value, XComArg)

    # -- the spec ---------------------------------------------------------------
    def _spec_kind(self) -> dict[str, Any]:
        """What the task runs: ``command``, ``python`` or ``empty`` (and their options)."""
        return {"python": f"{type(self).__qualname__}.execute"}

    def _spec_args(self) -> dict[str, Any]:
        """The spec's ``args``: JSON literals and top-level XCom references."""
        return {}

    def __repr__(self) -> str:
        return f"<Task({type(self).__name__}): {self.task_id}>"

    def __deepcopy__(self, memo: Any) -> "BaseOperator":
        return copy.copy(self)


BaseOperator.__init__ = _apply_defaults(BaseOperator.__init__)  # type: ignore[method-assign]


def _check_int(value: Any, name: str, minimum: int | None, task_id: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PaveSpecError(f"task `{task_id}`: `{name}` must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise PaveSpecError(f"task `{task_id}`: `{name}` must be >= {minimum}, got {value!r}")
    return value


def _check_resources(resources: Any, task_id: str) -> dict[str, Any] | None:
    """``{cpu, memory, gpu}``; Airflow's ``cpus``, ``ram`` (MiB) and ``gpus`` are translated."""
    if resources is None:
        return None
    if not isinstance(resources, dict):
        raise PaveSpecError(f"task `{task_id}`: `resources` must be a dict like {{'cpu': 2, 'memory': '8Gi', 'gpu': 1}}")
    out: dict[str, Any] = {}
    for key, value in resources.items():
        if key in ("cpu", "cpus"):
            out["cpu"] = value
        elif key == "memory":
            out["memory"] = value
        elif key == "ram":
            out["memory"] = f"{value}Mi" if isinstance(value, int) else value
        elif key in ("gpu", "gpus"):
            out["gpu"] = value
        elif key in ("gpu_type", "mig"):
            out[key] = value
        elif key == "disk" and not value:
            continue
        else:
            raise unsupported(f"the resource '{key}' (pave knows cpu, memory, gpu, gpu_type and mig)")
    placement.check_gpu_resources(out, task_id)
    return out


