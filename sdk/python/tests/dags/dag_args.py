"""DAG arguments: schedules, time zones, params, several DAGs in one file (with, @dag and plain globals)."""
import datetime as dt
from zoneinfo import ZoneInfo

from pave import DAG, EmptyOperator, Param, dag

with DAG(
    "hourly_paris",
    schedule="@hourly",
    start_date=dt.datetime(2025, 3, 1, 6, 30, tzinfo=ZoneInfo("Europe/Paris")),
    end_date=dt.datetime(2025, 12, 31, tzinfo=ZoneInfo("Europe/Paris")),
    catchup=True,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=90),
    tags=["a", "b"],
    doc_md="Long documentation",
    params={
        "epochs": Param(3, type="integer", minimum=1, maximum=100, description="Epochs"),
        "mode": Param("fast", enum=["fast", "slow"], title="Mode"),
        "opts": {"a": 1},
        "nothing": None,
        "required": Param(type=["string", "null"]),
    },
):
    EmptyOperator(task_id="only")

interval = DAG("every_6h", schedule=dt.timedelta(hours=6), start_date=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
EmptyOperator(task_id="t", dag=interval)


@dag(schedule="@once", description="Once")
def once():
    EmptyOperator(task_id="t")


once()
