"""``python -m pave.zygote`` driven by a small Python client that speaks the
same protocol as the supervisor (crates/pave-executor/src/zygote.rs)."""

from __future__ import annotations

import datetime
import errno
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from typing import Any, Callable
from unittest import mock

from .fake_api import FakeExecutionApi
from .util import sdk_env, write_file

# As crates/pave-executor/src/zygote.rs lists them (ATTEMPT_VARS).
ATTEMPT_VARS = ("PAVE_TASK_TOKEN,PAVE_TASK_CONTEXT,PAVE_API_URL,PAVE_DAG_ID,PAVE_TASK_ID,PAVE_RUN_ID,PAVE_TRY_NUMBER,"
                "PAVE_MAP_INDEX,PAVE_LOGICAL_DATE,PAVE_GPU_FALLBACK,CUDA_VISIBLE_DEVICES,"
                "NVIDIA_VISIBLE_DEVICES,AIRFLOW_CTX_*")

DAG_SOURCE = """
import os
import random
import time

from pave import dag, get_current_context, task

STATE = []
print("imported the DAG file")
os.environ.setdefault("SET_AT_IMPORT", "yes")
FORKED_INTO = []
os.register_at_fork(after_in_child=lambda: FORKED_INTO.append(os.getpid()))
OPENED_AT_IMPORT = open(__file__)


@dag(dag_id="z", schedule=None)
def z():
    @task
    def mutate():
        STATE.append(1)
        return len(STATE)

    @task
    def env():
        return {"task": os.environ["PAVE_TASK_ID"], "at_import": os.environ.get("SET_AT_IMPORT"),
                "extra": os.environ.get("EXTRA"), "pid": os.getpid(), "sid": os.getsid(0),
                "pgid": os.getpgid(0), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "context_in_environ": "PAVE_TASK_CONTEXT" in os.environ,
                "try_number": get_current_context()["ti"].try_number}

    @task
    def fds():
        found = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                pass
        return {"opened_at_import": OPENED_AT_IMPORT.fileno(), "fds": found}

    @task
    def threads():
        import threading

        seen = {"main": threading.current_thread() is threading.main_thread(),
                "count": threading.active_count(), "fork_handler": FORKED_INTO == [os.getpid()],
                "random": random.random()}
        got = []
        worker = threading.Thread(target=lambda: got.append(threading.get_ident()))
        worker.start()
        worker.join(10)
        seen["worker_ran"] = len(got) == 1 and got[0] != threading.get_ident()
        seen["count_after"] = threading.active_count()
        return seen

    @task
    def sleepy():
        print("sleeping", flush=True)
        time.sleep(60)

    @task
    def orphan():
        import subprocess
        return subprocess.Popen(["sleep", "60"], process_group=0).pid

    @task
    def exits():
        import atexit
        import sys
        import threading

        atexit.register(lambda: print("atexit ran", flush=True))
        threading.Thread(target=lambda: (time.sleep(0.2), print("thread done", flush=True))).start()
        sys.exit(3)

    @task
    def boom():
        raise ValueError("kaboom")

    @task
    def interrupted():
        import atexit

        atexit.register(lambda: print("atexit ran", flush=True))
        raise KeyboardInterrupt

    @task
    def escapes():
        class Escape(BaseException):
            pass

        raise Escape("out of the task")

    @task
    def both():
        import sys

        print("to stdout", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        sys.exit(3)

    @task
    def nap():
        import sys

        time.sleep(0.5)
        print("woke up", flush=True)
        sys.exit(4)

    @task
    def stubborn():
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(60)

    mutate() >> env() >> sleepy() >> orphan() >> exits() >> boom()
    interrupted()
    escapes()
    both()
    nap()
    stubborn()
    threads()
    fds()


z()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


class Attempt:
    """One attempt sent to a zygote: the connection, the pid, and the task's output."""

    def __init__(self, sock: socket.socket, reader: Any, out_r: int, err_path: str) -> None:
        self.sock = sock
        self.reader = reader
        self.out_r = out_r
        self.err_path = err_path
        first = json.loads(reader.readline() or "{}")
        self.first = first
        self.pid: int | None = first.get("pid")

    def finish(self) -> dict[str, Any]:
        line = self.reader.readline()
        report = json.loads(line) if line else {}
        out = b""
        while chunk := os.read(self.out_r, 65536):
            out += chunk
        os.close(self.out_r)
        with open(self.err_path, "rb") as f:
            err = f.read()
        self.reader.close()
        self.sock.close()
        report["stdout"] = out.decode()
        report["stderr"] = err.decode()
        return report


class ZygoteCase(unittest.TestCase):
    """A DAG file, a base environment, and helpers to start and use zygotes."""

    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="pz-")
        self.dir = self.tmp.name
        self.dag_file = write_file(self.dir, "zdag.py", DAG_SOURCE)
        self.socket = os.path.join(self.dir, "z.sock")
        self.lock = os.path.join(self.dir, "z.lock")
        self.base = sdk_env(PAVE_DAG_FILE=self.dag_file, PYTHONUNBUFFERED="1")
        for name in list(self.base):
            if name.startswith(("PAVE_TASK", "AIRFLOW_CTX_")) or name in ATTEMPT_VARS.split(","):
                del self.base[name]
        self.zygotes: list[int] = []
        self.apis: list[FakeExecutionApi] = []

    def tearDown(self) -> None:
        for pid in self.zygotes:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for api in self.apis:
            api.__exit__(None, None, None)
        self.tmp.cleanup()

    def start(self, idle: float = 30.0, base: dict[str, str] | None = None) -> dict[str, Any]:
        """Start a zygote the way the supervisor does; its last start-up message."""
        log = open(os.path.join(self.dir, "z.log"), "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pave.zygote", "--socket", self.socket, "--lock", self.lock,
             "--idle", str(idle), "--attempt-vars", ATTEMPT_VARS],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=base or self.base, cwd=self.dir)
        log.close()
        self.assertEqual(proc.wait(timeout=30), 0)
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        self.zygotes.append(first["pid"])
        last = json.loads(proc.stdout.readline() or "{}")
        proc.stdout.close()
        last["pid"] = first["pid"]
        return last

    def attempt_env(self, task_id: str, extra_env: dict[str, str] | None = None
                    ) -> tuple[FakeExecutionApi, dict[str, str]]:
        """A fake API for one attempt of ``task_id``, and the attempt's environment."""
        api = FakeExecutionApi({"dag_id": "z", "task_id": task_id})
        api.__enter__()
        self.apis.append(api)
        env = dict(self.base, PAVE_API_URL=api.url, PAVE_TASK_TOKEN=api.TOKEN, PAVE_DAG_ID="z",
                   PAVE_TASK_ID=task_id, PAVE_RUN_ID="r", PAVE_TRY_NUMBER="1", PAVE_MAP_INDEX="-1",
                   AIRFLOW_CTX_TASK_ID=task_id, **(extra_env or {}))
        return api, env

    def send(self, task_id: str, extra_env: dict[str, str] | None = None,
             request_of: Any = None) -> Attempt:
        """Send one attempt of ``task_id`` (its own fake API) and read the first
        answer. ``request_of``: makes the request of the attempt's environment
        (default: the whole environment, as is)."""
        return self.post(task_id, extra_env, request_of)()

    def post(self, task_id: str, extra_env: dict[str, str] | None = None,
             request_of: Any = None) -> Callable[[], Attempt]:
        """Send one attempt of ``task_id`` as ``send`` does; what reads the first answer."""
        api, env = self.attempt_env(task_id, extra_env)
        request = (request_of(env) if request_of is not None
                   else {"argv": [sys.executable, "-m", "pave.runtime"], "env": env,
                         "cwd": os.path.realpath(self.dir)})
        body = json.dumps(request).encode()
        out_r, out_w = os.pipe()
        err_path = os.path.join(self.dir, f"{task_id}-{len(self.apis)}.err")
        err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket)
        socket.send_fds(sock, [struct.pack(">I", len(body)) + body], [out_w, err])
        os.close(out_w)
        os.close(err)

        def answered() -> Attempt:
            attempt = Attempt(sock, sock.makefile("r"), out_r, err_path)
            attempt.api = api  # type: ignore[attr-defined]
            return attempt

        return answered

    def assert_refused(self, attempt: Attempt, why: str) -> None:
        """The zygote refused ``attempt`` (no retry) saying ``why``."""
        self.assertEqual(attempt.first.get("retry"), False, attempt.first)
        self.assertIn(why, attempt.first.get("refused", ""))
        attempt.finish()

    def run_task(self, task_id: str, **kw: Any) -> dict[str, Any]:
        return self.finish(self.send(task_id, **kw))

    def finish(self, attempt: Attempt) -> dict[str, Any]:
        self.assertIn("pid", attempt.first, attempt.first)
        report = attempt.finish()
        report["pid"] = attempt.pid
        report["pushed"] = attempt.api.pushed  # type: ignore[attr-defined]
        report["requests"] = list(attempt.api.requests)  # type: ignore[attr-defined]
        return report


