//! Cleaning up pods of this installation that no attempt owns, once the
//! executor has run for `orphan_grace` (which leaves the scheduler time to
//! adopt what it still knows about): succeeded ones, failed ones older than
//! `keep_failed_pods`, and unfinished ones (orphans: their task instance was
//! never adopted after a restart).

use crate::state::Inner;
use crate::watch::delete;
use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;

/// Deletes the pods that are due; returns how many.
pub(crate) async fn sweep(inner: &Arc<Inner>) -> usize {
    let now = Utc::now();
    let cfg = &inner.cfg;
    let uptime = inner.started.elapsed();
    let keep = chrono::Duration::from_std(cfg.keep_failed_pods).unwrap_or(chrono::Duration::MAX);
    let grace = chrono::Duration::from_std(cfg.orphan_grace).unwrap_or(chrono::Duration::MAX);
    // Until the scheduler had time to adopt what it knows, no pod is
    // unknown: a finished pod may still be an attempt it will adopt (and
    // deleting it would lose its outcome). Pods of attempts this executor
    // reported are deleted when they are reported, not here.
    if uptime < cfg.orphan_grace {
        return 0;
    }
    let due: Vec<(String, String)> = inner.with(|s| {
        s.others
            .iter()
            .filter(|(name, pod)| {
                !s.tracked.contains_key(*name) && pod.metadata.deletion_timestamp.is_none()
            })
            .filter_map(|(name, pod)| {
                let phase = pod
                    .status
                    .as_ref()
                    .and_then(|st| st.phase.as_deref())
                    .unwrap_or("Pending");
                let why = match phase {
                    "Succeeded" => Some("it succeeded and nobody needs it".to_owned()),
                    "Failed" => (now - finished_at(pod).unwrap_or(now) >= keep)
                        .then(|| "it failed and was kept long enough".to_owned()),
                    _ => (now - created_at(pod).unwrap_or(now) >= grace)
                        .then(|| "no task instance owns it (an orphan)".to_owned()),
                };
                why.map(|w| (name.clone(), w))
            })
            .collect()
    });
    for (name, why) in &due {
        tracing::info!(pod = %name, "deleting pod: {why}");
        delete(inner, name, Some(0)).await;
        inner.with(|s| s.others.remove(name));
    }
    due.len()
}

fn created_at(pod: &Pod) -> Option<chrono::DateTime<Utc>> {
    let ts = pod.metadata.creation_timestamp.as_ref()?;
    chrono::DateTime::from_timestamp(ts.0.as_second(), 0)
}

fn finished_at(pod: &Pod) -> Option<chrono::DateTime<Utc>> {
    let ts = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()?
        .finished_at
        .as_ref()?;
    chrono::DateTime::from_timestamp(ts.0.as_second(), 0)
}
