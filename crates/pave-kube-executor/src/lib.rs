//! pave-kube-executor: task attempts as Kubernetes Pods.
//!
//! [`KubernetesExecutor`] implements `pave_executor::Executor` with kube-rs:
//! one Pod per try, named deterministically ([`naming`]) so that a create
//! repeated after a crash adopts the existing Pod; rendered by a pure
//! function ([`render::render_pod`]) from a pod template, the task's
//! resources (exact `nvidia.com/gpu` and MIG requests, GPU product as a node
//! selector), spot policy and `pod_override`; followed with kube's watcher,
//! whose pod states map to results ([`outcome`]): exit codes, OOMKilled,
//! image pull errors and unschedulable pods (failed after configurable
//! times, naming the unmet request), and disruptions (preemption, eviction,
//! spot reclaim, node loss), reported as `ExecutorEvent::Disrupted` so the
//! scheduler retries without spending a retry. Logs are streamed into the
//! attempt's log file while the pod runs. [`RoutingExecutor`] sends each task
//! to the executor it names (`local` or `kubernetes`).
//!
//! Architecture invariant: this crate never touches the store; it learns
//! about the cluster only through the Kubernetes API.

mod cleanup;
pub mod config;
mod error;
mod executor;
mod logs;
mod merge;
pub mod naming;
pub mod nodes;
pub mod outcome;
pub mod render;
mod routing;
mod state;
mod watch;

pub use config::{KubeExecutorConfig, SpotConfig, parse_pod_template, read_pod_template};
pub use error::KubeExecError;
pub use executor::KubernetesExecutor;
pub use merge::merge as merge_pod_override;
pub use routing::RoutingExecutor;

/// The kube client for a kubeconfig file (its current context), or, with
/// `None`, the usual inference (`KUBECONFIG`, `~/.kube/config`, in-cluster).
pub async fn client_from_kubeconfig(
    path: Option<&std::path::Path>,
) -> Result<kube::Client, KubeExecError> {
    install_crypto_provider();
    let config = match path {
        Some(p) => {
            let kc =
                kube::config::Kubeconfig::read_from(p).map_err(|e| KubeExecError::Kubeconfig {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| KubeExecError::Kubeconfig {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| KubeExecError::Kubeconfig {
                path: "(inferred)".into(),
                reason: e.to_string(),
            })?,
    };
    kube::Client::try_from(config).map_err(KubeExecError::Api)
}

/// kube builds its TLS settings with `rustls::ClientConfig::builder()`,
/// which takes the process's default crypto provider and panics when the
/// build has two (ring and aws-lc-rs, as soon as any dependency enables the
/// latter) and none was installed. pave uses ring: installing it first makes
/// that choice explicit. A provider installed before is kept.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
