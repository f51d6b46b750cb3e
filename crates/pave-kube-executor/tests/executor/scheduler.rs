//! The real scheduler driving the Kubernetes executor: a disrupted pod is
//! retried without spending a retry, and the cause stays in the try history;
//! a request no node can ever hold fails at once, without retries.

use crate::common::config;
use chrono::Utc;
use pave_core::model::{OutputFormat, TaskKind};
use pave_core::{Dag, RunState, Task, TaskState};
use pave_kube_executor::{KubeExecutorConfig, KubernetesExecutor, naming};
use pave_kube_sim::{
    Cluster, ClusterConfig, DisruptionReason, KubeletMode, NodeSpec, PodMatch, Script,
};
use pave_scheduler::{Scheduler, SchedulerConfig, SystemClock, TriggerRequest};
use pave_store::{ParsedDag, RunRecord, SqliteStore, Store, TiKey};
use std::sync::Arc;
use std::time::Duration;

/// The real scheduler and store over a Kubernetes executor on `cluster`,
/// with one DAG of one task, triggered once.
struct Setup {
    s: Scheduler,
    store: Arc<dyn Store>,
    run: RunRecord,
    cfg: KubeExecutorConfig,
    _logs: tempfile::TempDir,
}

async fn setup(cluster: &Cluster, installation: &str, dag_id: &str, task: Task) -> Setup {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    store.migrate().await.expect("migrate");
    let mut dag = Dag::new(dag_id);
    dag.tasks = vec![task];
    store
        .upsert_dag(ParsedDag {
            dag_id: dag.dag_id.clone(),
            fileloc: None,
            spec: pave_scheduler::dags::encode(&dag),
            parsed_at: Utc::now(),
            paused_at_creation: false,
        })
        .await
        .expect("dag stored");
    let logs = tempfile::tempdir().expect("logs");
    let cfg = config(installation);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = KubernetesExecutor::new(cluster.client(), cfg.clone(), tx)
        .await
        .expect("executor");
    let mut scfg = SchedulerConfig::new(logs.path().to_owned());
    scfg.create_scheduled_runs = false;
    scfg.poll_interval = Duration::from_millis(50);
    let mut s = Scheduler::new(
        store.clone(),
        Arc::new(exec),
        rx,
        Arc::new(SystemClock),
        scfg,
    );
    let run = s
        .trigger(&dag.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");
    Setup {
        s,
        store,
        run,
        cfg,
        _logs: logs,
    }
}

fn command_task(task_id: &str) -> Task {
    let mut task = Task::new(
        task_id,
        TaskKind::Command {
            command: format!("echo {task_id}"),
            cwd: None,
            output: OutputFormat::Text,
            skip_exit_code: None,
        },
    );
    task.placement.executor = Some("kubernetes".into());
    task
}

#[tokio::test]
async fn a_disrupted_pod_is_retried_without_spending_a_retry() {
    let cluster = Cluster::start(ClusterConfig {
        kubelet: KubeletMode::Script,
        ..ClusterConfig::default()
    });
    cluster.add_nodes(&crate::common::nodes());
    let mut task = command_task("train");
    // No retries at all: only a disruption may run it again.
    task.retry.retries = 0;
    let Setup {
        mut s,
        store,
        run,
        cfg,
        ..
    } = setup(&cluster, "sched-disrupt", "disrupt", task).await;
    let key = |try_number: u32| pave_executor::AttemptKey {
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: "train".into(),
        map_index: pave_core::MapIndex::UNMAPPED,
        try_number: pave_core::TryNumber(try_number),
    };
    let first = naming::pod_name(&cfg.installation, &key(1));
    cluster.script(PodMatch::name(&first), Script::run_forever());
    let c = cluster.clone();
    let preempt = tokio::spawn(async move {
        c.wait_for_phase("default", &first, "Running", Duration::from_secs(20))
            .await
            .expect("try 1 runs");
        c.disrupt("default", &first, DisruptionReason::PreemptionByScheduler)
            .expect("preempt");
    });
    let done = tokio::time::timeout(Duration::from_secs(30), s.run_to_completion(run.key))
        .await
        .expect("run ends in time")
        .expect("run");
    preempt.await.expect("preempted");
    assert_eq!(done.state, RunState::Success);
    let ti = TiKey::unmapped(run.key, "train");
    let tries = store.list_tries(&ti).await.expect("tries");
    assert_eq!(tries.len(), 2, "{tries:?}");
    let cause = tries[0].reason.clone().unwrap_or_default();
    assert!(
        cause.contains("disrupted") && cause.contains("PreemptionByScheduler"),
        "{cause}"
    );
    assert_eq!(tries[1].state, TaskState::Success);
    let record = store.get_ti(&ti).await.expect("ti");
    assert_eq!(record.try_number.0, 2);
    assert_eq!(record.max_tries, 1, "the disrupted try was given back");
}

/// Runs the one-task DAG whose task `task_id` the executor refuses on every
/// try, and checks it failed at once: one try, no retry spent, no pod, and a
/// reason that says "without retry" and contains `why`.
async fn assert_fails_once_without_retry(
    cluster: &Cluster,
    setup: Setup,
    task_id: &str,
    why: &str,
) {
    let Setup {
        mut s, store, run, ..
    } = setup;
    let done = tokio::time::timeout(Duration::from_secs(30), s.run_to_completion(run.key))
        .await
        .expect("the run fails at once, not after retries")
        .expect("run");
    assert_eq!(done.state, RunState::Failed);
    let ti = TiKey::unmapped(run.key, task_id);
    let record = store.get_ti(&ti).await.expect("ti");
    assert_eq!(record.state, TaskState::Failed);
    assert_eq!(record.try_number.0, 1, "no retry was spent");
    let tries = store.list_tries(&ti).await.expect("tries");
    assert_eq!(tries.len(), 1, "{tries:?}");
    let reason = tries[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("without retry") && reason.contains(why),
        "{reason}"
    );
    assert!(
        cluster.pods().is_empty(),
        "no pod was created for a request refused on every try"
    );
}

#[tokio::test]
async fn a_request_the_executor_refuses_as_invalid_fails_without_spending_retries() {
    let cluster = Cluster::start(ClusterConfig {
        kubelet: KubeletMode::Script,
        ..ClusterConfig::default()
    });
    cluster.add_nodes(&crate::common::nodes());
    let mut task = command_task("shaped");
    // Well formed, so it passes pave's checks, but the API server refuses it
    // (422: a request above its limit): every try would be refused the same way.
    task.placement.pod_override = Some(serde_json::json!({"spec": {"containers": [{
        "name": "base",
        "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
    }]}}));
    task.retry.retries = 3;
    task.retry.retry_delay = Duration::from_secs(300);
    let setup = setup(&cluster, "sched-invalid", "invalid_override", task).await;
    assert_fails_once_without_retry(
        &cluster,
        setup,
        "shaped",
        "must be less than or equal to cpu limit",
    )
    .await;
}

#[tokio::test]
async fn a_request_no_node_can_ever_hold_fails_without_spending_retries() {
    let cluster = Cluster::start(ClusterConfig {
        kubelet: KubeletMode::Script,
        ..ClusterConfig::default()
    });
    // 8 GPUs in all, so the scheduler's admission (cluster totals) lets the
    // task through; but no node has 8 H100s.
    cluster.add_nodes(&crate::common::nodes());
    cluster.add_node(NodeSpec::new("gpu-1", "32", "256Gi").gpus(4, "NVIDIA-A100-SXM4-80GB"));
    let mut task = command_task("train");
    task.resources.gpu = 8;
    task.resources.gpu_type = Some("H100".into());
    // Retries that would keep it waiting for minutes if they were spent.
    task.retry.retries = 3;
    task.retry.retry_delay = Duration::from_secs(300);
    let setup = setup(&cluster, "sched-never-fits", "never_fits", task).await;
    assert_fails_once_without_retry(&cluster, setup, "train", "8 nvidia.com/gpu of type H100")
        .await;
}
