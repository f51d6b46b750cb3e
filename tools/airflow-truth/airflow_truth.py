"""Run pave scenarios through real Airflow 3 and record what it did.

For each scenario in crates/pave-core/tests/scenarios/ this writes an Airflow
DAG file (see generate_dag.py) into a throwaway AIRFLOW_HOME, runs
``airflow dags test <name>`` on it, reads the final task instance and DAG run
states from Airflow's metadata database (SQLite, read with the standard
library) and writes ``truth/<name>.json`` in the format of FORMAT.md.

Run it through ``run.sh``, which provides the virtual environment with
Airflow installed. This file must be executed by that environment's Python:
in the default ``--mode inprocess`` it calls the very function
``airflow dags test`` calls (Airflow's CLI parser and ``dag_test``) once per
scenario inside one process, which saves Airflow's start-up cost (about ten
seconds a scenario); ``--mode cli`` spawns the real ``airflow`` command for
each scenario instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from generate_dag import dag_source, load_scenario
from jsonfmt import dump_file

TOOL_DIR = Path(__file__).resolve().parent
REPO_ROOT = TOOL_DIR.parent.parent
SCENARIO_DIR = REPO_ROOT / "crates" / "pave-core" / "tests" / "scenarios"
SCENARIO_TIMEOUT_S = 300


def airflow_version() -> str:
    """Version of the apache-airflow distribution installed in this Python."""
    from importlib.metadata import version

    return version("apache-airflow")


def prepare_home(home: Path) -> dict[str, str]:
    """Point Airflow at ``home`` (a fresh folder) and return the environment to use."""
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        }
    )
    return env


def airflow_bin() -> str:
    """The ``airflow`` console script next to this Python."""
    return str(Path(sys.executable).parent / "airflow")


def read_results(db: Path, dag_id: str) -> dict[str, Any]:
    """Final run state and task instances of the latest run of ``dag_id``, as FORMAT.md describes."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        run = conn.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        if run is None:
            raise RuntimeError(f"no DAG run recorded for {dag_id!r}")
        rows = conn.execute(
            "SELECT task_id, map_index, state, try_number FROM task_instance"
            " WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index",
            (dag_id, run[0]),
        ).fetchall()
    finally:
        conn.close()
    return {
        "run_state": run[1],
        "task_instances": [
            {"task_id": t, "map_index": m, "state": s, "try_number": n} for t, m, s, n in rows
        ],
    }


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Send everything written to file descriptors 1 and 2 to ``log`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


class ScenarioTimeout(Exception):
    """A scenario ran longer than SCENARIO_TIMEOUT_S."""


def _on_alarm(signum: int, frame: object) -> None:
    """SIGALRM handler: abort the scenario that is running."""
    raise ScenarioTimeout(f"scenario exceeded {SCENARIO_TIMEOUT_S}s")


def dags_test_inprocess(dag_id: str, log: Path) -> None:
    """Do what ``airflow dags test <dag_id>`` does, inside this process."""
    from airflow.cli import cli_parser

    args = cli_parser.get_parser().parse_args(["dags", "test", dag_id])
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(SCENARIO_TIMEOUT_S)
    try:
        with output_to(log):
            try:
                args.func(args)
            except SystemExit:
                pass  # "DagRun failed": the run's state is read from the database
    finally:
        signal.alarm(0)


def dags_test_cli(dag_id: str, env: dict[str, str], log: Path) -> None:
    """Run the real ``airflow dags test <dag_id>`` command."""
    with open(log, "ab") as fh:
        subprocess.run(
            [airflow_bin(), "dags", "test", dag_id],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=SCENARIO_TIMEOUT_S,
            check=False,
        )


def diff(expected: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """Human-readable differences between a scenario's ``expected`` and the truth."""
    out: list[str] = []
    if expected.get("run_state") != truth["run_state"]:
        out.append(f"run_state: expected {expected.get('run_state')}, airflow {truth['run_state']}")

    def keyed(entries: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
        return {(e["task_id"], e["map_index"]): e for e in entries}

    exp, got = keyed(expected.get("task_instances", [])), keyed(truth["task_instances"])
    for key in sorted(set(exp) | set(got)):
        e, g = exp.get(key), got.get(key)
        if e is None:
            out.append(f"{key[0]}[{key[1]}]: not expected, airflow {g['state']} try {g['try_number']}")
        elif g is None:
            out.append(f"{key[0]}[{key[1]}]: expected {e['state']}, airflow has no such instance")
        elif (e["state"], e["try_number"]) != (g["state"], g["try_number"]):
            out.append(
                f"{key[0]}[{key[1]}]: expected {e['state']} try {e['try_number']},"
                f" airflow {g['state']} try {g['try_number']}"
            )
    return out


def run(names: list[str], mode: str, home: Path, truth_dir: Path, accept: bool) -> int:
    """Run the named scenarios and write their truth files; return the number that differ.

    With ``accept``, a scenario whose ``expected`` differs from the truth gets
    the truth written into its ``expected`` (real Airflow wins).
    """
    env = prepare_home(home)
    os.environ.update(env)
    print(f"AIRFLOW_HOME={home}", flush=True)
    subprocess.run(
        [airflow_bin(), "db", "migrate"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    version = airflow_version()
    print(f"Airflow {version}; {len(names)} scenario(s); mode {mode}", flush=True)
    dags, parked = home / "dags", home / "done"
    parked.mkdir(exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    differing = 0
    started = time.monotonic()
    for name in names:
        scenario = load_scenario(SCENARIO_DIR / f"{name}.json")
        # Only the scenario being run sits in the DAGs folder, so each
        # ``dags test`` parses one file, as when a user tests their own DAG.
        for old in dags.glob("*.py"):
            old.rename(parked / old.name)
        dag_file = dags / f"{name}.py"
        dag_file.write_text(dag_source(scenario))
        log = home / "logs" / f"{name}.log"
        t0 = time.monotonic()
        try:
            if mode == "cli":
                dags_test_cli(name, env, log)
            else:
                dags_test_inprocess(name, log)
            truth = read_results(home / "airflow.db", name)
        except Exception as exc:  # report and carry on with the other scenarios
            print(f"ERROR {name}: {exc!r} (log: {log})", flush=True)
            differing += 1
            continue
        record = {"airflow_version": version, **truth}
        (truth_dir / f"{name}.json").write_text(dump_file(record))
        problems = diff(scenario.get("expected", {}), truth)
        if problems and accept:
            scenario["expected"] = truth
            (SCENARIO_DIR / f"{name}.json").write_text(dump_file(scenario))
        status = "ok" if not problems else ("ACCEPTED" if accept else "DIFFERS")
        print(f"{status:8} {name} ({time.monotonic() - t0:.1f}s)", flush=True)
        for p in problems:
            print(f"           {p}", flush=True)
        differing += bool(problems)
    print(f"done in {time.monotonic() - started:.0f}s; {differing} scenario(s) differ from expected")
    for stale in sorted(truth_dir.glob("*.json")):
        if not (SCENARIO_DIR / stale.name).exists():
            print(f"warning: {stale} has no scenario; delete it", flush=True)
    return differing


def main(argv: list[str]) -> int:
    """Command line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help="scenario names (file stems); default: all")
    parser.add_argument("--mode", choices=["inprocess", "cli"], default="inprocess")
    parser.add_argument("--home", type=Path, help="AIRFLOW_HOME to use (default: a new temp dir)")
    parser.add_argument(
        "--truth-dir", type=Path, default=SCENARIO_DIR / "truth", help="where truth files go"
    )
    parser.add_argument(
        "--accept",
        action="store_true",
        help="rewrite each differing scenario's expected with what Airflow did",
    )
    args = parser.parse_args(argv)
    names = args.scenarios or sorted(p.stem for p in SCENARIO_DIR.glob("*.json"))
    home = args.home or Path(tempfile.mkdtemp(prefix="airflow-truth-"))
    differing = run(names, args.mode, home.resolve(), args.truth_dir, args.accept)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
