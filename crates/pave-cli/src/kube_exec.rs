//! The executor settings of `standalone` and `dags test` (`--executor`,
//! `--kubeconfig`, ... and their `PAVE_*` variables), and building the
//! executor the scheduler uses from them: the local executor, plus the
//! Kubernetes executor when configured, behind a routing executor that sends
//! each task where its `executor` field (or the default) says.

use anyhow::{Context, Result, bail};
use clap::Args;
use pave_executor::{Executor, ExecutorEvent};
use pave_kube_executor::{KubeExecutorConfig, KubernetesExecutor, RoutingExecutor};
use std::net::SocketAddr;
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
    /// Address the task execution API listens on (default: a free port on
    /// 127.0.0.1); on a cluster, `0.0.0.0:8793` behind a Service.
    #[arg(long = "execution-api-listen", env = "PAVE_EXECUTION_API_LISTEN")]
    pub execution_api_listen: Option<SocketAddr>,
    /// URL of the task execution API as task pods reach it (their
    /// `PAVE_API_URL`), e.g. `http://pave-execution.pave.svc:8793/execution/v1`.
    #[arg(long = "execution-api-url", env = "PAVE_EXECUTION_API_URL")]
    pub execution_api_url: Option<String>,
}

static SETTINGS: OnceLock<ExecutorArgs> = OnceLock::new();

/// Records the command line's executor settings for [`executor`].
pub fn configure(args: ExecutorArgs) {
    let _ = SETTINGS.set(args);
}

/// Opens the task execution API's listener: `--execution-api-listen`, or a
/// free port on loopback. Returns it with the address tasks on this host
/// use (loopback when it listens on every address).
pub async fn bind_execution_api() -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let listen = SETTINGS.get().and_then(|a| a.execution_api_listen);
    let Some(listen) = listen else {
        return pave_api::bind_loopback(0)
            .await
            .context("cannot open the task execution API on loopback");
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot open the task execution API on {listen} (--execution-api-listen)")
        })?;
    let mut addr = listener
        .local_addr()
        .context("reading the execution API's address")?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok((listener, addr))
}

/// The execution API URL advertised to pods: `--execution-api-url`, else
/// the `--execution-api-listen` address when it names one host that is not
/// loopback (and a fixed port); `None` leaves pods the scheduler's own URL.
fn advertised_api_url(args: &ExecutorArgs) -> Result<Option<String>> {
    if let Some(url) = &args.execution_api_url {
        let url = url.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            bail!(
                "--execution-api-url `{url}` is not an http(s) URL; write it as pods reach the \
                 execution API, e.g. http://pave-execution.pave.svc:8793{}",
                pave_api::EXECUTION_API_PREFIX
            );
        }
        return Ok(Some(url.to_owned()));
    }
    Ok(args.execution_api_listen.and_then(|addr| {
        let ip = addr.ip();
        (!ip.is_unspecified() && !ip.is_loopback() && addr.port() != 0)
            .then(|| format!("http://{addr}{}", pave_api::EXECUTION_API_PREFIX))
    }))
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
    cfg.execution_api_url = advertised_api_url(args)?;
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
        if cfg.execution_api_url.is_none() {
            tracing::info!(
                "Python tasks in pods get the scheduler's own execution API URL; on a real \
                 cluster set --execution-api-listen and --execution-api-url (PAVE_EXECUTION_API_URL) \
                 so that pods can reach it"
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: Option<&str>, url: Option<&str>) -> ExecutorArgs {
        ExecutorArgs {
            execution_api_listen: listen.map(|l| l.parse().expect("address")),
            execution_api_url: url.map(str::to_owned),
            ..ExecutorArgs::default()
        }
    }

    #[test]
    fn the_execution_api_url_pods_get() {
        let url = |l, u| advertised_api_url(&args(l, u));
        assert_eq!(
            url(
                None,
                Some("http://pave-execution.pave.svc:8793/execution/v1/")
            )
            .expect("ok")
            .as_deref(),
            Some("http://pave-execution.pave.svc:8793/execution/v1")
        );
        assert_eq!(
            url(Some("10.1.2.3:8793"), None).expect("ok").as_deref(),
            Some("http://10.1.2.3:8793/execution/v1")
        );
        // Every address, or loopback: pods cannot use it as it is.
        assert_eq!(url(Some("0.0.0.0:8793"), None).expect("ok"), None);
        assert_eq!(url(Some("127.0.0.1:8793"), None).expect("ok"), None);
        assert_eq!(url(None, None).expect("ok"), None);
        let err = url(None, Some("pave-execution:8793")).expect_err("no scheme");
        assert!(err.to_string().contains("--execution-api-url"), "{err}");
        let cfg = kube_config(
            &args(None, Some("https://pave.example.com/execution/v1")),
            4,
        )
        .expect("config");
        assert_eq!(
            cfg.execution_api_url.as_deref(),
            Some("https://pave.example.com/execution/v1")
        );
    }
}
