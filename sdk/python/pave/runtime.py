"""``python -m pave.runtime``: run one attempt of a Python task.

Reads its identity from the environment (``PAVE_API_URL``,
``PAVE_TASK_TOKEN``, ``PAVE_DAG_FILE``, ``PAVE_DAG_ID``, ``PAVE_TASK_ID``,
...), imports the DAG file like the parser does, gets its context from the
task execution API, pulls XComArgs, renders templated arguments through
``POST /render``, runs ``execute(context)`` and pushes the return value.

Exit status (docs/execution-api.md): 0 success, 99 skipped
(AirflowSkipException), 98 failed without retry (AirflowFailException),
1 any other failure (the traceback goes to stderr, i.e. the task's log).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time

from ._util import type_name
from .api_client import ApiError, ExecutionApi
from .context import Context, set_current_context
from .exceptions import AirflowException, AirflowFailException, AirflowSkipException
from .serde import XComSerdeError, deserialize, serialize

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


EXIT_SUCCESS = 0
EXIT_FAILED = 1
EXIT_FAIL_NO_RETRY = 98
EXIT_SKIPPED = 99


def make_renderer(api: ExecutionApi) -> Any:
    """A function rendering a Jinja template with the attempt's context (``POST /render``)."""

    def render(template: str) -> Any:
        try:
            return api.render(template)
        except ApiError as e:
            if e.status == 422:
                raise AirflowException(f"cannot render the template {template!r}: {e.message}") from None
            raise

    return render


def parse_date(text: Any) -> _dt.datetime | None:
    if not text:
        return None
    text = str(text)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return _dt.datetime.fromisoformat(text)


class DagRunInfo:
    """``context["dag_run"]``: the run's identity, dates and ``conf``."""

    def __init__(self, ctx: dict[str, Any]) -> None:
        self.dag_id = ctx["dag_id"]
        self.run_id = ctx["run_id"]
        self.conf = ctx.get("conf") or {}
        self.logical_date = parse_date(ctx.get("logical_date"))
        self.data_interval_start = parse_date(ctx.get("data_interval_start"))
        self.data_interval_end = parse_date(ctx.get("data_interval_end"))
        self.run_after = parse_date(ctx.get("run_after"))
        prefix = self.run_id.split("__", 1)[0]
        self.run_type = prefix if prefix in ("manual", "scheduled", "backfill", "asset_triggered") else "manual"

    def __repr__(self) -> str:
        return f"<DagRun {self.dag_id} @ {self.run_id}>"


