//! Following pods with kube's watcher: every pod event (and a periodic
//! tick, for timeouts) re-evaluates the attempt it belongs to; an attempt
//! that ended is reported exactly once, after its log has been drained, and
//! its pod is then deleted (failed pods after a while). Pods of this
//! installation that no attempt owns are cleaned up.

use crate::logs;
use crate::naming::INSTALLATION_LABEL;
use crate::outcome::{self, PodState};
use crate::state::{Inner, ResultFile, State, Tracked};
use chrono::Utc;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::runtime::{WatchStreamExt, watcher};
use pave_executor::{AttemptResult, ExecutorEvent, Exit};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How an attempt ended, as decided from its pod.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The container ended (or the attempt failed with the result's error).
    Ended { result: AttemptResult, keep: bool },
    /// Killed from outside the task: retried without spending a retry.
    Disrupted(String),
}

/// Starts the watcher and the tick; both stop when the executor is dropped.
pub(crate) fn spawn(inner: &Arc<Inner>) {
    let selector = format!(
        "{INSTALLATION_LABEL}={}",
        crate::naming::label_value(&inner.cfg.installation)
    );
    let api = inner.api.clone();
    let weak = Arc::downgrade(inner);
    let watch = tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
        futures_util::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let Some(inner) = weak.upgrade() else { break };
            match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                    on_pod(&inner, pod)
                }
                Ok(watcher::Event::Delete(pod)) => on_delete(&inner, pod),
                Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                Err(e) => tracing::warn!("watching pave's pods: {e}; retrying"),
            }
        }
    });
    let weak = Arc::downgrade(inner);
    let period = inner.cfg.tick;
    let tick = tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(inner) = weak.upgrade() else { break };
            on_tick(&inner).await;
        }
    });
    let mut bg = match inner.background.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    bg.push(watch.abort_handle());
    bg.push(tick.abort_handle());
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// A pod was added or changed.
pub(crate) fn on_pod(inner: &Arc<Inner>, pod: Pod) {
    let name = pod_name(&pod);
    let verdict = inner.with(|s| {
        let Some(t) = s.tracked.get_mut(&name) else {
            s.others.insert(name.clone(), pod.clone());
            return None;
        };
        if let (Some(want), Some(got)) = (t.pod_uid(), pod.metadata.uid.as_deref())
            && want != got
        {
            // Another pod of the same name (ours was deleted and re-created
            // by someone else): not this attempt's.
            return None;
        }
        if t.ending {
            return None;
        }
        t.set_uid(pod.metadata.uid.clone());
        t.last = Some(pod);
        evaluate(inner, s, &name, Instant::now())
    });
    if let Some(v) = verdict {
        finish_later(inner, name, v);
    }
}

/// A pod was deleted.
pub(crate) fn on_delete(inner: &Arc<Inner>, pod: Pod) {
    let name = pod_name(&pod);
    let verdict = inner.with(|s| {
        s.others.remove(&name);
        let t = s.tracked.get_mut(&name)?;
        if t.ending {
            return None;
        }
        if let (Some(want), Some(got)) = (t.pod_uid(), pod.metadata.uid.as_deref())
            && want != got
        {
            return None;
        }
        t.ending = true;
        let now = Utc::now();
        let started = t.handle.started_at;
        let v = match outcome::classify(&pod) {
            PodState::Ended { succeeded, end } => Verdict::Ended {
                result: outcome::ended_result(succeeded, &end, started, now),
                keep: false,
            },
            _ if t.killed || t.timed_out => Verdict::Ended {
                result: stopped(started, now),
                keep: false,
            },
            PodState::Disrupted(cause) => Verdict::Disrupted(cause),
            _ => Verdict::Disrupted(match outcome::disruption(&pod) {
                Some(cause) => cause,
                None => {
                    "the pod was deleted before it finished (by someone other than pave)".to_owned()
                }
            }),
        };
        Some(v)
    });
    if let Some(v) = verdict {
        finish_later(inner, name, v);
    }
}

