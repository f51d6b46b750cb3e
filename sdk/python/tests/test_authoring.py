"""The authoring API in process: ids, dependencies, XComArgs, errors at definition time."""

from __future__ import annotations

import datetime as dt
import typing
import unittest
from collections.abc import Mapping

from pave import (
    DAG, Asset, BashOperator, Dataset, EmptyOperator, Param, PaveUnsupportedError, PythonOperator,
    TaskGroup, TriggerRule, chain, cross_downstream, dag, get_current_context, task,
)
from pave.exceptions import AirflowDagCycleException, AirflowException, DuplicateTaskIdFound
from pave.spec import dag_to_spec, to_spec_document


def tasks_of(d: DAG) -> dict:
    return {t["task_id"]: t for t in dag_to_spec(d)["tasks"]}


class DependencyTest(unittest.TestCase):
    def test_shift_operators_with_lists(self) -> None:
        with DAG("deps") as d:
            a, b, c, e = (EmptyOperator(task_id=n) for n in "abce")
            a >> [b, c] >> e
            e << EmptyOperator(task_id="f")
            [EmptyOperator(task_id="g")] >> a
        t = tasks_of(d)
        self.assertEqual(t["b"]["upstream"], ["a"])
        self.assertEqual(t["e"]["upstream"], ["b", "c", "f"])
        self.assertEqual(t["a"]["upstream"], ["g"])
        self.assertNotIn("upstream", t["f"])

    def test_chain_and_cross_downstream(self) -> None:
        with DAG("chain") as d:
            a, b, c, x, y = (EmptyOperator(task_id=n) for n in ["a", "b", "c", "x", "y"])
            chain(a, [b, c], [x, y])
            cross_downstream([b, c], [EmptyOperator(task_id="z")])
            with self.assertRaises(ValueError):
                chain([a, b], [x])
        t = tasks_of(d)
        self.assertEqual(t["x"]["upstream"], ["b"])
        self.assertEqual(t["y"]["upstream"], ["c"])
        self.assertEqual(t["z"]["upstream"], ["b", "c"])

    def test_cycle_is_reported_with_its_path(self) -> None:
        with DAG("cyc") as d:
            a, b, c = (EmptyOperator(task_id=n) for n in "abc")
            a >> b >> c >> a
        with self.assertRaises(AirflowDagCycleException) as cm:
            dag_to_spec(d)
        self.assertIn("a -> b -> c -> a", str(cm.exception))

    def test_cycle_through_a_group(self) -> None:
        with DAG("cyc_group") as d:
            with TaskGroup("g") as g:
                inner = EmptyOperator(task_id="inner")
            out = EmptyOperator(task_id="out")
            g >> out >> inner
        with self.assertRaises(AirflowDagCycleException):
            dag_to_spec(d)

    def test_duplicate_task_id(self) -> None:
        with DAG("dup"):
            EmptyOperator(task_id="a")
            with self.assertRaises(DuplicateTaskIdFound):
                EmptyOperator(task_id="a")

    def test_duplicate_dag_ids_in_one_document(self) -> None:
        with self.assertRaises(AirflowException):
            to_spec_document([DAG("same"), DAG("same")])


class TaskFlowTest(unittest.TestCase):
    def test_ids_are_suffixed_and_xcom_args_wire_dependencies(self) -> None:
        @task
        def produce():
            return {"a": 1}

        @task
        def consume(x, y=None):
            return x

        with DAG("flow") as d:
            p = produce()
            consume(p)
            consume([p["a"]], y={"k": p})
            consume.override(task_id="custom")(1)
        t = tasks_of(d)
        self.assertEqual(list(t), ["produce", "consume", "consume__1", "custom"])
        self.assertEqual(t["consume"]["args"], {"x": {"xcom": "produce"}})
        # Nested XComArgs are dependencies but not spec args.
        self.assertEqual(t["consume__1"]["upstream"], ["produce"])
        self.assertNotIn("args", t["consume__1"])
        self.assertEqual(t["custom"]["args"], {"x": 1})

    def test_bad_call_fails_at_definition(self) -> None:
        @task
        def f(x):
            return x

        with DAG("bad"):
            with self.assertRaises(TypeError):
                f(1, 2)

    def test_context_arguments_may_be_left_out(self) -> None:
        @task
        def f(x, ti, ds):
            return x

        with DAG("ctx") as d:
            f(1)
        self.assertEqual(tasks_of(d)["f"]["args"], {"x": 1})

    def test_multiple_outputs_inferred_from_annotation(self) -> None:
        @task
        def f() -> dict[str, int]:
            return {}

        with DAG("mo"):
            self.assertTrue(f().operator.multiple_outputs)

    def test_multiple_outputs_from_postponed_return_annotations(self) -> None:
        # This module's annotations are strings (`from __future__ import
        # annotations`): each is evaluated in the function's globals, as
        # Airflow does with its return annotation alone.
        @task
        def mapping() -> Mapping[str, int]:
            return {}

        @task
        def typing_dict() -> typing.Dict[str, int]:
            return {}

        @task
        def number() -> int:
            return 1

        @task
        def unknown(x: NoSuchParameterType) -> NoSuchReturnType:  # noqa: F821
            return x

        @task
        def only_a_parameter_unknown(x: NoSuchParameterType) -> dict:  # noqa: F821
            return {}

        with DAG("mo_postponed"):
            self.assertTrue(mapping().operator.multiple_outputs)
            self.assertTrue(typing_dict().operator.multiple_outputs)
            self.assertFalse(number().operator.multiple_outputs)
            self.assertFalse(unknown(1).operator.multiple_outputs)
            self.assertTrue(only_a_parameter_unknown(1).operator.multiple_outputs)

    def test_dag_decorator_params_and_docstring(self) -> None:
        @dag(schedule=dt.timedelta(minutes=30))
        def my_dag(lr: float = 0.1, name: str = "m"):
            """My DAG."""
            EmptyOperator(task_id="t")

        spec = dag_to_spec(my_dag(name="n"))
        self.assertEqual(spec["params"], {"lr": {"default": 0.1}, "name": {"default": "n"}})
        self.assertEqual(spec["description"], "My DAG.")
        self.assertEqual(spec["schedule"], {"interval": 1800})

    def test_setup_teardown_role_conflict(self) -> None:
        with DAG("st"):
            s = EmptyOperator(task_id="s").as_setup()
            with self.assertRaises(AirflowException):
                s.as_teardown()
            t = EmptyOperator(task_id="t", trigger_rule="all_done")
            with self.assertRaises(AirflowException):
                t.as_teardown(setups=s)

    def test_task_ids_in_groups_and_prefix(self) -> None:
        with DAG("grp") as d:
            with TaskGroup("a"):
                with TaskGroup("b", prefix_group_id=False):
                    EmptyOperator(task_id="x")
                EmptyOperator(task_id="y")
        self.assertEqual(d.task_ids, ["x", "a.y"])
        self.assertEqual([g["group_id"] for g in dag_to_spec(d)["task_groups"]], ["a", "a.b"])