class RuntimeTaskInstance:
    """``context["ti"]``: this attempt, with XCom push/pull over the API."""

    def __init__(self, api: ExecutionApi, ctx: dict[str, Any], task: Any, dag: Any = None) -> None:
        self._api = api
        self._dag = dag
        self._uses: dict[str, tuple[str, str]] | None = None
        self.dag_id: str = ctx["dag_id"]
        self.run_id: str = ctx["run_id"]
        self.task_id: str = ctx["task_id"]
        self.map_index: int = ctx.get("map_index", -1)
        self.try_number: int = ctx.get("try_number", 1)
        self.task = task
        self.logical_date = parse_date(ctx.get("logical_date"))
        self._hostname: str | None = None

    def __repr__(self) -> str:
        return f"<TaskInstance {self.dag_id}.{self.task_id} {self.run_id} map_index={self.map_index}>"

    @property
    def hostname(self) -> str:
        """The machine's name, read when first asked (few tasks ask)."""
        if self._hostname is None:
            self._hostname = os.uname().nodename if hasattr(os, "uname") else ""
        return self._hostname

    @hostname.setter
    def hostname(self, value: str) -> None:
        self._hostname = value

    def xcom_push(self, key: str, value: Any) -> None:
        """Store an XCom of this task instance (Airflow's serde: JSON values, datetimes, tuples, ...)."""
        self._push(key, value, f"task `{self.task_id}`: XCom `{key}` is")

    def _push(self, key: str, value: Any, what: str) -> None:
        self._put(key, self._encode(key, value, what))

    def _encode(self, key: str, value: Any, what: str) -> Any:
        """``value`` as the XCom ``key`` stores it; ``what`` starts the error."""
        try:
            return encode_xcom(value, self.task_id, key, self._mapping_uses().get(key),
                               mapped=self.map_index is not None and self.map_index >= 0)
        except XComSerdeError as e:
            inner = f"a {type_name(value)} containing {e.what}" if e.nested else e.what
            raise TypeError(f"{what} {inner}, which cannot be stored as an XCom"
                            + (f"; {e.hint}" if e.hint else "")) from None

    def _put(self, key: str, encoded: Any) -> None:
        try:
            # The API reads while the attempt is still `queued` (its start
            # not yet committed) but writes only once it is `running`.
            wait_while_starting(lambda: self._api.put_xcom(key, encoded), str(self.try_number))
        except ApiError as e:
            if e.status == 413:
                raise AirflowException(f"task `{self.task_id}`: XCom `{key}` is too large: {e.message}") from None
            raise

    def _mapping_uses(self) -> dict[str, tuple[str, str]]:
        if self._uses is None:
            self._uses = mapping_uses(self._dag, self.task_id)
        return self._uses

    def _pull_one(self, task_id: str, key: str, map_index: int | None) -> tuple[bool, Any]:
        found, value = self._api.get_xcom(task_id, key, map_index)
        return found, (decode_xcom(value, f"the XCom `{key}` of task `{task_id}`") if found else None)

    def xcom_pull(self, task_ids: Any = None, dag_id: str | None = None, key: str = "return_value",
                  include_prior_dates: bool = False, *, map_indexes: Any = None, default: Any = None,
                  run_id: str | None = None, map_index: Any = None) -> Any:
        """Airflow's ``xcom_pull`` within this run: one task id gives its value
        (a mapped task's: the list of its instances' values); a list of ids, a list."""
        if dag_id not in (None, self.dag_id):
            raise AirflowException("pave's xcom_pull reads only the current DAG's XComs (dag_id)")
        if run_id not in (None, self.run_id):
            raise AirflowException("pave's xcom_pull reads only the current run's XComs (run_id)")
        if include_prior_dates:
            raise AirflowException("pave's xcom_pull does not support include_prior_dates=True")
        if map_indexes is None:
            map_indexes = map_index
        single_task = task_ids is None or isinstance(task_ids, str)
        ids = [self.task_id] if task_ids is None else ([task_ids] if isinstance(task_ids, str) else list(task_ids))
        single_index = map_indexes is None or isinstance(map_indexes, int)
        indexes = [map_indexes] if single_index else list(map_indexes)
        values = []
        for tid in ids:
            for idx in indexes:
                found, value = self._pull_one(tid, key, idx)
                values.append(value if found else default)
        if single_task and single_index:
            return values[0]
        return values

    def get_template_context(self) -> Context:
        from .context import get_current_context

        return get_current_context()


def build_context(ctx: dict[str, Any], dag: Any, task: Any, api: ExecutionApi) -> Context:
    """The Airflow-style context dict of this attempt."""
    ti = RuntimeTaskInstance(api, ctx, task, dag)
    context = Context(
        dag=dag, dag_run=DagRunInfo(ctx), run_id=ctx["run_id"], task=task, ti=ti, task_instance=ti,
        params=dict(ctx.get("params") or {}), run_after=parse_date(ctx.get("run_after")),
        inlets=list(getattr(task, "inlets", [])), outlets=list(getattr(task, "outlets", [])),
        map_index_template=None, templates_dict=None, macros=_macros(),
        task_reschedule_count=0, partition_key=None, partition_date=None,
    )
    logical = parse_date(ctx.get("logical_date"))
    if logical is not None:
        context["logical_date"] = logical
        context["ds"] = ctx.get("ds") or logical.strftime("%Y-%m-%d")
        context["ds_nodash"] = ctx.get("ds_nodash") or context["ds"].replace("-", "")
        context["ts"] = ctx.get("ts") or logical.isoformat()
        context["ts_nodash"] = logical.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        context["ts_nodash_with_tz"] = context["ts"].replace("-", "").replace(":", "")
        context["task_instance_key_str"] = f"{ctx['dag_id']}__{ctx['task_id']}__{context['ds_nodash']}"
    for name in ("data_interval_start", "data_interval_end"):
        value = parse_date(ctx.get(name))
        if value is not None:
            context[name] = value
    return context


_MACROS: Any = None


def _macros() -> Any:
    """``pave.macros``, imported on first use and kept: a forked task would
    otherwise run importlib's ``from . import`` machinery for a module its
    zygote has loaded (each object that touches is a page it copies)."""
    global _MACROS
    if _MACROS is None:
        from . import macros

        _MACROS = macros
    return _MACROS


