"""A user-defined BaseOperator subclass with template_fields, retries from default_args, and XCom."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.exceptions import AirflowSkipException
from airflow.sdk import DAG, BaseOperator, task


class MultiplyOperator(BaseOperator):
    template_fields = ("tag",)

    def __init__(self, *, factor: int, label: str = "", fail_first: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self.tag = label
        self.fail_first = fail_first

    def execute(self, context):
        assert self.tag in ("", "day-2025-01-01"), self.tag
        if self.fail_first and context["ti"].try_number == 1:
            raise RuntimeError("first try fails")
        if self.factor == 0:
            raise AirflowSkipException("nothing to multiply")
        return 7 * self.factor


with DAG(
    dag_id="custom_base_operator",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
):
    m = MultiplyOperator(task_id="multiply", factor=3, label="day-{{ ds }}", fail_first=True)
    z = MultiplyOperator(task_id="zero", factor=0)

    @task
    def check(value: int) -> None:
        assert value == 21, value

    check(m.output)
    z >> MultiplyOperator(task_id="after_zero", factor=1)
