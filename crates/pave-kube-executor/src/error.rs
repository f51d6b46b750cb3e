//! Errors of setting the Kubernetes executor up (everything after that is
//! reported through `pave_executor::ExecutorError`).

/// Why the Kubernetes executor could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KubeExecError {
    /// The pod template file cannot be used.
    #[error("pod template {path}: {reason}; fix the file or drop --pod-template")]
    Template { path: String, reason: String },
    /// The kubeconfig cannot be read or used.
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
    /// The cluster cannot be reached.
    #[error("cannot reach the Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    /// A setting cannot work.
    #[error("invalid Kubernetes executor setting: {0}")]
    Config(String),
}
