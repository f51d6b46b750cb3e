"""Task groups: nesting, prefix_group_id=False, @task_group (twice), group dependencies, group default_args."""
from pave import DAG, EmptyOperator, TaskGroup, task, task_group

with DAG("groups", default_args={"retries": 1}) as groups_dag:
    start = EmptyOperator(task_id="start")

    with TaskGroup("extract", tooltip="Pull the data", default_args={"retries": 4}) as extract:
        a = EmptyOperator(task_id="a")
        b = EmptyOperator(task_id="b", retries=0)
        with TaskGroup("sub") as sub:
            c = EmptyOperator(task_id="c")
        a >> sub

    with TaskGroup("flat", prefix_group_id=False) as flat:
        EmptyOperator(task_id="x")

    @task_group
    def train(n):
        """Train one model."""
        @task
        def fit(n):
            return n

        @task
        def score(m):
            return m

        return score(fit(n))

    start >> extract >> flat
    t1 = train(1)
    t2 = train(2)
    flat >> [t1, t2]
    end = EmptyOperator(task_id="end")
    [t1, t2] >> end
