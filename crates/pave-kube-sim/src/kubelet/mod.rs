//! The simulated kubelet: starts every pod bound to a Ready node, either as a
//! local process ([`process`]) or by playing a [`Script`], and writes the
//! pod status a real kubelet would (Pending -> Running -> Succeeded/Failed,
//! container states, exit codes, image pull errors).

mod process;

use crate::cluster::{Cluster, KubeletMode};
use crate::lifecycle::{finish_deletion_if_done, is_terminal, now, phase, set_condition};
use crate::logs::PodLog;
use crate::script::{Outcome, Script};
use crate::store::{EventType, Key, State};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodIP, PodStatus,
};
use process::ProcessSpec;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Annotation choosing the kubelet mode for one pod: `process` or `script`.
pub const MODE_ANNOTATION: &str = "sim.pave.dev/kubelet";
/// Annotation scripting one pod's outcome (`exit:3 after 2s`, see [`Script::parse`]).
pub const OUTCOME_ANNOTATION: &str = "sim.pave.dev/outcome";

/// Why the kubelet must stop a pod it runs.
#[derive(Debug, Clone)]
pub(crate) enum Stop {
    /// Graceful deletion: SIGTERM, then SIGKILL after `grace`; then the pod object goes.
    Delete { grace: Duration },
    /// The pod object is gone already: kill and write nothing.
    Kill,
    /// A node-level failure: kill, then phase Failed with this reason and message.
    Fail { reason: String, message: String },
}

/// The handle the store keeps for each pod the kubelet runs.
#[derive(Debug)]
pub(crate) struct RunnerHandle {
    tx: watch::Sender<Option<Stop>>,
}

impl RunnerHandle {
    /// Asks the runner to stop; a later request only overrides to `Kill`.
    pub fn stop(&self, stop: Stop) {
        self.tx.send_modify(|cur| {
            if cur.is_none() || matches!(stop, Stop::Kill) {
                *cur = Some(stop);
            }
        });
    }
}

/// How a container ended.
#[derive(Debug, Clone)]
pub(crate) struct Termination {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
}

impl Termination {
    fn exited(code: i32) -> Self {
        Termination {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
        }
    }
}

enum Plan {
    Script(Script),
    Process(ProcessSpec),
}

/// `*` matches any run of characters.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(tail) = s.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

fn first_image(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn plan_for(state: &State, pod: &Pod) -> Plan {
    let image = first_image(pod);
    if state.config.bad_images.iter().any(|p| glob(p, &image)) {
        return Plan::Script(Script::image_pull_error());
    }
    let annotation = |k: &str| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .cloned()
    };
    if let Some(s) = annotation(OUTCOME_ANNOTATION).and_then(|a| Script::parse(&a)) {
        return Plan::Script(s);
    }
    if let Some(rule) = state.scripts.iter().rev().find(|r| r.matcher.matches(pod)) {
        return Plan::Script(rule.script.clone());
    }
    let mode = match annotation(MODE_ANNOTATION).as_deref() {
        Some("process") => KubeletMode::Process,
        Some("script") => KubeletMode::Script,
        _ => state.config.kubelet,
    };
    match mode {
        KubeletMode::Script => Plan::Script(state.config.default_script.clone()),
        KubeletMode::Process => Plan::Process(ProcessSpec::from_pod(pod)),
    }
}

/// The kubelet loop: after every change, start the pods newly bound to Ready nodes.
pub(crate) async fn run(cluster: Cluster) {
    let wake = cluster.lock().wake_kubelet.clone();
    loop {
        wake.notified().await;
        start_pods(&cluster);
    }
}

