"""A decorated task called several times (ids name, name__1), .override(task_id=..., retries=...)."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def override_and_reuse():
    @task
    def add_one(x: int) -> int:
        return x + 1

    @task
    def flaky(x: int) -> int:
        if get_current_context()["ti"].try_number == 1:
            raise RuntimeError("first try fails")
        return x

    @task
    def check(a: int, b: int, c: int, d: int) -> None:
        assert (a, b, c, d) == (2, 3, 11, 11), (a, b, c, d)

    a = add_one(1)
    b = add_one(a)
    c = add_one.override(task_id="add_ten_plus_one")(10)
    d = flaky.override(task_id="flaky_with_retry", retries=1, retry_delay=timedelta(seconds=0))(c)
    flaky(0)
    check(a, b, c, d)


override_and_reuse()
