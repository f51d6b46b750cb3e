"""Checks with the `pave` binary, when it is built (`target/debug/pave`); skipped otherwise.

* the spec documents in `expected/` pass the Rust validator (`pave dags list`);
* `pave dags test` still runs a small YAML DAG;
* `pave dags test` runs a Python DAG file end to end (parse + runtime + execution API).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import unittest

from .util import EXPECTED_DIR, PAVE_BINARY, TempDir, write_file

HAVE_BINARY = os.access(PAVE_BINARY, os.X_OK)


def pave(*args: str, home: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PAVE_HOME=home)
    return subprocess.run([PAVE_BINARY, *args], capture_output=True, text=True, env=env, timeout=timeout)


@unittest.skipUnless(HAVE_BINARY, "the pave binary is not built (cargo build)")
class BinaryTest(unittest.TestCase):
    def test_expected_specs_pass_the_rust_validator(self) -> None:
        with TempDir() as tmp:
            folder = os.path.join(tmp, "dags")
            os.makedirs(folder)
            names = [n for n in os.listdir(EXPECTED_DIR) if n.endswith(".json")]
            dag_count = 0
            for name in names:
                with open(os.path.join(EXPECTED_DIR, name), encoding="utf-8") as fh:
                    doc = json.load(fh)
                dag_count += len(doc["dags"])
                for dag in doc["dags"]:
                    dag.pop("fileloc", None)
                with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
                    json.dump(doc, fh)
            proc = pave("dags", "list", "--dags", folder, "--json", home=os.path.join(tmp, "home"))
            self.assertEqual(proc.returncode, 0, proc.stderr)
            out = json.loads(proc.stdout)
            self.assertEqual(out["import_errors"], [])
            self.assertEqual(len(out["dags"]), dag_count)

    def test_dags_test_of_a_yaml_dag(self) -> None:
        with TempDir() as tmp:
            path = write_file(tmp, "small.yaml", """
                dag_id: small
                tasks:
                  hello: {command: echo hello}
                  bye: {upstream: hello, command: echo bye}
            """)
            proc = pave("dags", "test", path, "--json", home=os.path.join(tmp, "home"))
            self.assertEqual(proc.returncode, 0, proc.stderr)
            out = json.loads(proc.stdout)
            self.assertEqual(out["state"], "success")

    @unittest.skipUnless(shutil.which("bash"), "needs bash")
    def test_dags_test_of_a_python_dag(self) -> None:
        with TempDir() as tmp:
            path = write_file(tmp, "py_dag.py", """
                from airflow.sdk import dag, task
                from airflow.providers.standard.operators.bash import BashOperator

                @dag(dag_id="py_dag")
                def py_dag():
                    @task
                    def numbers():
                        return [1, 2, 3]

                    @task
                    def double(x, factor=2):
                        return x * factor

                    @task
                    def total(values, base):
                        return sum(values) + len(base)

                    @task.branch
                    def choose(t):
                        return "big" if t > 5 else "small"

                    t = total(double.partial(factor=3).expand(x=[1, 2]), numbers())
                    c = choose(t)
                    c >> [BashOperator(task_id="big", bash_command="echo big"),
                          BashOperator(task_id="small", bash_command="echo small")]

                py_dag()
            """)
            proc = pave("dags", "test", path, "--json", home=os.path.join(tmp, "home"))
            self.assertEqual(proc.returncode, 0, proc.stderr)
            out = json.loads(proc.stdout)
            states = {(t["task_id"], t["map_index"]): t["state"] for t in out["task_instances"]}
            self.assertEqual(states, {
                ("numbers", -1): "success", ("double", 0): "success", ("double", 1): "success",
                ("total", -1): "success", ("choose", -1): "success", ("big", -1): "success",
                ("small", -1): "skipped",
            })
            self.assertEqual(out["state"], "success")


if __name__ == "__main__":
    unittest.main()