class UnsupportedTest(unittest.TestCase):
    def test_unsupported_task_argument_is_named(self) -> None:
        with DAG("u"):
            with self.assertRaises(PaveUnsupportedError) as cm:
                EmptyOperator(task_id="t", on_failure_callback=print)
        self.assertEqual(str(cm.exception), "pave does not support the task argument 'on_failure_callback' yet")

    def test_unsupported_argument_through_default_args(self) -> None:
        with DAG("u", default_args={"on_retry_callback": print}):
            with self.assertRaises(PaveUnsupportedError):
                EmptyOperator(task_id="t")

    def test_ignored_arguments(self) -> None:
        with DAG("ign", default_args={"owner": "me", "email": "x@y", "unknown_key": 1}) as d:
            EmptyOperator(task_id="t", depends_on_past=False, queue="q", outlets=[Dataset("s3://b/k")])
        self.assertEqual(tasks_of(d)["t"], {"task_id": "t", "empty": True})
        self.assertEqual(d.get_task("t").outlets, [Asset("s3://b/k")])

    def test_unknown_argument_is_a_type_error(self) -> None:
        with DAG("u"):
            with self.assertRaises(TypeError) as cm:
                BashOperator(task_id="t", bash_command="x", bash_comand="typo")
        self.assertIn("bash_comand", str(cm.exception))

    def test_depends_on_past_true_is_refused(self) -> None:
        with DAG("u"):
            with self.assertRaises(PaveUnsupportedError):
                EmptyOperator(task_id="t", depends_on_past=True)

    def test_unsupported_decorators_and_dag_args(self) -> None:
        with self.assertRaises(PaveUnsupportedError) as cm:
            task.virtualenv
        self.assertIn("@task.virtualenv", str(cm.exception))
        with self.assertRaises(PaveUnsupportedError):
            DAG("a", schedule=[Asset("x")])
        with self.assertRaises(PaveUnsupportedError):
            DAG("a", on_failure_callback=print)
        with self.assertRaises(PaveUnsupportedError):
            DAG("a", schedule="@continuous")
        with self.assertRaises(TypeError):
            DAG("a", schedule_interval="@daily")
        with self.assertRaises(PaveUnsupportedError):
            Param(1, type="integer", multipleOf=2)

    def test_unknown_trigger_rule(self) -> None:
        with DAG("u"):
            with self.assertRaises(AirflowException) as cm:
                EmptyOperator(task_id="t", trigger_rule="all_sucess")
        self.assertIn("all_sucess", str(cm.exception))

    def test_mapping_non_json_and_xcomarg_map(self) -> None:
        @task
        def f(x):
            return x

        with DAG("m"):
            with self.assertRaises(PaveUnsupportedError):
                f.expand(x=[object()])
            with self.assertRaises(PaveUnsupportedError):
                f(1).map(str)


class MiscTest(unittest.TestCase):
    def test_trigger_rule_values_are_strings(self) -> None:
        self.assertEqual(TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, "none_failed_min_one_success")
        self.assertEqual(str(TriggerRule.ALWAYS), "always")

    def test_get_current_context_outside_a_task(self) -> None:
        with self.assertRaises(AirflowException):
            get_current_context()

    def test_python_operator_templates_and_op_args(self) -> None:
        with DAG("p") as d:
            src = BashOperator(task_id="src", bash_command="echo 1")
            PythonOperator(task_id="p", python_callable=print, op_args=[src.output],
                           op_kwargs={"sep": "{{ ds }}"}, templates_dict={"a": "{{ ds }}"})
        self.assertEqual(tasks_of(d)["p"], {"task_id": "p", "upstream": ["src"], "python": "print",
                                            "args": {"sep": "{{ ds }}"}})

    def test_airflow_resources_are_translated(self) -> None:
        with DAG("r") as d:
            EmptyOperator(task_id="t", resources={"cpus": 1, "ram": 512, "gpus": 0})
        self.assertEqual(tasks_of(d)["t"]["resources"], {"cpu": 1, "memory": "512Mi", "gpu": 0})


if __name__ == "__main__":
    unittest.main()
