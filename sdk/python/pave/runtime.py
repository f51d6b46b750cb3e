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
import os
import sys
import traceback
from typing import Any

from ._util import json_problem, type_name
from .api_client import ApiError, ExecutionApi
from .context import Context, set_current_context
from .exceptions import AirflowException, AirflowFailException, AirflowSkipException

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

    def __init__(self, api: ExecutionApi, ctx: dict[str, Any], task: Any) -> None:
        self._api = api
        self.dag_id: str = ctx["dag_id"]
        self.run_id: str = ctx["run_id"]
        self.task_id: str = ctx["task_id"]
        self.map_index: int = ctx.get("map_index", -1)
        self.try_number: int = ctx.get("try_number", 1)
        self.task = task
        self.logical_date = parse_date(ctx.get("logical_date"))
        self.hostname = os.uname().nodename if hasattr(os, "uname") else ""

    def __repr__(self) -> str:
        return f"<TaskInstance {self.dag_id}.{self.task_id} {self.run_id} map_index={self.map_index}>"

    def xcom_push(self, key: str, value: Any) -> None:
        """Store an XCom of this task instance (JSON values only)."""
        problem = json_problem(value)
        if problem:
            raise TypeError(
                f"task `{self.task_id}`: XCom `{key}` is {problem}, which is not JSON-serializable; "
                "push plain lists/dicts/numbers/strings or write it to a file and push its path"
            )
        try:
            self._api.put_xcom(key, value)
        except ApiError as e:
            if e.status == 413:
                raise AirflowException(f"task `{self.task_id}`: XCom `{key}` is too large: {e.message}") from None
            raise

    def _pull_one(self, task_id: str, key: str, map_index: int | None) -> tuple[bool, Any]:
        return self._api.get_xcom(task_id, key, map_index)

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
    ti = RuntimeTaskInstance(api, ctx, task)
    context = Context(
        dag=dag, dag_run=DagRunInfo(ctx), run_id=ctx["run_id"], task=task, ti=ti, task_instance=ti,
        params=dict(ctx.get("params") or {}), run_after=parse_date(ctx.get("run_after")),
        inlets=list(getattr(task, "inlets", [])), outlets=list(getattr(task, "outlets", [])),
        map_index_template=None, templates_dict=None,
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


def push_result(op: Any, ti: RuntimeTaskInstance, result: Any) -> None:
    """Push the return value (and each key with ``multiple_outputs``)."""
    is_flow = getattr(op, "_is_branch", False) or getattr(op, "_is_short_circuit", False)
    if getattr(op, "_is_branch", False):
        result = _check_branch(op, result)
    elif getattr(op, "_is_short_circuit", False) and result is None:
        result = False  # a falsy decision pave can read (Airflow skips on None too)
    if not (op.do_xcom_push or is_flow) or result is None:
        return
    problem = json_problem(result)
    if problem:
        what = f"a {type_name(result)} containing {problem}" if isinstance(result, (dict, list, tuple)) else problem
        raise TypeError(
            f"task `{op.task_id}` returned {what}, which is not JSON-serializable; return plain "
            "lists/dicts/numbers/strings or write it to a file and return its path"
        )
    if getattr(op, "multiple_outputs", False):
        if not isinstance(result, dict) or not all(isinstance(k, str) for k in result):
            raise TypeError(
                f"task `{op.task_id}` has multiple_outputs=True, so it must return a dict with string keys, "
                f"got {type_name(result)}"
            )
        for key, value in result.items():
            ti.xcom_push(key, value)
    ti.xcom_push("return_value", result)


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


def run(env: dict[str, str] | None = None) -> int:
    """Run the attempt described by ``env`` (default: ``os.environ``); the exit status."""
    env = dict(os.environ if env is None else env)
    missing = [k for k in ("PAVE_API_URL", "PAVE_TASK_TOKEN", "PAVE_DAG_FILE", "PAVE_DAG_ID", "PAVE_TASK_ID") if not env.get(k)]
    if missing:
        print(f"pave.runtime: missing environment variables: {', '.join(missing)}", file=sys.stderr)
        return EXIT_FAILED
    api = ExecutionApi(env["PAVE_API_URL"], env["PAVE_TASK_TOKEN"])
    task_id = env["PAVE_TASK_ID"]
    try:
        from .loader import load_dag_file

        _, dags = load_dag_file(env["PAVE_DAG_FILE"])
        dag = next((d for d in dags if d.dag_id == env["PAVE_DAG_ID"]), None)
        if dag is None:
            raise AirflowException(f"DAG file {env['PAVE_DAG_FILE']} does not define DAG `{env['PAVE_DAG_ID']}`")
        if task_id not in dag.task_dict:
            raise AirflowException(f"DAG `{dag.dag_id}` has no task `{task_id}`")
        task = dag.task_dict[task_id]
        ctx = api.get_context()
        context = build_context(ctx, dag, task, api)
        render = make_renderer(api)
        with set_current_context(context, render):
            op = task.prepare_for_execution(context, render, dict(ctx.get("mapped_args") or {}))
            context["task"] = op
            context["ti"].task = op
            result = op.execute(context)
            push_result(op, context["ti"], result)
    except AirflowSkipException as e:
        print(f"Task `{task_id}` skipped: {e}" if str(e) else f"Task `{task_id}` skipped", file=sys.stderr)
        return EXIT_SKIPPED
    except AirflowFailException:
        traceback.print_exc()
        print(f"Task `{task_id}` failed without retry (AirflowFailException)", file=sys.stderr)
        return EXIT_FAIL_NO_RETRY
    except Exception:
        traceback.print_exc()
        return EXIT_FAILED
    finally:
        sys.stdout.flush()
    return EXIT_SUCCESS


def main() -> int:
    return run()


if __name__ == "__main__":
    sys.exit(main())