class ZygoteRunsTasksTest(ZygoteCase):
    def test_the_pid_answer_carries_the_zygotes_own_start_time(self) -> None:
        ready = self.start()
        attempt = self.send("env")
        with open(f"/proc/{ready['pid']}/stat", "rb") as f:
            stat = f.read()
        ticks = int(stat[stat.rindex(b")") + 1:].split()[19])
        self.assertEqual(attempt.first.get("start_ticks"), ticks, attempt.first)
        self.finish(attempt)

    def test_each_attempt_is_a_forked_child_that_does_not_see_the_previous_ones_state(self) -> None:
        ready = self.start()
        self.assertEqual(ready.get("ready"), True, ready)
        first = self.run_task("mutate")
        second = self.run_task("mutate")
        for r in (first, second):
            self.assertEqual(r["exit"], {"type": "code", "code": 0}, r["stderr"])
            self.assertEqual(r["pushed"], {"return_value": 1})
            self.assertGreater(r["maxrss_kib"], 1000)
        self.assertNotEqual(first["pid"], second["pid"])
        self.assertNotIn(ready["pid"], (first["pid"], second["pid"]))

    def test_the_child_has_the_attempts_environment_session_and_the_imports_output(self) -> None:
        self.start()
        # EXTRA is not an attempt variable: a request with it differs from the zygote's environment.
        self.assert_refused(self.send("env", extra_env={"EXTRA": "x"}), "EXTRA")
        r = self.run_task("env", extra_env={"CUDA_VISIBLE_DEVICES": "1"})
        self.assertEqual(r["exit"], {"type": "code", "code": 0}, r["stderr"])
        value = r["pushed"]["return_value"]
        self.assertEqual(value["task"], "env")
        self.assertEqual(value["at_import"], "yes")
        self.assertEqual(value["pid"], r["pid"])
        self.assertEqual((value["sid"], value["pgid"]), (r["pid"], r["pid"]))
        self.assertIn("imported the DAG file", r["stdout"])

    def test_the_childs_environment_is_the_attempts_whatever_the_zygote_started_with(self) -> None:
        # Started with a per-attempt variable (as by the attempt that needed
        # it), the zygote's children still get exactly their attempt's.
        self.start(base=dict(self.base, CUDA_VISIBLE_DEVICES="3"))
        without = self.run_task("env")
        with_one = self.run_task("env", extra_env={"CUDA_VISIBLE_DEVICES": "1"})
        for r in (without, with_one):
            self.assertEqual(r["exit"], {"type": "code", "code": 0}, r["stderr"])
            self.assertEqual(r["pushed"]["return_value"]["at_import"], "yes")
            self.assertEqual(r["pushed"]["return_value"]["task"], "env")
        self.assertIsNone(without["pushed"]["return_value"]["cuda"])
        self.assertEqual(with_one["pushed"]["return_value"]["cuda"], "1")

    def test_a_context_sent_with_the_request_is_used_and_not_left_in_the_tasks_environment(self) -> None:
        # The scheduler sends the attempt's context as PAVE_TASK_CONTEXT: the
        # task must not ask the API for it, and its own subprocesses must not
        # inherit it (it is not in the task's os.environ), alike attempts or not.
        self.start()
        runs = []
        for n in (1, 1, 2):
            given = {"dag_id": "z", "run_id": "r", "task_id": "env", "map_index": -1, "try_number": n,
                     "logical_date": None, "params": {}, "conf": {}, "mapped_args": {}}
            runs.append(self.run_task("env", extra_env={"PAVE_TASK_CONTEXT": json.dumps(given)}))
        for r in runs:
            self.assertEqual(r["exit"], {"type": "code", "code": 0}, r["stderr"])
            self.assertFalse(r["pushed"]["return_value"]["context_in_environ"])
            self.assertFalse([p for _, p in r["requests"] if p.endswith("/ti/context")], r["requests"])
        self.assertEqual([r["pushed"]["return_value"]["try_number"] for r in runs], [1, 1, 2])
        asked = self.run_task("env")  # without one, the task asks the API
        self.assertEqual(asked["exit"], {"type": "code", "code": 0}, asked["stderr"])
        self.assertFalse(asked["pushed"]["return_value"]["context_in_environ"])
        self.assertTrue([p for _, p in asked["requests"] if p.endswith("/ti/context")], asked["requests"])

    def test_values_the_zygote_keeps_from_attempts_alike_leave_each_childs_environment_its_own(self) -> None:
        # After two attempts with CUDA_VISIBLE_DEVICES=1 the zygote holds it
        # itself; a later attempt without it, or with another value, must
        # still see exactly its own.
        self.start()
        runs = [self.run_task("env", extra_env=e) for e in (
            {"CUDA_VISIBLE_DEVICES": "1"}, {"CUDA_VISIBLE_DEVICES": "1"}, {}, {"CUDA_VISIBLE_DEVICES": "1"},
            {"CUDA_VISIBLE_DEVICES": "2"}, {})]
        for r in runs:
            self.assertEqual(r["exit"], {"type": "code", "code": 0}, r["stderr"])
        self.assertEqual([r["pushed"]["return_value"]["cuda"] for r in runs], ["1", "1", None, "1", "2", None])

    def test_attempts_that_arrive_together_each_run_with_their_own_request(self) -> None:
        # Sent while the zygote is stopped, the attempts arrive in one pass
        # of its loop: the first runs in the spare, the others are forked
        # one after the other (``_fork_taken``) with the environment plan
        # from before the pass.
        ready = self.start()
        self.run_task("env")  # the zygote is in its loop, its spare forked
        values = ["1", "1", None, "2", "1", None, "3"]
        os.kill(ready["pid"], signal.SIGSTOP)
        try:
            pending = [self.post("env", extra_env={} if v is None else {"CUDA_VISIBLE_DEVICES": v})
                       for v in values]
        finally:
            os.kill(ready["pid"], signal.SIGCONT)
        runs = [self.finish(answered()) for answered in pending]
        for r in runs:
            self.assertEqual(r["exit"], {"type": "code", "code": 0}, r["stderr"])
            self.assertEqual(r["pushed"]["return_value"]["pid"], r["pid"])
        self.assertEqual([r["pushed"]["return_value"]["cuda"] for r in runs], values)
        self.assertEqual(len({r["pid"] for r in runs}), len(values))

    def test_a_child_keeps_only_stdio_and_what_the_import_opened(self) -> None:
        ready = self.start()

        def zygote_fds() -> set[str]:
            found = set()
            for name in os.listdir(f"/proc/{ready['pid']}/fd"):
                try:
                    found.add(os.readlink(f"/proc/{ready['pid']}/fd/{name}"))
                except OSError:
                    pass
            return found

        others = []
        for _ in range(8):  # other supervisors' connections, idle at the zygote
            other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            other.connect(self.socket)
            others.append(other)
        try:
            # The listener and the connections, as the zygote holds them.
            held = _wait_for(lambda: (lambda f: f if sum(t.startswith("socket:") for t in f) >= 9 else None)(
                zygote_fds()))
            runs = [self.run_task("fds")]  # the spare forked before they connected
            runs.append(self.run_task("fds"))  # one forked after
            for spare in _children(ready["pid"]):
                os.kill(spare, signal.SIGKILL)
                self.assertTrue(_wait_for(lambda: spare not in _children(ready["pid"])))
            runs.append(self.run_task("fds"))
            held |= zygote_fds()
        finally:
            for other in others:
                other.close()
        dag_file = os.path.realpath(self.dag_file)
        for r in runs:
            self.assertEqual(r["exit"], {"type": "code", "code": 0}, r["stderr"])
            value = r["pushed"]["return_value"]
            fds = {int(fd): target for fd, target in value["fds"].items() if int(fd) > 2}
            self.assertEqual(fds.get(value["opened_at_import"]), dag_file, r)
            # Nothing of the zygote's (its own socket to the API aside, the task has no other).
            self.assertEqual({t for t in fds.values() if t in held}, {dag_file}, r)

    def test_a_child_can_use_threads_and_the_other_fork_handlers_ran(self) -> None:
        # The zygote keeps threading's after-fork handler from running in its
        # children (_ThreadingAtFork); the module must work as after a fork.
        # Other handlers still run: random's reseeding, and the DAG file's own.
        self.start()
        first, second = self.run_task("threads"), self.run_task("threads")
        for r in (first, second):
            self.assertEqual(r["exit"], {"type": "code", "code": 0}, r["stderr"])
            seen = r["pushed"]["return_value"]
            self.assertEqual({k: seen[k] for k in ("main", "count", "fork_handler", "worker_ran", "count_after")},
                             {"main": True, "count": 1, "fork_handler": True, "worker_ran": True,
                              "count_after": 1}, seen)
        self.assertNotEqual(first["pushed"]["return_value"]["random"], second["pushed"]["return_value"]["random"])

    def test_the_child_exits_as_the_interpreter_would(self) -> None:
        self.start()
        r = self.run_task("exits")
        self.assertEqual(r["exit"], {"type": "code", "code": 3}, r["stderr"])
        self.assertIn("thread done\natexit ran", r["stdout"])

    def test_an_exception_the_runtime_lets_through_ends_the_child_as_the_interpreter_would(self) -> None:
        # What the runtime lets through (not an Exception) ends the child as
        # it ends an interpreter: a KeyboardInterrupt by SIGINT once the
        # atexit handlers ran, any other with status 1 and its traceback;
        # the zygote serves on.
        self.start()
        r = self.run_task("interrupted")
        self.assertEqual(r["exit"], {"type": "signal", "signal": signal.SIGINT}, r["stderr"])
        self.assertIn("KeyboardInterrupt", r["stderr"])
        self.assertIn("atexit ran", r["stdout"])
        r = self.run_task("escapes")
        self.assertEqual(r["exit"], {"type": "code", "code": 1}, r["stderr"])
        self.assertIn("Escape: out of the task", r["stderr"])
        self.assertEqual(self.run_task("boom")["exit"], {"type": "code", "code": 1})

    def test_exit_statuses_are_reported(self) -> None:
        self.start()
        r = self.run_task("boom")
        self.assertEqual(r["exit"], {"type": "code", "code": 1})
        self.assertIn("ValueError: kaboom", r["stderr"])
        attempt = self.send("sleepy")
        assert attempt.pid is not None
        seen = b""
        while b"sleeping" not in seen:
            seen += os.read(attempt.out_r, 100)
        os.killpg(attempt.pid, signal.SIGTERM)
        r = attempt.finish()
        self.assertEqual(r["exit"], {"type": "signal", "signal": signal.SIGTERM})


    def test_the_end_is_reported_before_the_kernel_takes_the_process_down(self) -> None:
        # The test holds the tasks' processes at their exit (ptrace, before
        # their address space is taken down and their parent told): the
        # zygote has each end from the task itself, so the exit lines come
        # all the same. Two attempts at once: when both arrive in one pass
        # of its loop, one runs in the spare and the other in a child forked
        # for it (which tell their end on a socket and on a pipe; the pipe's
        # side of the zygote is ChildSetUpTest's).
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        ptrace = libc.ptrace
        ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
        ptrace.restype = ctypes.c_long
        seize, detach, trace_exit, event_exit = 0x4206, 17, 0x40, 6
        self.start()
        answered = [self.post("nap"), self.post("nap")]
        attempts = [a() for a in answered]
        traced = []
        try:
            for attempt in attempts:
                assert attempt.pid is not None, attempt.first
                if ptrace(seize, attempt.pid, None, trace_exit) != 0:
                    self.skipTest(f"cannot trace a task: {os.strerror(ctypes.get_errno())}")
                traced.append(attempt.pid)
            for attempt in attempts:
                _, status = os.waitpid(attempt.pid, 0x40000000)  # __WALL: a tracee, not a child
                self.assertTrue(os.WIFSTOPPED(status) and status >> 16 == event_exit, hex(status))
                attempt.sock.settimeout(10)
                line = json.loads(attempt.reader.readline() or "{}")
                self.assertEqual(line.get("exit"), {"type": "code", "code": 4}, line)
                self.assertGreater(line.get("maxrss_kib", 0), 1000, line)
                self.assertTrue(_alive(attempt.pid), "reaped before its exit was let through")
        finally:
            for pid in traced:
                ptrace(detach, pid, None, None)
            for attempt in attempts:
                attempt.reader.close()
                attempt.sock.close()
                os.close(attempt.out_r)
        for pid in traced:
            self.assertTrue(_wait_dead(pid))


