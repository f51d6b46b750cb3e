"""Running a shell command the way BashOperator (and pave's command tasks) do."""

from __future__ import annotations

import os
import subprocess
import sys

from .exceptions import AirflowException, AirflowSkipException

TYPE_CHECKING = False  # no `typing` at run time: every task interpreter would import it
if TYPE_CHECKING:
    from typing import Any


def run_bash(command: str, *, env: dict[str, Any] | None, cwd: str | None,
             skip_exit_code: int = 99, task_id: str = "") -> str | None:
    """Run ``command`` with ``bash -c``; the last non-empty stdout line is the result.

    Stdout is echoed line by line (into the task's log); stderr is the
    task's own. Exit ``skip_exit_code`` raises AirflowSkipException, any
    other non-zero exit an AirflowException (a retryable failure).
    """
    if cwd is not None and not os.path.isdir(cwd):
        raise AirflowException(f"task `{task_id}`: cwd {cwd!r} is not a directory")
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        full_env[str(key)] = str(value)
    sys.stdout.flush()
    proc = subprocess.Popen(["bash", "-c", command], stdout=subprocess.PIPE, env=full_env, cwd=cwd)
    last: str | None = None
    assert proc.stdout is not None
    for raw in iter(proc.stdout.readline, b""):
        line = raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
        print(line, flush=True)
        if line.strip():
            last = line.rstrip()
    code = proc.wait()
    if code == skip_exit_code:
        raise AirflowSkipException(f"Bash command returned exit code {code}. Skipping.")
    if code != 0:
        raise AirflowException(f"Bash command failed. The command returned a non-zero exit code {code}.")
    return last
