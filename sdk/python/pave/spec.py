"""Serialization of DAG objects into the JSON spec v1 (docs/dag-spec.md).

``to_spec_document(dags)`` gives ``{"spec_version": 1, "dags": [...]}``.
Only fields that were set are written (the Rust side fills Airflow's
defaults); dependencies are written as declared, with group ids where a
group was on one side of ``>>`` (pave expands them to roots and leaves).
Before writing, the task-level graph is checked for cycles so that a cyclic
DAG file fails in ``pave.parse`` with the cycle printed (``a -> b -> a``).
"""

from __future__ import annotations


from ._util import date_text, duration_seconds, json_problem
from .baseoperator import BaseOperator
from .exceptions import AirflowDagCycleException, AirflowDagDuplicatedIdException, PaveSpecError
from .mapped import expand_input_spec
from .task_group import TaskGroup
from .trigger_rule import TriggerRule
from .xcom_arg import XComArg

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any, Iterable


SPEC_VERSION = 1


def to_spec_document(dags: Iterable[Any], fileloc: str | None = None) -> dict[str, Any]:
    """The full spec document of ``dags``.

    ``fileloc``: the DAG file that was parsed. It is written as every DAG's
    ``fileloc`` (even for a DAG object built by a helper module), since it
    is the file the runtime must import to find the DAG again.
    """
    out = []
    seen: set[str] = set()
    for dag in dags:
        if dag.dag_id in seen:
            raise AirflowDagDuplicatedIdException(f"DAG id `{dag.dag_id}` is defined twice in this file")
        seen.add(dag.dag_id)
        spec = dag_to_spec(dag)
        if fileloc is not None:
            spec["fileloc"] = fileloc
        out.append(spec)
    return {"spec_version": SPEC_VERSION, "dags": out}


def dag_to_spec(dag: Any) -> dict[str, Any]:
    """One DAG's spec mapping."""
    check_cycles(dag)
    d: dict[str, Any] = {"dag_id": dag.dag_id}
    description = dag.description or dag.doc_md
    if description:
        d["description"] = description
    if dag.tags:
        d["tags"] = [str(t) for t in dag.tags]
    d["schedule"] = dag._spec_schedule
    if dag.timezone and dag.timezone != "UTC":
        d["timezone"] = dag.timezone
    _put(d, "start_date", date_text(dag.start_date, "start_date"))
    _put(d, "end_date", date_text(dag.end_date, "end_date"))
    d["catchup"] = dag.catchup
    if dag.params:
        d["params"] = dag.params.dump()
        for name, param in d["params"].items():
            problem = json_problem(param)
            if problem:
                raise PaveSpecError(f"DAG `{dag.dag_id}`: param `{name}` is not JSON: {problem}", dag)
    _put(d, "max_active_runs", dag.max_active_runs)
    _put(d, "max_active_tasks", dag.max_active_tasks)
    _put(d, "dagrun_timeout", duration_seconds(dag.dagrun_timeout, "dagrun_timeout"))
    groups = [group_to_spec(g) for g in dag.task_group.iter_groups()]
    if groups:
        d["task_groups"] = groups
    d["tasks"] = [task_to_spec(t) for t in dag.tasks]
    d["fileloc"] = dag.fileloc
    return d


def _node_id(node: Any) -> str:
    return node.group_id if isinstance(node, TaskGroup) else node.task_id


def _upstream_of(node: Any) -> list[str]:
    out: list[str] = []
    for up, down in node.dag._edges:
        if down is node:
            uid = _node_id(up)
            if uid not in out:
                out.append(uid)
    return out


def group_to_spec(group: TaskGroup) -> dict[str, Any]:
    d: dict[str, Any] = {"group_id": group.group_id}
    if group.tooltip:
        d["tooltip"] = group.tooltip
    if group.parent_group is not None and not group.parent_group.is_root:
        d["parent"] = group.parent_group.group_id
    upstream = _upstream_of(group)
    if upstream:
        d["upstream"] = upstream
    return d