class DigestRequestTest(ZygoteCase):
    """pave's executor sends only an attempt's own variables, and the digest
    of the rest of its environment (``base_env_sha1``)."""

    def digest_request(self, task_id: str, extra_env: dict[str, str] | None = None,
                       base: dict[str, str] | None = None) -> Attempt:
        """Send an attempt of ``task_id`` as the executor does: its own
        variables, plus ``extra_env`` as given (one that is no per-attempt
        variable is to be refused), and the digest of the rest of its
        environment (or of ``base``)."""
        from pave.zygote import _is_attempt_var, env_digest

        names = {v for v in ATTEMPT_VARS.split(",") if not v.endswith("*")}
        prefixes = tuple(v[:-1] for v in ATTEMPT_VARS.split(",") if v.endswith("*"))
        extra = set(extra_env or {})

        def request_of(env: dict[str, str]) -> dict[str, Any]:
            sent = {k: v for k, v in env.items() if k in extra or _is_attempt_var(k, names, prefixes)}
            rest = {k: v for k, v in env.items() if k not in sent} if base is None else base
            return {"argv": [sys.executable, "-m", "pave.runtime"], "env": sent,
                    "base_env_sha1": env_digest(rest), "cwd": os.path.realpath(self.dir)}

        return self.send(task_id, extra_env, request_of=request_of)

    def test_a_request_with_the_digest_of_the_zygotes_environment_runs_with_the_whole_of_it(self) -> None:
        self.start(base=dict(self.base, MARKER="from the zygote"))
        self.base["MARKER"] = "from the zygote"
        attempt = self.digest_request("env", extra_env={"CUDA_VISIBLE_DEVICES": "2"})
        self.assertIn("pid", attempt.first, attempt.first)
        report = attempt.finish()
        self.assertEqual(report["exit"], {"type": "code", "code": 0}, report["stderr"])
        value = attempt.api.pushed["return_value"]  # type: ignore[attr-defined]
        self.assertEqual((value["task"], value["cuda"], value["at_import"]), ("env", "2", "yes"))

    def test_a_request_with_another_digest_is_refused_without_retry(self) -> None:
        self.start()
        self.assert_refused(self.digest_request("env", base={"PATH": "/elsewhere"}), "base_env_sha1")

    def test_a_digest_request_may_not_send_other_variables(self) -> None:
        self.start()
        self.assert_refused(self.digest_request("env", extra_env={"EXTRA": "x"}),
                            "EXTRA, which is no per-attempt variable")

    def test_the_digest_is_the_executors(self) -> None:
        from pave.zygote import env_digest

        # The same vectors as crates/pave-executor/src/handover.rs's test.
        self.assertEqual(env_digest({"PATH": "/bin", "B": "x=y", "A": "1", "\u00dcNI": "wert \u2713", "EMPTY": ""}),
                         "e8b9f15698e1b645d67364f12f81a65815b8246f")
        self.assertEqual(env_digest({}), "da39a3ee5e6b4b0d3255bfef95601890afd80709")


class ZygoteGuardsTest(ZygoteCase):
    def test_a_closed_connection_kills_the_running_task(self) -> None:
        self.start()
        attempt = self.send("sleepy")
        assert attempt.pid is not None
        self.assertTrue(_alive(attempt.pid))
        attempt.reader.close()
        attempt.sock.close()
        os.close(attempt.out_r)
        self.assertTrue(_wait_dead(attempt.pid), "the task outlived its supervisor's connection")

    def test_what_a_task_leaves_behind_is_killed_when_it_ends(self) -> None:
        self.start()
        r = self.run_task("orphan")
        self.assertEqual(r["exit"], {"type": "code", "code": 0}, r["stderr"])
        self.assertTrue(_wait_dead(r["pushed"]["return_value"]), "a process of the task outlived it")

    def test_children_die_with_the_zygote(self) -> None:
        ready = self.start()
        attempt = self.send("sleepy")
        assert attempt.pid is not None
        os.kill(ready["pid"], signal.SIGKILL)
        self.assertTrue(_wait_dead(attempt.pid), "the task outlived its zygote")
        self.assertEqual(attempt.finish().get("exit"), None)

    def test_an_edited_dag_file_is_refused_with_retry_and_the_zygote_steps_aside(self) -> None:
        ready = self.start(idle=0.5)
        self.assertEqual(self.run_task("mutate")["exit"]["code"], 0)
        time.sleep(0.01)
        with open(self.dag_file, "a", encoding="utf-8") as f:
            f.write("\n# edited\n")
        attempt = self.send("mutate")
        self.assertEqual(attempt.first.get("retry"), True, attempt.first)
        self.assertIn("changed", attempt.first["refused"])
        attempt.finish()
        self.assertFalse(os.path.exists(self.socket))
        self.assertTrue(_wait_dead(ready["pid"]))
        again = self.start()
        self.assertEqual(again.get("ready"), True, again)
        self.assertEqual(self.run_task("mutate")["exit"]["code"], 0)

    def test_an_idle_zygote_exits_and_removes_its_socket(self) -> None:
        ready = self.start(idle=0.3)
        self.assertEqual(self.run_task("mutate")["exit"]["code"], 0)
        self.assertTrue(_wait_dead(ready["pid"]))
        self.assertFalse(os.path.exists(self.socket))

    def test_a_socket_path_taken_over_makes_the_old_zygote_leave(self) -> None:
        old = self.start()
        new = self.start()
        self.assertTrue(_wait_dead(old["pid"]))
        self.assertTrue(_alive(new["pid"]))
        self.assertEqual(self.run_task("mutate")["exit"]["code"], 0)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _wait_for(what: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.01)
    return what()


