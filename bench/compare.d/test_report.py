"""Tests of ``report.py``: the tables bench/RESULTS.md quotes, from a
hand-made ``results.json`` (``python3 -m unittest discover -s bench/compare.d``)."""

from __future__ import annotations

import unittest
from typing import Any

import report


def sample(system: str, case: str, rnd: int, wall: float, **extra: Any) -> dict[str, Any]:
    s = {"mode": "test", "system": system, "case": case, "round": rnd, "wall_s": wall, "exit_code": 0,
         "run_state": "success", "ti_states": {"success": 1}, "first_task_start_s": 0.1, "hop_median_s": None,
         "peak_pss_kib": 200 * 1024, "peak_rss_kib": 210 * 1024, "peak_procs": 1, "memory_samples": 40}
    s.update(extra)
    return s


def results(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "started": "2026-11-30T00:00:00+00:00", "finished": "2026-11-30T00:10:00+00:00", "runs": 2, "parallelism": 32,
        "machine": {"cpu": "test CPU", "cores": 2, "memory_gib": 8, "kernel": "6.18"},
        "versions": {"airflow": "3.3.2", "airflow_core": "3.3.2", "airflow_task_sdk": "1.3.2", "pave": "pave 0.1.0",
                     "python": "Python 3.11"},
        "load_before": [1.0, 1.0, 1.0], "load_after": [2.0, 2.0, 2.0],
        "cases": {"long": {"dag_id": "long", "tasks": 10, "chain": False},
                  "short": {"dag_id": "short", "tasks": 2, "chain": False}},
        "samples": samples,
    }


def row(text: str, start: str) -> str:
    hits = [line for line in text.splitlines() if line.startswith(start)]
    assert len(hits) == 1, (start, hits)
    return hits[0]


class MemoryTableTest(unittest.TestCase):
    def setUp(self) -> None:
        pave_long = {"peak_pss_kib": 40 * 1024, "peak_rss_kib": 70 * 1024, "peak_procs": 25, "memory_samples": 9}
        # A run shorter than the sampling interval: one sample, taken before the command had started.
        pave_short = {"peak_pss_kib": 0, "peak_rss_kib": 1024, "peak_procs": 1, "memory_samples": 1}
        self.text = report.report(results([
            sample("airflow", "long", 0, 60.0), sample("pave", "long", 0, 2.0, **pave_long),
            sample("airflow", "long", 1, 66.0), sample("pave", "long", 1, 2.2, **pave_long),
            sample("airflow", "short", 0, 11.0), sample("pave", "short", 0, 0.2, **pave_short),
            sample("airflow", "short", 1, 12.0), sample("pave", "short", 1, 0.2, **pave_short),
        ]))

    def test_a_well_sampled_case_gets_its_ratio(self) -> None:
        self.assertEqual(row(self.text, "| sum of PSS, long |"), "| sum of PSS, long | 200 MiB | 40 MiB | 0.200 |")
        self.assertEqual(row(self.text, "| processes, long |"), "| processes, long | 1 | 25 | 25.000 |")

    def test_a_case_with_too_few_samples_is_marked_and_has_no_ratio(self) -> None:
        self.assertEqual(row(self.text, "| sum of PSS, short |"),
                         "| sum of PSS, short | 200 MiB | 0 MiB (too few samples) | - |")
        self.assertEqual(row(self.text, "| sum of RSS, short |"),
                         "| sum of RSS, short | 210 MiB | 1 MiB (too few samples) | - |")
        self.assertIn(f"fewer than {report.MIN_MEMORY_SAMPLES} memory samples", self.text)

    def test_no_footnote_when_every_case_is_well_sampled(self) -> None:
        text = report.report(results([sample("airflow", "long", 0, 60.0), sample("pave", "long", 0, 2.0)]))
        self.assertNotIn("too few samples", text)


class RoundRatiosTest(unittest.TestCase):
    def test_the_range_of_the_rounds_ratios(self) -> None:
        samples = [sample("airflow", "long", 0, 60.0), sample("pave", "long", 0, 2.0),
                   sample("airflow", "long", 1, 66.0), sample("pave", "long", 1, 3.0)]
        self.assertEqual(report.round_ratios(samples, "test", "long"), "22x to 30x")

    def test_a_failed_round_is_left_out(self) -> None:
        samples = [sample("airflow", "long", 0, 60.0), sample("pave", "long", 0, 2.0),
                   sample("airflow", "long", 1, 66.0), sample("pave", "long", 1, 3.0, run_state="failed"),
                   sample("airflow", "long", 2, 50.0), sample("pave", "long", 2, 2.5)]
        self.assertEqual(report.round_ratios(samples, "test", "long"), "20x to 30x")

    def test_one_round_gives_no_range(self) -> None:
        samples = [sample("airflow", "long", 0, 60.0), sample("pave", "long", 0, 2.0)]
        self.assertEqual(report.round_ratios(samples, "test", "long"), "")


if __name__ == "__main__":
    unittest.main()
