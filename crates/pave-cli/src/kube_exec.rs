//! The executor settings of `standalone` and `dags test` (`--executor`,
//! `--kubeconfig`, ... and their `PAVE_*` variables), and building the
//! executor the scheduler uses from them: the local executor, plus the
//! Kubernetes executor when configured, behind a routing executor that sends
//! each task where its `executor` field (or the default) says.

use anyhow::{Context, Result, bail};
use clap::Args;
use pave_executor::{Executor, ExecutorEvent};
use pave_kube_executor::{KubeExecutorConfig, KubernetesExecutor, RoutingExecutor};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// Where tasks run (docs/kubernetes-executor.md).
#[derive(Args, Debug, Clone, Default)]
pub struct ExecutorArgs {
    /// Executor of tasks that name none: `local` or `kubernetes`.
    #[arg(long = "executor", env = "PAVE_EXECUTOR")]
    pub executor: Option<String>,
    /// Kubeconfig of the cluster for the Kubernetes executor (its current
    /// context); without it, KUBECONFIG, ~/.kube/config or in-cluster.
    #[arg(long, env = "PAVE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of task pods (default: `default`).
    #[arg(long = "k8s-namespace", env = "PAVE_K8S_NAMESPACE")]
    pub k8s_namespace: Option<String>,
    /// Pod template (YAML Pod) every task pod starts from.
    #[arg(long = "pod-template", env = "PAVE_POD_TEMPLATE")]
    pub pod_template: Option<PathBuf>,
    /// Image of task pods whose task names none.
    #[arg(long = "k8s-image", env = "PAVE_K8S_IMAGE")]
    pub k8s_image: Option<String>,
}

static SETTINGS: OnceLock<ExecutorArgs> = OnceLock::new();

/// Records the command line's executor settings for [`executor`].
pub fn configure(args: ExecutorArgs) {
    let _ = SETTINGS.set(args);
}

fn seconds(var: &str, default: u64) -> Result<Duration> {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .with_context(|| format!("{var}={v} is not a number of seconds")),
        Err(_) => Ok(Duration::from_secs(default)),
    }
}

/// The Kubernetes executor's settings from the flags and `PAVE_K8S_*`.
fn kube_config(args: &ExecutorArgs, parallelism: usize) -> Result<KubeExecutorConfig> {
    let mut cfg = KubeExecutorConfig {
        parallelism: parallelism.max(1),
        ..KubeExecutorConfig::default()
    };
    if let Some(ns) = &args.k8s_namespace {
        cfg.namespace = ns.clone();
    }
    if let Some(image) = &args.k8s_image {
        pave_spec::check_image(image)
            .map_err(|why| anyhow::anyhow!("--k8s-image `{image}` is not a valid image: {why}"))?;
        cfg.default_image = image.clone();
    }
    if let Some(path) = &args.pod_template {
        cfg.pod_template = Some(pave_kube_executor::read_pod_template(path)?);
    }
    if let Ok(id) = std::env::var("PAVE_K8S_INSTALLATION") {
        cfg.installation = id;
    }
    if let Ok(n) = std::env::var("PAVE_K8S_PARALLELISM") {
        cfg.parallelism = n
            .trim()
            .parse()
            .with_context(|| format!("PAVE_K8S_PARALLELISM={n} is not a number"))?;
    }
    cfg.unschedulable_timeout = seconds("PAVE_K8S_UNSCHEDULABLE_TIMEOUT", 300)?;
    cfg.image_pull_timeout = seconds("PAVE_K8S_IMAGE_PULL_TIMEOUT", 120)?;
    cfg.keep_failed_pods = seconds("PAVE_K8S_KEEP_FAILED_PODS", 3600)?;
    if let Ok(n) = std::env::var("PAVE_K8S_SPOT_FALLBACK_AFTER") {
        cfg.spot_fallback_after = n
            .trim()
            .parse()
            .with_context(|| format!("PAVE_K8S_SPOT_FALLBACK_AFTER={n} is not a number"))?;
    }
    Ok(cfg)
}

/// The executor of a scheduler: `local` alone, or routed together with the
/// Kubernetes executor when `--executor kubernetes` or `--kubeconfig` asks
/// for it. Tasks naming an executor that is not configured fail with an
/// error that says how to configure it.
pub async fn executor(
    local: Arc<dyn Executor>,
    events: UnboundedSender<ExecutorEvent>,
    parallelism: usize,
) -> Result<Arc<dyn Executor>> {
    let args = SETTINGS.get().cloned().unwrap_or_default();
    let default = args.executor.clone().unwrap_or_else(|| "local".to_owned());
    if !pave_spec::EXECUTORS.contains(&default.as_str()) {
        bail!(
            "--executor `{default}` is not an executor; use one of {}",
            pave_spec::EXECUTORS.join(", ")
        );
    }
    let mut executors = vec![local];
    if default == "kubernetes" || args.kubeconfig.is_some() {
        let cfg = kube_config(&args, parallelism)?;
        let client = pave_kube_executor::client_from_kubeconfig(args.kubeconfig.as_deref())
            .await
            .context("cannot set up the Kubernetes executor")?;
        let kube = KubernetesExecutor::new(client, cfg, events)
            .await
            .context("cannot start the Kubernetes executor")?;
        executors.push(Arc::new(kube));
    }
    let routing = RoutingExecutor::new(&default, executors).map_err(|e| {
        anyhow::anyhow!("{e}; pass --kubeconfig PATH (or set PAVE_KUBECONFIG) to run pods")
    })?;
    Ok(Arc::new(routing))
}
