"""40 sequential lightweight tasks: recursive Fibonacci of 10 (Windmill's benchmark shape)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import chain, dag, task

LENGTH = 40
N = 10


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def cmp_fib_light():
    @task
    def compute() -> int:
        return fib(N)

    chain(*[compute.override(task_id=f"fib{i:02d}")() for i in range(LENGTH)])


cmp_fib_light()
