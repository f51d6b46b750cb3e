"""Tasks run by test_runtime.py through `python -m pave.runtime` and a fake execution API."""
import dataclasses
import decimal
import os
from datetime import date, datetime, timedelta, timezone

from airflow.exceptions import AirflowFailException, AirflowSkipException
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator
from airflow.sdk import dag, get_current_context, task


class Opaque:
    pass


@dataclasses.dataclass
class Point:
    x: int
    y: int


def templated(p, templates_dict=None, **context):
    return {"p": p, "d": templates_dict["d"], "ds": context["ds"]}


@dag(dag_id="rt", params={"x": 5})
def rt():
    @task
    def ret():
        return {"a": 1}

    @task
    def nothing():
        print("returns None")

    @task
    def skip():
        raise AirflowSkipException("not today")

    @task(retries=3)
    def fail_fast():
        raise AirflowFailException("broken for good")

    @task
    def boom():
        raise ValueError("kaboom")

    @task
    def opaque():
        return Opaque()

    @task
    def nested_set():
        return {"x": {1, 2}}

    @task
    def big():
        return "x" * 100_000

    @task
    def consume(value, nested):
        ti = get_current_context()["ti"]
        return {
            "value": value,
            "nested": nested,
            "pulled": ti.xcom_pull(task_ids="ret"),
            "mapped_all": ti.xcom_pull(task_ids="double"),
            "mapped_one": ti.xcom_pull(task_ids="double", map_indexes=1),
            "missing": ti.xcom_pull(task_ids="nothing", default="dflt"),
            "several": ti.xcom_pull(task_ids=["ret", "nothing"]),
        }

    @task
    def double(x, factor=2):
        return x * factor

    @task(multiple_outputs=True)
    def mo():
        return {"k": "v", "n": 2}

    @task
    def use_key(v):
        return v

    @task
    def ctx(ti=None, **context):
        c = get_current_context()
        ti.xcom_push(key="extra", value=[1, 2])
        return {
            "ds": c["ds"], "ts_nodash": c["ts_nodash"], "run_id": c["run_id"], "task_id": ti.task_id,
            "try_number": ti.try_number, "map_index": ti.map_index, "conf": c["dag_run"].conf,
            "params": c["params"], "logical_date_type": type(c["logical_date"]).__name__,
            "same_ti": c["ti"] is ti and "ti" not in context,
            "hostname": ti.hostname == os.uname().nodename, "tomorrow": c["macros"].ds_add(c["ds"], 1),
        }

    @task
    def no_logical_date():
        c = get_current_context()
        return sorted(k for k in ("ds", "ts", "logical_date", "data_interval_start") if k in c)

    @task.bash
    def bash_cmd(word):
        return f"echo {word} {{{{ ds }}}}; echo last-$((1+1))"

    @task.bash(skip_on_exit_code=7)
    def bash_skip():
        return "exit 7"

    @task.branch
    def branch_none():
        return None

    @task.short_circuit
    def gate():
        return None

    @task
    def add(a, b):
        return a + b

    @task
    def serde_values():
        return {"at": datetime(2025, 1, 1, 12, tzinfo=timezone.utc), "pair": (1, 2), "tags": {"a"},
                "day": date(2025, 1, 2), "wait": timedelta(minutes=1), "price": decimal.Decimal("1.5")}

    @task
    def serde_consume(values, when_pushed, ti=None):
        pulled = ti.xcom_pull(task_ids="serde_values")
        assert pulled == values, (pulled, values)
        return {k: [type(v).__name__, repr(v)] for k, v in {**values, "when_pushed": when_pushed}.items()}

    @task
    def serde_push(ti=None):
        ti.xcom_push(key="when", value=datetime(2025, 1, 1, 12, tzinfo=timezone.utc))
        ti.xcom_push(key="pair", value=(1, 2))

    @task
    def as_tuple():
        return (1, "a")

    @task
    def point():
        return Point(1, 2)

    @task
    def use_point(p):
        return [type(p).__name__, p.x + p.y]

    @task
    def reserved():
        return {"__classname__": "x"}

    @task
    def time_of_day():
        from datetime import time

        return [time(1, 2)]

    @task
    def mapping_source():
        return ("a", (1, 2))

    @task
    def set_source():
        return {"a"}

    @task
    def kwargs_source():
        return [{"x": (1, 2)}]

    @task
    def each(x):
        return x

    @task.short_circuit
    def empty_set_gate():
        return set()

    @task.short_circuit
    def datetime_gate():
        return datetime(2025, 1, 1, tzinfo=timezone.utc)

    @task.branch
    def branch_tuple():
        return ("ret", "nothing")

    serde_consume(serde_values(), serde_push()["when"])
    as_tuple(), reserved(), time_of_day(), empty_set_gate(), datetime_gate(), branch_tuple()
    use_point(point())
    each.expand(x=mapping_source())
    each.override(task_id="each_set").expand(x=set_source())
    each.override(task_id="each_kwargs").expand_kwargs(kwargs_source())

    r = ret()
    consume(r, [r["a"], {"k": r}])
    double.partial(factor=10).expand(x=[1, 2, 3])
    use_key(mo()["k"])
    nothing(), skip(), fail_fast(), boom(), opaque(), nested_set(), big(), ctx(), no_logical_date()
    bash_cmd("hi"), bash_skip(), branch_none(), gate()
    add.expand_kwargs([{"a": 1, "b": 2}, {"a": "{{ ds }}", "b": "!"}])
    PythonOperator(task_id="templated", python_callable=templated, op_kwargs={"p": "{{ params.x }}"},
                   templates_dict={"d": "{{ ds }}"})
    BashOperator.partial(task_id="mapped_bash").expand(bash_command=["echo one", "echo two {{ ds }}"])
    PythonOperator(task_id="bad_template", python_callable=templated, op_kwargs={"p": "{{ nope }}"})


rt()
