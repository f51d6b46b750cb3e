"""``python -m pave.runtime`` against a fake task execution API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest
from typing import Any

from .fake_api import FakeExecutionApi
from .util import TESTS_DIR, sdk_env

DAG_FILE = os.path.join(TESTS_DIR, "runtime_dags", "tasks.py")


class RuntimeResult:
    def __init__(self, proc: subprocess.CompletedProcess, api: FakeExecutionApi) -> None:
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.pushed = api.pushed
        self.rendered = api.rendered
        self.requests = api.requests


def run_task(task_id: str, context: dict[str, Any] | None = None, xcoms: dict | None = None,
             env_extra: dict[str, str] | None = None, **api_kwargs: Any) -> RuntimeResult:
    ctx = {"dag_id": "rt", "task_id": task_id, "params": {"x": 5}}
    ctx.update(context or {})
    with FakeExecutionApi(ctx, xcoms, template_vars={"params": {"x": 5}}, **api_kwargs) as api:
        env = sdk_env(PAVE_API_URL=api.url, PAVE_TASK_TOKEN=api.TOKEN, PAVE_DAG_FILE=DAG_FILE,
                      PAVE_DAG_ID="rt", PAVE_TASK_ID=task_id, PAVE_RUN_ID=ctx.get("run_id", "r"),
                      PAVE_MAP_INDEX=str(ctx.get("map_index", -1)), PAVE_TRY_NUMBER="1", **(env_extra or {}))
        proc = subprocess.run([sys.executable, "-m", "pave.runtime"], capture_output=True, text=True,
                              env=env, timeout=60)
        return RuntimeResult(proc, api)


class RuntimeExitCodesTest(unittest.TestCase):
    def test_success_pushes_the_return_value(self) -> None:
        r = run_task("ret")
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"return_value": {"a": 1}})

    def test_none_is_not_pushed(self) -> None:
        r = run_task("nothing")
        self.assertEqual((r.code, r.pushed), (0, {}))
        self.assertIn("returns None", r.stdout)

    def test_skip_exits_99(self) -> None:
        r = run_task("skip")
        self.assertEqual(r.code, 99, r.stderr)
        self.assertIn("not today", r.stderr)

    def test_fail_without_retry_exits_98(self) -> None:
        r = run_task("fail_fast")
        self.assertEqual(r.code, 98, r.stderr)
        self.assertIn("broken for good", r.stderr)

    def test_failure_exits_1_with_traceback(self) -> None:
        r = run_task("boom")
        self.assertEqual(r.code, 1)
        self.assertIn("Traceback", r.stderr)
        self.assertIn("ValueError: kaboom", r.stderr)

    def test_value_airflow_cannot_serialize_either(self) -> None:
        r = run_task("opaque")
        self.assertEqual(r.code, 1)
        self.assertIn("TypeError: task `opaque` returned a Opaque, which cannot be stored as an XCom; "
                      "Airflow's XCom serde (and pave's) stores JSON values, datetimes", r.stderr)
        self.assertEqual(r.pushed, {})
        r = run_task("time_of_day")
        self.assertEqual(r.code, 1)
        self.assertIn("task `time_of_day` returned a list containing a datetime.time at [0], which cannot be "
                      "stored as an XCom", r.stderr)
        r = run_task("reserved")
        self.assertEqual(r.code, 1)
        self.assertIn("task `reserved` returned a dict with the reserved key '__classname__'", r.stderr)

    def test_too_large_xcom_fails_with_the_api_message(self) -> None:
        r = run_task("big")
        self.assertEqual(r.code, 1)
        self.assertIn("put the data in object storage and pass its URI", r.stderr)

    def test_unknown_task(self) -> None:
        r = run_task("no_such_task")
        self.assertEqual(r.code, 1)
        self.assertIn("has no task `no_such_task`", r.stderr)


DEFERRED_SCRIPT = """
import json
from pave import runtime
runtime.deferred_xcoms = {}
code = runtime.run()
print("DEFERRED " + json.dumps({"code": code, "deferred": runtime.deferred_xcoms}))
"""


def run_deferred(task_id: str) -> tuple[RuntimeResult, dict[str, Any]]:
    """``task_id`` run as a zygote's supervised child runs it: its return
    value kept for the end (``runtime.deferred_xcoms``), not pushed."""
    with FakeExecutionApi({"dag_id": "rt", "task_id": task_id, "params": {"x": 5}}, None,
                          template_vars={"params": {"x": 5}}) as api:
        env = sdk_env(PAVE_API_URL=api.url, PAVE_TASK_TOKEN=api.TOKEN, PAVE_DAG_FILE=DAG_FILE,
                      PAVE_DAG_ID="rt", PAVE_TASK_ID=task_id, PAVE_RUN_ID="r", PAVE_MAP_INDEX="-1",
                      PAVE_TRY_NUMBER="1")
        proc = subprocess.run([sys.executable, "-c", DEFERRED_SCRIPT], capture_output=True, text=True,
                              env=env, timeout=60)
        r = RuntimeResult(proc, api)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("DEFERRED ")), "DEFERRED {}")
    return r, json.loads(line[len("DEFERRED "):])


class DeferredReturnValueTest(unittest.TestCase):
    """A supervised child of the zygote keeps its return value for its end."""

    def test_the_return_value_is_kept_as_json_text_not_pushed(self) -> None:
        r, out = run_deferred("ret")
        self.assertEqual(out, {"code": 0, "deferred": {"return_value": '{"a": 1}'}}, r.stderr)
        self.assertEqual(r.pushed, {}, "pushed through the API as well")
        # In Airflow's serde format, as a push would store it.
        r, out = run_deferred("as_tuple")
        self.assertEqual(json.loads(out["deferred"]["return_value"]),
                         {"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1, "a"]})

    def test_the_keys_of_multiple_outputs_go_with_the_end_too(self) -> None:
        r, out = run_deferred("mo")
        self.assertEqual(out["deferred"], {"k": '"v"', "n": "2", "return_value": '{"k": "v", "n": 2}'},
                         r.stderr)
        self.assertEqual(r.pushed, {})

    def test_large_values_still_go_through_the_api(self) -> None:
        r, out = run_deferred("big")  # over what goes with an end: pushed (and refused here: 413)
        self.assertEqual((out["code"], out["deferred"]), (1, {}))
        self.assertIn("put the data in object storage and pass its URI", r.stderr)

    def test_nothing_is_kept_for_none_or_a_failure(self) -> None:
        for task_id, code in (("nothing", 0), ("boom", 1), ("opaque", 1)):
            with self.subTest(task_id=task_id):
                r, out = run_deferred(task_id)
                self.assertEqual(out, {"code": code, "deferred": {}}, r.stderr)


class RuntimeXComTest(unittest.TestCase):
    xcoms = {
        ("ret", "return_value"): {"a": 1},
        ("ret", "a"): 1,
        ("double", "return_value", 0): 10,
        ("double", "return_value", 1): 20,
        ("mo", "k"): "v",
    }

    def test_xcom_args_and_xcom_pull(self) -> None:
        r = run_task("consume", xcoms=self.xcoms)
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed["return_value"], {
            "value": {"a": 1}, "nested": [1, {"k": {"a": 1}}], "pulled": {"a": 1},
            "mapped_all": [10, 20], "mapped_one": 20, "missing": "dflt", "several": [{"a": 1}, None],
        })

    def test_mapped_args_merge_with_partial_arguments(self) -> None:
        r = run_task("double", {"map_index": 1, "mapped_args": {"x": 2}})
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"return_value": 20})

    def test_expand_kwargs_literal_values_are_rendered(self) -> None:
        r = run_task("add", {"map_index": 1, "mapped_args": {"a": "{{ ds }}", "b": "!"}})
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"return_value": "2025-01-01!"})

    def test_multiple_outputs_pushes_each_key(self) -> None:
        r = run_task("mo")
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"k": "v", "n": 2, "return_value": {"k": "v", "n": 2}})

    def test_multiple_outputs_key_reference(self) -> None:
        r = run_task("use_key", xcoms=self.xcoms)
        self.assertEqual(r.pushed, {"return_value": "v"})

    def test_context_and_xcom_push(self) -> None:
        r = run_task("ctx", {"try_number": 2, "conf": {"c": 1}})
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed["extra"], [1, 2])
        self.assertEqual(r.pushed["return_value"], {
            "ds": "2025-01-01", "ts_nodash": "20250101T000000", "run_id": "manual__2025-01-01T00:00:00+00:00",
            "task_id": "ctx", "try_number": 2, "map_index": -1, "conf": {"c": 1}, "params": {"x": 5},
            "logical_date_type": "datetime", "same_ti": True, "hostname": True, "tomorrow": "2025-01-02",
        })

    def test_a_context_sent_in_the_environment_is_used_without_asking_the_api(self) -> None:
        given = {
            "dag_id": "rt", "run_id": "manual__2025-01-01T00:00:00+00:00", "task_id": "ctx",
            "map_index": -1, "try_number": 3, "logical_date": "2025-01-01T00:00:00+00:00",
            "data_interval_start": "2025-01-01T00:00:00+00:00",
            "data_interval_end": "2025-01-01T00:00:00+00:00", "ds": "2025-01-01",
            "ds_nodash": "20250101", "ts": "2025-01-01T00:00:00+00:00",
            "run_after": "2025-01-01T00:00:00+00:00", "params": {"x": 7}, "conf": {"from": "env"},
            "mapped_args": {},
        }
        r = run_task("ctx", {"try_number": 2, "conf": {"c": 1}},
                     env_extra={"PAVE_TASK_CONTEXT": json.dumps(given)})
        self.assertEqual(r.code, 0, r.stderr)
        out = r.pushed["return_value"]
        self.assertEqual((out["try_number"], out["conf"], out["params"]), (3, {"from": "env"}, {"x": 7}))
        self.assertFalse([p for _, p in r.requests if p.endswith("/ti/context")], r.requests)

    def test_a_malformed_context_in_the_environment_falls_back_to_the_api(self) -> None:
        r = run_task("ctx", {"try_number": 2, "conf": {"c": 1}}, env_extra={"PAVE_TASK_CONTEXT": "{nope"})
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed["return_value"]["try_number"], 2)
        self.assertTrue([p for _, p in r.requests if p.endswith("/ti/context")], r.requests)

    def test_run_without_logical_date(self) -> None:
        r = run_task("no_logical_date", {"logical_date": None, "ds": None, "ds_nodash": None, "ts": None,
                                         "data_interval_start": None, "data_interval_end": None})
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"return_value": []})


def envelope(classname: str, version: int, data: Any) -> dict[str, Any]:
    return {"__classname__": classname, "__version__": version, "__data__": data}


UTC_NOON = envelope("datetime.datetime", 2, {"timestamp": 1735732800.0, "tz": envelope(
    "builtins.tuple", 1, ["UTC", "pendulum.tz.timezone.FixedTimezone", 1, True])})


class RuntimeSerdeTest(unittest.TestCase):
    """Non-JSON XCom values are stored in Airflow's serde format and read back."""

    def test_values_are_pushed_as_airflow_serde_envelopes(self) -> None:
        r = run_task("serde_values")
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"return_value": {
            "at": UTC_NOON,
            "pair": envelope("builtins.tuple", 1, [1, 2]),
            "tags": envelope("builtins.set", 1, ["a"]),
            "day": envelope("datetime.date", 2, "2025-01-02"),
            "wait": envelope("datetime.timedelta", 2, 60.0),
            "price": envelope("decimal.Decimal", 1, 1.5),
        }})
        r = run_task("nested_set")
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"return_value": {"x": envelope("builtins.set", 1, [1, 2])}})
        r = run_task("as_tuple")
        self.assertEqual(r.pushed, {"return_value": envelope("builtins.tuple", 1, [1, "a"])})

    def test_xcom_push_encodes_too(self) -> None:
        r = run_task("serde_push")
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"when": UTC_NOON, "pair": envelope("builtins.tuple", 1, [1, 2])})

    def test_xcom_args_and_xcom_pull_decode(self) -> None:
        values = run_task("serde_values").pushed["return_value"]
        r = run_task("serde_consume", xcoms={("serde_values", "return_value"): values,
                                             ("serde_push", "when"): UTC_NOON})
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed["return_value"], {
            "at": ["datetime", "datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)"],
            "pair": ["tuple", "(1, 2)"], "tags": ["set", "{'a'}"],
            "day": ["date", "datetime.date(2025, 1, 2)"],
            "wait": ["timedelta", "datetime.timedelta(seconds=60)"], "price": ["Decimal", "Decimal('1.5')"],
            "when_pushed": ["datetime", "datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)"],
        })

    def test_own_classes_decode_only_when_allowed_as_in_airflow(self) -> None:
        r = run_task("point")
        self.assertEqual(r.code, 0, r.stderr)
        value = r.pushed["return_value"]
        self.assertRegex(value["__classname__"], r"^unusual_prefix_\w+_tasks\.Point$")
        self.assertEqual((value["__version__"], value["__data__"]), (0, {"x": 1, "y": 2}))
        r = run_task("use_point", xcoms={("point", "return_value"): value})
        self.assertEqual(r.code, 1)
        self.assertIn("cannot read the XCom `return_value` of task `point`: unusual_prefix_", r.stderr)
        self.assertIn("was not found in allow list for deserialization imports", r.stderr)
        r = run_task("use_point", xcoms={("point", "return_value"): value},
                     env_extra={"AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.* unusual_prefix_*"})
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"return_value": ["Point", 3]})

    def test_a_mapping_source_stays_a_plain_list(self) -> None:
        r = run_task("mapping_source")
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"return_value": ["a", envelope("builtins.tuple", 1, [1, 2])]})
        r = run_task("kwargs_source")
        self.assertEqual(r.pushed, {"return_value": [{"x": envelope("builtins.tuple", 1, [1, 2])}]})

    def test_an_unmappable_source_fails_as_in_airflow(self) -> None:
        r = run_task("set_source")
        self.assertEqual(r.code, 1)
        self.assertIn("task `set_source` returned a set (unmappable return type 'set'), which cannot be "
                      "stored as an XCom; the mapped task `each_set` expands over it", r.stderr)

    def test_mapped_arguments_from_xcoms_are_decoded(self) -> None:
        r = run_task("each", {"map_index": 1, "mapped_args": {"x": envelope("builtins.tuple", 1, [1, 2])}})
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"return_value": envelope("builtins.tuple", 1, [1, 2])})

    def test_flow_decisions_stay_readable(self) -> None:
        self.assertEqual(run_task("empty_set_gate").pushed, {"return_value": False})
        self.assertEqual(run_task("datetime_gate").pushed["return_value"]["__classname__"], "datetime.datetime")
        self.assertEqual(run_task("branch_tuple").pushed, {"return_value": ["ret", "nothing"]})


