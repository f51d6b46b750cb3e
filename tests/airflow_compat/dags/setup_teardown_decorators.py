"""@setup / @teardown around a failing work task: the teardown still runs, the run fails."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, setup, task, teardown


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False)
def setup_teardown_decorators():
    @setup
    def create_cluster() -> str:
        return "cluster-1"

    @task
    def train(cluster: str) -> None:
        assert cluster == "cluster-1"
        raise RuntimeError("training diverged")

    @task
    def evaluate() -> None:
        pass

    @teardown
    def delete_cluster(cluster: str) -> None:
        assert cluster == "cluster-1"

    cluster = create_cluster()
    work = train(cluster)
    work >> evaluate()
    work >> delete_cluster(cluster)


setup_teardown_decorators()
