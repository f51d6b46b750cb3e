//! What the REST API's handlers share: the store, the clock, where logs
//! live, the link to the scheduler, and settings.

use chrono::{DateTime, Utc};
use pave_scheduler::Clock;
use pave_scheduler::dags::DagCache;
use pave_store::{ApiStore, DagVersionId, Store};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Notify};

/// Settings of the REST API.
#[derive(Clone, Debug)]
pub struct RestConfig {
    /// Mark the session cookie `Secure` (sent over HTTPS only). On for any
    /// address but loopback: behind a TLS-terminating proxy that is what
    /// browsers see. Off on loopback, where browsers reach plain http.
    pub secure_cookies: bool,
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Largest log chunk one request returns.
    pub max_log_chunk: u64,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            max_log_chunk: 1024 * 1024,
        }
    }
}

/// The API's link to a scheduler in the same process: a poke after every
/// write so the scheduler looks at the store at once, and the scheduler's
/// heartbeat for the health endpoint. Cheap to clone; clones share.
#[derive(Clone, Debug, Default)]
pub struct SchedulerLink {
    notify: Arc<Notify>,
    /// Microseconds since the epoch of the last heartbeat; 0 for none.
    heartbeat_us: Arc<AtomicI64>,
    pokes: Arc<AtomicI64>,
}

impl SchedulerLink {
    /// Tells the scheduler that the store changed (a trigger, clear, mark,
    /// delete). A poke while none is awaited is kept for the next wait.
    pub fn poke(&self) {
        self.pokes.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }
    /// Resolves at the next poke (or at once if one is pending).
    pub async fn poked(&self) {
        self.notify.notified().await;
    }
    /// How many pokes were sent (for tests).
    pub fn poke_count(&self) -> i64 {
        self.pokes.load(Ordering::Relaxed)
    }
    /// Records that the scheduler is alive at `now`.
    pub fn beat(&self, now: DateTime<Utc>) {
        self.heartbeat_us
            .store(now.timestamp_micros(), Ordering::Relaxed);
    }
    /// The scheduler's last heartbeat, if it ever beat.
    pub fn last_heartbeat(&self) -> Option<DateTime<Utc>> {
        match self.heartbeat_us.load(Ordering::Relaxed) {
            0 => None,
            us => DateTime::from_timestamp_micros(us),
        }
    }
}

/// The state every handler gets. Cheap to clone.
#[derive(Clone)]
pub struct RestState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ApiStore>,
    clock: Arc<dyn Clock>,
    logs_dir: PathBuf,
    scheduler: SchedulerLink,
    config: RestConfig,
    /// DAG versions are immutable, so this cache never goes stale.
    dags: Mutex<DagCache>,
    /// Version numbers by version id (immutable too).
    version_numbers: std::sync::Mutex<HashMap<DagVersionId, u32>>,
}

impl RestState {
    /// State over `store`, reading task logs under `logs_dir`.
    pub fn new(
        store: Arc<dyn ApiStore>,
        clock: Arc<dyn Clock>,
        logs_dir: impl Into<PathBuf>,
        scheduler: SchedulerLink,
        config: RestConfig,
    ) -> Self {
        RestState {
            inner: Arc::new(Inner {
                store,
                clock,
                logs_dir: logs_dir.into(),
                scheduler,
                config,
                dags: Mutex::new(DagCache::default()),
                version_numbers: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The store, with the query and auth traits.
    pub fn store(&self) -> &dyn ApiStore {
        self.inner.store.as_ref()
    }
    /// The store as the scheduler's helpers take it.
    pub fn core_store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }
    /// Now, from the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }
    /// Root of the per-try log files.
    pub fn logs_dir(&self) -> &std::path::Path {
        &self.inner.logs_dir
    }
    /// The link to the scheduler.
    pub fn scheduler(&self) -> &SchedulerLink {
        &self.inner.scheduler
    }
    /// Settings.
    pub fn config(&self) -> &RestConfig {
        &self.inner.config
    }
    /// A stored DAG version with what the scheduler derives from it.
    pub async fn loaded(
        &self,
        version: DagVersionId,
    ) -> Result<Arc<pave_scheduler::dags::LoadedDag>, crate::Problem> {
        let mut cache = self.inner.dags.lock().await;
        Ok(cache.get(self.core_store(), version).await?)
    }
    /// The number (1, 2, ...) of a stored DAG version (cached).
    pub async fn version_number(&self, version: DagVersionId) -> Result<u32, crate::Problem> {
        let cached = self
            .inner
            .version_numbers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&version)
            .copied();
        if let Some(n) = cached {
            return Ok(n);
        }
        let n = self
            .core_store()
            .get_dag_version(version)
            .await?
            .version_number;
        self.inner
            .version_numbers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(version, n);
        Ok(n)
    }
    /// Runs `f` with the DAG cache locked (for `pave_scheduler::runs::trigger`).
    pub async fn with_cache<R>(&self, f: impl AsyncFnOnce(&mut DagCache) -> R) -> R {
        let mut cache = self.inner.dags.lock().await;
        f(&mut cache).await
    }
}
