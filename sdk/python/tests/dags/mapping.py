"""Dynamic task mapping: decorated and classic, expand and expand_kwargs."""
from pave import BashOperator, PythonOperator, dag, task


def add(x, y):
    return x + y


@dag(dag_id="mapping")
def mapping_dag():
    @task
    def shards():
        return ["s0", "s1"]

    @task(multiple_outputs=True)
    def config():
        return {"lrs": [0.1, 0.2], "name": "m"}

    @task
    def train(shard, lr=0.1, epochs=1):
        return {"shard": shard, "lr": lr}

    @task
    def collect(results):
        return len(results)

    trained = train.partial(epochs=3).expand(shard=shards(), lr=[0.1, 0.01])
    collect(trained)
    train.expand(shard=["a", "b"], lr=config()["lrs"])
    train.expand_kwargs([{"shard": "a", "lr": 1.0}, {"shard": "b", "lr": 2.0}])
    BashOperator.partial(task_id="echo", retries=2).expand(bash_command=["echo 1", "echo 2"])
    PythonOperator.partial(task_id="adder", python_callable=add).expand(op_kwargs=[{"x": 1, "y": 2}, {"x": 3, "y": 4}])


mapping_dag()
