"""TaskFlow with Airflow 3 imports: XComArgs, multiple_outputs, repeated calls, override, DAG params."""
import pendulum
from airflow.sdk import dag, task


@dag(schedule="@daily", start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), tags=["example"])
def taskflow(epochs: int = 3):
    """Extract, transform, load."""

    @task
    def extract() -> dict[str, int]:
        return {"a": 1, "b": 2}

    @task(multiple_outputs=True)
    def stats(data: dict):
        return {"total": sum(data.values()), "count": len(data)}

    @task(retries=2)
    def load(total, count=0, label="x", epochs=None):
        print(total, count, label, epochs)

    data = extract()
    s = stats(data)
    load(s["total"], count=s["count"], epochs=epochs)
    load(1, label={"xcom": "not a reference"})
    load.override(task_id="final", trigger_rule="all_done")(s["total"])


taskflow()
