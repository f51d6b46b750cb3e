"""@task.bash: the function returns the command; exit 99 skips; XCom is the last line."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def task_bash_decorator():
    @task.bash
    def greet(name: str) -> str:
        return f'echo "hello {name} on {{{{ ds }}}}"'

    @task.bash
    def skip_it() -> str:
        return "exit 99"

    @task.bash
    def fail_it() -> str:
        return "echo failing >&2; exit 2"

    @task
    def check(line: str) -> None:
        assert line == "hello pave on 2025-01-01", line

    check(greet("pave"))
    skip_it()
    fail_it()


task_bash_decorator()
