"""Spec output of representative DAG files, compared to expected JSON.

Each ``dags/NAME.py`` has ``expected/NAME.json`` (``fileloc`` written as
``<DAG_FILE>``). Set ``PAVE_UPDATE_GOLDEN=1`` to rewrite the expected files
after a deliberate change, and review the diff.
"""

from __future__ import annotations

import json
import os
import unittest

from pave.parse import parse_file

from .util import DAGS_DIR, EXPECTED_DIR, run_parse


def _normalized(doc: dict, path: str) -> dict:
    for dag in doc["dags"]:
        assert dag["fileloc"] == os.path.abspath(path), dag["fileloc"]
        dag["fileloc"] = "<DAG_FILE>"
    return doc


class GoldenSpecTest(unittest.TestCase):
    maxDiff = None

    def check(self, name: str) -> None:
        path = os.path.join(DAGS_DIR, f"{name}.py")
        got = _normalized(parse_file(path), path)
        expected_path = os.path.join(EXPECTED_DIR, f"{name}.json")
        if os.environ.get("PAVE_UPDATE_GOLDEN"):
            with open(expected_path, "w", encoding="utf-8") as fh:
                json.dump(got, fh, indent=2)
                fh.write("\n")
        with open(expected_path, encoding="utf-8") as fh:
            expected = json.load(fh)
        self.assertEqual(got, expected)

    def test_taskflow(self) -> None:
        self.check("taskflow")

    def test_operators(self) -> None:
        self.check("operators")

    def test_groups(self) -> None:
        self.check("groups")

    def test_mapping(self) -> None:
        self.check("mapping")

    def test_setup_teardown(self) -> None:
        self.check("setup_teardown")

    def test_dag_args(self) -> None:
        self.check("dag_args")

    def test_cli_prints_the_same_document(self) -> None:
        path = os.path.join(DAGS_DIR, "taskflow.py")
        code, out, _ = run_parse(path)
        self.assertEqual(code, 0)
        self.assertEqual(out, parse_file(path))


if __name__ == "__main__":
    unittest.main()
