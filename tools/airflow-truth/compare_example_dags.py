"""Run Airflow's own example DAGs, unmodified, on pave and on Airflow, and compare.

    python3 tools/airflow-truth/compare_example_dags.py [--work DIR]

1. Copies ``airflow/example_dags/*.py`` (apache-airflow-core) and
   ``airflow/providers/standard/example_dags/*.py`` (the standard provider,
   copied as ``std__NAME.py``) from the venv of ``run.sh`` into a work folder.
2. Parses each with ``python -m pave.parse`` (pave's DAG processor).
3. Runs every DAG pave can parse on Airflow (``run_dag_files.sh``, one
   ``airflow dags test`` per DAG) and on pave (``target/debug/pave dags test
   --json``, build it first), both with the logical date below.
4. Prints one line per file: ``same``, ``differs`` (with the differing task
   instances) or ``parse error`` (pave's exact message).

The table in docs/airflow-compatibility.md comes from this output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOOL_DIR = Path(__file__).resolve().parent
REPO_ROOT = TOOL_DIR.parent.parent
# After every example's start_date (Airflow creates no task instances for a
# task whose start_date is after the logical date) and before today.
LOGICAL_DATE = "2026-06-01T00:00:00+00:00"


def venv_python() -> Path:
    venv = Path(os.environ.get("AIRFLOW_TRUTH_VENV", TOOL_DIR / ".venv"))
    return venv / "bin" / "python"


def copy_examples(work: Path) -> list[Path]:
    site = subprocess.run(
        [str(venv_python()), "-c", "import airflow, os; print(os.path.dirname(airflow.__file__))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    files = []
    for folder, prefix in (("example_dags", ""), ("providers/standard/example_dags", "std__")):
        for src in sorted(Path(site, folder).glob("*.py")):
            if src.name == "__init__.py":
                continue
            dst = work / f"{prefix}{src.name}"
            shutil.copyfile(src, dst)
            files.append(dst)
    return files


def pave_parse(file: Path) -> tuple[list[str] | None, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "sdk" / "python")}
    p = subprocess.run(
        [sys.executable, "-m", "pave.parse", str(file)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    try:
        out = json.loads(p.stdout)
    except json.JSONDecodeError:
        return None, f"no JSON from pave.parse: {p.stderr.strip()[-300:]}"
    if "error" in out:
        e = out["error"]
        return None, f"line {e.get('line')}: {e.get('message', '').splitlines()[0]}"
    return [d["dag_id"] for d in out["dags"]], ""


def pave_run(file: Path, dag_id: str) -> dict | str:
    with tempfile.TemporaryDirectory(prefix="pave-home-") as home:
        p = subprocess.run(
            [str(REPO_ROOT / "target" / "debug" / "pave"), "dags", "test", str(file), "--dag-id",
             dag_id, "--logical-date", LOGICAL_DATE, "--json"],
            capture_output=True, text=True, env={**os.environ, "PAVE_HOME": home}, timeout=300,
        )
    if p.returncode != 0:
        return f"pave dags test failed: {p.stderr.strip()[-300:]}"
    return json.loads(p.stdout)


def compare(truth: dict, got: dict) -> list[str]:
    problems = []
    if truth["run_state"] != got["state"]:
        problems.append(f"run: airflow {truth['run_state']}, pave {got['state']}")

    def keyed(tis: list[dict]) -> dict:
        return {(t["task_id"], t["map_index"]): (t["state"], t["try_number"]) for t in tis}

    a, b = keyed(truth["task_instances"]), keyed(got["task_instances"])
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            problems.append(f"{k[0]}[{k[1]}]: airflow {a.get(k)}, pave {b.get(k)}")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="work folder (default: a new temp dir)")
    args = parser.parse_args(argv)
    work = (args.work or Path(tempfile.mkdtemp(prefix="airflow-examples-"))).resolve()
    dags, truth_dir = work / "dags", work / "truth"
    dags.mkdir(parents=True, exist_ok=True)
    files = copy_examples(dags)
    parsed: dict[Path, list[str]] = {}
    lines: list[str] = []
    for f in files:
        ids, err = pave_parse(f)
        if ids is None:
            lines.append(f"parse error  {f.name}: {err}")
        else:
            parsed[f] = ids
    subprocess.run(
        [str(TOOL_DIR / "run_dag_files.sh"), "--out", str(truth_dir), "--logical-date", LOGICAL_DATE,
         *map(str, parsed)],
        check=False,
    )
    for f, ids in parsed.items():
        for dag_id in ids:
            name = f.stem if len(ids) == 1 else f"{f.stem}@{dag_id}"
            truth_file = truth_dir / f"{name}.json"
            if not truth_file.is_file():
                lines.append(f"no truth     {name}: Airflow did not run it (see the log above)")
                continue
            got = pave_run(f, dag_id)
            if isinstance(got, str):
                lines.append(f"run error    {name}: {got}")
                continue
            problems = compare(json.loads(truth_file.read_text()), got)
            lines.append(("same         " if not problems else "differs      ") + name)
            lines.extend(f"               {p}" for p in problems)
    print(f"work folder: {work}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