class SpareChildTest(ZygoteCase):
    """The zygote forks each attempt's child ahead of it (a spare, set up and
    waiting), so a request costs a hand-over; a spare that died is replaced,
    and an idle or retiring zygote lets its spare go."""

    def test_the_next_attempt_runs_in_the_spare_forked_ahead_of_it(self) -> None:
        ready = self.start()
        spares = _wait_for(lambda: _children(ready["pid"]))
        self.assertEqual(len(spares), 1, spares)
        spare = spares[0]
        # It calls setsid() a moment after the fork that made it visible here.
        _wait_for(lambda: os.getsid(spare) == spare)
        self.assertEqual(os.getsid(spare), spare, "a spare leads its own session before its attempt")
        first = self.run_task("env")
        self.assertEqual(first["pid"], spare)
        self.assertEqual(first["exit"], {"type": "code", "code": 0}, first["stderr"])
        pushed = first["pushed"]["return_value"]
        self.assertEqual((pushed["task"], pushed["pid"], pushed["sid"]), ("env", spare, spare))
        # Each attempt gets a fresh spare: no state leaks between them.
        second = self.run_task("mutate")
        third = self.run_task("mutate")
        self.assertEqual((second["pushed"], third["pushed"]), ({"return_value": 1}, {"return_value": 1}))
        self.assertEqual(len({spare, second["pid"], third["pid"]}), 3)

    def test_a_dead_spare_is_replaced_and_the_attempt_still_runs(self) -> None:
        ready = self.start()
        spare = _wait_for(lambda: _children(ready["pid"]))[0]
        os.kill(spare, signal.SIGKILL)
        self.assertTrue(_wait_for(lambda: spare not in _children(ready["pid"])))
        r = self.run_task("mutate")
        self.assertEqual(r["exit"], {"type": "code", "code": 0}, r["stderr"])
        self.assertNotEqual(r["pid"], spare)
        self.assertEqual(r["pushed"], {"return_value": 1})

    def test_an_idle_zygote_lets_its_spare_go(self) -> None:
        ready = self.start(idle=0.3)
        spare = _wait_for(lambda: _children(ready["pid"]))[0]
        self.assertTrue(_wait_dead(ready["pid"]))
        self.assertTrue(_wait_dead(spare), "the spare outlived its zygote")


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _rfc3339(text: str) -> datetime.datetime:
    """An RFC 3339 time the zygote wrote (UTC, microseconds, ``Z``)."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _start_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 1:].split()[19])


class Supervised:
    """One supervised attempt sent to a zygote: its connection and its files."""

    def __init__(self, sock: socket.socket, folder: str) -> None:
        self.sock = sock
        self.reader = sock.makefile("r")
        self.claim = os.path.join(folder, "attempt=1.claim")
        self.result = os.path.join(folder, "attempt=1.result.json")
        self.log = os.path.join(folder, "attempt=1.log")
        self.first: dict[str, Any] = {}
        self.pid: int | None = None

    def read_first(self) -> dict[str, Any]:
        self.first = json.loads(self.reader.readline() or "{}")
        self.pid = self.first.get("pid")
        return self.first

    def next_line(self) -> dict[str, Any]:
        """The next answer (``{}`` at end of file); the result file must be
        in place by then."""
        line = self.reader.readline()
        return json.loads(line) if line else {}

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def read_log(self) -> str:
        with open(self.log, encoding="utf-8") as f:
            return f.read()


class SupervisedRequestTest(ZygoteCase):
    """A supervised request (the scheduler's): the zygote takes the claim,
    enforces the timeout and writes the result file; the connection is no
    lease."""

    def send_supervised(self, task_id: str, *, timeout_ms: float | None = None, grace_ms: float = 5000,
                        gpu_ids: list[int] | None = None, supervise: Any = None, folder: str | None = None,
                        fds: int = 1, read_first: bool = True,
                        extra_env: dict[str, str] | None = None) -> Supervised:
        """Send a supervised attempt of ``task_id``; its claim, result and log
        are ``attempt=1.*`` in ``folder`` (a new one unless given)."""
        _, env = self.attempt_env(task_id, extra_env)
        if folder is None:
            folder = os.path.join(self.dir, f"{task_id}-{len(self.apis)}")
            os.mkdir(folder)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        attempt = Supervised(sock, folder)
        if supervise is None:
            supervise = {"claim": attempt.claim, "result": attempt.result, "timeout_ms": timeout_ms,
                         "grace_ms": grace_ms, "gpu_ids": [0, 1] if gpu_ids is None else gpu_ids}
        body = json.dumps({"argv": [sys.executable, "-m", "pave.runtime"], "env": env,
                           "cwd": os.path.realpath(self.dir), "supervise": supervise}).encode()
        log = os.open(attempt.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        sock.connect(self.socket)
        socket.send_fds(sock, [struct.pack(">I", len(body)) + body], [log] * fds)
        os.close(log)
        if read_first:
            attempt.read_first()
        return attempt

    def test_the_zygote_takes_the_claim_runs_the_task_and_writes_the_result(self) -> None:
        ready = self.start()
        before = time.time()
        a = self.send_supervised("both", gpu_ids=[0, 1])
        self.assertIn("pid", a.first, a.first)
        claim = _read_json(a.claim)
        self.assertEqual(
            {k: v for k, v in claim.items() if k != "started_at"},
            {"claimed_by": "supervisor", "pid": ready["pid"], "start_ticks": _start_ticks(ready["pid"]),
             "gpu_ids": [0, 1], "zygote": True})
        self.assertLessEqual(abs(_rfc3339(claim["started_at"]).timestamp() - before), 5)
        line = a.next_line()
        # The exit line comes once the result file is in place.
        self.assertTrue(os.path.exists(a.result), "the exit line came before the result file")
        self.assertEqual(line["exit"], {"type": "code", "code": 3}, a.read_log())
        self.assertNotIn("result_error", line)
        self.assertEqual(a.next_line(), {}, "the zygote closes the connection after the exit line")
        a.close()
        result = _read_json(a.result)
        self.assertEqual(set(result), {"exit", "pid", "timed_out", "cancelled", "started_at", "ended_at",
                                       "duration_ms", "peak_rss_kib", "last_line", "error", "notes"})
        self.assertEqual(result["exit"], {"type": "code", "code": 3})
        self.assertEqual(result["pid"], a.pid)
        self.assertEqual((result["timed_out"], result["cancelled"]), (False, False))
        self.assertEqual((result["last_line"], result["error"], result["notes"]), (None, None, []))
        self.assertGreater(result["peak_rss_kib"], 0)
        self.assertEqual(result["peak_rss_kib"], line["maxrss_kib"])
        started, ended = _rfc3339(result["started_at"]), _rfc3339(result["ended_at"])
        self.assertLessEqual(started, ended)
        self.assertLessEqual(abs(started.timestamp() - before), 5)
        self.assertIsInstance(result["duration_ms"], int)
        self.assertLessEqual(result["duration_ms"], (ended - started).total_seconds() * 1000 + 50)
        log = a.read_log()
        for text in ("imported the DAG file", "to stdout", "to stderr"):
            self.assertIn(text, log)
        self.assertEqual(len(os.listdir(os.path.dirname(a.claim))), 3, "a temporary file was left")

    def test_a_claim_held_by_someone_else_runs_nothing(self) -> None:
        self.start()
        folder = os.path.join(self.dir, "fenced")
        os.mkdir(folder)
        fence = '{"claimed_by": "fence"}'
        with open(os.path.join(folder, "attempt=1.claim"), "w", encoding="utf-8") as f:
            f.write(fence)
        a = self.send_supervised("both", folder=folder)
        self.assertEqual(a.first, {"claimed": True})
        self.assertEqual(a.next_line(), {}, "the connection is dropped")
        a.close()
        time.sleep(0.3)
        self.assertFalse(os.path.exists(a.result), "an attempt ran under someone else's claim")
        self.assertEqual(a.read_log(), "")
        with open(a.claim, encoding="utf-8") as f:
            self.assertEqual(f.read(), fence)

    def test_a_second_request_for_an_attempt_the_zygote_claimed_runs_nothing(self) -> None:
        self.start()
        a = self.send_supervised("nap")
        self.assertIn("pid", a.first, a.first)
        claim = _read_json(a.claim)
        b = self.send_supervised("nap", folder=os.path.dirname(a.claim))
        self.assertEqual(b.first, {"claimed": True})
        b.close()
        self.assertEqual(a.next_line()["exit"], {"type": "code", "code": 4})
        a.close()
        self.assertEqual(_read_json(a.claim), claim)
        self.assertEqual(a.read_log().count("woke up"), 1, "the attempt ran twice")

    def test_a_refused_request_claims_nothing(self) -> None:
        self.start()
        # Its environment differs from the zygote's.
        a = self.send_supervised("both", extra_env={"EXTRA": "x"})
        self.assertIn("EXTRA", a.first.get("refused", ""), a.first)
        self.assertEqual(a.first.get("retry"), False)
        # Two fds where a supervised request passes one.
        b = self.send_supervised("both", fds=2)
        self.assertIn("must pass 1 file descriptors, not 2", b.first.get("refused", ""), b.first)
        # A supervise object without a result path.
        c = self.send_supervised("both", supervise={"claim": os.path.join(self.dir, "c.claim"), "result": 3})
        self.assertIn("supervise.result", c.first.get("refused", ""), c.first)
        for attempt in (a, b, c):
            attempt.close()
            self.assertFalse(os.path.exists(attempt.claim))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "c.claim")))
        # A claim that cannot be taken (its folder is gone): refused, nothing runs.
        gone = os.path.join(self.dir, "gone", "attempt=1.claim")
        d = self.send_supervised("both", supervise={"claim": gone, "result": gone + ".result.json",
                                                    "timeout_ms": None, "grace_ms": 100, "gpu_ids": []})
        self.assertEqual(d.first.get("retry"), False, d.first)
        self.assertIn(f"cannot take the claim {gone}", d.first.get("refused", ""))
        d.close()
        self.assertEqual(d.read_log(), "")

    def test_a_closed_connection_does_not_kill_a_supervised_task(self) -> None:
        ready = self.start(idle=0.2)
        a = self.send_supervised("nap")
        self.assertIn("pid", a.first, a.first)
        a.close()  # the scheduler is gone; the task naps 0.5 s, longer than --idle
        self.assertTrue(_wait_for(lambda: os.path.exists(a.result)), "no result: the task was killed")
        result = _read_json(a.result)
        self.assertEqual(result["exit"], {"type": "code", "code": 4}, a.read_log())
        self.assertEqual((result["pid"], result["timed_out"]), (a.pid, False))
        self.assertIn("woke up", a.read_log())
        # Then the zygote idles out as usual.
        self.assertTrue(_wait_dead(ready["pid"]))
        self.assertFalse(os.path.exists(self.socket))

    def test_a_timeout_sends_sigterm(self) -> None:
        self.start()
        a = self.send_supervised("sleepy", timeout_ms=300, grace_ms=5000)
        self.assertIn("pid", a.first, a.first)
        line = a.next_line()
        a.close()
        self.assertEqual(line["exit"], {"type": "signal", "signal": signal.SIGTERM}, a.read_log())
        result = _read_json(a.result)
        self.assertEqual(result["exit"], {"type": "signal", "signal": signal.SIGTERM})
        self.assertIs(result["timed_out"], True)
        self.assertEqual(result["notes"],
                         [f"execution_timeout of 0.3s exceeded: sent SIGTERM to process group {a.pid}"])
        self.assertGreaterEqual(result["duration_ms"], 300)
        self.assertLess(result["duration_ms"], 900, "the timeout was late, or waited for the grace period")
        log = a.read_log()
        self.assertIn("sleeping", log)
        self.assertIn(f"[pave] execution_timeout of 0.3s exceeded: sending SIGTERM to process group {a.pid}\n",
                      log)

    def test_a_task_that_ignores_sigterm_gets_sigkill_after_the_grace(self) -> None:
        self.start()
        a = self.send_supervised("stubborn", timeout_ms=700, grace_ms=300)
        self.assertIn("pid", a.first, a.first)
        line = a.next_line()
        a.close()
        log = a.read_log()
        self.assertEqual(line["exit"], {"type": "signal", "signal": signal.SIGKILL}, log)
        result = _read_json(a.result)
        self.assertEqual(result["exit"], {"type": "signal", "signal": signal.SIGKILL})
        self.assertIs(result["timed_out"], True)
        self.assertEqual(result["notes"], [
            f"execution_timeout of 0.7s exceeded: sent SIGTERM to process group {a.pid}",
            f"process group {a.pid} still running 0.3s after SIGTERM: sent SIGKILL"])
        self.assertGreaterEqual(result["duration_ms"], 1000)
        self.assertLess(log.index("ignoring SIGTERM"), log.index("execution_timeout"))
        self.assertIn(f"[pave] process group {a.pid} still running after SIGTERM: sending SIGKILL\n", log)

    def test_no_timeout_when_the_task_ends_first(self) -> None:
        self.start()
        a = self.send_supervised("nap", timeout_ms=5000, grace_ms=100)
        line = a.next_line()
        a.close()
        self.assertEqual(line["exit"], {"type": "code", "code": 4})
        result = _read_json(a.result)
        self.assertEqual((result["timed_out"], result["notes"]), (False, []))

    def test_an_existing_result_file_is_left_alone(self) -> None:
        self.start()
        a = self.send_supervised("both", read_first=False)
        with open(a.result, "w", encoding="utf-8") as f:
            f.write("theirs")
        a.read_first()
        line = a.next_line()
        a.close()
        self.assertEqual(line["exit"], {"type": "code", "code": 3})
        with open(a.result, encoding="utf-8") as f:
            self.assertEqual(f.read(), "theirs")

    def test_a_result_that_cannot_be_written_is_reported_on_the_exit_line(self) -> None:
        self.start()
        folder = os.path.join(self.dir, "r")
        os.mkdir(folder)
        a = self.send_supervised("both", supervise={
            "claim": os.path.join(folder, "attempt=1.claim"),
            "result": os.path.join(self.dir, "no-such-folder", "attempt=1.result.json"),
            "timeout_ms": None, "grace_ms": 100, "gpu_ids": []})
        self.assertIn("pid", a.first, a.first)
        line = a.next_line()
        a.close()
        self.assertEqual(line["exit"], {"type": "code", "code": 3})
        self.assertIn("cannot write the result", line.get("result_error", ""))
        self.assertTrue(os.path.exists(os.path.join(folder, "attempt=1.claim")))

    def test_the_existing_kind_and_the_supervised_kind_share_a_zygote(self) -> None:
        self.start()
        a = self.send_supervised("nap")
        r = self.run_task("mutate")
        self.assertEqual(r["exit"], {"type": "code", "code": 0}, r["stderr"])
        self.assertEqual(r["pushed"], {"return_value": 1})
        self.assertEqual(a.next_line()["exit"], {"type": "code", "code": 4})
        a.close()
        self.assertEqual(_read_json(a.result)["exit"], {"type": "code", "code": 4})


class ZygoteUnusableTest(ZygoteCase):
    def unusable(self, source: str) -> str:
        write_file(self.dir, "zdag.py", source)
        ready = self.start()
        self.assertIn("unusable", ready)
        self.assertTrue(_wait_dead(ready["pid"]))
        self.assertFalse(os.path.exists(self.socket))
        return ready["unusable"]

    def test_an_import_error(self) -> None:
        why = self.unusable("import no_such_module_here\n")
        self.assertIn("ModuleNotFoundError", why)

    def test_reading_a_per_attempt_variable_at_import(self) -> None:
        why = self.unusable("import os\nTASK = os.environ.get('PAVE_TASK_ID')\nCTX = os.getenv('AIRFLOW_CTX_DAG_ID')\n")
        self.assertIn("AIRFLOW_CTX_DAG_ID, PAVE_TASK_ID", why)

    def test_threads_started_at_import(self) -> None:
        why = self.unusable("import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n")
        self.assertIn("threads", why)


class StartWaitTest(unittest.TestCase):
    """A forked task can ask for its context before the scheduler recorded its start."""

    class Api:
        def __init__(self, queued: int, try_number: int = 1) -> None:
            self.queued = queued
            self.try_number = try_number
            self.calls = 0

        def get_context(self) -> dict[str, Any]:
            from pave.api_client import ApiError

            self.calls += 1
            if self.calls <= self.queued:
                raise ApiError(409, f"the attempt is no longer running (state queued, try {self.try_number})",
                               "GET", "/ti/context")
            return {"task_id": "t"}

    def test_waits_while_its_own_try_is_queued(self) -> None:
        from pave.runtime import get_context_once_started

        api = self.Api(queued=3)
        self.assertEqual(get_context_once_started(api, "1"), {"task_id": "t"})  # type: ignore[arg-type]
        self.assertEqual(api.calls, 4)

    def test_an_xcom_push_waits_for_the_running_commit_too(self) -> None:
        from pave.runtime import wait_while_starting

        api = self.Api(queued=2)
        self.assertEqual(wait_while_starting(api.get_context, "1"), {"task_id": "t"})
        self.assertEqual(api.calls, 3)

    def test_another_try_or_a_timeout_is_final(self) -> None:
        from pave.api_client import ApiError
        from pave.runtime import get_context_once_started

        api = self.Api(queued=3, try_number=2)
        with self.assertRaises(ApiError):
            get_context_once_started(api, "1")  # type: ignore[arg-type]
        self.assertEqual(api.calls, 1)
        with self.assertRaises(ApiError):
            get_context_once_started(self.Api(queued=1000), "1", wait=0.05)  # type: ignore[arg-type]


if __name__ == "__main__":
    unittest.main()


class ChildSetUpTest(unittest.TestCase):
    """The zygote waits for a new child's set-up in its loop, not in
    ``_launch``: the supervisor gets the pid once the child says it is set
    up, a refusal if its pipe closes first or the wait runs out, and never an
    exit report before the pid."""

    def setUp(self) -> None:
        from pave import zygote

        self.zygote_mod = zygote
        self.z = zygote.Zygote("/nonexistent.sock", "/nonexistent.lock", 30.0, [])
        self.procs: list[subprocess.Popen[bytes]] = []
        self.socks: list[socket.socket] = []

    def tearDown(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for sock in self.socks:
            sock.close()
        self.z.selector.close()

    def pending(self) -> tuple[Any, socket.socket, int, subprocess.Popen[bytes]]:
        """A connection whose child (a real process in its own session) is setting up."""
        ours, theirs = socket.socketpair()
        self.socks += [ours, theirs]
        child = subprocess.Popen(["sleep", "60"], start_new_session=True)
        self.procs.append(child)
        conn = self.zygote_mod._Conn(ours)
        self.z.conns[ours.fileno()] = conn
        sync_r, sync_w = os.pipe2(os.O_NONBLOCK)  # as the zygote's (`_fork_taken`)
        os.set_blocking(sync_w, True)
        conn.pid = child.pid
        self.z.children[child.pid] = conn
        conn.setup_fd = sync_r
        conn.setup_deadline = time.monotonic() + 10
        self.z.selector.register(sync_r, self.zygote_mod.selectors.EVENT_READ, ("setup", conn))
        return conn, theirs, sync_w, child

    def answer(self, sock: socket.socket) -> dict[str, Any]:
        sock.settimeout(5)
        with sock.makefile("r") as f:
            return json.loads(f.readline() or "{}")

    def test_the_pid_is_reported_once_the_child_is_set_up(self) -> None:
        conn, theirs, sync_w, child = self.pending()
        os.write(sync_w, b"k")
        os.close(sync_w)
        self.assertTrue(self.z._setup_done(conn))
        self.assertEqual(self.answer(theirs), {"pid": child.pid, "start_ticks": self.zygote_mod._start_ticks()})
        self.assertEqual(conn.setup_fd, -1)
        self.assertIn(child.pid, self.z.children)
        self.assertIsNone(child.poll(), "a child that set up must keep running")
        # A stale readiness event for the same pipe changes nothing.
        self.assertTrue(self.z._setup_done(conn))

    def test_a_child_whose_pipe_closes_first_is_killed_and_refused(self) -> None:
        conn, theirs, sync_w, child = self.pending()
        os.close(sync_w)
        self.assertFalse(self.z._setup_done(conn))
        answer = self.answer(theirs)
        self.assertEqual(answer.get("retry"), False, answer)
        self.assertIn("did not set itself up", answer.get("refused", ""))
        self.assertNotIn(child.pid, self.z.children)
        self.assertEqual(child.wait(timeout=5), -signal.SIGKILL)

    def test_a_child_that_does_not_set_up_in_time_is_killed_and_refused(self) -> None:
        conn, theirs, sync_w, child = self.pending()
        self.z._expire_setups()
        self.assertIsNone(child.poll(), "killed before its deadline")
        conn.setup_deadline = time.monotonic() - 1
        self.z._expire_setups()
        self.assertIn("did not set itself up", self.answer(theirs).get("refused", ""))
        self.assertEqual(child.wait(timeout=5), -signal.SIGKILL)
        self.assertNotIn(child.pid, self.z.children)
        os.close(sync_w)

    # -- supervised requests: the fork path, in-process ------------------------------
    def supervised(self, conn: Any, timeout_ms: float | None = None) -> Any:
        """Make ``conn`` a supervised attempt's, with its files in a new folder."""
        folder = tempfile.TemporaryDirectory(prefix="pz-sup-")
        self.addCleanup(folder.cleanup)
        sup = self.zygote_mod._Supervision(os.path.join(folder.name, "attempt=1.claim"),
                                           os.path.join(folder.name, "attempt=1.result.json"),
                                           timeout_ms, 100.0, [2])
        self.zygote_mod.Zygote._started(sup)
        conn.supervise = sup
        return sup

    def test_a_supervised_child_that_does_not_set_up_gets_a_not_run_result(self) -> None:
        conn, theirs, sync_w, child = self.pending()
        sup = self.supervised(conn)
        os.close(sync_w)
        self.assertFalse(self.z._setup_done(conn))
        self.assertEqual(self.answer(theirs), {"refused": "the forked child did not set itself up",
                                               "retry": False, "not_run": True})
        self.assertEqual(child.wait(timeout=5), -signal.SIGKILL)
        result = _read_json(sup.result)
        self.assertEqual(result["exit"], {"type": "not_run"})
        self.assertEqual((result["pid"], result["timed_out"], result["peak_rss_kib"]), (None, False, 0))
        self.assertEqual(result["error"], "the forked child did not set itself up")
        _rfc3339(result["started_at"])

    def test_a_forked_supervised_childs_timeout_starts_once_it_is_set_up(self) -> None:
        conn, theirs, sync_w, child = self.pending()
        sup = self.supervised(conn, timeout_ms=0)
        self.assertEqual(self.z.deadlines, [])
        os.write(sync_w, b"k")
        os.close(sync_w)
        self.assertTrue(self.z._setup_done(conn))
        self.assertEqual(self.answer(theirs), {"pid": child.pid, "start_ticks": self.zygote_mod._start_ticks()})
        self.assertEqual([d[3] for d in self.z.deadlines], ["term"])
        self.z._expire_deadlines()
        self.assertEqual(child.wait(timeout=5), -signal.SIGTERM)
        self.assertIs(sup.timed_out, True)
        self.assertEqual(sup.notes, [f"execution_timeout of 0s exceeded: sent SIGTERM to process group {child.pid}"])
        self.assertEqual([d[3] for d in self.z.deadlines], ["kill"])

    def test_a_supervised_attempt_outlives_its_senders_connection(self) -> None:
        conn, theirs, sync_w, child = self.pending()
        self.supervised(conn)
        os.write(sync_w, b"k")
        os.close(sync_w)
        self.assertTrue(self.z._setup_done(conn))
        theirs.close()
        self.z._readable(conn)
        self.assertIsNone(child.poll(), "the sender's end killed a supervised task")
        self.assertNotIn(conn, self.z.conns.values())
        self.assertIs(self.z.children.get(child.pid), conn, "the zygote no longer waits for the task")

    def launch(self, supervised: bool) -> tuple[Any, socket.socket, dict[str, Any]]:
        """``_launch`` of a request that passes the checks, with ``os.fork`` failing."""
        ours, theirs = socket.socketpair()
        self.socks += [ours, theirs]
        conn = self.zygote_mod._Conn(ours)
        self.z.conns[ours.fileno()] = conn
        self.z.selector.register(ours, self.zygote_mod.selectors.EVENT_READ, conn)
        request: dict[str, Any] = {"argv": [], "env": {}, "cwd": None}
        conn.fds = [os.open(os.devnull, os.O_WRONLY) for _ in range(1 if supervised else 2)]
        if supervised:
            folder = tempfile.TemporaryDirectory(prefix="pz-sup-")
            self.addCleanup(folder.cleanup)
            request["supervise"] = {"claim": os.path.join(folder.name, "c.claim"),
                                    "result": os.path.join(folder.name, "c.result.json"),
                                    "timeout_ms": None, "grace_ms": 10, "gpu_ids": []}
        with mock.patch.object(os, "fork", side_effect=OSError(errno.EAGAIN, "no more processes")):
            self.z._launch(conn, request, b"")
            self.z._fork_taken()
        return conn, theirs, request

    def test_a_failed_fork_is_refused_and_a_supervised_attempt_gets_a_not_run_result(self) -> None:
        _, theirs, _ = self.launch(supervised=False)
        answer = self.answer(theirs)
        self.assertEqual(answer.get("retry"), False, answer)
        self.assertIn("cannot fork", answer.get("refused", ""))
        _, theirs, request = self.launch(supervised=True)
        answer = self.answer(theirs)
        self.assertEqual((answer.get("retry"), answer.get("not_run")), (False, True), answer)
        self.assertEqual(_read_json(request["supervise"]["claim"])["zygote"], True)
        result = _read_json(request["supervise"]["result"])
        self.assertEqual(result["exit"], {"type": "not_run"})
        self.assertIn("cannot fork", result["error"])

    def test_attempts_taken_in_one_pass_are_forked_first_and_registered_after(self) -> None:
        # Between the forks of one pass the zygote writes as little as it can
        # (each page it writes after a fork is copied): the children are
        # registered and the environment kept only once all are forked, and
        # a fork that fails refuses its own attempt only.
        z = self.zygote_mod.Zygote("/nonexistent.sock", "/nonexistent.lock", 30.0, ["PZ_BATCH"])
        self.addCleanup(z.selector.close)
        self.addCleanup(os.environ.pop, "PZ_BATCH", None)
        os.environ.pop("PZ_BATCH", None)
        conns, theirs = [], []
        for _ in range(3):
            ours, other = socket.socketpair()
            self.socks += [ours, other]
            conn = self.zygote_mod._Conn(ours)
            conn.fds = [os.open(os.devnull, os.O_WRONLY) for _ in range(2)]
            z.conns[ours.fileno()] = conn
            z.selector.register(ours, self.zygote_mod.selectors.EVENT_READ, conn)
            z._launch(conn, {"argv": [], "env": {"PZ_BATCH": "same"}, "cwd": None}, b"")
            conns.append(conn)
            theirs.append(other)
        self.assertEqual(z.children, {}, "forked before the pass's end")
        seen = []
        outcomes = iter([1 << 30, OSError(errno.EAGAIN, "no more processes"), (1 << 30) + 1])

        def fork() -> int:
            seen.append((dict(z.children), os.environ.get("PZ_BATCH")))
            outcome = next(outcomes)
            if isinstance(outcome, OSError):
                raise outcome
            return outcome

        with mock.patch.object(os, "fork", side_effect=fork):
            z._fork_taken()
        self.assertEqual(seen, [({}, None)] * 3)
        self.assertEqual(z.taken, [])
        self.assertEqual(z.children, {1 << 30: conns[0], (1 << 30) + 1: conns[2]})
        for conn in (conns[0], conns[2]):
            self.assertEqual(conn.fds, [], "the child's descriptors stay open in the zygote")
            self.assertGreaterEqual(conn.setup_fd, 0)
            self.assertEqual(z.selector.get_key(conn.setup_fd).data, ("setup", conn))
        self.assertIn("cannot fork", self.answer(theirs[1]).get("refused", ""))
        self.assertIsNone(conns[1].pid)
        # Two attempts alike in a row: the zygote keeps the value for the next children.
        self.assertEqual(os.environ.get("PZ_BATCH"), "same")
        for conn in (conns[0], conns[2]):
            z._end_setup(conn)

    # -- the end a child tells before its exit ----------------------------------------
    def set_up(self, conn: Any, theirs: socket.socket, sync_w: int, child: Any) -> None:
        """The child of ``conn`` sets up; its pid is answered."""
        os.write(sync_w, b"k")
        self.assertTrue(self.z._setup_done(conn))
        self.assertEqual(self.answer_line(theirs).get("pid"), child.pid)
        self.assertGreaterEqual(conn.end_fd, 0, "the set-up pipe was not kept for the end")
        self.assertEqual(self.z.selector.get_key(conn.end_fd).data, ("end", conn))

    def answer_line(self, sock: socket.socket) -> dict[str, Any]:
        """One answer line (``answer`` reads through a file that would keep the rest)."""
        sock.settimeout(5)
        line = b""
        while not line.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk:
                break
            line += chunk
        return json.loads(line or b"{}")

    def test_an_end_the_child_tells_is_reported_before_its_process_is_reaped(self) -> None:
        conn, theirs, sync_w, child = self.pending()
        self.set_up(conn, theirs, sync_w, child)
        os.write(sync_w, b"e %d 3 4321\n" % child.pid)
        os.close(sync_w)
        end_fd = conn.end_fd
        self.z._end_told(conn)
        self.assertEqual(self.answer_line(theirs), {"exit": {"type": "code", "code": 3}, "maxrss_kib": 4321})
        self.assertNotIn(child.pid, self.z.children, "the reap would report it a second time")
        self.assertEqual(conn.end_fd, -1)
        with self.assertRaises(KeyError):
            self.z.selector.get_key(end_fd)
        # What is left of the task's session is killed before the end is told.
        self.assertEqual(child.wait(timeout=5), -signal.SIGKILL)
        self.assertEqual(theirs.recv(1), b"", "the connection stays open after the end")

    def test_a_supervised_end_the_child_tells_writes_the_result_first(self) -> None:
        conn, theirs, sync_w, child = self.pending()
        sup = self.supervised(conn)
        sup.gpu_ids = []
        self.set_up(conn, theirs, sync_w, child)
        os.write(sync_w, b"e %d 0 2048\n" % child.pid)
        self.z._end_told(conn)
        self.assertEqual(self.answer_line(theirs), {"exit": {"type": "code", "code": 0}, "maxrss_kib": 2048})
        result = _read_json(sup.result)
        self.assertEqual((result["exit"], result["pid"], result["peak_rss_kib"]),
                         ({"type": "code", "code": 0}, child.pid, 2048))
        os.close(sync_w)

    def test_an_end_not_told_by_the_attempts_process_waits_for_the_reap(self) -> None:
        for said in (b"e 1 0 10\n", b"e %d zero 10\n", b"garbage\n", b""):
            with self.subTest(said=said):
                conn, theirs, sync_w, child = self.pending()
                self.set_up(conn, theirs, sync_w, child)
                if said:
                    os.write(sync_w, said.replace(b"%d", b"%d" % child.pid))
                os.close(sync_w)
                self.z._end_told(conn)
                self.assertIs(self.z.children.get(child.pid), conn, "ended on another's word")
                self.assertEqual(conn.end_fd, -1, "the channel stays watched after its word")
                self.assertIsNone(child.poll(), "killed before its end")
                theirs.settimeout(0.2)
                with self.assertRaises(socket.timeout):
                    theirs.recv(1)
                self.z.children.pop(child.pid)

    def test_a_told_end_brings_the_return_value_into_the_result_file(self) -> None:
        conn, theirs, sync_w, child = self.pending()
        sup = self.supervised(conn)
        sup.gpu_ids = []
        self.set_up(conn, theirs, sync_w, child)
        payload = json.dumps({"return_value": {"loss": 0.25, "tags": ["a", "é"] * 300}}).encode()
        word = b"e %d 0 2048 %d\n" % (child.pid, len(payload)) + payload
        # In two pieces, as a large word may come: nothing is reported on half of it.
        os.write(sync_w, word[:700])
        self.z._end_told(conn)
        self.assertIs(self.z.children.get(child.pid), conn, "ended on half a word")
        self.assertGreaterEqual(conn.end_fd, 0, "stopped listening in the middle of the word")
        os.write(sync_w, word[700:])
        self.z._end_told(conn)
        self.assertEqual(self.answer_line(theirs), {"exit": {"type": "code", "code": 0}, "maxrss_kib": 2048})
        result = _read_json(sup.result)
        self.assertEqual(result["xcoms"], {"return_value": {"loss": 0.25, "tags": ["a", "é"] * 300}})
        self.assertEqual(result["exit"], {"type": "code", "code": 0})
        os.close(sync_w)

    def test_words_that_bring_no_xcoms(self) -> None:
        parse, complete = self.zygote_mod._parse_told, self.zygote_mod._told_complete
        self.assertEqual(parse(b"e 7 0 10\n"), (7, 0, 10, None))
        self.assertEqual(parse(b'e 7 0 10 4\n{"a"'), None, "cut short")
        self.assertEqual(parse(b'e 7 0 10 2\n{}'), (7, 0, 10, {}))
        self.assertEqual(parse(b'e 7 0 10 7\n{"a": 1'), None, "not JSON")
        self.assertEqual(parse(b'e 7 0 10 3\n[1]'), None, "not an object")
        self.assertEqual(parse(b'e 7 1 10 8\n{"a": 1}'), None, "XComs of a failure")
        self.assertEqual(parse(b'e 7 0 10 8\n{"a": 1}trailing'), None)
        self.assertEqual(parse(b'e 7 0 10 x\n'), None)
        self.assertFalse(complete(b"e 7 0 10 8\n{"), "the rest is to come")
        self.assertFalse(complete(b"e 7 0 1"), "the line is to come")
        self.assertTrue(complete(b"e 7 0 10\n"))
        self.assertTrue(complete(b"e 7 0 10 8\n" + b"x" * 8))
        self.assertTrue(complete(b"nonsense " * 40), "a line longer than any word")
        self.assertTrue(complete(b"e 7 0 10 99999999\n"), "no more is read than any word holds")

    def test_the_reap_reads_what_the_child_said_before_its_exit(self) -> None:
        # Under load the zygote often reaps a child before it reads its word:
        # the return value must not be lost then; nor for an attempt with GPUs,
        # whose word is read first and whose end is its reap.
        self.z.wake_r, wake_w = os.pipe2(os.O_NONBLOCK)
        self.addCleanup(os.close, wake_w)
        self.addCleanup(os.close, self.z.wake_r)
        for gpus, code in ((False, 0), (True, 0), (False, 3)):
            with self.subTest(gpus=gpus, code=code):
                ours, theirs = socket.socketpair()
                self.socks += [ours, theirs]
                conn = self.zygote_mod._Conn(ours)
                sup = self.supervised(conn)
                conn.gpus = gpus
                end_r, end_w = os.pipe2(os.O_NONBLOCK)
                payload = b'{"return_value": [1, 2, 3]}'
                pid = os.fork()
                if pid == 0:
                    try:
                        os.write(end_w, b"e %d 0 99 %d\n" % (os.getpid(), len(payload)) + payload)
                    finally:
                        os._exit(code)
                os.close(end_w)
                conn.pid = pid
                self.z.children[pid] = conn
                self.z._watch_end(conn, end_r)
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                if gpus:
                    self.z._end_told(conn)
                    self.assertIs(self.z.children.get(pid), conn, "an attempt with GPUs ended on its word")
                self.z._reap()
                self.assertNotIn(pid, self.z.children)
                self.assertEqual(self.answer_line(theirs)["exit"], {"type": "code", "code": code})
                result = _read_json(sup.result)
                if code == 0:
                    self.assertEqual(result["xcoms"], {"return_value": [1, 2, 3]})
                else:  # its word said 0, its exit 3: the exit is what happened
                    self.assertNotIn("xcoms", result)
                self.assertEqual(conn.end_fd, -1)

    def test_an_attempt_with_gpus_ends_when_its_process_is_reaped(self) -> None:
        # A GPU is free once its process is gone, not once the task says it ends.
        # (How `_launch` marks such an attempt: test_a_launch_marks_the_attempts_with_gpus.)
        for supervised in (True, False):
            with self.subTest(supervised=supervised):
                conn, theirs, sync_w, child = self.pending()
                if supervised:
                    self.supervised(conn)  # gpu_ids [2]
                conn.gpus = True
                self.set_up(conn, theirs, sync_w, child)
                os.write(sync_w, b"e %d 0 10\n" % child.pid)
                os.close(sync_w)
                self.z._end_told(conn)
                self.assertIs(self.z.children.get(child.pid), conn)
                self.assertIsNone(child.poll())
                self.z.children.pop(child.pid)

    def test_a_launch_marks_the_attempts_with_gpus(self) -> None:
        # (supervise, the request's variables, the zygote's, the GPUs' variable per attempt, GPUs)
        cases = [({"gpu_ids": [1]}, {}, {}, True, True), ({"gpu_ids": []}, {}, {}, True, False),
                 (None, {"CUDA_VISIBLE_DEVICES": "0"}, {}, True, True),
                 (None, {"CUDA_VISIBLE_DEVICES": ""}, {}, True, False),
                 (None, {}, {"CUDA_VISIBLE_DEVICES": "1"}, False, True), (None, {}, {}, True, False)]
        for supervise, env, base, per_attempt, gpus in cases:
            with self.subTest(supervise=supervise, env=env, base=base):
                z = self.zygote_mod.Zygote("/nonexistent.sock", "/nonexistent.lock", 30.0,
                                           ["CUDA_VISIBLE_DEVICES"] if per_attempt else [])
                self.addCleanup(z.selector.close)
                z.base_env = dict(base)
                z.base_digest = self.zygote_mod.env_digest(z.base_env)
                ours, theirs = socket.socketpair()
                self.socks += [ours, theirs]
                conn = self.zygote_mod._Conn(ours)
                z.conns[ours.fileno()] = conn
                z.selector.register(ours, self.zygote_mod.selectors.EVENT_READ, conn)
                request: dict[str, Any] = {"argv": [], "env": dict(env), "cwd": None,
                                           "base_env_sha1": z.base_digest}
                conn.fds = [os.open(os.devnull, os.O_WRONLY) for _ in range(1 if supervise else 2)]
                if supervise is not None:
                    folder = tempfile.TemporaryDirectory(prefix="pz-sup-")
                    self.addCleanup(folder.cleanup)
                    request["supervise"] = dict(supervise, claim=os.path.join(folder.name, "c.claim"),
                                                result=os.path.join(folder.name, "c.result.json"),
                                                timeout_ms=None, grace_ms=10)
                z._launch(conn, request, b"")
                self.assertEqual([c for c, _ in z.taken], [conn], self.answer(theirs) if not z.taken else "")
                self.assertIs(conn.gpus, gpus)
                conn.close_fds()

    def test_the_timeouts_of_ended_attempts_are_dropped(self) -> None:
        conn, theirs, sync_w, child = self.pending()
        os.close(sync_w)
        live = (time.monotonic() + 3600, 0, conn, "term")
        ended = self.zygote_mod._Conn(theirs)
        ended.pid = 1 << 30  # not a child any more
        self.z.deadlines = [live] + [(time.monotonic() + 3600, i, ended, "term") for i in range(1, 100)]
        for _ in range(64):
            self.z._forget_deadline()
        self.assertEqual(len(self.z.deadlines), 100, "dropped before most were stale")
        self.z._forget_deadline()
        self.assertEqual(self.z.deadlines, [live])


class HugePagesTest(unittest.TestCase):
    """The zygote backs its anonymous memory with huge pages before it forks."""

    def test_only_whole_aligned_ranges_of_anonymous_writable_memory_are_asked_for(self) -> None:
        from pave.zygote import huge_page_ranges

        mib = 1 << 20
        lines = [
            # The C heap, from 1 MiB past an aligned address to 7 MiB past
            # it: the ranges at 2 and 4 MiB fit, the one at 6 MiB does not.
            f"{0x40000000 + mib:x}-{0x40000000 + 7 * mib:x} rw-p 00000000 00:00 0 [heap]",
            # Python's arenas (no name), exactly 2 MiB, aligned.
            f"{0x7f0000000000:x}-{0x7f0000000000 + 2 * mib:x} rw-p 00000000 00:00 0",
            # Under 2 MiB, or not whole once aligned: nothing.
            f"{0x7f0000400000 + mib:x}-{0x7f0000400000 + 3 * mib:x} rw-p 00000000 00:00 0",
            # Read-only, file-backed, the stack: never.
            f"{0x7f1000000000:x}-{0x7f1000000000 + 4 * mib:x} r--p 00000000 00:00 0",
            f"{0x7f2000000000:x}-{0x7f2000000000 + 4 * mib:x} rw-p 00001000 08:01 1234 /usr/lib/libpython3.so",
            f"{0x7ffc00000000:x}-{0x7ffc00000000 + 4 * mib:x} rw-p 00000000 00:00 0 [stack]",
            "garbage",
        ]
        self.assertEqual(huge_page_ranges(lines),
                         [0x40000000 + 2 * mib, 0x40000000 + 4 * mib, 0x7f0000000000])

    def test_collapsed_memory_keeps_its_contents_and_is_counted_as_huge_pages(self) -> None:
        code = textwrap.dedent("""
            import hashlib, json
            from pave.zygote import collapse_heap

            def huge_kib():
                for line in open("/proc/self/smaps_rollup"):
                    if line.startswith("AnonHugePages:"):
                        return int(line.split()[1])
                return 0

            # 24 MiB of objects (the C heap and mmapped chunks), with known contents.
            blocks = [bytes([i % 251]) * 100_000 + i.to_bytes(4, "big") for i in range(240)]
            digest = hashlib.sha256(b"".join(blocks)).hexdigest()
            before = huge_kib()
            collapsed = collapse_heap()
            print(json.dumps({"collapsed": collapsed, "before": before, "after": huge_kib(),
                              "same": hashlib.sha256(b"".join(blocks)).hexdigest() == digest}))
        """)
        out = subprocess.run([sys.executable, "-c", code], env=sdk_env(), capture_output=True, text=True,
                             timeout=60, check=True)
        got = json.loads(out.stdout)
        self.assertTrue(got["same"], got)
        if got["collapsed"] == 0:
            self.skipTest("this kernel collapses no memory into huge pages (MADV_COLLAPSE, Linux 6.1)")
        self.assertGreaterEqual(got["after"] - got["before"], 2048 * got["collapsed"], got)

    def test_ranges_the_kernel_refuses_are_skipped_and_sparse_ones_not_asked_for(self) -> None:
        import ctypes

        from pave import zygote

        calls: list[int] = []
        mib = 1 << 20
        refused = {0x40000000 + 2 * mib, 0x7f0000000000}  # say, marked MADV_NOHUGEPAGE
        sparse = {0x40000000 + 4 * mib: 447, 0x7f0000000000 + 2 * mib: 0}  # pages in memory

        def mincore(start: int, size: int, vec: Any) -> int:
            resident = sparse.get(start, 512)
            vec.raw = bytes([1] * resident + [0] * (512 - resident))
            return 0

        def madvise(start: int, size: int, advice: int) -> int:
            self.assertEqual((size, advice), (2 * mib, 25))
            calls.append(start)
            if start in refused:
                ctypes.set_errno(errno.EINVAL)
                return -1
            return 0

        with tempfile.NamedTemporaryFile("w", suffix=".maps") as maps, \
                mock.patch.object(ctypes, "CDLL") as cdll:
            maps.write(f"{0x40000000:x}-{0x40000000 + 8 * mib:x} rw-p 00000000 00:00 0 [heap]\n"
                       f"{0x7f0000000000:x}-{0x7f0000000000 + 4 * mib:x} rw-p 00000000 00:00 0\n")
            maps.flush()
            cdll.return_value.madvise = madvise
            cdll.return_value.mincore = mincore
            self.assertEqual(zygote.collapse_heap(maps.name), 2)
        # The refused ones are asked for, the sparse ones (under 448 of 512
        # pages in memory) are not.
        self.assertEqual(calls, [0x40000000, 0x40000000 + 2 * mib, 0x40000000 + 6 * mib, 0x7f0000000000])


class ShortSlicesTest(unittest.TestCase):
    """The zygote asks for short time slices, which its children do not inherit."""

    def test_the_zygote_gets_short_slices_and_its_children_the_default(self) -> None:
        code = textwrap.dedent("""
            import ctypes, json, os, struct
            from pave import zygote

            def runtime_ns():  # sched_getattr: the slice an ordinary task asked for
                number = {"x86_64": 315, "aarch64": 275, "riscv64": 275}.get(os.uname().machine)
                attr = ctypes.create_string_buffer(56)
                if number is None or ctypes.CDLL(None).syscall(number, 0, attr, 56, 0) != 0:
                    return None
                return struct.unpack("=IIQiIQQQ", attr.raw[:48])[5]

            before = runtime_ns()
            took = zygote.ask_for_short_slices(200_000)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.write(w, json.dumps(runtime_ns()).encode())
                os._exit(0)
            os.waitpid(pid, 0)
            print(json.dumps({"took": took, "before": before, "after": runtime_ns(),
                              "child": json.loads(os.read(r, 100)), "nice": os.getpriority(os.PRIO_PROCESS, 0)}))
        """)
        out = subprocess.run([sys.executable, "-c", code], env=sdk_env(), capture_output=True, text=True,
                             timeout=60, check=True)
        got = json.loads(out.stdout)
        self.assertEqual(got["nice"], 0, got)
        if not got["took"] or got["before"] is None or got["after"] != 200_000:
            self.skipTest(f"this kernel keeps no time slice per task (sched_setattr, Linux 6.12): {got}")
        self.assertNotEqual(got["before"], 200_000, got)
        self.assertEqual(got["child"], got["before"], "a task forked by the zygote keeps the default slice")

    def test_a_zygote_under_another_policy_or_a_negative_nice_is_left_alone(self) -> None:
        import ctypes

        from pave import zygote

        with mock.patch.object(ctypes, "CDLL") as cdll:
            with mock.patch.object(os, "getpriority", return_value=-5):
                self.assertFalse(zygote.ask_for_short_slices())
            if hasattr(os, "SCHED_BATCH"):
                with mock.patch.object(os, "sched_getscheduler", return_value=os.SCHED_BATCH):
                    self.assertFalse(zygote.ask_for_short_slices())
            cdll.return_value.syscall.assert_not_called()


class CreateExclusiveTest(unittest.TestCase):
    """Claims and results are created complete or not at all, never over a file."""

    def setUp(self) -> None:
        from pave import zygote

        self.zygote_mod = zygote
        self.tmp = tempfile.TemporaryDirectory(prefix="pz-create-")
        self.path = os.path.join(self.tmp.name, "attempt=1.claim")

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def check(self) -> None:
        self.zygote_mod._create_exclusive(self.path, b'{"a": 1}')
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b'{"a": 1}')
        with self.assertRaises(FileExistsError):
            self.zygote_mod._create_exclusive(self.path, b'{"b": 2}')
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b'{"a": 1}')
        self.assertEqual(os.listdir(self.tmp.name), ["attempt=1.claim"])

    def test_through_an_unnamed_file(self) -> None:
        self.check()

    def test_through_a_temporary_file_without_o_tmpfile(self) -> None:
        real_open = os.open

        def no_tmpfile(path: Any, flags: int, *args: Any, **kw: Any) -> int:
            if flags & os.O_TMPFILE == os.O_TMPFILE:
                raise OSError(errno.EOPNOTSUPP, "not supported")
            return real_open(path, flags, *args, **kw)

        with mock.patch.object(os, "open", no_tmpfile):
            self.check()

    def test_a_missing_folder_is_an_error(self) -> None:
        with self.assertRaises(OSError) as e:
            self.zygote_mod._create_exclusive(os.path.join(self.tmp.name, "no", "x"), b"{}")
        self.assertNotIsInstance(e.exception, FileExistsError)

    def test_times_and_start_ticks(self) -> None:
        self.assertEqual(self.zygote_mod._rfc3339(0.5), "1970-01-01T00:00:00.500000Z")
        self.assertEqual(self.zygote_mod._rfc3339(1796005582.25), "2026-11-30T02:26:22.250000Z")
        self.assertEqual(self.zygote_mod._start_ticks(), _start_ticks(os.getpid()))
        self.assertEqual((self.zygote_mod._secs(1200), self.zygote_mod._secs(60000)), ("1.2", "60"))


