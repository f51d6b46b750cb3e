"""Helpers shared by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SDK_DIR = os.path.dirname(TESTS_DIR)
REPO_ROOT = os.path.dirname(os.path.dirname(SDK_DIR))
DAGS_DIR = os.path.join(TESTS_DIR, "dags")
EXPECTED_DIR = os.path.join(TESTS_DIR, "expected")
PAVE_BINARY = os.path.join(REPO_ROOT, "target", "debug", "pave")


def sdk_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess that imports pave from this checkout (not installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SDK_DIR
    env.update(extra)
    return env


def write_file(folder: str, name: str, source: str) -> str:
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(textwrap.dedent(source).lstrip("\n"))
    return path


def run_parse(path: str) -> tuple[int, Any, str]:
    """``python -m pave.parse path``: (exit code, parsed stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "pave.parse", path], capture_output=True, text=True,
                          env=sdk_env(), timeout=60)
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        out = proc.stdout
    return proc.returncode, out, proc.stderr


class TempDir:
    """A temporary folder as a context manager that returns its path."""

    def __enter__(self) -> str:
        self._tmp = tempfile.TemporaryDirectory(prefix="pave-sdk-test-")
        return self._tmp.name

    def __exit__(self, *exc: Any) -> None:
        self._tmp.cleanup()