/// A result for an attempt stopped on purpose (killed, timed out).
fn stopped(started: chrono::DateTime<Utc>, now: chrono::DateTime<Utc>) -> AttemptResult {
    let mut r = AttemptResult::exited_at(now, 0, None);
    r.exit = Exit::Signal { signal: 9 };
    r.started_at = started;
    r.duration_ms = u64::try_from((now - started).num_milliseconds()).unwrap_or(0);
    r
}

/// Decides what the latest state of a tracked pod means, with the state
/// locked; starts following its log once it runs. `Some` marks the attempt
/// as ending, so it is reported once.
pub(crate) fn evaluate(
    inner: &Arc<Inner>,
    s: &mut State,
    name: &str,
    now: Instant,
) -> Option<Verdict> {
    let cfg = &inner.cfg;
    let t = s.tracked.get_mut(name)?;
    if t.ending {
        return None;
    }
    let pod = t.last.clone()?;
    let started = t.handle.started_at;
    let utc = Utc::now();
    let verdict = match outcome::classify(&pod) {
        PodState::Pending {
            unschedulable,
            image_error,
        } => {
            let mut verdict = None;
            match image_error {
                Some(err) => {
                    let since = *t.image_error_since.get_or_insert(now);
                    let waited = now.duration_since(since);
                    if waited >= cfg.image_pull_timeout {
                        let msg = format!(
                            "the image cannot be pulled ({err}) for {}s; check the task's `image` \
                             (its name, tag and registry credentials)",
                            waited.as_secs()
                        );
                        verdict = Some(Verdict::Ended {
                            result: outcome::failed_result(started, utc, msg),
                            keep: false,
                        });
                    }
                }
                None => t.image_error_since = None,
            }
            match unschedulable {
                Some(msg) => {
                    let since = *t.unschedulable_since.get_or_insert(now);
                    let waited = now.duration_since(since);
                    if verdict.is_none() && waited >= cfg.unschedulable_timeout {
                        let msg = outcome::unschedulable_message(&pod, waited, &msg);
                        verdict = Some(Verdict::Ended {
                            result: outcome::failed_result(started, utc, msg),
                            keep: false,
                        });
                    }
                }
                None => t.unschedulable_since = None,
            }
            verdict
        }
        PodState::Running => {
            start_logs(inner, name, t);
            let adopted = t.adopted;
            let since = *t.running_since.get_or_insert_with(|| {
                // An adopted pod has been running since its container
                // started, not since this executor saw it.
                adopted
                    .then(|| outcome::running_since(&pod))
                    .flatten()
                    .and_then(|at| (utc - at).to_std().ok())
                    .and_then(|ago| now.checked_sub(ago))
                    .unwrap_or(now)
            });
            if let Some(limit) = t.execution_timeout
                && !t.timed_out
                && now.duration_since(since) >= limit
            {
                t.timed_out = true;
                logs::note(
                    &t.handle.log_path,
                    &format!(
                        "execution_timeout of {}s exceeded: deleting pod {name}",
                        limit.as_secs()
                    ),
                );
                let inner = inner.clone();
                let name = name.to_owned();
                let grace = u32::try_from(inner.cfg.kill_grace.as_secs()).ok();
                tokio::spawn(async move { delete(&inner, &name, grace).await });
            }
            None
        }
        PodState::Ended { succeeded, end } => {
            start_logs(inner, name, t);
            Some(Verdict::Ended {
                result: outcome::ended_result(succeeded, &end, started, utc),
                keep: true,
            })
        }
        PodState::Disrupted(cause) => {
            start_logs(inner, name, t);
            Some(Verdict::Disrupted(cause))
        }
    };
    if verdict.is_some() {
        t.ending = true;
    }
    verdict
}

/// Follows the pod's log into the attempt's log file, once.
fn start_logs(inner: &Arc<Inner>, name: &str, t: &mut Tracked) {
    if t.logs.is_some() {
        return;
    }
    t.logs = Some(tokio::spawn(logs::follow(
        inner.api.clone(),
        name.to_owned(),
        t.container.clone(),
        t.handle.log_path.clone(),
        t.log_skip,
    )));
}

