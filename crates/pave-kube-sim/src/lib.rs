//! A simulated Kubernetes cluster that speaks the real API.
//!
//! [`Cluster`] holds nodes and pods with one global resourceVersion counter
//! and an event history; [`router`] serves the Kubernetes wire protocol for
//! pods and nodes (list/watch with selectors and bookmarks, status, log,
//! eviction, v1 Status errors), so the unmodified `kube` client and `kubectl`
//! work against it, in process ([`Cluster::client`]) or over TCP ([`serve`],
//! [`write_kubeconfig`]), plain or with TLS ([`serve_tls`], a CA generated at
//! start and written into the kubeconfig). A scheduler binds pods that fit (resources,
//! selectors, affinity, taints, GPU product), a kubelet runs them as local
//! processes or plays scripted outcomes ([`Script`]), and tests inject the
//! faults of a real cluster (see the `faults` methods on [`Cluster`]).
//!
//! See docs/kube-sim.md for what is supported and what is not.

mod api;
mod cluster;
mod error;
mod faults;
mod kubelet;
mod lifecycle;
mod logs;
mod nodes;
mod quantity;
mod scheduler;
mod script;
mod selector;
mod store;
mod tls;
mod validate;

pub use api::discovery::GIT_VERSION;
pub use api::router;
pub use cluster::{Cluster, ClusterConfig, KubeletMode};
pub use error::SimError;
pub use faults::{InjectedError, NodeLoss, Verb};
pub use kubelet::{MODE_ANNOTATION, OUTCOME_ANNOTATION};
pub use lifecycle::DisruptionReason;
pub use nodes::{
    CAPACITY_TYPE_LABEL, CapacityType, GKE_SPOT_LABEL, GPU_PRODUCT_LABEL, KARPENTER_CAPACITY_LABEL,
    NodeSpec, TaintSpec, load_node_file, parse_csv, parse_yaml,
};
pub use script::{Outcome, PodMatch, Script};
pub use tls::{TlsIdentity, serve_tls, serve_tls_on_loopback};

use std::net::SocketAddr;
use std::path::Path;

/// Serves the cluster's API over plain HTTP on `listener` until the future is dropped.
pub async fn serve(cluster: Cluster, listener: tokio::net::TcpListener) -> Result<(), SimError> {
    axum::serve(listener, router(cluster))
        .await
        .map_err(|cause| SimError::Io {
            context: "serving the simulated Kubernetes API".into(),
            cause,
        })
}

/// Binds `127.0.0.1:0` and serves the cluster there in a background task;
/// returns the address (use `http://{addr}` as the server URL).
pub async fn serve_on_loopback(cluster: Cluster) -> Result<SocketAddr, SimError> {
    let (listener, addr) = bind_loopback().await?;
    tokio::spawn(serve(cluster, listener));
    Ok(addr)
}

/// A listener on `127.0.0.1:0` and the address it got.
pub(crate) async fn bind_loopback() -> Result<(tokio::net::TcpListener, SocketAddr), SimError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|cause| SimError::Io {
            context: "binding 127.0.0.1:0".into(),
            cause,
        })?;
    let addr = listener.local_addr().map_err(|cause| SimError::Io {
        context: "reading the bound address".into(),
        cause,
    })?;
    Ok((listener, addr))
}

/// The kubeconfig text for a simulator at `url` (context and cluster
/// `pave-kube-sim`, namespace `default`, no credentials).
pub fn kubeconfig(url: &str) -> String {
    kubeconfig_with_ca(url, None)
}

/// The kubeconfig text for a simulator at `url`, trusting the CA
/// certificate `ca_pem` (as `certificate-authority-data`) when it serves
/// HTTPS ([`serve_tls`]). Over HTTPS the user has a placeholder bearer
/// token, which the simulator ignores: without any credentials kubectl
/// asks for a username and password on an `https://` server.
pub fn kubeconfig_with_ca(url: &str, ca_pem: Option<&str>) -> String {
    use base64::Engine;
    let (ca, user) = match ca_pem {
        Some(pem) => (
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem)
            ),
            "{token: pave-kube-sim}",
        ),
        None => (String::new(), "{}"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: pave-kube-sim\n  cluster:\n{ca}    server: {url}\ncontexts:\n- name: pave-kube-sim\n  context:\n    cluster: pave-kube-sim\n    user: pave-kube-sim\n    namespace: default\ncurrent-context: pave-kube-sim\nusers:\n- name: pave-kube-sim\n  user: {user}\npreferences: {{}}\n"
    )
}

/// Writes [`kubeconfig`] for `url` to `path`.
pub fn write_kubeconfig(path: &Path, url: &str) -> Result<(), SimError> {
    write_kubeconfig_with_ca(path, url, None)
}

/// Writes [`kubeconfig_with_ca`] for `url` (and the CA of an HTTPS
/// simulator) to `path`.
pub fn write_kubeconfig_with_ca(
    path: &Path,
    url: &str,
    ca_pem: Option<&str>,
) -> Result<(), SimError> {
    std::fs::write(path, kubeconfig_with_ca(url, ca_pem)).map_err(|cause| SimError::Io {
        context: format!("cannot write kubeconfig {}", path.display()),
        cause,
    })
}
