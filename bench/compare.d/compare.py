"""Side-by-side benchmark: the same Airflow DAG files on Apache Airflow 3 and on pave.

Run it through ``bench/compare`` (which builds pave, creates the cached
Airflow venv and calls this file with that venv's Python). It measures, in
one run, alternating the systems' order every round:

* mode ``test``: ``airflow dags test DAG_ID`` against ``pave dags test FILE``
  (one process each, from command start to exit);
* mode ``service``: Airflow's real services (api-server, scheduler,
  dag-processor; LocalExecutor) against ``pave standalone``, from the REST
  trigger to the run's end as the system recorded it;
* the physical floor: the same work as bare ``python -c`` process spawns at
  the same parallelism, with no orchestrator;
* the fork floor: the same work as children forked by one bare interpreter
  at the same parallelism (the least a process per task costs once an
  interpreter is running, as pave's pre-forked one is).

Memory is the whole system: every process below this driver (which makes
itself a child subreaper, so daemonized children such as pave's pre-forked
interpreter stay counted), sampled every ``SAMPLE_S`` seconds or less often
(the sampler keeps to about 2% of a core: ``Sampler``); the peak of
the summed PSS (proportional set size: pages shared by forked processes are
split among them, so a fork is not counted twice) and of the summed RSS.

Everything it measured goes to ``OUT/results.json``; ``report.py`` turns
that into the tables of bench/RESULTS.md and the chart. Standard library
only (the chart needs matplotlib, which ``bench/compare`` installs in the
venv).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
DAGS = HERE / "dags"
SAMPLE_S = 0.05  # at most this often; a cheap tree (a short `pave dags test`) gets several samples
SAMPLE_DUTY = 50  # wait at least 50x what a sample took (Sampler)
POLL_S = 0.2  # how often a run's state is asked for (its end comes from the system's own record)
PR_SET_CHILD_SUBREAPER = 36


# --------------------------------------------------------------------------
# Cases


FIB = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
TRAIN = (
    "data = [[i / 100.0, 3 * (i / 100.0) + 1 + ((i * 37) % 11 - 5) / 100.0] for i in range(200)]\n"
    "w = b = 0.0\n"
    "for _ in range({epochs}):\n"
    "    gw = gb = 0.0\n"
    "    for x, y in data:\n"
    "        err = w * x + b - y\n"
    "        gw += err * x\n"
    "        gb += err\n"
    "    w -= {lr} * gw / len(data)\n"
    "    b -= {lr} * gb / len(data)\n"
)


@dataclass
class Case:
    """One DAG file and the bare-spawn floor of the same work."""

    name: str
    dag_id: str
    tasks: int
    # Levels of Python snippets: each level's snippets run at once (up to the
    # parallelism), levels one after the other.
    floor: list[list[str]]
    chain: bool = False
    heavy: bool = False

    @property
    def file(self) -> Path:
        return DAGS / f"{self.dag_id}.py"


def ml_floor() -> list[list[str]]:
    grid = [(lr, ep) for lr in (0.01, 0.02, 0.05, 0.1) for ep in (20, 40, 60, 80)]
    prep = "data = [[i / 100.0, 3 * (i / 100.0) + 1 + ((i * 37) % 11 - 5) / 100.0] for i in range(200)]"
    return [[prep], [TRAIN.format(lr=lr, epochs=ep) for lr, ep in grid], ["pass"], ["pass"]]


CASES = [
    Case("fanout", "cmp_fanout", 1000, [["pass"] * 1000]),
    Case("chain", "cmp_chain", 100, [["pass"]] * 100, chain=True),
    Case("mapped", "cmp_mapped", 1000, [["pass"] * 1000]),
    Case("fib_light", "cmp_fib_light", 40, [[FIB + "fib(10)"]] * 40, chain=True),
    Case("fib_heavy", "cmp_fib_heavy", 10, [[FIB + "fib(33)"]] * 10, chain=True, heavy=True),
    # deploy or alert is skipped by the branch: 19 of the 20 tasks run
    Case("ml", "cmp_ml", 20, ml_floor()),
]


# --------------------------------------------------------------------------
# Process-tree sampling


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children of children...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after ')'
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB, (0, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            pss = rss = 0
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
            return pss, rss
    except (OSError, ValueError):
        return 0, 0


class Sampler:
    """Peak summed PSS/RSS and process count of everything below this process.

    A sample reads every process's ``smaps_rollup``, which walks its page
    tables: below Airflow's services (some 70 processes, 10 GiB of summed
    RSS) one took about 0.1 s, and sampling every ``SAMPLE_S`` used 20 to
    50% of a core, taken from the system it measured. So the sampler waits
    ``SAMPLE_DUTY`` times as long as its last sample took, if that is longer
    than ``SAMPLE_S``: it keeps to about 2% of a core, and a system whose
    processes cost more to sample (Airflow's) is sampled less often."""

    def __init__(self) -> None:
        self.me = os.getpid()
        self.peak_pss = self.peak_rss = self.peak_procs = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.sample()
            self.samples += 1
            self._stop.wait(max(SAMPLE_S, SAMPLE_DUTY * (time.monotonic() - t0)))

    def sample(self) -> None:
        pids = descendants(self.me)
        pss = rss = 0
        for p in pids:
            a, b = memory_kib(p)
            pss += a
            rss += b
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_procs = max(self.peak_procs, len(pids))

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> dict[str, int]:
        return {"peak_pss_kib": self.peak_pss, "peak_rss_kib": self.peak_rss, "peak_procs": self.peak_procs,
                "memory_samples": self.samples}


def reap() -> None:
    """Collect exited orphans (this process is their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def settle(what: str, timeout: float = 20.0) -> None:
    """Wait until nothing runs below this process (kill what lingers)."""
    deadline = time.monotonic() + timeout
    while True:
        reap()
        left = descendants(os.getpid())
        if not left:
            return
        if time.monotonic() > deadline:
            print(f"  note: {len(left)} process(es) still alive after {what}; killing them", flush=True)
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
            reap()
            return
        time.sleep(0.1)


# --------------------------------------------------------------------------
# Timestamps


def parse_ts(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 string or Airflow's naive-UTC SQLite text."""
    if value is None or value == "":
        return None
    s = str(value).replace("Z", "+00:00")
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


@dataclass
class Tis:
    """Start and end of every task instance that ran, in seconds since the epoch."""

    spans: list[tuple[str, int, float, float]] = field(default_factory=list)  # task_id, map_index, start, end
    states: dict[str, int] = field(default_factory=dict)

    def first_start(self) -> float | None:
        return min((s for _, _, s, _ in self.spans), default=None)

    def hops(self) -> list[float]:
        """Gaps between one task's end and the next one's start, in start order (chains)."""
        spans = sorted(self.spans, key=lambda s: s[2])
        return [b[2] - a[3] for a, b in zip(spans, spans[1:])]


def tis_from(rows: list[tuple[str, int, str | None, Any, Any]]) -> Tis:
    out = Tis()
    for task_id, map_index, state, start, end in rows:
        key = state or "none"
        out.states[key] = out.states.get(key, 0) + 1
        s, e = parse_ts(start), parse_ts(end)
        if s is not None and e is not None:
            out.spans.append((task_id, map_index, s, e))
    return out


# --------------------------------------------------------------------------
# The systems


@dataclass
class Env:
    pave: Path
    airflow_venv: Path
    python: str  # the interpreter pave's tasks and the floor run (an empty venv of Airflow's base one)
    par: int
    work: Path

    @property
    def airflow(self) -> str:
        return str(self.airflow_venv / "bin" / "airflow")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_env(home: Path, dags: Path, env: Env, port: int | None = None, db_url: str | None = None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PAVE"))}
    out.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(env.par),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url or f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API_AUTH__JWT_SECRET": "pave-bench-compare-not-a-secret",
            "AIRFLOW__API__SECRET_KEY": "pave-bench-compare-not-a-secret",
            # Airflow's remedy for task runners that time out on a loaded
            # API server ("Increase this value if you experience timeout
            # errors under high load"; default 5 s): on two busy cores its
            # wide rounds lost tasks to `httpx.ReadTimeout` (session 15).
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    if port is not None:
        out["AIRFLOW__API__BASE_URL"] = f"http://127.0.0.1:{port}"
        out["AIRFLOW__API__PORT"] = str(port)
        out["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
    return out


def pave_env(env: Env, home: Path | None = None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PAVE"))}
    out["PAVE_PYTHON"] = env.python
    out["PYTHONDONTWRITEBYTECODE"] = "1"
    if home is not None:
        out["PAVE_HOME"] = str(home)
    return out


def airflow_db_rows(db: Path, dag_id: str, run_id: str | None = None) -> tuple[tuple[Any, ...], list[Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        if run_id is None:
            run = conn.execute(
                "SELECT run_id, state, queued_at, start_date, end_date FROM dag_run"
                " WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
                (dag_id,),
            ).fetchone()
        else:
            run = conn.execute(
                "SELECT run_id, state, queued_at, start_date, end_date FROM dag_run WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            ).fetchone()
        if run is None:
            return (), []
        tis = conn.execute(
            "SELECT task_id, map_index, state, start_date, end_date FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (dag_id, run[0]),
        ).fetchall()
        return tuple(run), tis
    finally:
        conn.close()


PG_DB = "pave_bench_airflow"


def postgres_url(dsn: str) -> str:
    """A fresh, empty database for Airflow's services on the PostgreSQL server at ``dsn``."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {PG_DB}")
    conn.close()
    params = dict(kv.split("=", 1) for kv in dsn.split())
    return f"postgresql+psycopg2://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:{params.get('port', '5432')}/{PG_DB}"


def airflow_pg_rows(url: str, dag_id: str, run_id: str) -> tuple[tuple[Any, ...], list[Any]]:
    import psycopg2

    conn = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT run_id, state, queued_at, start_date, end_date FROM dag_run WHERE dag_id = %s AND run_id = %s",
                (dag_id, run_id),
            )
            run = cur.fetchone()
            if run is None:
                return (), []
            cur.execute(
                "SELECT task_id, map_index, state, start_date, end_date FROM task_instance WHERE dag_id = %s AND run_id = %s",
                (dag_id, run_id),
            )
            return tuple(run), cur.fetchall()
    finally:
        conn.close()


def run_measured(argv: list[str], env: dict[str, str], log: Path, timeout: float) -> tuple[float, float, int, dict[str, int]]:
    """Run ``argv``; return (start epoch, wall seconds, exit code, memory peaks)."""
    with open(log, "ab") as fh, Sampler() as sampler:
        t0_epoch, t0 = time.time(), time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
            rc = 124 if rc == 0 else rc
        wall = time.monotonic() - t0
        sampler.sample()
    return t0_epoch, wall, rc, sampler.result()


def airflow_dags_test(case: Case, env: Env, home: Path, log: Path) -> dict[str, Any]:
    aenv = airflow_env(home, home / "dags", env)
    t0, wall, rc, mem = run_measured([env.airflow, "dags", "test", case.dag_id], aenv, log, timeout=3600)
    run, rows = airflow_db_rows(home / "airflow.db", case.dag_id)
    return measurement(case, t0, wall, rc, run[1] if run else "missing", tis_from(rows), mem)


def pave_dags_test(case: Case, env: Env, log: Path) -> dict[str, Any]:
    out = env.work / "pave-test.json"
    penv = pave_env(env)
    penv["TMPDIR"] = str(env.work)
    with open(out, "wb") as fh, Sampler() as sampler:
        t0_epoch, t0 = time.time(), time.monotonic()
        with open(log, "ab") as err:
            proc = subprocess.run(
                [str(env.pave), "dags", "test", str(case.file), "--json", "--parallelism", str(env.par)],
                env=penv,
                stdout=fh,
                stderr=err,
                check=False,
                timeout=3600,
            )
        wall = time.monotonic() - t0
    try:
        doc = json.loads(out.read_text())
    except json.JSONDecodeError:
        doc = {"state": "unreadable output", "task_instances": []}
    rows = [(t["task_id"], t["map_index"], t["state"], t["start_date"], t["end_date"]) for t in doc["task_instances"]]
    return measurement(case, t0_epoch, wall, proc.returncode, doc["state"], tis_from(rows), sampler.result())


def measurement(
    case: Case, t0: float, wall: float, rc: int, run_state: str, tis: Tis, mem: dict[str, int], end: float | None = None
) -> dict[str, Any]:
    first = tis.first_start()
    hops = tis.hops() if case.chain else []
    return {
        "wall_s": wall if end is None else end - t0,
        "exit_code": rc,
        "run_state": run_state,
        "ti_states": tis.states,
        "first_task_start_s": None if first is None else first - t0,
        "hop_median_s": statistics.median(hops) if hops else None,
        "task_busy_s": sum(e - s for _, _, s, e in tis.spans),
        **mem,
    }


# ---- services


def http(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        text = resp.read()
    return json.loads(text) if text else None


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, json.JSONDecodeError, sqlite3.Error):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class Exited(RuntimeError):
    """A service process ended while it was being waited for."""


def alive(procs: list[subprocess.Popen[bytes]], log: Path) -> bool:
    for p in procs:
        if p.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise Exited(f"{' '.join(map(str, p.args))} exited with {p.returncode}; end of {log}:\n{tail}")
    return True


class Service:
    """A long-running system under test: start, trigger + wait, stop."""

    name = ""

    def start(self) -> None: ...

    def run(self, case: Case) -> tuple[float, str, Tis, float | None]: ...

    def stop(self) -> None: ...


class AirflowService(Service):
    name = "airflow"

    def __init__(self, env: Env, home: Path, cases: list[Case], log: Path, db_url: str | None) -> None:
        self.env, self.home, self.cases, self.log = env, home, cases, log
        self.procs: list[subprocess.Popen[bytes]] = []
        self.port = free_port()
        self.db_url = db_url

    def prepare(self) -> None:
        """Create the home and migrate its database once (not timed)."""
        dags = self.home / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        for c in self.cases:
            shutil.copy(c.file, dags / c.file.name)
        aenv = airflow_env(self.home, dags, self.env, self.port, self.db_url)
        with open(self.log, "ab") as fh:
            subprocess.run([self.env.airflow, "db", "migrate"], env=aenv, stdout=fh, stderr=subprocess.STDOUT, check=True)

    def start(self) -> None:
        started = time.time()
        aenv = airflow_env(self.home, self.home / "dags", self.env, self.port, self.db_url)
        fh = open(self.log, "ab")
        for argv in (["api-server", "--port", str(self.port)], ["scheduler"], ["dag-processor"]):
            self.procs.append(subprocess.Popen([self.env.airflow, *argv], env=aenv, stdout=fh, stderr=subprocess.STDOUT))
        api = f"http://127.0.0.1:{self.port}/api/v2"
        procs = self.procs
        wait_for("Airflow's API server", lambda: alive(procs, self.log) and http("GET", f"{api}/monitor/health") is not None, 180, 0.5)
        want = {c.dag_id for c in self.cases}

        def parsed() -> bool:
            dags = http("GET", f"{api}/dags?limit=100")["dags"]
            return want <= parsed_since(dags, started, lambda d: not d.get("is_paused"))

        wait_for("Airflow to parse every DAG file", parsed, 300, 0.5)

        def scheduler_up() -> bool:
            return http("GET", f"{api}/monitor/health")["scheduler"]["status"] == "healthy"

        wait_for("Airflow's scheduler", scheduler_up, 120, 0.5)

    def run(self, case: Case) -> tuple[float, str, Tis, float | None]:
        api = f"http://127.0.0.1:{self.port}/api/v2"
        t0 = time.time()
        run = http("POST", f"{api}/dags/{case.dag_id}/dagRuns", {"logical_date": None})
        run_id = run["dag_run_id"]
        url = f"{api}/dags/{case.dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}"
        # Polled through the API, as pave is: a reader of Airflow's SQLite
        # file (no WAL) could make its writers wait.
        wait_for(f"{case.dag_id} on Airflow", lambda: http("GET", url)["state"] in ("success", "failed"), 3600, POLL_S)
        if self.db_url:
            row, tis = airflow_pg_rows(self.db_url, case.dag_id, run_id)
        else:
            row, tis = airflow_db_rows(self.home / "airflow.db", case.dag_id, run_id)
        return t0, row[1], tis_from(tis), parse_ts(row[4])

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        settle("stopping Airflow", 30)


class PaveService(Service):
    name = "pave"

    def __init__(self, env: Env, home: Path, cases: list[Case], log: Path) -> None:
        self.env, self.home, self.cases, self.log = env, home, cases, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.token = ""

    def prepare(self) -> None:
        dags = self.home / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        for c in self.cases:
            shutil.copy(c.file, dags / c.file.name)

    def start(self) -> None:
        started = time.time()
        penv = pave_env(self.env, self.home)
        fh = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [
                str(self.env.pave),
                "standalone",
                "--port",
                str(self.port),
                "--dags",
                str(self.home / "dags"),
                "--parallelism",
                str(self.env.par),
            ],
            env=penv,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        api = f"http://127.0.0.1:{self.port}/api/v1"
        proc = self.proc
        wait_for("pave's API", lambda: alive([proc], self.log) and http("GET", f"{api}/health") is not None, 120, 0.1)
        if not self.token:
            self.token = subprocess.run(
                [str(self.env.pave), "tokens", "create", "--username", "admin", "--name", "bench-compare"],
                env=penv,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        want = {c.dag_id for c in self.cases}

        def parsed() -> bool:
            dags = http("GET", f"{api}/dags?limit=1000", token=self.token)["dags"]
            return want <= parsed_since(dags, started)

        wait_for("pave to parse every DAG file", parsed, 300, 0.2)
        for c in self.cases:
            http("PATCH", f"{api}/dags/{c.dag_id}", {"is_paused": False}, token=self.token)

    def run(self, case: Case) -> tuple[float, str, Tis, float | None]:
        api = f"http://127.0.0.1:{self.port}/api/v1"
        t0 = time.time()
        run = http("POST", f"{api}/dags/{case.dag_id}/dagRuns", {}, token=self.token)
        run_id = run["dag_run_id"]
        url = f"{api}/dags/{case.dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}"
        state: dict[str, Any] = {}

        def done() -> bool:
            state["run"] = http("GET", url, token=self.token)
            return state["run"]["state"] in ("success", "failed")

        wait_for(f"{case.dag_id} on pave", done, 3600, POLL_S)
        rows = []
        offset = 0
        while True:
            page = http("GET", f"{url}/taskInstances?limit=1000&offset={offset}", token=self.token)
            for t in page["task_instances"]:
                rows.append((t["task_id"], t["map_index"], t["state"], t["start_date"], t["end_date"]))
            offset += len(page["task_instances"])
            if not page["task_instances"] or offset >= page["total_entries"]:
                break
        return t0, state["run"]["state"], tis_from(rows), parse_ts(state["run"]["end_date"])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        settle("stopping pave", 5)


def parsed_since(dags: list[dict[str, Any]], started: float, keep: Any = lambda d: True) -> set[str]:
    """The ids of the DAGs this start of a system has parsed. From the second
    round on, the database already lists every DAG while the new processes
    still parse the files (pave's pre-forked interpreter of a file is the
    one that parses it): a run triggered then would count that start-up in
    its wall. Both systems record the parse in `last_parsed_time`."""
    return {d["dag_id"] for d in dags if keep(d) and (parse_ts(d.get("last_parsed_time")) or 0.0) >= started}


def service_round(svc: Service, cases: list[Case]) -> list[tuple[Case, dict[str, Any]]]:
    """Start the system, run every case once (sampling memory throughout), stop it."""
    out = []
    with Sampler() as sampler:
        t_start = time.monotonic()
        svc.start()
        startup = time.monotonic() - t_start
        print(f"  {svc.name} up in {startup:.1f}s", flush=True)
        for case in cases:
            t0, state, tis, end = svc.run(case)
            m = measurement(case, t0, 0.0, 0, state, tis, {}, end=end)
            m["startup_s"] = startup
            out.append((case, m))
            print(f"  {svc.name:8s} {case.name:10s} {m['wall_s']:9.2f}s  {state}", flush=True)
        svc.stop()
    mem = sampler.result()
    for _, m in out:
        m.update(mem)  # one round's peak covers all its cases
    return out


# ---- the floor


def floor_run(case: Case, env: Env) -> dict[str, Any]:
    def one(code: str) -> None:
        subprocess.run([env.python, "-c", code], check=True)

    with Sampler() as sampler:
        t0 = time.monotonic()
        with ThreadPoolExecutor(env.par) as pool:
            for level in case.floor:
                list(pool.map(one, level))
        wall = time.monotonic() - t0
    return {"wall_s": wall, "exit_code": 0, "run_state": "success", **sampler.result()}


# The floor of a process per task when the interpreter is already running:
# one bare interpreter forks a child per task (at most PAR at a time, level
# by level), the child runs the task's body and leaves with `os._exit`. No
# orchestrator, no SDK, no log files: what neither system can go below while
# it gives every task a process of its own (pave forks its tasks from a
# pre-forked interpreter; each of Airflow's LocalExecutor workers, one per
# slot and long-lived, supervises a task runner it forks per task). The
# wall is timed inside, from the first fork to the last reap: the
# interpreter's own start is not the work's.
FORK_FLOOR = """
import json, os, sys, time
levels, par = json.load(sys.stdin), int(sys.argv[1])
codes = {c: compile(c, "<task>", "exec") for level in levels for c in level}
failed = 0
def reap():
    global failed
    _, status = os.wait()
    failed += status != 0
t0 = time.monotonic()
for level in levels:
    running = 0
    for code in level:
        if running >= par:
            reap()
            running -= 1
        pid = os.fork()
        if pid == 0:
            try:
                exec(codes[code], {"__name__": "__task__"})
                os._exit(0)
            except BaseException:
                os._exit(1)
        running += 1
    for _ in range(running):
        reap()
print(time.monotonic() - t0)
sys.exit(1 if failed else 0)
"""


def fork_floor_run(case: Case, env: Env) -> dict[str, Any]:
    with Sampler() as sampler:
        done = subprocess.run(
            [env.python, "-c", FORK_FLOOR, str(env.par)],
            input=json.dumps(case.floor),
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the fork floor of {case.name} failed: {done.stderr.strip()[-500:]}")
    wall = float(done.stdout.split()[-1])
    return {"wall_s": wall, "exit_code": 0, "run_state": "success", **sampler.result()}


# --------------------------------------------------------------------------
# Driver


def machine() -> dict[str, Any]:
    with open("/proc/cpuinfo") as fh:
        model = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), "?")
    with open("/proc/meminfo") as fh:
        mem_kib = int(fh.readline().split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": subprocess.run([sys.executable, "--version"], capture_output=True, text=True).stdout.strip(),
    }


def versions(env: Env) -> dict[str, str]:
    def out(argv: list[str]) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[-1]

    import importlib.metadata as md

    return {
        "airflow": md.version("apache-airflow"),
        "airflow_core": md.version("apache-airflow-core"),
        "airflow_task_sdk": md.version("apache-airflow-task-sdk"),
        "pave": out([str(env.pave), "version"]),
        "python": out([env.python, "--version"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pave", required=True, type=Path)
    ap.add_argument("--python", required=True, help="interpreter for pave's tasks and the floor")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--par", type=int, default=32)
    ap.add_argument("--cases", default=",".join(c.name for c in CASES))
    ap.add_argument("--modes", default="test,service")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--airflow-postgres",
        default="host=127.0.0.1 port=5432 user=postgres dbname=postgres",
        help="libpq DSN of a PostgreSQL server for Airflow's services ('' for SQLite, which"
        " Airflow's LocalExecutor cannot run 32 at a time on: 'database is locked', API timeouts)",
    )
    args = ap.parse_args()

    cases = [c for c in CASES if c.name in args.cases.split(",")]
    unknown = set(args.cases.split(",")) - {c.name for c in CASES}
    if unknown:
        ap.error(f"unknown case(s) {sorted(unknown)}; known: {[c.name for c in CASES]}")
    modes = args.modes.split(",")
    if set(modes) - {"test", "service"}:
        ap.error("--modes takes test and/or service")

    become_subreaper()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pave-compare."))
    env = Env(
        pave=args.pave.resolve(),
        airflow_venv=Path(sys.executable).parent.parent,
        python=args.python,
        par=args.par,
        work=work,
    )
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(env),
        "runs": args.runs,
        "parallelism": args.par,
        "load_before": os.getloadavg(),
        "cases": {c.name: {"dag_id": c.dag_id, "tasks": c.tasks, "chain": c.chain} for c in cases},
        "samples": [],  # {mode, system, case, round, ...measurement}
    }
    print(json.dumps(results["versions"]), flush=True)

    def record(mode: str, system: str, case: Case, rnd: int, m: dict[str, Any]) -> None:
        results["samples"].append({"mode": mode, "system": system, "case": case.name, "round": rnd, **m})
        (args.out / "results.json").write_text(json.dumps(results, indent=1))

    try:
        if "test" in modes:
            print("== mode test: `airflow dags test` / `pave dags test` / bare spawns", flush=True)
            homes = {}
            for c in cases:  # one migrated Airflow home per case, its file alone in the DAGs folder
                home = work / f"airflow-test-{c.name}"
                (home / "dags").mkdir(parents=True)
                shutil.copy(c.file, home / "dags" / c.file.name)
                with open(logs / "airflow-migrate.log", "ab") as fh:
                    subprocess.run(
                        [env.airflow, "db", "migrate"],
                        env=airflow_env(home, home / "dags", env),
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                        check=True,
                    )
                homes[c.name] = home
            for rnd in range(args.runs):
                for c in cases:
                    order = ["airflow", "pave", "floor", "fork_floor"]
                    if rnd % 2:
                        order.reverse()
                    for system in order:
                        if system == "airflow":
                            m = airflow_dags_test(c, env, homes[c.name], logs / f"airflow-test-{c.name}.log")
                        elif system == "pave":
                            m = pave_dags_test(c, env, logs / f"pave-test-{c.name}.log")
                        elif system == "floor":
                            m = floor_run(c, env)
                        else:
                            m = fork_floor_run(c, env)
                        settle(f"{system} {c.name}")
                        record("test", system, c, rnd, m)
                        print(
                            f"  round {rnd} {system:8s} {c.name:10s} {m['wall_s']:9.2f}s  {m['run_state']}"
                            f"  pss {m['peak_pss_kib'] / 1024:.0f} MiB",
                            flush=True,
                        )
        if "service" in modes:
            print("== mode service: Airflow api-server + scheduler + dag-processor / pave standalone", flush=True)
            db_url = postgres_url(args.airflow_postgres) if args.airflow_postgres else None
            results["airflow_service_db"] = "postgresql" if db_url else "sqlite"
            airflow = AirflowService(env, work / "airflow-service", cases, logs / "airflow-service.log", db_url)
            pave = PaveService(env, work / "pave-service", cases, logs / "pave-service.log")
            airflow.prepare()
            pave.prepare()
            for rnd in range(args.runs):
                order: list[Service] = [airflow, pave] if rnd % 2 == 0 else [pave, airflow]
                for svc in order:
                    for c, m in service_round(svc, cases):
                        record("service", svc.name, c, rnd, m)
                if "test" not in modes:
                    for c in cases:
                        record("service", "floor", c, rnd, floor_run(c, env))
                        record("service", "fork_floor", c, rnd, fork_floor_run(c, env))
    finally:
        results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        results["load_after"] = os.getloadavg()
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out / 'results.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