class RuntimeTemplatesTest(unittest.TestCase):
    def test_templates_dict_and_op_kwargs_are_rendered(self) -> None:
        r = run_task("templated")
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"return_value": {"p": "5", "d": "2025-01-01", "ds": "2025-01-01"}})
        self.assertEqual(sorted(r.rendered), ["{{ ds }}", "{{ params.x }}"])

    def test_template_error_fails_the_task(self) -> None:
        r = run_task("bad_template")
        self.assertEqual(r.code, 1)
        self.assertIn("undefined variable 'nope'", r.stderr)

    def test_task_bash_runs_the_returned_command(self) -> None:
        r = run_task("bash_cmd")
        self.assertEqual(r.code, 0, r.stderr)
        self.assertIn("hi 2025-01-01", r.stdout)
        self.assertEqual(r.pushed, {"return_value": "last-2"})

    def test_task_bash_skip_exit_code(self) -> None:
        self.assertEqual(run_task("bash_skip").code, 99)

    def test_mapped_bash_operator(self) -> None:
        r = run_task("mapped_bash", {"map_index": 1, "mapped_args": {"bash_command": "echo two {{ ds }}"}})
        self.assertEqual(r.code, 0, r.stderr)
        self.assertEqual(r.pushed, {"return_value": "two 2025-01-01"})

    def test_branch_and_short_circuit_decisions_are_always_pushed(self) -> None:
        self.assertEqual(run_task("branch_none").pushed, {"return_value": []})
        self.assertEqual(run_task("gate").pushed, {"return_value": False})