#: Set (to a dict) in a child of the pre-forked interpreter whose attempt
#: the zygote supervises (``pave.zygote.Child``): the return value (and
#: with ``multiple_outputs`` each key of it) then goes, as JSON text, with
#: the attempt's end (its result file) instead of through the execution
#: API, and the scheduler stores it with the end, in one transaction.
#: Nothing runs in the task's process after the push (pave refuses
#: callbacks), so nothing there can tell the difference. ``None``: pushed
#: through the API.
deferred_xcoms: dict[str, str] | None = None
#: The most bytes of JSON (the return value, with ``multiple_outputs`` each
#: key of it too) that go with the end: the word to the zygote then fits in
#: a pipe's buffer. More is pushed.
DEFERRED_XCOM_MAX = 60_000


def push_result(op: Any, ti: RuntimeTaskInstance, result: Any) -> None:
    """Push the return value (and each key with ``multiple_outputs``).

    Values are stored in Airflow's serde format (``pave.serde``), except
    where pave's scheduler reads the value itself: a branch's decision is a
    task id or a plain list of them, a short circuit's value keeps Python's
    truthiness (``False`` is pushed when the encoded value would read
    otherwise, e.g. an empty set), and an XCom that a mapped task expands
    over stays a plain JSON list or dict at its top level (see
    ``encode_xcom``). A supervised child of the pre-forked interpreter
    keeps them for its end instead (``deferred_xcoms``)."""
    is_branch = getattr(op, "_is_branch", False)
    is_short = getattr(op, "_is_short_circuit", False)
    if is_branch:
        result = _check_branch(op, result)
    elif is_short and result is None:
        result = False  # a falsy decision pave can read (Airflow skips on None too)
    if not (op.do_xcom_push or is_branch or is_short) or result is None:
        return
    what = f"task `{op.task_id}` returned"
    if getattr(op, "multiple_outputs", False):
        if not isinstance(result, dict) or not all(isinstance(k, str) for k in result):
            raise TypeError(
                f"task `{op.task_id}` has multiple_outputs=True, so it must return a dict with string keys, "
                f"got {type_name(result)}"
            )
    try:  # before anything is pushed
        encoded = encode_xcom(result, op.task_id, "return_value", ti._mapping_uses().get("return_value"),
                              mapped=ti.map_index is not None and ti.map_index >= 0)
    except XComSerdeError as e:
        inner = f"a {type_name(result)} containing {e.what}" if e.nested else e.what
        raise TypeError(f"{what} {inner}, which cannot be stored as an XCom" + (f"; {e.hint}" if e.hint else "")) from None
    if is_short and _json_truthy(encoded) != bool(result):
        encoded = bool(result)  # the scheduler reads the decision from this value's JSON truthiness
    pushes = []
    if getattr(op, "multiple_outputs", False):
        pushes = [(key, ti._encode(key, value, f"{what} a dict whose key `{key}` is"))
                  for key, value in result.items()]
    pushes.append(("return_value", encoded))
    if deferred_xcoms is not None:
        # JSON is ASCII here: as many bytes as characters.
        texts = [(key, json.dumps(value, allow_nan=False)) for key, value in pushes]
        if sum(len(json.dumps(key)) + len(text) + 2 for key, text in texts) <= DEFERRED_XCOM_MAX:
            deferred_xcoms.update(texts)
            return
    for key, value in pushes:
        ti._put(key, value)


def _json_truthy(value: Any) -> bool:
    """Python truthiness of a JSON value, as pave's scheduler reads a short circuit's XCom."""
    return bool(value)


def mapping_uses(dag: Any, task_id: str) -> dict[str, tuple[str, str]]:
    """The XCom keys of ``task_id`` that a mapped task expands over:
    ``{key: ("expand" or "expand_kwargs", consuming task id)}``."""
    from .xcom_arg import XComArg

    uses: dict[str, tuple[str, str]] = {}
    for t in (getattr(dag, "task_dict", None) or {}).values():
        expand_input = getattr(t, "expand_input", None)
        if not expand_input:
            continue
        kind, value = expand_input
        sources = list(value.values()) if kind == "expand" else [value]
        for src in sources:
            if isinstance(src, XComArg) and src.operator.task_id == task_id:
                if uses.get(src.key, ("",))[0] != "expand_kwargs":
                    uses[src.key] = (kind, t.task_id)
    return uses


