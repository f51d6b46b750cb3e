"""What a zygote holds: the modules that ``import pave``, the runtime and
``pave.zygote`` import, and those a DAG file written against ``airflow.sdk``
and a no-op task add. Every module the zygote imports is memory that each
forked task maps, copies on write and unmaps again (docs/python-runtime.md),
so the modules below, which neither defining a DAG nor running a trivial
task needs, must stay out: import them in the function that uses them."""

from __future__ import annotations

import json
import subprocess
import sys
import unittest
from typing import Any

from .util import TempDir, sdk_env, write_file

#: Modules pave once imported at start-up, with what pulled them in.
HEAVY = (
    "hashlib", "_hashlib",  # OpenSSL, for one SHA-1 in pave.loader
    "importlib.abc", "importlib.resources", "pathlib", "tempfile", "shutil", "bz2", "lzma", "zlib",
    "uuid", "platform", "random",  # pave.macros
    "dataclasses",  # pave.serde
    "traceback", "textwrap",  # error reports
    "typing",  # annotations (under TYPE_CHECKING now) and a task's return annotation
)

DAG_SOURCE = """from __future__ import annotations

from datetime import datetime

from airflow.sdk import chain, dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def cmp_small():
    @task
    def noop() -> None:
        return None

    chain(*[noop.override(task_id=f"t{i}")() for i in range(3)])


cmp_small()
"""

#: Run with ``python -S`` (no site: a .pth file may import anything); prints
#: the heavy modules imported, as a JSON list.
IMPORT_SDK = f"""
import json, sys
import pave, pave.runtime, pave.zygote
print(json.dumps(sorted(set({HEAVY!r}) & set(sys.modules))))
"""

RUN_NOOP_TASK = f"""
import json, os, sys
import pave, pave.runtime, pave.zygote
from pave.loader import load_dag_file

_, dags = load_dag_file(sys.argv[1])
context = {{"dag_id": "cmp_small", "run_id": "manual__1", "task_id": "t1", "try_number": 1,
            "logical_date": "2025-01-01T00:00:00+00:00"}}
env = dict(os.environ, PAVE_API_URL="http://127.0.0.1:9", PAVE_TASK_TOKEN="token",
           PAVE_DAG_FILE=sys.argv[1], PAVE_DAG_ID="cmp_small", PAVE_TASK_ID="t1",
           PAVE_TASK_CONTEXT=json.dumps(context))
code = pave.runtime.run(env=env, dags=dags)
print(json.dumps([code, sorted(set({HEAVY!r}) & set(sys.modules))]))
"""


def _python(source: str, *args: str) -> tuple[Any, str]:
    """What ``source`` printed last, as JSON, and its stderr."""
    proc = subprocess.run([sys.executable, "-S", "-c", source, *args], capture_output=True, text=True,
                          env=sdk_env(), timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"the subprocess failed ({proc.returncode}): {proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


class ZygoteImportsTest(unittest.TestCase):
    def test_the_sdk_runtime_and_zygote_import_no_heavy_module(self) -> None:
        heavy, _ = _python(IMPORT_SDK)
        self.assertEqual(heavy, [], "import these lazily, in the function that needs them")

    def test_an_airflow_dag_file_and_a_noop_task_import_no_heavy_module(self) -> None:
        with TempDir() as tmp:
            dag_file = write_file(tmp, "cmp_small.py", DAG_SOURCE)
            (code, heavy), stderr = _python(RUN_NOOP_TASK, dag_file)
        self.assertEqual(code, 0, stderr)
        self.assertEqual(heavy, [], "import these lazily, in the function that needs them")


class LazyMacrosTest(unittest.TestCase):
    def test_macros_still_have_uuid_and_random(self) -> None:
        import random
        import uuid

        from pave import macros

        self.assertIs(macros.uuid, uuid)
        self.assertIs(macros.random, random.random)  # the function, as in Airflow's macros
        self.assertLessEqual({"uuid", "random", "json", "time", "datetime", "ds_add"}, set(dir(macros)))
        with self.assertRaises(AttributeError):
            macros.no_such_macro  # noqa: B018


if __name__ == "__main__":
    unittest.main()
