"""Setup and teardown: decorators, as_setup/as_teardown, on_failure_fail_dagrun."""
from pave import BashOperator, dag, setup, task, teardown


@dag
def setup_teardown():
    @setup
    @task
    def create_cluster():
        return "cluster-1"

    @teardown
    @task
    def delete_cluster(name):
        print("deleting", name)

    @task
    def work(name):
        return name

    cluster = create_cluster()
    work(cluster) >> delete_cluster(cluster)

    mk = BashOperator(task_id="mkdir", bash_command="mkdir -p /tmp/x")
    use = BashOperator(task_id="use", bash_command="ls /tmp/x")
    rm = BashOperator(task_id="rm", bash_command="rm -rf /tmp/x")
    mk >> use >> rm.as_teardown(setups=mk, on_failure_fail_dagrun=True)


setup_teardown()