class WarmUpTest(unittest.TestCase):
    """The zygote warms pave's runtime before its first fork (``_warm_runtime``)."""

    def test_it_runs_a_private_task_and_leaves_nothing_behind(self) -> None:
        code = (
            "import io, os, sys\n"
            "from pave import zygote\n"
            "from pave.dag import _registered\n"
            "before = dict(os.environ)\n"
            "out, sys.stdout = sys.stdout, io.StringIO()\n"
            "import threading\n"
            "fds = sorted(os.listdir('/proc/self/fd'))\n"
            "runs = zygote._warm_runtime()\n"
            "printed, sys.stdout = sys.stdout.getvalue(), out\n"
            "print(runs == 3 * zygote.WARM_RUNS, len(_registered), dict(os.environ) == before, repr(printed),\n"
            "      threading.active_count(), sorted(os.listdir('/proc/self/fd')) == fds,\n"
            "      zygote.runtime.deferred_xcoms)\n"
        )
        out = subprocess.run([sys.executable, "-S", "-c", code], env=sdk_env(), capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        # Every run succeeded, those that push against the stand-in API too;
        # no DAG was left registered (it would pass for one of the file's),
        # the environment is as it was, nothing was printed, and the
        # stand-in's thread and sockets are gone (a fork would inherit them).
        self.assertEqual(out.stdout.strip(), "True 0 True '' 1 True None", out.stderr)

    def test_the_stand_in_api_answers_every_push_then_goes_away(self) -> None:
        code = (
            "import threading\n"
            "from pave import zygote\n"
            "from pave.api_client import ExecutionApi\n"
            "api = zygote._WarmUpApi()\n"
            "client = ExecutionApi(api.url, 'warm-up')\n"
            "client.put_xcom('return_value', 1)\n"
            "client.put_xcom('other', {'a': [1, 2]})\n"  # the same kept-alive connection
            "client.close()\n"
            "second = ExecutionApi(api.url, 'warm-up')\n"
            "second.put_xcom('return_value', 'x' * 100000)\n"  # a new connection, a large body
            "second.close()\n"
            "api.close()\n"
            "print(api.answered, api.thread.is_alive(), threading.active_count())\n"
        )
        out = subprocess.run([sys.executable, "-S", "-c", code], env=sdk_env(), capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), "3 False 1", out.stderr)


