//! Fixtures: a simulated cluster, an executor on it, requests, events.

use pave_core::{MapIndex, Placement, Resources, TryNumber};
use pave_executor::{AttemptKey, CommandLine, ExecutorEvent, StartRequest};
use pave_kube_executor::{KubeExecutorConfig, KubernetesExecutor};
use pave_kube_sim::{Cluster, ClusterConfig, KubeletMode, NodeSpec};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const H100: &str = "NVIDIA-H100-80GB-HBM3";

pub struct Fx {
    pub cluster: Cluster,
    pub exec: Arc<KubernetesExecutor>,
    pub events: mpsc::UnboundedReceiver<ExecutorEvent>,
    pub dir: tempfile::TempDir,
    pub cfg: KubeExecutorConfig,
}

/// Fast timeouts for tests.
pub fn config(installation: &str) -> KubeExecutorConfig {
    KubeExecutorConfig {
        installation: installation.to_owned(),
        image_pull_timeout: Duration::from_millis(600),
        unschedulable_timeout: Duration::from_millis(600),
        keep_failed_pods: Duration::from_millis(300),
        orphan_grace: Duration::from_secs(3600),
        tick: Duration::from_millis(50),
        kill_grace: Duration::from_secs(1),
        nodes_ttl: Duration::from_millis(0),
        ..KubeExecutorConfig::default()
    }
}

pub fn nodes() -> Vec<NodeSpec> {
    vec![
        NodeSpec::new("cpu-0", "16", "64Gi"),
        NodeSpec::new("gpu-0", "32", "256Gi").gpus(4, H100),
        NodeSpec::new("spot-0", "16", "64Gi").spot(),
    ]
}

impl Fx {
    pub async fn new(cfg: KubeExecutorConfig) -> Fx {
        let cluster = Cluster::start(ClusterConfig {
            kubelet: KubeletMode::Script,
            ..ClusterConfig::default()
        });
        cluster.add_nodes(&nodes());
        Fx::on(cluster, cfg).await
    }

    pub async fn on(cluster: Cluster, cfg: KubeExecutorConfig) -> Fx {
        let (tx, rx) = mpsc::unbounded_channel();
        let exec = KubernetesExecutor::new(cluster.client(), cfg.clone(), tx)
            .await
            .expect("executor");
        Fx {
            cluster,
            exec: Arc::new(exec),
            events: rx,
            dir: tempfile::tempdir().expect("tempdir"),
            cfg,
        }
    }

    /// A second executor on the same cluster (a restarted scheduler).
    pub async fn restart(&mut self, cfg: KubeExecutorConfig) {
        self.exec.shutdown();
        let (tx, rx) = mpsc::unbounded_channel();
        let exec = KubernetesExecutor::new(self.cluster.client(), cfg.clone(), tx)
            .await
            .expect("executor");
        self.exec = Arc::new(exec);
        self.events = rx;
        self.cfg = cfg;
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn request(&self, task: &str, try_number: u32) -> StartRequest {
        StartRequest {
            key: key(task, try_number),
            command: CommandLine::Shell {
                script: "echo hello".to_owned(),
            },
            env: BTreeMap::from([("PAVE_TASK_ID".to_owned(), task.to_owned())]),
            cwd: None,
            execution_timeout: None,
            resources: Resources::default(),
            log_path: self.path(&format!("logs/{task}/{try_number}.log")),
            result_path: self.path(&format!("logs/{task}/{try_number}.result.json")),
            placement: Placement::default(),
        }
    }

    pub fn pod_name(&self, task: &str, try_number: u32) -> String {
        pave_kube_executor::naming::pod_name(&self.cfg.installation, &key(task, try_number))
    }

    pub async fn next(&mut self) -> ExecutorEvent {
        tokio::time::timeout(Duration::from_secs(20), self.events.recv())
            .await
            .expect("an event within 20 s")
            .expect("channel open")
    }

    /// No further event within `d`.
    pub async fn quiet(&mut self, d: Duration) {
        if let Ok(Some(ev)) = tokio::time::timeout(d, self.events.recv()).await {
            panic!("unexpected second event: {ev:?}");
        }
    }
}

pub fn key(task: &str, try_number: u32) -> AttemptKey {
    AttemptKey {
        dag_id: "ml".into(),
        run_id: "manual__2026-11-28T00:00:00+00:00".into(),
        task_id: task.into(),
        map_index: MapIndex::UNMAPPED,
        try_number: TryNumber(try_number),
    }
}

pub fn annotate(req: &mut StartRequest, outcome: &str) {
    req.placement.pod_override = Some(serde_json::json!({
        "metadata": {"annotations": {"sim.pave.dev/outcome": outcome}}
    }));
}