def encode_xcom(value: Any, task_id: str, key: str, use: tuple[str, str] | None, *, mapped: bool) -> Any:
    """``value`` as the JSON pave stores for an XCom (``pave.serde``).

    pave's scheduler reads an XCom that a mapped task expands over as a
    plain JSON list (or dict) to count and hand out its elements, so such a
    value is encoded element by element and a top-level tuple stays a list;
    the mapped instances receive the elements exactly as in Airflow (which
    maps over a returned tuple too). Like Airflow, a value that is not a
    list, tuple or dict fails the task (``unmappable return type``)."""
    if use is None or (mapped and use[0] == "expand"):
        return serialize(value)
    kind, consumer = use
    if mapped:  # one element of an expand_kwargs source: a dict of arguments
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, dict) and kind == "expand":
        return serialize(value)
    else:
        raise XComSerdeError(
            f"a {type_name(value)} (unmappable return type {type(value).__qualname__!r})",
            f"the mapped task `{consumer}` expands over it ({kind}), so it must be a list, tuple"
            f"{' or dict' if kind == 'expand' else ' of dicts'}",
        )
    out = [serialize(v, f"[{i}]") for i, v in enumerate(items)]
    if kind == "expand_kwargs":
        for i, (raw, enc) in enumerate(zip(items, out)):
            if not isinstance(raw, dict):
                raise XComSerdeError(
                    f"a {type_name(raw)} at [{i}]" if not mapped else f"a {type_name(raw)}",
                    f"the mapped task `{consumer}` takes its arguments from it (expand_kwargs), "
                    "so each element must be a dict", not mapped,
                )
    return out[0] if mapped else out


def decode_xcom(value: Any, what: str) -> Any:
    """A pulled XCom value with serde envelopes turned back into objects."""
    try:
        return deserialize(value)
    except (ImportError, TypeError, ValueError) as e:
        try:
            wrapped = type(e)(f"cannot read {what}: {e}")
        except Exception:
            raise e from None
        raise wrapped from e


def _check_branch(op: Any, result: Any) -> Any:
    if result is None:
        return []
    if isinstance(result, str):
        return result
    if isinstance(result, (list, tuple, set)) and all(isinstance(r, str) for r in result):
        return list(result)
    raise AirflowException(
        f"branch task `{op.task_id}` must return a task id, a list of task ids or None, got {type_name(result)}"
    )


#: Longest wait for the scheduler to record that this attempt started.
START_WAIT = 10.0


def get_context_once_started(api: ExecutionApi, try_number: str, wait: float = START_WAIT) -> dict[str, Any]:
    """``GET /ti/context``, waiting while the scheduler has not recorded the
    start of this attempt yet (see ``wait_while_starting``; pave's API
    answers reads of a starting attempt, so this waits only with an older
    server)."""
    return wait_while_starting(api.get_context, try_number, wait)


def wait_while_starting(call: Any, try_number: str, wait: float = START_WAIT) -> Any:
    """``call()``, retried while the API answers 409 with ``state queued,
    try N`` for this attempt's own try. pave's API serves reads and writes
    of an attempt still recorded as queued in its try (the scheduler writes
    ``running`` a little after the start); older servers refused writes
    (XCom pushes) until that commit landed, which this waits out. Any other
    409 (the attempt was cleared, fenced or ended) is final; an attempt
    never goes back to queued."""
    delay, deadline = 0.002, time.monotonic() + wait
    while True:
        try:
            return call()
        except ApiError as e:
            starting = e.status == 409 and f"(state queued, try {try_number})" in e.message
            if not starting or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


#: The attempt's context as the scheduler sends it (what ``GET /ti/context``
#: answers), so that the task need not ask; absent when it was too large.
CONTEXT_ENV = "PAVE_TASK_CONTEXT"


#: The variables ``run`` reads.
RUN_VARS = ("PAVE_API_URL", "PAVE_TASK_TOKEN", "PAVE_DAG_FILE", "PAVE_DAG_ID", "PAVE_TASK_ID", "PAVE_TRY_NUMBER",
            CONTEXT_ENV)