fn start_pods(cluster: &Cluster) {
    let mut st = cluster.lock();
    let ready: HashSet<&String> = st
        .nodes
        .iter()
        .filter(|(_, n)| crate::nodes::is_ready(&n.obj))
        .map(|(k, _)| &k.1)
        .collect();
    let to_start: Vec<(Key, Pod)> = st
        .pods
        .iter()
        .filter(|(_, s)| {
            let p = &s.obj;
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| ready.contains(n))
                && phase(p) == "Pending"
                && p.metadata.deletion_timestamp.is_none()
                && !st
                    .runners
                    .contains_key(p.metadata.uid.as_deref().unwrap_or(""))
        })
        .map(|(k, s)| (k.clone(), s.obj.clone()))
        .collect();
    for (key, pod) in to_start {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let plan = plan_for(&st, &pod);
        let log = Arc::new(PodLog::new());
        st.logs.insert(uid.clone(), log.clone());
        let (tx, rx) = watch::channel(None);
        st.runners.insert(uid.clone(), RunnerHandle { tx });
        let settings = (
            st.config.image_pull_backoff,
            st.config.max_termination_grace,
        );
        tokio::spawn(run_pod(cluster.clone(), key, uid, plan, rx, log, settings));
    }
}

/// Applies `f` to the pod if it is still the one with `uid`, as a write.
fn update_pod(cluster: &Cluster, key: &Key, uid: &str, f: impl FnOnce(&mut Pod)) {
    let mut st = cluster.lock();
    let Some(stored) = st.get::<Pod>(key) else {
        return;
    };
    if stored.obj.metadata.uid.as_deref() != Some(uid) {
        return;
    }
    let mut pod = stored.obj.clone();
    f(&mut pod);
    st.put(pod, EventType::Modified);
}

fn statuses(pod: &Pod, state: ContainerState, ready: bool, uid: &str) -> Vec<ContainerStatus> {
    let started = state.running.is_some() || state.terminated.is_some();
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            container_id: started.then(|| format!("pave-sim://{uid}-{}", c.name)),
            ready,
            started: Some(started),
            restart_count: 0,
            state: Some(state.clone()),
            ..Default::default()
        })
        .collect()
}

fn base_status(pod: &mut Pod) -> &mut PodStatus {
    let st = pod.status.get_or_insert_with(PodStatus::default);
    st.host_ip = Some("127.0.0.1".into());
    st.host_ips = Some(vec![HostIP {
        ip: "127.0.0.1".into(),
    }]);
    st.pod_ip = Some("127.0.0.1".into());
    st.pod_ips = Some(vec![PodIP {
        ip: "127.0.0.1".into(),
    }]);
    if st.start_time.is_none() {
        st.start_time = Some(now());
    }
    st
}

fn container_names(pod: &Pod) -> String {
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.as_str())
        .collect();
    format!("[{}]", names.join(" "))
}

fn set_waiting(pod: &mut Pod, uid: &str, reason: &str, message: &str) {
    let state = ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: Some(message.into()),
        }),
        ..Default::default()
    };
    let cs = statuses(pod, state, false, uid);
    let names = container_names(pod);
    let st = base_status(pod);
    st.phase = Some("Pending".into());
    st.container_statuses = Some(cs);
    set_condition(pod, "PodReadyToStartContainers", "True", "", "");
    set_condition(pod, "Initialized", "True", "", "");
    let msg = format!("containers with unready status: {names}");
    set_condition(pod, "Ready", "False", "ContainersNotReady", &msg);
    set_condition(pod, "ContainersReady", "False", "ContainersNotReady", &msg);
}

fn set_running(pod: &mut Pod, uid: &str) {
    let state = ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(now()),
        }),
        ..Default::default()
    };
    let cs = statuses(pod, state, true, uid);
    let st = base_status(pod);
    st.phase = Some("Running".into());
    st.container_statuses = Some(cs);
    for c in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ] {
        set_condition(pod, c, "True", "", "");
    }
}

async fn stopped(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    let got = stop.wait_for(Option::is_some).await.map(|s| s.clone());
    match got {
        Ok(s) => s.unwrap_or(Stop::Kill),
        // The handle is gone: nobody will ever ask again.
        Err(_) => std::future::pending().await,
    }
}

