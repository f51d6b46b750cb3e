//! Benchmark of the Kubernetes executor against the simulated cluster (in
//! process, scripted instant success): see bench/README.md, section
//! "Kubernetes executor".
//!
//! 1. executor alone: N attempts started one after another (as the
//!    scheduler starts them), then all their completions awaited;
//! 2. the real scheduler and SQLite store: one upstream task and N
//!    downstream pod tasks; latency from the upstream's completion event to
//!    each downstream `start` (the pod create), and pods per second;
//! 3. a chain of M pod tasks: latency from each completion to the next create.
//!
//! `cargo run --release -p pave-kube-executor --example kube_bench -- [N] [M]`

use async_trait::async_trait;
use chrono::Utc;
use pave_core::model::{OutputFormat, TaskKind};
use pave_core::{Dag, MapIndex, Placement, Resources, Task, TryNumber};
use pave_executor::{
    AdoptStatus, AttemptHandle, AttemptKey, Capacity, ClaimQuery, ClaimStatus, CommandLine,
    Executor, ExecutorError, ExecutorEvent, StartRequest,
};
use pave_kube_executor::{KubeExecutorConfig, KubernetesExecutor};
use pave_kube_sim::{Cluster, ClusterConfig, KubeletMode, NodeSpec, Script};
use pave_scheduler::{Scheduler, SchedulerConfig, SystemClock, TriggerRequest};
use pave_store::{ParsedDag, SqliteStore, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn cluster() -> Cluster {
    let c = Cluster::start(ClusterConfig {
        kubelet: KubeletMode::Script,
        default_script: Script::succeed_after(Duration::ZERO),
        ..ClusterConfig::default()
    });
    let nodes: Vec<NodeSpec> = (0..20)
        .map(|i| NodeSpec::new(format!("n{i}"), "64", "256Gi"))
        .collect();
    c.add_nodes(&nodes);
    c
}

fn cfg(installation: &str) -> KubeExecutorConfig {
    KubeExecutorConfig {
        installation: installation.into(),
        parallelism: 100_000,
        ..KubeExecutorConfig::default()
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        v.len(),
        pct(&v, 0.5),
        pct(&v, 0.9),
        pct(&v, 0.99),
        pct(&v, 1.0)
    );
}

async fn executor_alone(n: usize, dir: &std::path::Path) {
    let cluster = cluster();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let exec = KubernetesExecutor::new(cluster.client(), cfg("bench-exec"), tx)
        .await
        .expect("executor");
    let t0 = Instant::now();
    let mut creates = Vec::with_capacity(n);
    for i in 0..n {
        let key = AttemptKey {
            dag_id: "bench".into(),
            run_id: "r".into(),
            task_id: format!("t{i}").into(),
            map_index: MapIndex::UNMAPPED,
            try_number: TryNumber(1),
        };
        let req = StartRequest {
            key,
            command: CommandLine::Shell {
                script: "true".into(),
            },
            env: Default::default(),
            cwd: None,
            execution_timeout: None,
            resources: Resources::default(),
            log_path: dir.join(format!("exec/{i}.log")),
            result_path: dir.join(format!("exec/{i}.json")),
            placement: Placement::default(),
        };
        let s = Instant::now();
        exec.start(req).await.expect("start");
        creates.push(s.elapsed());
    }
    let created = t0.elapsed();
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("event in time")
            .expect("open");
    }
    let tracked = t0.elapsed();
    println!(
        "executor alone: {n} pods created in {:.2}s ({:.0} pods/s), all {n} completions tracked after {:.2}s ({:.0} pods/s)",
        created.as_secs_f64(),
        n as f64 / created.as_secs_f64(),
        tracked.as_secs_f64(),
        n as f64 / tracked.as_secs_f64()
    );
    report("  start() (pod create) latency", creates);
    cluster.shutdown();
}

/// Times every `start` and every completion event that passes through.
struct Timed {
    inner: Arc<dyn Executor>,
    starts: Arc<Mutex<HashMap<String, Instant>>>,
}

#[async_trait]
impl Executor for Timed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capacity(&self) -> Capacity {
        self.inner.capacity()
    }
    async fn start(&self, req: StartRequest) -> Result<AttemptHandle, ExecutorError> {
        let task = req.key.task_id.to_string();
        if let Ok(mut m) = self.starts.lock() {
            m.insert(task, Instant::now());
        }
        self.inner.start(req).await
    }
    async fn kill(&self, h: &AttemptHandle) -> Result<(), ExecutorError> {
        self.inner.kill(h).await
    }
    async fn adopt(&self, h: &AttemptHandle) -> Result<AdoptStatus, ExecutorError> {
        self.inner.adopt(h).await
    }
    async fn adopt_claimed(&self, q: &ClaimQuery) -> Result<ClaimStatus, ExecutorError> {
        self.inner.adopt_claimed(q).await
    }
}

