//! `KubernetesExecutor`: one Pod per attempt, created under a deterministic
//! name (a repeated create adopts the existing Pod), watched by kube's
//! watcher ([`crate::watch`]), adopted after a restart from the stored
//! handle or the name alone.

use crate::config::KubeExecutorConfig;
use crate::error::KubeExecError;
use crate::logs;
use crate::naming::{self, INSTALLATION_LABEL, TRY_LABEL};
use crate::nodes::{self, NodeInfo};
use crate::render::{self, MAIN_CONTAINER, RenderInput};
use crate::state::{self, Inner, ResultFile, State, Tracked};
use crate::watch;
use async_trait::async_trait;
use chrono::Utc;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use pave_core::SpotPolicy;
use pave_executor::{
    AdoptStatus, AttemptHandle, Capacity, ClaimQuery, ClaimStatus, Executor, ExecutorError,
    ExecutorEvent, GpuInfo, PodRef, ProcessRef, StartRequest,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Runs each attempt as a Pod. See docs/kubernetes-executor.md.
pub struct KubernetesExecutor {
    inner: Arc<Inner>,
}

impl KubernetesExecutor {
    /// Connects to the cluster through `client`, reads its nodes (capacity)
    /// and starts watching this installation's pods. Completions go to
    /// `events`. Must be called within a tokio runtime.
    pub async fn new(
        client: Client,
        cfg: KubeExecutorConfig,
        events: UnboundedSender<ExecutorEvent>,
    ) -> Result<KubernetesExecutor, KubeExecError> {
        if cfg.parallelism == 0 {
            return Err(KubeExecError::Config(
                "parallelism must be at least 1".into(),
            ));
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), &cfg.namespace);
        let nodes_api: Api<Node> = Api::all(client);
        let node_list = match nodes_api.list(&ListParams::default()).await {
            Ok(list) => list.items.iter().map(nodes::node_info).collect(),
            Err(kube::Error::Api(s)) if s.code == 403 => {
                tracing::warn!("cannot list nodes (forbidden): no early checks of GPU requests");
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        let capacity = capacity_of(&node_list, cfg.parallelism);
        let inner = Arc::new(Inner {
            api,
            nodes_api,
            cfg,
            events,
            state: Mutex::new(State::default()),
            started: Instant::now(),
            nodes: tokio::sync::Mutex::new(Some((Instant::now(), node_list))),
            capacity,
            background: Mutex::new(Vec::new()),
        });
        watch::spawn(&inner);
        Ok(KubernetesExecutor { inner })
    }

    /// Attempts whose pods are watched now.
    pub fn watched(&self) -> usize {
        self.inner.with(|s| s.tracked.len())
    }

    /// Attempts reported (finished or disrupted) since the executor started.
    pub fn reported(&self) -> u64 {
        self.inner.with(|s| s.reported)
    }

    /// Stops watching (as a crash would): pods are left as they are.
    pub fn shutdown(&self) {
        let handles = match self.inner.background.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for h in handles {
            h.abort();
        }
        self.inner.with(|s| {
            for t in s.tracked.values_mut() {
                if let Some(l) = t.logs.take() {
                    l.abort();
                }
            }
            s.tracked.clear();
        });
    }

    /// The nodes, listed again when the cached list is older than `nodes_ttl`.
    async fn nodes(&self) -> Vec<NodeInfo> {
        let mut cache = self.inner.nodes.lock().await;
        if let Some((at, list)) = cache.as_ref()
            && at.elapsed() < self.inner.cfg.nodes_ttl
        {
            return list.clone();
        }
        let list = match self.inner.nodes_api.list(&ListParams::default()).await {
            Ok(l) => l.items.iter().map(nodes::node_info).collect(),
            Err(e) => {
                tracing::debug!("cannot list nodes: {e}");
                cache.as_ref().map(|(_, l)| l.clone()).unwrap_or_default()
            }
        };
        *cache = Some((Instant::now(), list.clone()));
        list
    }

    /// Starts watching an attempt whose pod exists, from `pod` as last seen.
    fn track_existing(&self, mut tracked: Tracked, pod: Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        tracked.log_skip = logs::lines_in(&tracked.handle.log_path);
        let inner = &self.inner;
        let verdict = inner.with(|s| {
            s.others.remove(&name);
            if let ProcessRef::Pod(p) = &mut tracked.handle.process {
                p.uid = pod.metadata.uid.clone();
            }
            tracked.last = Some(pod);
            s.tracked.insert(name.clone(), tracked);
            watch::evaluate(inner, s, &name, Instant::now())
        });
        if let Some(v) = verdict {
            watch::finish_later(inner, name, v);
        }
    }

    fn handle_of(&self, req: &StartRequest, name: &str) -> AttemptHandle {
        AttemptHandle {
            key: req.key.clone(),
            started_at: Utc::now(),
            resources: req.resources.clone(),
            gpu_ids: Vec::new(),
            log_path: req.log_path.clone(),
            result_path: req.result_path.clone(),
            process: ProcessRef::Pod(PodRef {
                namespace: self.inner.cfg.namespace.clone(),
                name: name.to_owned(),
                uid: None,
            }),
        }
    }

    /// Creates the pod, retrying what the API server asks to retry (429,
    /// 5xx); `Ok(None)` when it already exists.
    async fn create(&self, pod: &Pod) -> Result<Option<Pod>, kube::Error> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.inner.api.create(&PostParams::default(), pod).await {
                Ok(p) => return Ok(Some(p)),
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(None),
                Err(kube::Error::Api(s)) if (s.code == 429 || s.code >= 500) && attempt < 5 => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for KubernetesExecutor {
    fn drop(&mut self) {
        if Arc::strong_count(&self.inner) == 1 {
            self.shutdown();
        }
    }
}

/// The cluster's totals, for the scheduler's admission.
fn capacity_of(nodes: &[NodeInfo], parallelism: usize) -> Capacity {
    let gpus: u64 = nodes.iter().map(|n| n.gpus).sum();
    Capacity {
        parallelism,
        cpu_millis: nodes.iter().map(|n| n.cpu_millis).sum::<u64>().max(1),
        memory_bytes: nodes.iter().map(|n| n.memory_bytes).sum::<u64>().max(1),
        gpus: (0..u32::try_from(gpus.min(100_000)).unwrap_or(0))
            .map(|id| GpuInfo {
                id,
                uuid: None,
                name: None,
                memory_bytes: None,
            })
            .collect(),
    }
}

#[async_trait]
impl Executor for KubernetesExecutor {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn capacity(&self) -> Capacity {
        self.inner.capacity.clone()
    }

    async fn start(&self, req: StartRequest) -> Result<AttemptHandle, ExecutorError> {
        let cfg = &self.inner.cfg;
        let key = req.key.clone();
        let task = key.task_id.to_string();
        let products =
            nodes::check_fit(&task, &req.resources, &self.nodes().await).map_err(|reason| {
                ExecutorError::Unsatisfiable {
                    key: key.clone(),
                    reason,
                }
            })?;
        let name = naming::pod_name(&cfg.installation, &key);
        let mut spot = req.placement.spot;
        // Counted from the earlier tries' result files, so a restart of the
        // scheduler does not start the count again.
        let disrupted = if spot == SpotPolicy::Never {
            0
        } else {
            state::earlier_disruptions(&cfg.installation, &key, &req.result_path)
        };
        let fallback = spot != SpotPolicy::Never && disrupted >= cfg.spot_fallback_after;
        if fallback {
            spot = SpotPolicy::Never;
            logs::note(
                &req.log_path,
                &format!(
                    "disrupted {disrupted} time(s) on spot capacity: this try runs on on-demand capacity"
                ),
            );
        }
        let pod = render::render_pod(&RenderInput {
            req: &req,
            cfg,
            spot,
            spot_fallback: fallback,
            gpu_products: &products,
        })
        .map_err(|reason| ExecutorError::InvalidRequest {
            key: key.clone(),
            reason,
        })?;
        let container = pod
            .spec
            .as_ref()
            .and_then(|s| {
                s.containers
                    .iter()
                    .find(|c| c.name == MAIN_CONTAINER)
                    .or(s.containers.first())
            })
            .map(|c| c.name.clone())
            .unwrap_or_else(|| MAIN_CONTAINER.to_owned());
        let handle = self.handle_of(&req, &name);
        let fresh = Tracked::new(handle.clone(), container.clone(), req.execution_timeout);
        let inserted = self.inner.with(|s| {
            if s.tracked.contains_key(&name) {
                return false;
            }
            if s.tracked.len() >= cfg.parallelism {
                return false;
            }
            s.others.remove(&name);
            s.tracked.insert(name.clone(), fresh);
            true
        });
        if !inserted {
            let running = self.inner.with(|s| s.tracked.contains_key(&name));
            return Err(if running {
                ExecutorError::AlreadyRunning { key }
            } else {
                ExecutorError::Busy {
                    key,
                    reason: format!("{} pods already running", cfg.parallelism),
                }
            });
        }
        match self.create(&pod).await {
            Ok(Some(created)) => {
                let stored = self.inner.with(|s| {
                    let t = s.tracked.get_mut(&name)?;
                    if let ProcessRef::Pod(p) = &mut t.handle.process
                        && p.uid.is_none()
                    {
                        p.uid = created.metadata.uid.clone();
                    }
                    Some(t.handle.clone())
                });
                // Gone already only if it ended at once; the handle is the same.
                Ok(stored.unwrap_or_else(|| handle_with_uid(handle, created.metadata.uid)))
            }
            Ok(None) => {
                // 409: a create repeated after a crash. Adopt the pod if it is
                // this attempt's.
                let existing = self.inner.api.get_opt(&name).await;
                let labels_match = |p: &Pod| {
                    let l = p.metadata.labels.clone().unwrap_or_default();
                    l.get(INSTALLATION_LABEL) == Some(&naming::label_value(&cfg.installation))
                        && l.get(TRY_LABEL) == Some(&key.try_number.0.to_string())
                };
                match existing {
                    Ok(Some(p)) if labels_match(&p) => {
                        logs::note(
                            &req.log_path,
                            &format!("pod {name} already existed (a repeated create): adopted it"),
                        );
                        let mut t = Tracked::new(handle, container, req.execution_timeout);
                        let h = handle_with_uid(t.handle.clone(), p.metadata.uid.clone());
                        t.handle = h.clone();
                        self.inner.with(|s| s.tracked.remove(&name));
                        self.track_existing(t, p);
                        Ok(h)
                    }
                    other => {
                        self.inner.with(|s| s.tracked.remove(&name));
                        let why = match other {
                            Ok(Some(_)) => "exists but belongs to another installation or try",
                            Ok(None) => "was reported as existing but is gone",
                            Err(_) => "exists and cannot be read",
                        };
                        Err(ExecutorError::InvalidRequest {
                            key,
                            reason: format!("pod {name} {why}"),
                        })
                    }
                }
            }
            Err(e) => {
                self.inner.with(|s| s.tracked.remove(&name));
                Err(create_error(key, &task, &name, e))
            }
        }
    }

    async fn kill(&self, handle: &AttemptHandle) -> Result<(), ExecutorError> {
        let ProcessRef::Pod(p) = &handle.process else {
            return Err(wrong(handle));
        };
        self.inner.with(|s| {
            if let Some(t) = s.tracked.get_mut(&p.name) {
                t.killed = true;
            }
        });
        let grace = u32::try_from(self.inner.cfg.kill_grace.as_secs()).ok();
        let params = DeleteParams {
            grace_period_seconds: grace,
            ..DeleteParams::default()
        };
        match self.inner.api.delete(&p.name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_error(format!("deleting pod {}", p.name), e)),
        }
    }

    async fn adopt(&self, handle: &AttemptHandle) -> Result<AdoptStatus, ExecutorError> {
        let ProcessRef::Pod(p) = &handle.process else {
            return Err(wrong(handle));
        };
        if let Some(file) = ResultFile::read(&handle.result_path) {
            return Ok(match file.disruption {
                Some(reason) => AdoptStatus::Disrupted {
                    result: file.result,
                    reason,
                },
                None => AdoptStatus::Finished(file.result),
            });
        }
        if self.inner.with(|s| s.tracked.contains_key(&p.name)) {
            return Ok(AdoptStatus::Running);
        }
        let pod = self
            .inner
            .api
            .get_opt(&p.name)
            .await
            .map_err(|e| api_error(format!("reading pod {}", p.name), e))?;
        match pod {
            Some(pod) if p.uid.is_none() || pod.metadata.uid == p.uid => {
                self.track_existing(adopted(handle.clone(), &pod), pod);
                Ok(AdoptStatus::Running)
            }
            _ => Ok(AdoptStatus::Lost {
                reason: format!("its pod {} is gone and left no result", p.name),
            }),
        }
    }

    async fn adopt_claimed(&self, query: &ClaimQuery) -> Result<ClaimStatus, ExecutorError> {
        if let Some(file) = ResultFile::read(&query.result_path) {
            return Ok(match file.disruption {
                // Disrupted tries spend no retry, as a fenced-off one.
                Some(_) => ClaimStatus::Fenced,
                None => ClaimStatus::Finished(file.result),
            });
        }
        let name = naming::pod_name(&self.inner.cfg.installation, &query.key);
        let pod = self
            .inner
            .api
            .get_opt(&name)
            .await
            .map_err(|e| api_error(format!("reading pod {name}"), e))?;
        let Some(pod) = pod else {
            // Creation happens inside `start`: with the scheduler gone, no
            // late create can come, so the try never ran.
            return Ok(ClaimStatus::Fenced);
        };
        let handle = AttemptHandle {
            key: query.key.clone(),
            started_at: Utc::now(),
            resources: query.resources.clone(),
            gpu_ids: Vec::new(),
            log_path: query.log_path.clone(),
            result_path: query.result_path.clone(),
            process: ProcessRef::Pod(PodRef {
                namespace: self.inner.cfg.namespace.clone(),
                name: name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        };
        self.track_existing(adopted(handle.clone(), &pod), pod);
        Ok(ClaimStatus::Running(handle))
    }
}

/// An attempt found running after a restart, watched with the execution
/// timeout its pod was created with (its annotation) and its running time
/// counted from the container's start.
fn adopted(handle: AttemptHandle, pod: &Pod) -> Tracked {
    let mut t = Tracked::new(
        handle,
        main_container(pod),
        naming::execution_timeout_of(pod),
    );
    t.adopted = true;
    t
}

fn main_container(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.containers
                .iter()
                .find(|c| c.name == MAIN_CONTAINER)
                .or(s.containers.first())
        })
        .map(|c| c.name.clone())
        .unwrap_or_else(|| MAIN_CONTAINER.to_owned())
}

fn handle_with_uid(mut h: AttemptHandle, uid: Option<String>) -> AttemptHandle {
    if let ProcessRef::Pod(p) = &mut h.process {
        p.uid = uid;
    }
    h
}

fn wrong(handle: &AttemptHandle) -> ExecutorError {
    ExecutorError::WrongExecutor {
        key: handle.key.clone(),
        expected: "kubernetes",
        found: match handle.process {
            ProcessRef::Local(_) => "local",
            ProcessRef::Noop => "noop",
            ProcessRef::Pod(_) => "kubernetes",
        },
    }
}

fn api_error(context: String, e: kube::Error) -> ExecutorError {
    ExecutorError::Io {
        context,
        source: std::io::Error::other(e.to_string()),
    }
}

/// A refused create, worded for the task's author: 422 is a bad pod (an
/// image name with a typo, a malformed override), named with the task.
fn create_error(
    key: pave_executor::AttemptKey,
    task: &str,
    name: &str,
    e: kube::Error,
) -> ExecutorError {
    match e {
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => ExecutorError::InvalidRequest {
            key,
            reason: format!(
                "the Kubernetes API refused pod {name} of task `{task}`: {}; check the task's \
                 `image`, `resources` and `pod_override`",
                s.message
            ),
        },
        kube::Error::Api(s) if s.code == 403 => ExecutorError::Config {
            reason: format!(
                "not allowed to create pods: {}; give pave's service account a Role that can \
                 create, get, list, watch and delete pods",
                s.message
            ),
        },
        other => api_error(format!("creating pod {name}"), other),
    }
}