def task_to_spec(op: BaseOperator) -> dict[str, Any]:
    """One task's spec mapping."""
    where = f"task `{op.task_id}`"
    d: dict[str, Any] = {"task_id": op.task_id}
    if op.task_group is not None and not op.task_group.is_root:
        d["group"] = op.task_group.group_id
    upstream = _upstream_of(op)
    if upstream:
        d["upstream"] = upstream
    d.update(op._spec_kind())
    for ref in op._referenced_xcom_args():
        if ref.operator.dag is not op.dag:
            raise PaveSpecError(f"{where} uses the XCom of `{ref.operator.task_id}`, which is not in DAG `{op.dag.dag_id}`", op)
    args = op._spec_args()
    if op.expand_input is not None:
        d.update(expand_input_spec(op.expand_input))
        if "expand" in d:
            args = {k: v for k, v in args.items() if k not in d["expand"]}
    if args:
        d["args"] = args
    if op.is_teardown:
        d["trigger_rule"] = TriggerRule.ALL_DONE_SETUP_SUCCESS.value
    elif op.trigger_rule != TriggerRule.ALL_SUCCESS.value:
        d["trigger_rule"] = op.trigger_rule
    _put(d, "retries", op.retries)
    _put(d, "retry_delay", duration_seconds(op.retry_delay, f"{where}: retry_delay"))
    _put(d, "retry_exponential_backoff", op.retry_exponential_backoff)
    _put(d, "max_retry_delay", duration_seconds(op.max_retry_delay, f"{where}: max_retry_delay"))
    _put(d, "execution_timeout", duration_seconds(op.execution_timeout, f"{where}: execution_timeout"))
    _put(d, "start_date", date_text(op.start_date, f"{where}: start_date"))
    _put(d, "end_date", date_text(op.end_date, f"{where}: end_date"))
    _put(d, "priority_weight", op.priority_weight)
    _put(d, "weight_rule", op.weight_rule)
    _put(d, "pool", op.pool)
    _put(d, "pool_slots", op.pool_slots)
    _put(d, "max_active_tis_per_dag", op.max_active_tis_per_dag)
    if op.resources:
        d["resources"] = op.resources
    _put(d, "executor", op.executor)
    _put(d, "image", op.image)
    if op.spot not in (None, "never"):
        d["spot"] = op.spot
    if op.pod_override:
        d["pod_override"] = op.pod_override
    env = _env_spec(op.env, where, op)
    if env:
        d["env"] = env
    if op.is_setup:
        d["setup"] = True
    if op.is_teardown:
        setups = [s.task_id for s in op._setups]
        for up, down in op.dag._edges:
            if down is op and isinstance(up, BaseOperator) and up.is_setup and up.task_id not in setups:
                setups.append(up.task_id)
        d["teardown"] = {"setups": setups, "on_failure_fail_dagrun": op.on_failure_fail_dagrun}
    flow = op._is_branch or op._is_short_circuit
    if not op.do_xcom_push and not flow:
        d["do_xcom_push"] = False
    if op.doc:
        d["doc"] = op.doc
    return d


def _put(d: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        d[key] = value


def _env_spec(env: Any, where: str, op: Any) -> dict[str, Any] | None:
    if not env:
        return None
    if not isinstance(env, dict):
        raise PaveSpecError(f"{where}: `env` must be a dict of strings", op)
    out = {}
    for name, value in env.items():
        if isinstance(value, XComArg):
            raise PaveSpecError(f"{where}: `env.{name}` is an XComArg; pass XCom values as arguments instead", op)
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int, float)):
            raise PaveSpecError(f"{where}: `env.{name}` must be a string, got {type(value).__name__}", op)
        out[str(name)] = value
    return out


# -- cycles ---------------------------------------------------------------------

def task_level_upstream(dag: Any) -> dict[str, list[str]]:
    """task id -> upstream task ids, with group dependencies expanded to
    roots and leaves (iterated until stable, since groups nest)."""
    tasks = dag.tasks
    ups: dict[str, list[str]] = {t.task_id: [] for t in tasks}

    def add(u: str, d: str) -> bool:
        if u not in ups[d]:
            ups[d].append(u)
            return True
        return False

    for _ in range(len(dag.task_group.iter_groups()) + 2):
        changed = False
        for up, down in dag._edges:
            for u in _leaves(up, ups):
                for d in _roots(down, ups):
                    changed |= add(u.task_id, d.task_id)
        if not changed:
            break
    return ups


def _roots(node: Any, ups: dict[str, list[str]]) -> list[Any]:
    if not isinstance(node, TaskGroup):
        return [node]
    members = {t.task_id: t for t in node.iter_tasks()}
    return [t for t in members.values() if not any(u in members for u in ups[t.task_id])]


def _leaves(node: Any, ups: dict[str, list[str]]) -> list[Any]:
    if not isinstance(node, TaskGroup):
        return [node]
    members = {t.task_id: t for t in node.iter_tasks()}
    downs: dict[str, list[str]] = {k: [] for k in members}
    for tid in members:
        for u in ups[tid]:
            if u in downs:
                downs[u].append(tid)
    out: list[Any] = []

    def first_non_teardown(task: Any) -> None:
        for uid in ups[task.task_id]:
            up = members.get(uid)
            if up is None or (task.is_teardown and up.is_setup):
                continue
            if up.is_teardown:
                first_non_teardown(up)
            elif not any(not members[d].is_teardown for d in downs[uid] if d != task.task_id) and up not in out:
                out.append(up)

    for t in members.values():
        if not downs[t.task_id]:
            if t.is_teardown:
                first_non_teardown(t)
            elif t not in out:
                out.append(t)
    return out


def check_cycles(dag: Any) -> None:
    """Raise ``AirflowDagCycleException`` naming the cycle (``a -> b -> a``)."""
    ups = task_level_upstream(dag)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in ups:
        if start in state:
            continue
        path, iters = [start], [iter(ups[start])]
        state[start] = 1
        while path:
            u = next(iters[-1], None)
            if u is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(u) == 1:
                cycle = path[path.index(u):] + [u]
                cycle.reverse()  # upstream -> downstream order
                err = AirflowDagCycleException(
                    f"DAG `{dag.dag_id}` has a dependency cycle: {' -> '.join(cycle)}"
                )
                err.obj = dag.task_dict[cycle[0]]  # type: ignore[attr-defined]
                raise err
            elif u not in state:
                state[u] = 1
                path.append(u)
                iters.append(iter(ups[u]))