fn command_task(id: &str, upstream: Option<&str>) -> Task {
    let mut t = Task::new(
        id,
        TaskKind::Command {
            command: "true".into(),
            cwd: None,
            output: OutputFormat::Text,
            skip_exit_code: None,
        },
    );
    t.placement.executor = Some("kubernetes".into());
    if let Some(u) = upstream {
        t.upstream = vec![u.into()];
    }
    t
}

/// Runs `dag` through the real scheduler; returns the completion time of
/// each task (event received) and the start time of each task.
async fn scheduled(
    dag: Dag,
    dir: &std::path::Path,
) -> (HashMap<String, Instant>, HashMap<String, Instant>, Duration) {
    let cluster = cluster();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().await.expect("store"));
    store.migrate().await.expect("migrate");
    store
        .upsert_dag(ParsedDag {
            dag_id: dag.dag_id.clone(),
            fileloc: None,
            spec: pave_scheduler::dags::encode(&dag),
            parsed_at: Utc::now(),
            paused_at_creation: false,
        })
        .await
        .expect("dag");
    let (tx, mut exec_rx) = mpsc::unbounded_channel::<ExecutorEvent>();
    let (fwd_tx, rx) = mpsc::unbounded_channel();
    let ends: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let e2 = ends.clone();
    tokio::spawn(async move {
        while let Some(ev) = exec_rx.recv().await {
            if let Ok(mut m) = e2.lock() {
                m.insert(ev.key().task_id.to_string(), Instant::now());
            }
            if fwd_tx.send(ev).is_err() {
                break;
            }
        }
    });
    let exec = KubernetesExecutor::new(cluster.client(), cfg(dag.dag_id.as_str()), tx)
        .await
        .expect("executor");
    let starts: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let timed = Timed {
        inner: Arc::new(exec),
        starts: starts.clone(),
    };
    let mut scfg = SchedulerConfig::new(dir.join(dag.dag_id.as_str()));
    scfg.create_scheduled_runs = false;
    let mut s = Scheduler::new(store, Arc::new(timed), rx, Arc::new(SystemClock), scfg);
    let t0 = Instant::now();
    let run = s
        .trigger(&dag.dag_id, TriggerRequest::default())
        .await
        .expect("trigger");
    let done = tokio::time::timeout(Duration::from_secs(600), s.run_to_completion(run.key))
        .await
        .expect("in time")
        .expect("run");
    let total = t0.elapsed();
    assert_eq!(done.state, pave_core::RunState::Success, "run succeeded");
    cluster.shutdown();
    let e = ends.lock().map(|m| m.clone()).unwrap_or_default();
    let st = starts.lock().map(|m| m.clone()).unwrap_or_default();
    (e, st, total)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let m: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir().expect("tempdir");
    executor_alone(n, dir.path()).await;

    let mut fan = Dag::new("bench_fanout");
    fan.max_active_tasks = Some(100_000);
    fan.tasks.push(command_task("up", None));
    for i in 0..n {
        fan.tasks.push(command_task(&format!("t{i}"), Some("up")));
    }
    let (ends, starts, total) = scheduled(fan, dir.path()).await;
    let up_end = ends["up"];
    let lat: Vec<Duration> = (0..n)
        .filter_map(|i| {
            starts
                .get(&format!("t{i}"))
                .map(|s| s.duration_since(up_end))
        })
        .collect();
    println!(
        "scheduler fan-out: 1 + {n} pod tasks in {:.2}s ({:.0} pods/s end to end)",
        total.as_secs_f64(),
        (n + 1) as f64 / total.as_secs_f64()
    );
    report("  upstream success -> downstream pod create", lat);

    let mut chain = Dag::new("bench_chain");
    for i in 0..m {
        let up = (i > 0).then(|| format!("c{}", i - 1));
        chain
            .tasks
            .push(command_task(&format!("c{i}"), up.as_deref()));
    }
    let (ends, starts, total) = scheduled(chain, dir.path()).await;
    let lat: Vec<Duration> = (1..m)
        .filter_map(|i| {
            let s = starts.get(&format!("c{i}"))?;
            let e = ends.get(&format!("c{}", i - 1))?;
            Some(s.duration_since(*e))
        })
        .collect();
    println!(
        "scheduler chain: {m} pod tasks one after another in {:.2}s ({:.1} ms per link)",
        total.as_secs_f64(),
        total.as_secs_f64() * 1000.0 / m as f64
    );
    report("  upstream success -> next pod create", lat);
}
