"""A 20-task ML-shaped DAG: prep, 16 mapped trains, validate with branching, deploy.

prep -> train x16 (mapped over a hyperparameter grid) -> validate (branch)
     -> deploy | alert   (1 + 16 + 1 + 2 = 20 tasks)
The work is small pure-Python arithmetic (a least-squares fit by gradient
descent), the same on every system.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

GRID = [{"lr": lr, "epochs": epochs} for lr in (0.01, 0.02, 0.05, 0.1) for epochs in (20, 40, 60, 80)]


@dag(schedule=None, start_date=datetime(2025, 1, 1), catchup=False, max_active_tasks=32)
def cmp_ml():
    @task
    def prep() -> list[list[float]]:
        # y = 3x + 1 with a small deterministic wobble
        return [[i / 100.0, 3 * (i / 100.0) + 1 + ((i * 37) % 11 - 5) / 100.0] for i in range(200)]

    @task
    def train(data: list[list[float]], hp: dict) -> dict:
        w, b = 0.0, 0.0
        lr = hp["lr"]
        for _ in range(hp["epochs"]):
            gw = gb = 0.0
            for x, y in data:
                err = w * x + b - y
                gw += err * x
                gb += err
            w -= lr * gw / len(data)
            b -= lr * gb / len(data)
        loss = sum((w * x + b - y) ** 2 for x, y in data) / len(data)
        return {"hp": hp, "loss": loss}

    @task.branch
    def validate(results: list[dict]) -> str:
        best = min(results, key=lambda r: r["loss"])
        return "deploy" if best["loss"] < 10.0 else "alert"

    @task
    def deploy() -> str:
        return "deployed"

    @task
    def alert() -> str:
        return "alerted"

    data = prep()
    trained = train.partial(data=data).expand(hp=GRID)
    choice = validate(trained)
    choice >> [deploy(), alert()]


cmp_ml()