impl Tracked {
    fn pod_uid(&self) -> Option<&str> {
        match &self.handle.process {
            pave_executor::ProcessRef::Pod(p) => p.uid.as_deref(),
            _ => None,
        }
    }

    fn set_uid(&mut self, uid: Option<String>) {
        if let pave_executor::ProcessRef::Pod(p) = &mut self.handle.process
            && p.uid.is_none()
        {
            p.uid = uid;
        }
    }
}

/// Reports an ended attempt in the background (the log is drained first).
pub(crate) fn finish_later(inner: &Arc<Inner>, name: String, verdict: Verdict) {
    let inner = inner.clone();
    tokio::spawn(async move { finish(&inner, &name, verdict).await });
}

async fn finish(inner: &Arc<Inner>, name: &str, verdict: Verdict) {
    let Some((handle, logs_task, killed, timed_out)) = inner.with(|s| {
        let t = s.tracked.get_mut(name)?;
        Some((t.handle.clone(), t.logs.take(), t.killed, t.timed_out))
    }) else {
        return;
    };
    let tail = match logs_task {
        Some(task) => match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(tail)) => Some(tail),
            _ => None,
        },
        None => None,
    };
    let (event, disruption, keep) = match verdict {
        Verdict::Ended { mut result, keep } => {
            result.last_line = tail.as_ref().and_then(|t| t.last_line.clone());
            result.cancelled = killed;
            result.timed_out |= timed_out;
            if let Some(err) = &result.error {
                logs::note(&handle.log_path, &format!("pod {name}: {err}"));
            }
            (
                ExecutorEvent::Finished {
                    key: handle.key.clone(),
                    result: result.clone(),
                },
                None,
                keep && !result.is_success(),
            )
        }
        Verdict::Disrupted(cause) => {
            let now = Utc::now();
            let result = outcome::failed_result(
                handle.started_at,
                now,
                format!("the pod was disrupted: {cause}"),
            );
            logs::note(
                &handle.log_path,
                &format!(
                    "pod {name} was disrupted ({cause}); the task is retried without spending a retry"
                ),
            );
            (
                ExecutorEvent::Disrupted {
                    key: handle.key.clone(),
                    result,
                    reason: cause.clone(),
                },
                Some(cause),
                false,
            )
        }
    };
    let result = match &event {
        ExecutorEvent::Finished { result, .. } | ExecutorEvent::Disrupted { result, .. } => {
            result.clone()
        }
        ExecutorEvent::Lost { .. } => return,
    };
    let file = ResultFile {
        pod: name.to_owned(),
        result,
        disruption: disruption.clone(),
    };
    if let Err(e) = file.write(&handle.result_path) {
        tracing::warn!(attempt = %handle.key, "cannot write the result file: {e}");
    }
    inner.with(|s| {
        s.tracked.remove(name);
        s.reported += 1;
    });
    // A closed channel means nobody listens any more; the result file stays.
    let _ = inner.events.send(event);
    if keep {
        let inner = inner.clone();
        let name = name.to_owned();
        let wait = inner.cfg.keep_failed_pods;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            delete(&inner, &name, Some(0)).await;
        });
    } else {
        delete(inner, name, Some(0)).await;
    }
}

/// Deletes a pod; a pod already gone is fine.
pub(crate) async fn delete(inner: &Inner, name: &str, grace: Option<u32>) {
    let params = DeleteParams {
        grace_period_seconds: grace,
        ..DeleteParams::default()
    };
    match inner.api.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => tracing::warn!(pod = name, "cannot delete pod: {e}"),
    }
}

/// Timeouts without pod events, and orphans.
async fn on_tick(inner: &Arc<Inner>) {
    let now = Instant::now();
    let names: Vec<String> = inner.with(|s| s.tracked.keys().cloned().collect());
    for name in names {
        if let Some(v) = inner.with(|s| evaluate(inner, s, &name, now)) {
            finish_later(inner, name, v);
        }
    }
    let _ = crate::cleanup::sweep(inner).await;
}
