//! The `Cluster` handle: shared state, configuration, the background
//! scheduler and kubelet, and the Rust API tests use to read and wait.

use crate::error::SimError;
use crate::nodes::NodeSpec;
use crate::script::{PodMatch, Script, ScriptRule};
use crate::store::{EventType, Key, ObjKind, State};
use k8s_openapi::api::core::v1::{Node, Pod};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

/// How the simulated kubelet runs pods that no script matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KubeletMode {
    /// Run the first container's command as a local child process.
    #[default]
    Process,
    /// Play [`ClusterConfig::default_script`].
    Script,
}

/// Settings of a simulated cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How pods without a matching script run. A pod can override it with the
    /// annotation `sim.pave.dev/kubelet: process|script`.
    pub kubelet: KubeletMode,
    /// What a pod plays in [`KubeletMode::Script`] when no script matches.
    pub default_script: Script,
    /// Images that cannot be pulled: exact names, or patterns with `*`
    /// (`registry.invalid/*`, `*:does-not-exist`).
    pub bad_images: Vec<String>,
    /// How long a container waits between ErrImagePull and ImagePullBackOff.
    pub image_pull_backoff: Duration,
    /// How many events watches can replay; older versions get 410 Gone.
    pub history_limit: usize,
    /// How often a watch that allows bookmarks gets a BOOKMARK event.
    pub bookmark_interval: Duration,
    /// Upper bound on the time between SIGTERM and SIGKILL when a local
    /// process is stopped (the pod's grace period applies when shorter).
    pub max_termination_grace: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            kubelet: KubeletMode::Process,
            default_script: Script::succeed_after(Duration::from_millis(10)),
            bad_images: Vec::new(),
            image_pull_backoff: Duration::from_millis(200),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
            max_termination_grace: Duration::from_secs(30),
        }
    }
}

pub(crate) struct Inner {
    pub state: Mutex<State>,
    /// Bumped to end every open watch.
    pub watch_epoch: watch::Sender<u64>,
}

/// A simulated Kubernetes cluster. Cheap to clone: clones share the state.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    /// Creates an empty cluster and starts its scheduler and kubelet on the
    /// current tokio runtime (they end with the runtime).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(config: ClusterConfig) -> Cluster {
        let cluster = Cluster {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(config)),
                watch_epoch: watch::Sender::new(0),
            }),
        };
        tokio::spawn(crate::scheduler::run(cluster.clone()));
        tokio::spawn(crate::kubelet::run(cluster.clone()));
        cluster
    }

    /// A cluster with these nodes and the default configuration.
    pub fn with_nodes(nodes: &[NodeSpec]) -> Cluster {
        let c = Cluster::start(ClusterConfig::default());
        c.add_nodes(nodes);
        c
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An in-process kube client talking to this cluster's router (no socket).
    pub fn client(&self) -> kube::Client {
        kube::Client::new(crate::api::router(self.clone()), "default")
    }

    /// Adds (or replaces) nodes.
    pub fn add_nodes(&self, nodes: &[NodeSpec]) {
        let mut st = self.lock();
        for spec in nodes {
            for node in spec.expand() {
                let mut node = node;
                let key: Key = (
                    String::new(),
                    node.metadata.name.clone().unwrap_or_default(),
                );
                let etype = if st.nodes.contains_key(&key) {
                    EventType::Modified
                } else {
                    node.metadata.uid = Some(st.next_uid());
                    node.metadata.creation_timestamp = Some(crate::lifecycle::now());
                    EventType::Added
                };
                st.capacity_gen += 1;
                st.put(node, etype);
            }
        }
    }

    /// Adds one node.
    pub fn add_node(&self, spec: NodeSpec) {
        self.add_nodes(std::slice::from_ref(&spec));
    }

    /// The pod with this namespace and name, if any.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        let key = (namespace.to_string(), name.to_string());
        self.lock().get::<Pod>(&key).map(|s| s.obj.clone())
    }

    /// Every pod, ordered by namespace and name.
    pub fn pods(&self) -> Vec<Pod> {
        self.lock().pods.values().map(|s| s.obj.clone()).collect()
    }

    /// The node with this name, if any.
    pub fn node(&self, name: &str) -> Option<Node> {
        let key = (String::new(), name.to_string());
        self.lock().get::<Node>(&key).map(|s| s.obj.clone())
    }

    /// Every node, ordered by name.
    pub fn nodes(&self) -> Vec<Node> {
        self.lock().nodes.values().map(|s| s.obj.clone()).collect()
    }

    /// The last resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Makes pods matched by `matcher` play `script` (the last registered
    /// matching script wins), whatever the kubelet mode.
    pub fn script(&self, matcher: PodMatch, script: Script) {
        self.lock().scripts.push(ScriptRule { matcher, script });
    }

    /// Replaces the set of images that cannot be pulled.
    pub fn set_bad_images(&self, images: Vec<String>) {
        self.lock().config.bad_images = images;
    }

    /// Changes the kubelet mode for pods that start from now on.
    pub fn set_kubelet_mode(&self, mode: KubeletMode) {
        self.lock().config.kubelet = mode;
    }

    /// Waits until the pod exists and satisfies `pred`, returning it.
    pub async fn wait_for_pod(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Pod) -> bool,
    ) -> Result<Pod, SimError> {
        let what = format!("pod {namespace}/{name}");
        self.wait_for(timeout, what, || {
            self.pod(namespace, name).filter(|p| pred(p))
        })
        .await
    }

    /// Waits until the pod's phase is `phase`.
    pub async fn wait_for_phase(
        &self,
        namespace: &str,
        name: &str,
        phase: &str,
        timeout: Duration,
    ) -> Result<Pod, SimError> {
        let what = format!("pod {namespace}/{name} to be {phase}");
        self.wait_for(timeout, what, || {
            self.pod(namespace, name)
                .filter(|p| crate::lifecycle::phase(p) == phase)
        })
        .await
    }

    /// Waits until no pod with this name exists.
    pub async fn wait_for_pod_gone(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), SimError> {
        let what = format!("pod {namespace}/{name} to be deleted");
        self.wait_for(timeout, what, || {
            self.pod(namespace, name).is_none().then_some(())
        })
        .await
    }

    /// Re-checks `probe` after every pod change until it gives a value.
    async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: String,
        probe: impl Fn() -> Option<T>,
    ) -> Result<T, SimError> {
        let mut rx = self.lock().subscribe();
        if let Some(v) = probe() {
            return Ok(v);
        }
        let fut = async {
            loop {
                match rx.recv().await {
                    Ok(ev) if ev.kind != ObjKind::Pod => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        if let Some(v) = probe() {
                            return Some(v);
                        }
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Some(v)) => Ok(v),
            _ => Err(SimError::Timeout(timeout, what)),
        }
    }

    /// Stops every local process the kubelet runs (SIGKILL to each process
    /// group). Call at the end of a test that used process mode.
    pub fn shutdown(&self) {
        let st = self.lock();
        for r in st.runners.values() {
            r.stop(crate::kubelet::Stop::Kill);
        }
    }
}
