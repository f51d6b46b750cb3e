"""Classic operators in a `with DAG` block, default_args, every task argument."""
from datetime import datetime, timedelta

from airflow import DAG
from airflow.models.baseoperator import chain, cross_downstream
from airflow.operators.bash import BashOperator
from airflow.operators.empty import EmptyOperator
from airflow.operators.python import BranchPythonOperator, PythonOperator, ShortCircuitOperator
from airflow.utils.trigger_rule import TriggerRule


def pick(**context):
    return "left"


def check():
    return True


def show(x, y=None, templates_dict=None):
    print(x, y, templates_dict)


with DAG(
    dag_id="operators",
    description="Classic operators",
    schedule="15 3 * * MON",
    start_date=datetime(2025, 1, 1),
    default_args={
        "owner": "data", "email": ["a@b.c"], "depends_on_past": False,
        "retries": 1, "retry_delay": timedelta(minutes=5), "pool": "default_pool",
    },
    max_active_tasks=4,
) as operators_dag:
    start = EmptyOperator(task_id="start")
    hello = BashOperator(
        task_id="hello", bash_command="echo hello {{ ds }}", env={"MODE": "fast"}, cwd="/tmp",
        skip_on_exit_code=42, retries=3, retry_delay=10, retry_exponential_backoff=True,
        max_retry_delay=timedelta(hours=1), execution_timeout=timedelta(minutes=30), pool_slots=2,
        priority_weight=5, weight_rule="absolute", max_active_tis_per_dag=2,
        resources={"cpu": 2, "memory": "8Gi", "gpu": 1}, doc_md="Says hello.", do_xcom_push=False,
    )
    branch = BranchPythonOperator(task_id="branch", python_callable=pick)
    left = EmptyOperator(task_id="left")
    right = EmptyOperator(task_id="right")
    gate = ShortCircuitOperator(task_id="gate", python_callable=check, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    call = PythonOperator(
        task_id="call", python_callable=show, op_args=[hello.output], op_kwargs={"y": "{{ ds }}"},
        templates_dict={"day": "{{ ds }}"},
    )
    end1 = EmptyOperator(task_id="end1")
    end2 = EmptyOperator(task_id="end2", trigger_rule="always")

    chain(start, hello, branch, [left, right])
    [left, right] >> gate
    gate >> call
    cross_downstream([call], [end1, end2])