class ApiClientTest(unittest.TestCase):
    def test_connection_errors_are_retried_then_reported(self) -> None:
        from pave.api_client import ExecutionApi

        api = ExecutionApi("http://127.0.0.1:9/execution/v1", "t", timeout=2, retries=2, backoff=0.01)
        with self.assertRaises(ConnectionError) as cm:
            api.get_context()
        self.assertIn("cannot reach the pave execution API", str(cm.exception))

    def test_a_malformed_url_is_named_at_the_first_request(self) -> None:
        from pave.api_client import ExecutionApi

        api = ExecutionApi("http://127.0.0.1:notaport/execution/v1", "t", retries=0)
        with self.assertRaises(ValueError) as cm:
            api.get_context()
        self.assertIn("the execution API URL 'http://127.0.0.1:notaport/execution/v1' is not valid", str(cm.exception))

    def test_bad_token_is_an_api_error(self) -> None:
        from pave.api_client import ApiError, ExecutionApi

        with FakeExecutionApi({}) as fake:
            api = ExecutionApi(fake.url, "wrong")
            with self.assertRaises(ApiError) as cm:
                api.get_context()
            api.close()
        self.assertEqual(cm.exception.status, 401)

    def test_one_connection_carries_every_request_and_is_reopened_when_closed(self) -> None:
        from pave.api_client import ExecutionApi

        answers = [
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ctx\": 1}\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"va\r\n8;x=y\r\nlue\": 2}\r\n0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"",  # the server closes this kept-alive connection: the client reconnects
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 20\r\nconnection: close\r\n\r\n{\"error\": \"no such\"}",
            b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{\"value\": 3}",
        ]
        connections, requests = _serve_raw(answers)
        api = ExecutionApi(f"http://127.0.0.1:{connections.port}/execution/v1", "tok")
        try:
            self.assertEqual(api.get_context(), {"ctx": 1})
            self.assertEqual(api.get_xcom("a", "return_value"), (True, 2))
            api.put_xcom("k", {"x": 1})
            self.assertEqual(api.get_xcom("gone", "return_value"), (False, None))
            self.assertEqual(api.get_xcom("b", "k", map_index=3), (True, 3))
        finally:
            api.close()
            connections.close()
        self.assertEqual(connections.accepted, 3, requests)
        self.assertEqual([r.split(b"\r\n", 1)[0] for r in requests], [
            b"GET /execution/v1/ti/context HTTP/1.1",
            b"GET /execution/v1/xcom/a?key=return_value HTTP/1.1",
            b"PUT /execution/v1/xcom/k HTTP/1.1",
            b"GET /execution/v1/xcom/gone?key=return_value HTTP/1.1",  # on the closed connection
            b"GET /execution/v1/xcom/gone?key=return_value HTTP/1.1",
            b"GET /execution/v1/xcom/b?key=k&map_index=3 HTTP/1.1",
        ])
        put = requests[2]
        self.assertIn(b"Authorization: Bearer tok\r\n", put)
        self.assertIn(b"Content-Length: 19\r\n", put)
        self.assertTrue(put.endswith(b'\r\n\r\n{"value": {"x": 1}}'), put)


class CallableParamsTest(unittest.TestCase):
    """The parameters of a task's callable, remembered per callable (a
    pre-forked interpreter works them out before it forks)."""

    def test_kwargs_follow_the_signature(self) -> None:
        from pave.operators import callable_params, determine_kwargs

        def named(a: Any, ds: Any, ti: Any = None) -> None: ...

        def wildcard(a: Any, **kwargs: Any) -> None: ...

        context = {"ds": "2026-01-01", "ti": 1, "other": 2}
        self.assertEqual(determine_kwargs(named, [1], context), {"ds": "2026-01-01", "ti": 1})
        self.assertEqual(determine_kwargs(named, [1, 2], {"ti": 1}), {"ti": 1})
        self.assertEqual(determine_kwargs(wildcard, [1], context), context)
        with self.assertRaisesRegex(ValueError, "The key 'ds' in args is a part of kwargs"):
            determine_kwargs(named, [1, 2], context)
        self.assertEqual(callable_params(named), (("a", "ds", "ti"), False))
        self.assertIs(callable_params(named), callable_params(named))
        self.assertEqual(callable_params(wildcard), (("a", "kwargs"), True))

    def test_callables_that_cannot_be_remembered_still_work(self) -> None:
        import functools

        from pave.operators import callable_params, determine_kwargs

        class Unhashable:
            __hash__ = None  # type: ignore[assignment]

            def __call__(self, x: Any, ds: Any) -> None: ...

        self.assertEqual(callable_params(Unhashable()), (("x", "ds"), False))
        self.assertEqual(determine_kwargs(functools.partial(lambda x, ds: None, 1), [], {"ds": 1, "y": 2}), {"ds": 1})


class PrepareInPlaceTest(unittest.TestCase):
    def test_a_copy_unless_in_place(self) -> None:
        from pave import DAG, task

        with DAG(dag_id="p", schedule=None) as dag:
            @task
            def add(x: int, y: int) -> int:
                return x + y

            add(1, y="{{ ds }}")
        op = dag.task_dict["add"]
        context = {"ds": "2026-01-01"}
        copied = op.prepare_for_execution(context, lambda t: "rendered", {})
        self.assertIsNot(copied, op)
        self.assertEqual((copied.op_args, copied.op_kwargs), ([1], {"y": "rendered"}))
        self.assertEqual(op.op_kwargs, {"y": "{{ ds }}"}, "the task itself is left as it was")
        same = op.prepare_for_execution(context, lambda t: "rendered", {}, in_place=True)
        self.assertIs(same, op)
        self.assertEqual(op.op_kwargs, {"y": "rendered"})


class _RawServer:
    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0

    def close(self) -> None:
        self.sock.close()


def _serve_raw(answers: list[bytes]) -> tuple[_RawServer, list[bytes]]:
    """A server that answers each request with the next of ``answers`` verbatim
    (``b""``: close the connection without answering); the requests it read."""
    import threading

    server, requests = _RawServer(), []

    def serve() -> None:
        pending = list(answers)
        while pending:
            conn, _ = server.sock.accept()
            server.accepted += 1
            with conn:
                buf = b""
                while pending:
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    while len(buf) < length:
                        buf += conn.recv(65536)
                    requests.append(head + b"\r\n\r\n" + buf[:length])
                    buf = buf[length:]
                    answer = pending.pop(0)
                    if not answer or b"connection: close" in answer:
                        conn.sendall(answer)
                        break
                    conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return server, requests


if __name__ == "__main__":
    unittest.main()
