"""Task-level ``start_date`` / ``end_date``: written into the spec as Airflow keeps them.

pave (like Airflow's ``DagRun.verify_integrity``) gives a run no instance of
a task whose range, narrowed by the DAG's own dates, does not hold the run's
logical date; the SDK's part is to carry the dates over faithfully: aware
datetimes in UTC, naive ones as UTC (Airflow's ``convert_to_utc`` with its
default time zone), ``default_args`` applied like any task argument, and a
DAG without ``start_date`` taking the one in ``default_args``.
"""

from __future__ import annotations

import datetime as dt
import unittest
from zoneinfo import ZoneInfo

from pave import DAG, EmptyOperator, PythonOperator, TaskGroup, dag, task
from pave.exceptions import PaveSpecError
from pave.spec import dag_to_spec

UTC = dt.timezone.utc


def tasks_of(d: DAG) -> dict:
    return {t["task_id"]: t for t in dag_to_spec(d)["tasks"]}


def dates_of(d: DAG) -> dict:
    return {
        tid: (t.get("start_date"), t.get("end_date"))
        for tid, t in tasks_of(d).items()
    }


class TaskDatesTest(unittest.TestCase):
    def test_dates_are_written_in_utc(self) -> None:
        with DAG("d", start_date=dt.datetime(2025, 1, 1, tzinfo=UTC)) as d:
            EmptyOperator(
                task_id="paris",
                start_date=dt.datetime(2025, 3, 1, 1, 0, tzinfo=ZoneInfo("Europe/Paris")),
                end_date=dt.datetime(2025, 7, 1, 2, 0, tzinfo=ZoneInfo("Europe/Paris")),
            )
            # Airflow reads a naive datetime on a task in its default time
            # zone (UTC), whatever the DAG's time zone is.
            EmptyOperator(task_id="naive", start_date=dt.datetime(2025, 2, 1, 12, 30))
            EmptyOperator(task_id="a_date", end_date=dt.date(2025, 12, 31))
            EmptyOperator(task_id="none")
        self.assertEqual(
            dates_of(d),
            {
                "paris": ("2025-03-01T00:00:00Z", "2025-07-01T00:00:00Z"),
                "naive": ("2025-02-01T12:30:00Z", None),
                "a_date": (None, "2025-12-31T00:00:00Z"),
                "none": (None, None),
            },
        )
        self.assertNotIn("start_date", tasks_of(d)["none"])
        self.assertEqual(d.get_task("naive").start_date, dt.datetime(2025, 2, 1, 12, 30, tzinfo=UTC))

    def test_naive_task_dates_are_utc_even_in_a_paris_dag(self) -> None:
        paris = ZoneInfo("Europe/Paris")
        with DAG("d", start_date=dt.datetime(2025, 1, 1, tzinfo=paris)) as d:
            EmptyOperator(task_id="t", start_date=dt.datetime(2025, 1, 1))
        spec = dag_to_spec(d)
        self.assertEqual(spec["timezone"], "Europe/Paris")
        self.assertEqual(spec["start_date"], "2024-12-31T23:00:00Z")
        self.assertEqual(spec["tasks"][0]["start_date"], "2025-01-01T00:00:00Z")

    def test_default_args_reach_every_task_and_own_dates_win(self) -> None:
        with DAG(
            "d",
            start_date=dt.datetime(2024, 1, 1, tzinfo=UTC),
            default_args={"start_date": dt.datetime(2030, 1, 1), "end_date": dt.datetime(2031, 1, 1)},
        ) as d:
            EmptyOperator(task_id="from_defaults")
            EmptyOperator(task_id="own", start_date=dt.datetime(2020, 1, 1))
            with TaskGroup("g", default_args={"end_date": dt.datetime(2032, 1, 1)}):
                EmptyOperator(task_id="in_group")
        self.assertEqual(
            dates_of(d),
            {
                "from_defaults": ("2030-01-01T00:00:00Z", "2031-01-01T00:00:00Z"),
                "own": ("2020-01-01T00:00:00Z", "2031-01-01T00:00:00Z"),
                "g.in_group": ("2030-01-01T00:00:00Z", "2032-01-01T00:00:00Z"),
            },
        )
        # The DAG keeps its own start_date.
        self.assertEqual(dag_to_spec(d)["start_date"], "2024-01-01T00:00:00Z")

    def test_a_dag_without_start_date_takes_the_one_in_default_args(self) -> None:
        paris = ZoneInfo("Europe/Paris")
        with DAG("d", default_args={"start_date": dt.datetime(2025, 6, 1, tzinfo=paris)}) as d:
            EmptyOperator(task_id="t")
        spec = dag_to_spec(d)
        self.assertEqual(spec["start_date"], "2025-05-31T22:00:00Z")
        # ... and its time zone, as Airflow's DAG derives it.
        self.assertEqual(spec["timezone"], "Europe/Paris")
        self.assertEqual(spec["tasks"][0]["start_date"], "2025-05-31T22:00:00Z")
        with DAG("e") as e:
            EmptyOperator(task_id="t")
        self.assertNotIn("start_date", dag_to_spec(e))

    def test_string_dates_in_default_args_are_passed_on(self) -> None:
        # Airflow parses them in the DAG's time zone; pave's spec reader does too.
        with DAG("d", default_args={"start_date": "2025-06-01"}) as d:
            EmptyOperator(task_id="t")
        spec = dag_to_spec(d)
        self.assertEqual(spec["start_date"], "2025-06-01")
        self.assertEqual(spec["tasks"][0]["start_date"], "2025-06-01")

    def test_decorated_tasks_override_and_mapping(self) -> None:
        @dag(schedule=None, start_date=dt.datetime(2025, 1, 1))
        def decorated():
            @task(start_date=dt.datetime(2030, 1, 1, tzinfo=UTC))
            def later() -> int:
                return 1

            later()
            later.override(task_id="sooner", start_date=dt.datetime(2025, 2, 1, tzinfo=UTC))()

            @task(end_date=dt.datetime(2026, 1, 1, tzinfo=UTC))
            def mapped(x: int) -> int:
                return x

            mapped.expand(x=[1, 2])
            PythonOperator.partial(
                task_id="classic", python_callable=print, start_date=dt.datetime(2027, 1, 1, tzinfo=UTC)
            ).expand(op_args=[[1], [2]])

        d = decorated()
        self.assertEqual(
            dates_of(d),
            {
                "later": ("2030-01-01T00:00:00Z", None),
                "sooner": ("2025-02-01T00:00:00Z", None),
                "mapped": (None, "2026-01-01T00:00:00Z"),
                "classic": ("2027-01-01T00:00:00Z", None),
            },
        )

    def test_dates_cannot_be_mapped(self) -> None:
        with DAG("d"):
            with self.assertRaises(TypeError):
                EmptyOperator.partial(task_id="t").expand(start_date=["2025-01-01"])

    def test_a_date_that_is_not_a_datetime_names_the_task(self) -> None:
        with DAG("d"):
            with self.assertRaises(PaveSpecError) as cm:
                EmptyOperator(task_id="t", end_date=20250101)
        self.assertIn("task `t`: end_date", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
