"""Gaps found by the Airflow differential suite: the XCom serde in process,
context arguments pave cannot provide, ``airflow.providers.common.compat``
and edge labels."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import json
import os
import unittest
import uuid
import zoneinfo
from unittest import mock

from pave import DAG, EmptyOperator, PaveUnsupportedError, PythonOperator, dag, task
from pave.serde import XComSerdeError, deserialize, serialize
from pave.spec import dag_to_spec

from .test_compat import run_python
from .util import TempDir, run_parse, write_file


@dataclasses.dataclass
class Pair:
    a: int
    when: dt.date


class WithSerialize:
    __version__ = 3

    def __init__(self, n: int) -> None:
        self.n = n

    def serialize(self) -> dict:
        return {"n": self.n}

    @staticmethod
    def deserialize(data: dict, version: int) -> "WithSerialize":
        obj = WithSerialize(data["n"])
        obj.version = version
        return obj


Named = collections.namedtuple("Named", "x y")


def roundtrip(value: object) -> object:
    return deserialize(json.loads(json.dumps(serialize(value), allow_nan=False)))


class SerdeTest(unittest.TestCase):
    """Shapes checked against Airflow 3.3.2's ``airflow.sdk.serde`` (same JSON for the same values)."""

    def test_datetimes_in_airflows_format(self) -> None:
        utc = dt.datetime(2025, 1, 1, 12, tzinfo=dt.timezone.utc)
        self.assertEqual(serialize(utc), {
            "__classname__": "datetime.datetime", "__version__": 2,
            "__data__": {"timestamp": 1735732800.0, "tz": {
                "__classname__": "builtins.tuple", "__version__": 1,
                "__data__": ["UTC", "pendulum.tz.timezone.FixedTimezone", 1, True]}},
        })
        paris = dt.datetime(2025, 6, 1, 8, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
        self.assertEqual(serialize(paris)["__data__"]["tz"]["__data__"], ["Europe/Paris", "zoneinfo.ZoneInfo", 1, True])
        for value in (utc, paris, dt.datetime(2025, 1, 1, 12, 0, 0, 123456),
                      dt.datetime(2025, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30)))):
            back = roundtrip(value)
            self.assertEqual(back, value)
            self.assertEqual(type(back), dt.datetime)
            self.assertEqual(back.utcoffset(), value.utcoffset())
        self.assertEqual(serialize(dt.date(2025, 1, 2)), {"__classname__": "datetime.date", "__version__": 2,
                                                         "__data__": "2025-01-02"})
        self.assertEqual(serialize(dt.timedelta(hours=1))["__data__"], 3600.0)
        self.assertEqual(roundtrip(dt.timedelta(days=2, microseconds=5)), dt.timedelta(days=2, microseconds=5))
        self.assertEqual(roundtrip(dt.date(2025, 1, 2)), dt.date(2025, 1, 2))

    def test_collections_numbers_and_ids(self) -> None:
        self.assertEqual(serialize((1, "a")), {"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1, "a"]})
        self.assertEqual(serialize(Named(1, 2))["__classname__"], "builtins.tuple")
        self.assertEqual(serialize(decimal.Decimal("10")), {"__classname__": "decimal.Decimal", "__version__": 1,
                                                           "__data__": 10})
        for value in [(1, (2, 3)), {1, 2}, frozenset({"x"}), decimal.Decimal("1.25"), uuid.UUID(int=7),
                      {"k": [dt.date(2025, 1, 1), (1,)]}, [None, True, 1.5, "s"]]:
            self.assertEqual(roundtrip(value), value)
            self.assertEqual(type(roundtrip(value)), type(value))
        self.assertEqual(roundtrip(Named(1, 2)), (1, 2))
        self.assertEqual(roundtrip({1: "int keys become strings"}), {"1": "int keys become strings"})

    def test_enums_are_stored_as_their_value(self) -> None:
        import enum

        class Color(str, enum.Enum):
            RED = "red"

        class Plain(enum.Enum):
            A = 1

        self.assertEqual(serialize([Color.RED]), ["red"])
        with self.assertRaises(XComSerdeError):
            serialize(Plain.A)

    def test_dataclasses_and_serialize_methods_need_the_allow_list(self) -> None:
        encoded = serialize(Pair(1, dt.date(2025, 1, 1)))
        self.assertEqual(encoded["__classname__"], f"{__name__}.Pair")
        self.assertEqual(encoded["__data__"]["when"]["__classname__"], "datetime.date")
        with self.assertRaisesRegex(ImportError, "was not found in allow list for deserialization imports"):
            deserialize(encoded)
        with mock.patch.dict(os.environ, {"AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES": "airflow.* tests.*"}):
            self.assertEqual(deserialize(encoded), Pair(1, dt.date(2025, 1, 1)))
            back = roundtrip(WithSerialize(4))
            self.assertEqual((back.n, back.version), (4, 3))
        with mock.patch.dict(os.environ, {"AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": r"tests\..*Pair"}):
            self.assertEqual(deserialize(encoded), Pair(1, dt.date(2025, 1, 1)))

    def test_what_airflow_cannot_store_either(self) -> None:
        for value, what in [(b"x", "a bytes"), (dt.time(1), "a datetime.time"), (object(), "a object"),
                            ({"k": [1, {2j}]}, "a complex at ['k'][1][0]"), (float("nan"), "a non-finite float")]:
            with self.assertRaises(XComSerdeError) as cm:
                serialize(value)
            self.assertIn(what, cm.exception.what)
        with self.assertRaisesRegex(XComSerdeError, "reserved key"):
            serialize({"__classname__": "x"})

    def test_plain_dicts_with_one_reserved_key_are_not_envelopes(self) -> None:
        self.assertEqual(deserialize({"__classname__": "x"}), {"__classname__": "x"})


class ContextArgumentsTest(unittest.TestCase):
    """A callable that takes a context key pave cannot provide is refused at parse time."""

    def test_decorated_task_is_refused_naming_task_and_parameter(self) -> None:
        for name in ("inlet_events", "outlet_events", "triggering_asset_events", "task_state_store", "var",
                     "conn", "prev_start_date_success"):
            with self.subTest(name=name):
                ns: dict = {}
                exec(f"def read(x, *, {name}=None):\n    return x\n", ns)
                with DAG("d"):
                    with self.assertRaises(PaveUnsupportedError) as cm:
                        task(ns["read"])(1)
                message = str(cm.exception)
                self.assertIn("task `read`", message)
                self.assertIn(f"context argument `{name}`", message)
                self.assertIn("pave does not support yet", message)

    def test_classic_operators_and_kwargs_callables(self) -> None:
        def with_var(var=None):
            return var

        def with_kwargs(**context):
            return None

        with DAG("d") as d:
            with self.assertRaisesRegex(PaveUnsupportedError, "task `p`: its callable `with_var` takes the context "
                                                              "argument `var` \\(Airflow Variables\\)"):
                PythonOperator(task_id="p", python_callable=with_var)
            # given explicitly, the argument does not come from the context
            PythonOperator(task_id="given", python_callable=with_var, op_kwargs={"var": 1})
            PythonOperator(task_id="positional", python_callable=with_var, op_args=[1])
            PythonOperator(task_id="wild", python_callable=with_kwargs)
            with self.assertRaisesRegex(PaveUnsupportedError, "task `m`.*`conn`"):
                PythonOperator.partial(task_id="m", python_callable=lambda x, conn=None: x).expand(
                    op_args=[[1], [2]])
            PythonOperator.partial(task_id="m2", python_callable=lambda x, conn=None: x).expand(
                op_kwargs=[{"x": 1, "conn": "c"}])
        self.assertEqual(set(d.task_dict), {"given", "positional", "wild", "m2"})

    def test_supported_context_arguments_are_fine(self) -> None:
        @dag(dag_id="ok")
        def ok():
            @task
            def t(ti=None, dag_run=None, params=None, ds=None, macros=None, inlets=None, outlets=None,
                  task_reschedule_count=None, partition_key=None, exception=None, try_number=None):
                return 1

            t()

        self.assertEqual([t["task_id"] for t in dag_to_spec(ok())["tasks"]], ["t"])

    def test_airflows_own_rules_for_context_arguments(self) -> None:
        with DAG("d"):
            @task
            def bad_default(ti=1):
                return ti

            with self.assertRaisesRegex(ValueError, "Context key parameter ti can't have a default other than None"):
                bad_default()

            @task
            def mapped(x, ds=None):
                return x

            with self.assertRaisesRegex(ValueError, r"cannot call expand\(\) on task context variable 'ds'"):
                mapped.expand(ds=["a"])
            with self.assertRaisesRegex(ValueError, r"cannot call partial\(\) on task context variable 'ds'"):
                mapped.partial(ds="a")

    def test_parse_error_has_the_line(self) -> None:
        with TempDir() as tmp:
            path = write_file(tmp, "events.py", """
                from airflow.sdk import dag, task

                @dag(schedule=None)
                def events():
                    @task
                    def read_asset_event(*, inlet_events=None):
                        return inlet_events

                    read_asset_event()

                events()
            """)
            code, out, _ = run_parse(path)
        self.assertEqual(code, 1, out)
        self.assertEqual(out["error"]["line"], 9)
        self.assertIn("PaveUnsupportedError: task `read_asset_event`: its callable `read_asset_event` takes the "
                      "context argument `inlet_events`", out["error"]["message"])


class CommonCompatAndLabelsTest(unittest.TestCase):
    def test_common_compat_sdk_reexports(self) -> None:
        proc = run_python("""
            from pave.loader import enable_compat
            enable_compat()
            import pave
            from airflow.providers.common.compat.sdk import (
                TriggerRule, BaseOperator, DAG, task, dag, Param, XComArg, TaskGroup, chain, Context,
                get_current_context, AirflowSkipException, timezone, Label, Asset,
            )
            from airflow.providers.common.compat.standard.operators import PythonOperator, ShortCircuitOperator
            from airflow.sdk import Label as L2
            from airflow.utils.edgemodifier import Label as L3
            assert TriggerRule is pave.TriggerRule and BaseOperator is pave.BaseOperator and DAG is pave.DAG
            assert PythonOperator is pave.PythonOperator and Label is L2 is L3
            assert timezone.utcnow().tzinfo is not None
            print("ok")
        """)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(), "ok")

    def test_missing_name_is_named(self) -> None:
        with TempDir() as tmp:
            path = write_file(tmp, "sensor.py", """
                from airflow.providers.common.compat.sdk import BaseSensorOperator
            """)
            code, out, _ = run_parse(path)
        self.assertEqual(code, 1)
        self.assertIn("pave does not support `BaseSensorOperator` from `airflow.providers.common.compat.sdk` yet",
                      out["error"]["message"])

    def test_weekday_and_bash_decorator_arguments(self) -> None:
        proc = run_python("""
            from pave.loader import enable_compat
            enable_compat()
            from airflow.providers.standard.utils.weekday import WeekDay
            assert WeekDay.SUNDAY == 7 and WeekDay.convert("monday") == 1
            assert WeekDay.validate_week_day(["Saturday", WeekDay.SUNDAY]) == {6, 7}
            print("ok")
        """)
        self.assertEqual((proc.returncode, proc.stdout.strip()), (0, "ok"), proc.stderr)
        with DAG("bash"):
            @task.bash(multiple_outputs=False)
            def plain() -> str:
                return "echo hi"

            plain()

            @task.bash(multiple_outputs=True, output_processor=json.loads)
            def processed() -> str:
                return "echo {}"

            with self.assertRaisesRegex(PaveUnsupportedError, "the task argument 'output_processor'"):
                processed()

    def test_labels_only_set_dependencies(self) -> None:
        from pave.edges import Label

        with DAG("labels") as d:
            check, save, describe, report, extra = (EmptyOperator(task_id=n) for n in
                                                    ("check", "save", "describe", "report", "extra"))
            check >> Label("No errors") >> save >> report
            check >> Label("Errors found") >> [describe, extra]
            label = Label("late")
            label >> report
            describe >> label
        ups = {t["task_id"]: sorted(t.get("upstream", [])) for t in dag_to_spec(d)["tasks"]}
        self.assertEqual(ups, {"check": [], "save": ["check"], "describe": ["check"], "extra": ["check"],
                               "report": ["describe", "save"]})


if __name__ == "__main__":
    unittest.main()