def given_context(env: dict[str, str], from_environ: bool = True) -> dict[str, Any] | None:
    """The context in ``PAVE_TASK_CONTEXT``, if the scheduler sent one (a
    malformed one is ignored: the API is asked instead). ``from_environ``:
    ``env`` was read from ``os.environ``, which the context is then taken
    out of, so that the task's own subprocesses do not inherit it (a caller
    that passes the attempt's variables keeps it out of ``os.environ``)."""
    raw = env.get(CONTEXT_ENV)
    if from_environ:
        os.environ.pop(CONTEXT_ENV, None)
    if not raw:
        return None
    try:
        ctx = _decode_json(raw)
    except ValueError:
        return None
    return ctx if isinstance(ctx, dict) else None


#: What ``json.loads`` of a ``str`` comes down to, called directly: a forked
#: task then touches (and so copies) fewer of its zygote's objects.
_decode_json = json.JSONDecoder().decode


def run(env: dict[str, str] | None = None, dags: list[Any] | None = None, *, disposable: bool = False) -> int:
    """Run the attempt described by ``env`` (default: ``os.environ``, which
    the context is then taken out of; a caller that passes ``env`` keeps it
    out of ``os.environ`` itself); the exit status.

    ``dags`` are the DAGs of ``PAVE_DAG_FILE`` when this process imported it
    already: a child of the pre-forked interpreter (``pave.zygote``) passes
    them, so the file is not imported twice. ``None`` imports the file here.
    ``disposable``: nothing uses ``dags`` after this attempt (the process
    exits), so the task runs as it is instead of as a copy; DAGs this call
    imported itself are used by nothing else either."""
    source = os.environ if env is None else env
    # Only what the runtime reads: copying all of os.environ decodes every
    # variable (new objects a forked task would allocate for nothing).
    env = {name: source.get(name) or "" for name in RUN_VARS}
    missing = [k for k in ("PAVE_API_URL", "PAVE_TASK_TOKEN", "PAVE_DAG_FILE", "PAVE_DAG_ID", "PAVE_TASK_ID") if not env.get(k)]
    if missing:
        print(f"pave.runtime: missing environment variables: {', '.join(missing)}", file=sys.stderr)
        return EXIT_FAILED
    api = ExecutionApi(env["PAVE_API_URL"], env["PAVE_TASK_TOKEN"])
    task_id = env["PAVE_TASK_ID"]
    try:
        if dags is None:
            from .loader import load_dag_file

            _, dags = load_dag_file(env["PAVE_DAG_FILE"])
        dag = next((d for d in dags if d.dag_id == env["PAVE_DAG_ID"]), None)
        if dag is None:
            raise AirflowException(f"DAG file {env['PAVE_DAG_FILE']} does not define DAG `{env['PAVE_DAG_ID']}`")
        if task_id not in dag.task_dict:
            raise AirflowException(f"DAG `{dag.dag_id}` has no task `{task_id}`")
        task = dag.task_dict[task_id]
        ctx = given_context(env, from_environ=source is os.environ) or get_context_once_started(api, env.get("PAVE_TRY_NUMBER", ""))
        context = build_context(ctx, dag, task, api)
        render = make_renderer(api)
        mapped_args = dict(ctx.get("mapped_args") or {})
        for name in mapped_args:
            if not task._mapped_is_literal(name):  # values from XComs, in Airflow's serde format
                mapped_args[name] = decode_xcom(mapped_args[name], f"the mapped argument `{name}`")
        with set_current_context(context, render):
            op = task.prepare_for_execution(context, render, mapped_args, in_place=disposable or dags is None)
            context["task"] = op
            context["ti"].task = op
            result = op.execute(context)
            push_result(op, context["ti"], result)
    except AirflowSkipException as e:
        print(f"Task `{task_id}` skipped: {e}" if str(e) else f"Task `{task_id}` skipped", file=sys.stderr)
        return EXIT_SKIPPED
    except AirflowFailException:
        import traceback  # only when a task fails: most tasks never need it

        traceback.print_exc()
        print(f"Task `{task_id}` failed without retry (AirflowFailException)", file=sys.stderr)
        return EXIT_FAIL_NO_RETRY
    except Exception:
        import traceback  # only when a task fails: most tasks never need it

        traceback.print_exc()
        return EXIT_FAILED
    finally:
        api.close()
        sys.stdout.flush()
    return EXIT_SUCCESS


def main() -> int:
    """``python -m pave.runtime``: run the attempt described by the environment."""
    return run()


if __name__ == "__main__":
    sys.exit(main())
