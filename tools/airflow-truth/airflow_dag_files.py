"""Run ordinary Airflow DAG files through real Airflow 3 and record what it did.

This is the DAG-file counterpart of ``airflow_truth.py`` (which generates DAG
files from pave's scheduling scenarios). Here the DAG files are given: by
default every ``tests/airflow_compat/dags/*.py`` of the differential suite.
For each file it copies the file, alone, into a throwaway AIRFLOW_HOME's DAGs
folder, finds the DAGs it defines, runs ``airflow dags test DAG_ID DATE`` for
each (in this process by default, through Airflow's own CLI parser and
``dag_test``; ``--mode cli`` spawns the real command) and writes

    OUT/<stem>.json            (a file with one DAG)
    OUT/<stem>@<dag_id>.json   (one per DAG when a file defines several)

holding ``{"airflow_version", "dag_id", "run_state", "task_instances":
[{"task_id", "map_index", "state", "try_number"}]}`` sorted by task_id then
map_index (read from Airflow's metadata database).

Run it through ``run_dag_files.sh``, which provides the virtual environment.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow_truth import (
    airflow_bin,
    airflow_version,
    prepare_home,
    read_results,
)
from jsonfmt import dump_file

TOOL_DIR = Path(__file__).resolve().parent
REPO_ROOT = TOOL_DIR.parent.parent
SUITE_DIR = REPO_ROOT / "tests" / "airflow_compat"
# Every run of the differential suite uses this logical date, on Airflow and
# on pave alike, so that templates such as ``{{ ds }}`` render the same.
LOGICAL_DATE = "2025-01-01T00:00:00+00:00"
FILE_TIMEOUT_S = 120


def set_logical_date(value: str) -> None:
    """Use ``value`` (RFC 3339) as the logical date of the runs that follow."""
    global LOGICAL_DATE
    LOGICAL_DATE = value


def dag_ids_in(dags_folder: Path, file: Path, log: Path) -> list[str]:
    """The DAG ids that ``file`` (already in ``dags_folder``) defines, as Airflow's DagBag sees them."""
    from airflow.dag_processing.dagbag import DagBag

    from airflow_truth import output_to

    with output_to(log):
        bag = DagBag(dag_folder=str(file), safe_mode=False)
    if bag.import_errors:
        raise RuntimeError(f"Airflow could not import {file.name}: {bag.import_errors}")
    return sorted(bag.dags)


def dags_test_inprocess(dag_id: str, log: Path) -> None:
    """``airflow dags test DAG_ID LOGICAL_DATE`` inside this process."""
    import signal

    from airflow.cli import cli_parser

    from airflow_truth import output_to

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"dags test {dag_id} exceeded {FILE_TIMEOUT_S}s")

    args = cli_parser.get_parser().parse_args(["dags", "test", dag_id, LOGICAL_DATE])
    assert args.logical_date is not None
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(FILE_TIMEOUT_S)
    try:
        with output_to(log):
            try:
                args.func(args)
            except SystemExit:
                pass  # a failed run: its state is read from the database
    finally:
        signal.alarm(0)


def dags_test_cli(dag_id: str, env: dict[str, str], log: Path) -> None:
    """The real ``airflow dags test DAG_ID LOGICAL_DATE`` command."""
    with open(log, "ab") as fh:
        subprocess.run(
            [airflow_bin(), "dags", "test", dag_id, LOGICAL_DATE],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=FILE_TIMEOUT_S,
            check=False,
        )


def run(files: list[Path], mode: str, home: Path, out_dir: Path) -> int:
    """Run every DAG of every file and write its truth file; return the number of errors."""
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
    print(f"Airflow {version}; {len(files)} file(s); mode {mode}; logical date {LOGICAL_DATE}", flush=True)
    dags, parked = home / "dags", home / "done"
    parked.mkdir(exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    errors = 0
    started = time.monotonic()
    for file in files:
        # Only the file being run sits in the DAGs folder.
        for old in dags.iterdir():
            if old.is_file():
                old.rename(parked / f"{time.monotonic_ns()}_{old.name}")
        target = dags / file.name
        shutil.copyfile(file, target)
        log = home / "logs" / f"{file.stem}.log"
        try:
            dag_ids = dag_ids_in(dags, target, log)
            if not dag_ids:
                raise RuntimeError("the file defines no DAG")
        except Exception as exc:
            print(f"ERROR    {file.name}: {exc!r} (log: {log})", flush=True)
            errors += 1
            continue
        for dag_id in dag_ids:
            name = file.stem if len(dag_ids) == 1 else f"{file.stem}@{dag_id}"
            t0 = time.monotonic()
            try:
                if mode == "cli":
                    dags_test_cli(dag_id, env, log)
                else:
                    dags_test_inprocess(dag_id, log)
                truth: dict[str, Any] = read_results(home / "airflow.db", dag_id)
            except BaseException as exc:  # report and carry on with the other files
                if isinstance(exc, KeyboardInterrupt):
                    raise
                print(f"ERROR    {name}: {exc!r} (log: {log})", flush=True)
                errors += 1
                continue
            record = {"airflow_version": version, "dag_id": dag_id, **truth}
            (out_dir / f"{name}.json").write_text(dump_file(record))
            states: dict[str, int] = {}
            for ti in truth["task_instances"]:
                states[str(ti["state"])] = states.get(str(ti["state"]), 0) + 1
            summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            print(
                f"{truth['run_state']:8} {name} ({time.monotonic() - t0:.1f}s): {summary}",
                flush=True,
            )
    print(f"done in {time.monotonic() - started:.0f}s; {errors} error(s)", flush=True)
    return errors


def main(argv: list[str]) -> int:
    """Command line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "files", nargs="*", type=Path, help="DAG files (default: tests/airflow_compat/dags/*.py)"
    )
    parser.add_argument("--mode", choices=["inprocess", "cli"], default="inprocess")
    parser.add_argument("--home", type=Path, help="AIRFLOW_HOME to use (default: a new temp dir)")
    parser.add_argument(
        "--out", type=Path, default=SUITE_DIR / "truth", help="where truth files go"
    )
    parser.add_argument(
        "--logical-date",
        default=LOGICAL_DATE,
        help=f"logical date of every run (default {LOGICAL_DATE}, which the differential suite uses)",
    )
    args = parser.parse_args(argv)
    set_logical_date(args.logical_date)
    files = [f.resolve() for f in args.files] or sorted((SUITE_DIR / "dags").glob("*.py"))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    home = args.home or Path(tempfile.mkdtemp(prefix="airflow-dag-files-"))
    return 1 if run(files, args.mode, home.resolve(), args.out.resolve()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
