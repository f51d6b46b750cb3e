"""What one forked Python task costs: CPU and page faults per child of a
zygote-like interpreter (bench/README.md, "zygote_fork.py").

It sets up as ``pave.zygote`` does before it serves (imports the DAG file,
works out the tasks' callables, warms the runtime, takes ``threading``'s
after-fork handler out, freezes the collector, collapses its heap into
huge pages where the kernel can), then forks N children one
after the other; each runs one attempt of TASK through ``pave.runtime.run``
with its context given (no API call: a no-op task pushes nothing) and
exits as a zygote's child does. Per child: CPU (user + system, its exit
included) and minor page faults, from ``getrusage(RUSAGE_CHILDREN)``; the
parent's too (its fork and the pages it writes afterwards).

    python3 bench/zygote_fork.py [--n 1000] [--dag FILE] [--task ID]
                                 [--keep-threading-handler] [--bare-exit]
                                 [--setup STEPS] [--runs-per-child K]

``--bare-exit``: the children exit at once (the cost of the fork itself);
``--keep-threading-handler``: as before the zygote took it out;
``--setup STEPS``: each child first does the steps a zygote's child cannot
do without, so that they can be priced one by one against a bare child
(``--setup ''``): ``s`` its own session (``setsid``), ``p`` death with the
parent (``prctl(PR_SET_PDEATHSIG)``, called once by the parent first, as a
zygote does for ``PR_SET_CHILD_SUBREAPER``), ``r`` receive its request on
a socket (the parent sends it before the fork), ``j`` decode it (JSON),
``c`` close the descriptors above stdio (``close_range``), ``e`` set two
per-attempt variables in ``os.environ``. ``--setup sprjce`` is the least a
zygote's protocol can do; a real zygote's child does more. Run the
variants one after another, several times: the machine is shared and the
numbers move by 10% or more between runs; the fault counts do not.
``--runs-per-child K``: each child runs the attempt K times, one after the
other, before it exits (what a task instance would cost if a process ran
several of them, which neither pave nor Airflow does: each task instance
gets a process of its own); the numbers stay per child, so divide by K.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sdk", "python"))

from pave import runtime, zygote  # noqa: E402
from pave.loader import load_dag_file  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--dag", default=os.path.join(HERE, "compare.d", "dags", "cmp_mapped.py"))
    ap.add_argument("--task", default="noop")
    ap.add_argument("--keep-threading-handler", action="store_true")
    ap.add_argument("--bare-exit", action="store_true")
    ap.add_argument("--runs-per-child", type=int, default=1, metavar="K",
                    help="attempts each child runs before it exits (default 1)")
    ap.add_argument("--setup", default="", metavar="STEPS",
                    help="steps of a child's set-up to do first, of s p r j c e (see the module's docs)")
    opts = ap.parse_args()

    _, dags = load_dag_file(opts.dag)
    dag = next((d for d in dags if opts.task in d.task_dict), None)
    if dag is None:
        print(f"zygote_fork: no DAG in {opts.dag} has a task `{opts.task}`", file=sys.stderr)
        return 2
    at_fork = None if opts.keep_threading_handler else zygote._ThreadingAtFork()
    zygote.settle_for_forks(dags, at_fork)
    took_out = at_fork is not None and at_fork.handlers is not None

    when = "2026-01-01T00:00:00+00:00"
    context = json.dumps({
        "dag_id": dag.dag_id, "run_id": f"manual__{when}", "task_id": opts.task, "map_index": 0,
        "try_number": 1, "logical_date": when, "data_interval_start": when, "data_interval_end": when,
        "ds": "2026-01-01", "ds_nodash": "20260101", "ts": when, "run_after": when, "params": {}, "conf": {},
        "mapped_args": {"x": 0} if dag.task_dict[opts.task].expand_input else {},
    })
    env = {"PAVE_API_URL": "http://127.0.0.1:9/execution/v1", "PAVE_TASK_TOKEN": "bench",
           "PAVE_DAG_FILE": opts.dag, "PAVE_DAG_ID": dag.dag_id, "PAVE_TASK_ID": opts.task,
           "PAVE_RUN_ID": f"manual__{when}", "PAVE_TRY_NUMBER": "1", runtime.CONTEXT_ENV: context}
    devnull = os.open(os.devnull, os.O_WRONLY)
    if opts.runs_per_child < 1:
        print(f"zygote_fork: --runs-per-child must be at least 1, not {opts.runs_per_child}", file=sys.stderr)
        return 2
    steps = set(opts.setup)
    unknown = "".join(sorted(steps - set("sprjce")))
    if unknown:
        print(f"zygote_fork: unknown --setup steps {unknown} (of s p r j c e)", file=sys.stderr)
        return 2
    prctl = None
    if "p" in steps:
        prctl = zygote._libc().prctl
        prctl(zygote._PR_SET_CHILD_SUBREAPER, 1)  # as a zygote does: its children call prctl warm
    request = json.dumps({"argv": [sys.executable, "-m", "pave.runtime"], "cwd": os.getcwd(),
                          "env": dict(env, PAVE_MAP_INDEX="7"),
                          "supervise": {"claim": "x.claim", "result": "x.result", "timeout_ms": None,
                                        "grace_ms": 5000, "gpu_ids": []}}).encode()
    ours, theirs = socket.socketpair()
    failed = 0
    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for _ in range(opts.n):
        if "r" in steps:
            ours.send(request)
        pid = os.fork()
        if pid == 0:
            if opts.bare_exit:
                os._exit(0)
            got = request
            if "s" in steps:
                os.setsid()
            if prctl is not None:
                prctl(zygote._PR_SET_PDEATHSIG, zygote._SIGKILL)
            if "r" in steps:
                got = theirs.recv(65536)
            if "j" in steps:
                got = json.loads(got)
            if "c" in steps:
                os.closerange(3, devnull)
                os.closerange(devnull + 1, zygote._MAX_FD)
            if "e" in steps:
                os.environ["PAVE_MAP_INDEX"] = "7"
                os.environ["PAVE_TASK_TOKEN"] = "bench"
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            for _ in range(opts.runs_per_child - 1):
                if runtime.run(env, dags) != 0:
                    os._exit(1)
            code = runtime.run(env, dags, disposable=True)
            sys.stdout.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    wall = time.perf_counter() - t0
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)

    def per(a: float, b: float) -> float:
        return (b - a) / opts.n

    out = {
        "n": opts.n, "failed": failed, "python": sys.version.split()[0], "threading_handler_out": took_out,
        "bare_exit": opts.bare_exit, "setup": opts.setup, "runs_per_child": opts.runs_per_child,
        "wall_ms_per_child": round(wall / opts.n * 1000, 3),
        "child_cpu_ms": round(per(kids0.ru_utime + kids0.ru_stime, kids1.ru_utime + kids1.ru_stime) * 1000, 3),
        "child_minflt": round(per(kids0.ru_minflt, kids1.ru_minflt), 1),
        "parent_cpu_ms": round(per(self0.ru_utime + self0.ru_stime, self1.ru_utime + self1.ru_stime) * 1000, 3),
        "parent_minflt": round(per(self0.ru_minflt, self1.ru_minflt), 1),
    }
    print(json.dumps(out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