THREADING_AT_FORK_SCRIPT = """
import json, os, sys, threading
from pave.zygote import _ThreadingAtFork

def in_child(check):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, json.dumps(check()).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    return json.loads(os.read(r, 4096))

def listed(handlers):
    return any(h is threading._after_fork for h in handlers)

at_fork = _ThreadingAtFork()
out = {"taken": at_fork.take_out()}
handlers = at_fork.handlers
out["listed_after_take_out"] = listed(handlers)
out["child_threads"] = in_child(lambda: [threading.active_count(),
                                         threading.current_thread() is threading.main_thread()])
at_fork.before_fork()
out["kept_out_single_threaded"] = at_fork.handlers is handlers and not listed(handlers)
stop = threading.Event()
worker = threading.Thread(target=stop.wait)
worker.start()
at_fork.before_fork()
out["put_back"] = at_fork.handlers is None and listed(handlers)
out["child_threads_with_worker"] = in_child(lambda: threading.active_count())
stop.set()
worker.join()
print(json.dumps(out))
"""


class ThreadingAtForkTest(unittest.TestCase):
    def test_the_handler_is_out_while_single_threaded_and_back_once_a_thread_starts(self) -> None:
        out = subprocess.run([sys.executable, "-c", THREADING_AT_FORK_SCRIPT], env=sdk_env(),
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout), {
            "taken": True, "listed_after_take_out": False, "child_threads": [1, True],
            "kept_out_single_threaded": True, "put_back": True,
            # The handler ran again: the worker that was not forked is gone.
            "child_threads_with_worker": 1,
        })


