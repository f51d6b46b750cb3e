"""``python -m pave.parse``: output, exit status and error reports."""

from __future__ import annotations

import os
import unittest

from .util import TempDir, run_parse, write_file


class ParseCliTest(unittest.TestCase):
    def parse_error(self, source: str, name: str = "bad.py") -> dict:
        with TempDir() as tmp:
            path = write_file(tmp, name, source)
            code, out, _ = run_parse(path)
            self.assertEqual(code, 1, out)
            self.assertIsInstance(out, dict, out)
            self.assertEqual(set(out), {"error"})
            err = out["error"]
            self.assertEqual(err["file"], path)
            self.assertEqual(set(err), {"file", "line", "message", "traceback"})
            return err

    def test_syntax_error_has_its_line(self) -> None:
        err = self.parse_error("""
            from pave import dag

            x = (1,
            def broken(:
                pass
        """)
        self.assertIn("SyntaxError", err["message"])
        self.assertIn(err["line"], (3, 4))

    def test_unsupported_argument_is_named_with_its_line(self) -> None:
        err = self.parse_error("""
            from airflow.sdk import DAG
            from airflow.providers.standard.operators.bash import BashOperator

            with DAG("d"):
                BashOperator(
                    task_id="t",
                    bash_command="echo",
                    on_failure_callback=print,
                )
        """)
        self.assertIn("pave does not support the task argument 'on_failure_callback' yet", err["message"])
        self.assertEqual(err["line"], 5)

    def test_exception_in_the_file(self) -> None:
        err = self.parse_error("""
            import os

            def helper():
                return 1 / 0

            helper()
        """)
        self.assertEqual(err["message"], "ZeroDivisionError: division by zero")
        self.assertEqual(err["line"], 4)
        self.assertIn("Traceback", err["traceback"])

    def test_cycle_reports_the_task_line(self) -> None:
        err = self.parse_error("""
            from pave import DAG, EmptyOperator

            with DAG("d"):
                a = EmptyOperator(task_id="a")
                b = EmptyOperator(task_id="b")
                a >> b >> a
        """)
        self.assertIn("a -> b -> a", err["message"])
        self.assertIn(err["line"], (4, 5))

    def test_unknown_airflow_module(self) -> None:
        err = self.parse_error("""
            from airflow.providers.amazon.aws.operators.s3 import S3CreateBucketOperator
        """)
        self.assertIn("pave does not support the Airflow module `airflow.providers.amazon` yet", err["message"])
        self.assertEqual(err["line"], 1)

    def test_unknown_name_from_airflow_sdk(self) -> None:
        err = self.parse_error("""
            from airflow.sdk import dag, Variable
        """)
        self.assertIn("pave does not support `Variable` from `airflow.sdk` yet", err["message"])

    def test_dag_file_output_does_not_corrupt_stdout(self) -> None:
        with TempDir() as tmp:
            path = write_file(tmp, "noisy.py", """
                from pave import DAG, EmptyOperator
                print("noise on stdout")
                with DAG("noisy"):
                    EmptyOperator(task_id="t")
            """)
            code, out, err = run_parse(path)
        self.assertEqual(code, 0)
        self.assertEqual(out["dags"][0]["dag_id"], "noisy")
        self.assertIn("noise on stdout", err)

    def test_file_without_dags(self) -> None:
        with TempDir() as tmp:
            code, out, _ = run_parse(write_file(tmp, "empty.py", "X = 1\n"))
        self.assertEqual((code, out), (0, {"spec_version": 1, "dags": []}))

    def test_neighbour_modules_are_importable(self) -> None:
        with TempDir() as tmp:
            write_file(tmp, "helpers_for_dag.py", "CMD = 'echo from helper'\n")
            path = write_file(tmp, "uses_helper.py", """
                from helpers_for_dag import CMD
                from pave import DAG, BashOperator
                with DAG("h"):
                    BashOperator(task_id="t", bash_command=CMD)
            """)
            code, out, _ = run_parse(path)
        self.assertEqual(code, 0, out)
        self.assertEqual(out["dags"][0]["tasks"][0]["command"], "echo from helper")
        self.assertEqual(out["dags"][0]["fileloc"], os.path.abspath(path))

    def test_bash_script_file_is_read_as_a_template(self) -> None:
        with TempDir() as tmp:
            write_file(tmp, "run.sh", "echo {{ ds }}\n")
            path = write_file(tmp, "script.py", """
                from pave import DAG, BashOperator
                with DAG("s"):
                    BashOperator(task_id="t", bash_command="run.sh")
            """)
            code, out, _ = run_parse(path)
        self.assertEqual(code, 0, out)
        self.assertEqual(out["dags"][0]["tasks"][0]["command"], "echo {{ ds }}\n")


if __name__ == "__main__":
    unittest.main()
