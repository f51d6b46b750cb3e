"""Task placement arguments: executor=, image=, spot=, pod_override=, and
resources gpu_type/mig; bad values fail at definition time, naming them."""

from __future__ import annotations

import unittest

from pave import DAG, BashOperator, EmptyOperator, task
from pave.exceptions import PaveSpecError
from pave.spec import dag_to_spec


def tasks_of(d: DAG) -> dict:
    return {t["task_id"]: t for t in dag_to_spec(d)["tasks"]}


class PlacementTest(unittest.TestCase):
    def test_fields_reach_the_spec(self) -> None:
        with DAG("k8s", default_args={"executor": "kubernetes", "image": "ghcr.io/acme/ml:1.4"}) as d:
            BashOperator(task_id="prep", bash_command="echo", executor="local")

            @task(resources={"gpu": 8, "gpu_type": "H100", "memory": "64Gi"}, spot="allow",
                  pod_override={"spec": {"priorityClassName": "batch-high",
                                         "containers": [{"name": "base", "env": [{"name": "A", "value": "1"}]}]}})
            def train() -> int:
                return 1

            @task(resources={"mig": "1g.10gb", "gpu_type": "A100"}, spot="prefer", image="nvcr.io/nvidia/pytorch:24.05-py3")
            def infer() -> int:
                return 2

            train() >> infer()
        t = tasks_of(d)
        self.assertEqual(t["prep"]["executor"], "local")
        self.assertEqual(t["train"]["executor"], "kubernetes")
        self.assertEqual(t["train"]["image"], "ghcr.io/acme/ml:1.4")
        self.assertEqual(t["train"]["resources"], {"gpu": 8, "gpu_type": "H100", "memory": "64Gi"})
        self.assertEqual(t["train"]["spot"], "allow")
        self.assertEqual(t["train"]["pod_override"]["spec"]["priorityClassName"], "batch-high")
        self.assertEqual(t["infer"]["resources"], {"mig": "1g.10gb", "gpu_type": "A100"})
        self.assertEqual(t["infer"]["image"], "nvcr.io/nvidia/pytorch:24.05-py3")
        self.assertEqual(t["infer"]["spot"], "prefer")

    def test_unsupported_values_are_named(self) -> None:
        cases = [
            ({"executor": "celery"}, "executor='celery'"),
            ({"spot": "sometimes"}, "spot='sometimes'"),
            ({"image": "ghcr.io/Acme/trainer:1"}, "invalid reference format"),
            ({"image": "python:3.12 slim"}, "whitespace"),
            ({"pod_override": ["x"]}, "pod_override must be a dict"),
            ({"pod_override": {"status": {}}}, "unknown key 'status'"),
            ({"pod_override": {"spec": {"containers": [{"image": "x"}]}}}, "needs a 'name'"),
            ({"resources": {"mig": "1g10gb"}}, "not a MIG profile"),
            ({"resources": {"gpu": 1, "mig": "1g.10gb"}}, "set one of them"),
            ({"resources": {"gpu_type": "H100"}}, "needs 'gpu'"),
        ]
        for kwargs, needle in cases:
            with self.subTest(kwargs=kwargs), DAG("bad"):
                with self.assertRaises(PaveSpecError) as cm:
                    EmptyOperator(task_id="t", **kwargs)
                self.assertIn(needle, str(cm.exception))
                self.assertIn("task `t`", str(cm.exception))

    def test_executor_config_stays_refused(self) -> None:
        from pave import PaveUnsupportedError

        with DAG("x"):
            with self.assertRaises(PaveUnsupportedError):
                EmptyOperator(task_id="t", executor_config={"pod_override": {}})


if __name__ == "__main__":
    unittest.main()