CLOSE_FDS_SCRIPT = """
import json, os
from pave.zygote import Zygote

zygote = Zygote("/nonexistent/z.sock", "/nonexistent/z.lock", 1.0, [])
r, w = os.pipe()
opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(12)]  # above and below the kept ones
zygote.kept_fds = {opened[3], w}
pid = os.fork()
if pid == 0:
    zygote._close_zygote_fds(keep=opened[7])
    left = sorted(int(n) for n in os.listdir("/proc/self/fd"))
    os.write(w, json.dumps(left).encode())
    os._exit(0)
os.close(w)
os.waitpid(pid, 0)
left = json.loads(os.read(r, 4096))
print(json.dumps({"left": left, "expected_at_least": [0, 1, 2, opened[3], opened[7], w], "opened": opened}))
"""


class CloseZygoteFdsTest(unittest.TestCase):
    def test_a_child_closes_every_descriptor_but_stdio_the_kept_ones_and_its_own(self) -> None:
        out = subprocess.run([sys.executable, "-c", CLOSE_FDS_SCRIPT], env=sdk_env(), capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        got = json.loads(out.stdout)
        kept = set(got["expected_at_least"])
        # What is left: those, and the descriptor listdir read /proc/self/fd with.
        extra = set(got["left"]) - kept
        self.assertTrue(kept <= set(got["left"]), got)
        self.assertEqual(len(extra), 1, got)
        self.assertFalse(extra & set(got["opened"]), got)


class EnvPlanTest(unittest.TestCase):
    def test_only_the_attempts_own_variables_are_touched(self) -> None:
        from pave.zygote import _EnvPlan

        base = {"PATH": "/bin", "HOME": "/h", "WRAPPED": "before"}
        # The wrapper changed WRAPPED and removed HOME; the import set IMPORTED and CUDA_VISIBLE_DEVICES.
        changes = [({"WRAPPED": "after"}, ["HOME"]), ({"IMPORTED": "1", "CUDA_VISIBLE_DEVICES": "0"}, [])]
        zygote_env = {"PATH": "/bin", "WRAPPED": "after", "IMPORTED": "1", "CUDA_VISIBLE_DEVICES": "0",
                      "PAVE_TASK_ID": "first", "PAVE_MAP_INDEX": "4"}
        plan = _EnvPlan(base, changes, zygote_env)
        request = dict(base, PAVE_TASK_ID="second", PAVE_RUN_ID="r", CUDA_VISIBLE_DEVICES="5")
        with mock.patch.dict(os.environ, zygote_env, clear=True):
            plan.apply(request)
            got = dict(os.environ)
        # What a fresh interpreter started through the wrapper would have,
        # after the import: the request, then the wrapper's and the import's changes.
        self.assertEqual(got, {"PATH": "/bin", "WRAPPED": "after", "IMPORTED": "1", "CUDA_VISIBLE_DEVICES": "0",
                               "PAVE_TASK_ID": "second", "PAVE_RUN_ID": "r"})

    def test_the_zygote_keeps_what_two_attempts_in_a_row_had_alike_and_children_set_only_the_rest(self) -> None:
        from pave.zygote import _EnvPlan

        base = {"PATH": "/bin"}
        plan = _EnvPlan(base, [], dict(base))

        def attempt(n: int, **more: str) -> dict[str, str]:
            return dict(base, PAVE_RUN_ID="r", PAVE_TASK_TOKEN=f"t{n}", PAVE_MAP_INDEX=str(n), **more)

        with mock.patch.dict(os.environ, base, clear=True):
            plan.keep(attempt(0))
            self.assertEqual(dict(os.environ), base)  # one attempt is no pattern
            plan.keep(attempt(1))
            self.assertEqual(dict(os.environ), dict(base, PAVE_RUN_ID="r"))
            self.assertEqual(plan.held, {"PAVE_RUN_ID": "r"})

            setitem = type(os.environ).__setitem__
            names: list[str] = []

            def spy(env: Any, name: str, value: str) -> None:
                names.append(name)
                setitem(env, name, value)

            # A child of the next attempt (its own copy of the environment).
            with mock.patch.dict(os.environ), mock.patch.object(type(os.environ), "__setitem__", spy):
                plan.apply(attempt(2))
                self.assertEqual(dict(os.environ), attempt(2))
            self.assertEqual(sorted(names), ["PAVE_MAP_INDEX", "PAVE_TASK_TOKEN"])
            # Children of another run's attempt, and of one without the variable.
            with mock.patch.dict(os.environ):
                plan.apply(dict(attempt(3), PAVE_RUN_ID="other"))
                self.assertEqual(dict(os.environ), dict(attempt(3), PAVE_RUN_ID="other"))
            with mock.patch.dict(os.environ):
                plan.apply(base)
                self.assertEqual(dict(os.environ), base)
