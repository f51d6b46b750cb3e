"""The ``airflow`` compatibility package: importable only under pave, with clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import unittest

from .util import sdk_env


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=sdk_env(), timeout=60)


class CompatTest(unittest.TestCase):
    def test_not_importable_without_pave_compat(self) -> None:
        proc = run_python("""
            import importlib.util, pave, pave.parse
            spec = importlib.util.find_spec("airflow")
            assert spec is None or "pave" not in (spec.origin or ""), spec
            print("ok")
        """)
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_supported_import_paths_resolve_to_pave(self) -> None:
        proc = run_python("""
            from pave.loader import enable_compat
            enable_compat()
            import pave
            from airflow import DAG as D0
            from airflow.sdk import DAG, dag, task, task_group, TaskGroup, BaseOperator, chain, Param, Asset, get_current_context, setup, teardown
            from airflow.sdk.exceptions import AirflowSkipException
            from airflow.sdk.definitions.dag import DAG as D1
            from airflow.sdk.definitions.taskgroup import TaskGroup as TG1
            from airflow.sdk.definitions.param import Param as P1
            from airflow.sdk.definitions.asset import Asset as A1
            from airflow.decorators import dag as dag2, task as task2, task_group as tg2
            from airflow.models import DAG as D2, BaseOperator as B2
            from airflow.models.dag import DAG as D3
            from airflow.models.baseoperator import BaseOperator as B3, chain as c3, cross_downstream
            from airflow.operators.empty import EmptyOperator as E1
            from airflow.operators.bash import BashOperator as Ba1
            from airflow.operators.python import PythonOperator as P1o, BranchPythonOperator, ShortCircuitOperator
            from airflow.providers.standard.operators.empty import EmptyOperator as E2
            from airflow.providers.standard.operators.bash import BashOperator as Ba2
            from airflow.providers.standard.operators.python import PythonOperator as P2o
            from airflow.exceptions import AirflowSkipException as S2, AirflowFailException, AirflowException
            from airflow.utils.trigger_rule import TriggerRule
            from airflow.utils.task_group import TaskGroup as TG2
            from airflow.utils.dates import days_ago
            from airflow.datasets import Dataset
            assert DAG is D0 is D1 is D2 is D3 is pave.DAG
            assert task is task2 is pave.task and dag is dag2 is pave.dag
            assert BaseOperator is B2 is B3 is pave.BaseOperator
            assert E1 is E2 is pave.EmptyOperator and Ba1 is Ba2 is pave.BashOperator and P1o is P2o
            assert AirflowSkipException is S2 is pave.AirflowSkipException is pave.TaskSkipped
            assert TG1 is TG2 is pave.TaskGroup and Asset is A1 is Dataset and Param is P1
            assert TriggerRule.ALL_DONE == "all_done"
            print("ok")
        """)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(), "ok")

    def test_unsupported_module_error(self) -> None:
        proc = run_python("""
            from pave.loader import enable_compat
            enable_compat()
            try:
                import airflow.sensors.external_task
            except ImportError as e:
                print(type(e).__name__, e)
        """)
        self.assertIn("ModuleNotFoundError pave does not support the Airflow module `airflow.sensors` yet",
                      proc.stdout, proc.stderr)

    def test_pendulum_fallback(self) -> None:
        proc = run_python("""
            from pave.loader import enable_compat
            enable_compat()
            import pendulum
            d = pendulum.datetime(2025, 1, 1, tz="Europe/Paris")
            print(d.isoformat(), pendulum.duration(hours=2).total_seconds())
        """)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("2025-01-01T00:00:00+01:00 7200.0", proc.stdout)


if __name__ == "__main__":
    unittest.main()