async fn run_pod(
    cluster: Cluster,
    key: Key,
    uid: String,
    plan: Plan,
    mut stop: watch::Receiver<Option<Stop>>,
    log: Arc<PodLog>,
    (pull_backoff, max_grace): (Duration, Duration),
) {
    if let Plan::Script(Script {
        outcome: Outcome::ImagePullError,
        ..
    }) = &plan
    {
        let image = cluster
            .pod(&key.0, &key.1)
            .map(|p| first_image(&p))
            .unwrap_or_default();
        let mut attempt = 0u32;
        let req = loop {
            let (reason, message) = if attempt.is_multiple_of(2) {
                (
                    "ErrImagePull",
                    format!(
                        "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": not found"
                    ),
                )
            } else {
                (
                    "ImagePullBackOff",
                    format!("Back-off pulling image \"{image}\""),
                )
            };
            update_pod(&cluster, &key, &uid, |p| {
                set_waiting(p, &uid, reason, &message)
            });
            attempt += 1;
            tokio::select! {
                _ = tokio::time::sleep(pull_backoff) => {}
                s = stopped(&mut stop) => break s,
            }
        };
        finish(&cluster, &key, &uid, None, Some(req), &log);
        return;
    }
    if let Plan::Script(s) = &plan {
        for line in &s.log {
            log.push(line.clone());
        }
    }
    update_pod(&cluster, &key, &uid, |p| set_running(p, &uid));
    let (term, req) = match plan {
        Plan::Script(s) => play(&s, &mut stop).await,
        Plan::Process(spec) => process::run(&spec, &log, &mut stop, max_grace).await,
    };
    finish(&cluster, &key, &uid, Some(term), req, &log);
}

async fn play(
    script: &Script,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> (Termination, Option<Stop>) {
    let done = async {
        if script.outcome == Outcome::RunForever {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(script.after).await;
    };
    tokio::select! {
        _ = done => {}
        s = stopped(stop) => return (Termination::exited(143), Some(s)),
    }
    let term = match script.outcome {
        Outcome::Exit(code) => Termination::exited(code),
        Outcome::OomKilled => Termination {
            exit_code: 137,
            reason: "OOMKilled".into(),
            message: None,
        },
        _ => Termination::exited(0),
    };
    (term, None)
}

/// Writes the final status, forgets the runner, and completes a pending deletion.
fn finish(
    cluster: &Cluster,
    key: &Key,
    uid: &str,
    term: Option<Termination>,
    req: Option<Stop>,
    log: &PodLog,
) {
    log.finish();
    let mut st = cluster.lock();
    st.runners.remove(uid);
    let current = st
        .get::<Pod>(key)
        .filter(|s| s.obj.metadata.uid.as_deref() == Some(uid));
    let Some(stored) = current else { return };
    if matches!(req, Some(Stop::Kill)) || is_terminal(&stored.obj) {
        return;
    }
    let mut pod = stored.obj.clone();
    let succeeded = req.is_none() && term.as_ref().is_some_and(|t| t.exit_code == 0);
    if let Some(t) = &term {
        let started_at = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone());
        let state = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: t.exit_code,
                reason: Some(t.reason.clone()),
                message: t.message.clone(),
                started_at,
                finished_at: Some(now()),
                container_id: Some(format!("pave-sim://{uid}")),
                signal: None,
            }),
            ..Default::default()
        };
        let cs = statuses(&pod, state, false, uid);
        base_status(&mut pod).container_statuses = Some(cs);
    }
    let st_mut = pod.status.get_or_insert_with(PodStatus::default);
    st_mut.phase = Some(if succeeded { "Succeeded" } else { "Failed" }.into());
    if let Some(Stop::Fail { reason, message }) = &req {
        st_mut.reason = Some(reason.clone());
        st_mut.message = Some(message.clone());
    }
    let why = if succeeded {
        "PodCompleted"
    } else {
        "PodFailed"
    };
    set_condition(&mut pod, "Ready", "False", why, "");
    set_condition(&mut pod, "ContainersReady", "False", why, "");
    st.put(pod, EventType::Modified);
    finish_deletion_if_done(&mut st, key);
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("registry.invalid/*", "registry.invalid/x:1"));
        assert!(glob("*:does-not-exist", "python:does-not-exist"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exact2"));
        assert!(!glob("a*b", "ac"));
    }
}
