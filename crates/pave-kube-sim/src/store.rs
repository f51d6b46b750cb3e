//! The cluster's object store: pods and nodes, the one global
//! `resourceVersion` counter, and the event history that watches replay.
//!
//! Every write goes through [`State::put`] or [`State::remove`], which stamp
//! the next resourceVersion, keep the object's JSON form for lists and
//! watches, append to the history and broadcast the event, all under the one
//! lock, so watchers see events in resourceVersion order without gaps.

use crate::cluster::ClusterConfig;
use crate::faults::Faults;
use crate::kubelet::RunnerHandle;
use crate::logs::PodLog;
use crate::script::ScriptRule;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{Notify, broadcast};

/// The kinds of object the simulator stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjKind {
    Pod,
    Node,
}

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history and sent to watchers.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: ObjKind,
    pub etype: EventType,
    pub object: Arc<Value>,
    /// The object before a MODIFIED change, so that a watch with a selector
    /// can turn "stopped matching" into DELETED and "started matching" into ADDED.
    pub old: Option<Arc<Value>>,
}

/// The history after a version plus a live subscription.
pub(crate) type Subscription = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// `(namespace, name)`; nodes have an empty namespace.
pub(crate) type Key = (String, String);

/// A stored object and its JSON form (what lists and watches send).
#[derive(Debug, Clone)]
pub(crate) struct Stored<K> {
    pub obj: K,
    pub json: Arc<Value>,
}

/// A kind the store can hold.
pub(crate) trait SimObject:
    Clone
    + Serialize
    + DeserializeOwned
    + k8s_openapi::ListableResource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Send
    + Sync
    + 'static
{
    const OBJ_KIND: ObjKind;
    fn table(state: &State) -> &BTreeMap<Key, Stored<Self>>;
    fn table_mut(state: &mut State) -> &mut BTreeMap<Key, Stored<Self>>;
}

impl SimObject for Pod {
    const OBJ_KIND: ObjKind = ObjKind::Pod;
    fn table(state: &State) -> &BTreeMap<Key, Stored<Self>> {
        &state.pods
    }
    fn table_mut(state: &mut State) -> &mut BTreeMap<Key, Stored<Self>> {
        &mut state.pods
    }
}

impl SimObject for Node {
    const OBJ_KIND: ObjKind = ObjKind::Node;
    fn table(state: &State) -> &BTreeMap<Key, Stored<Self>> {
        &state.nodes
    }
    fn table_mut(state: &mut State) -> &mut BTreeMap<Key, Stored<Self>> {
        &mut state.nodes
    }
}

/// The key of an object from its metadata.
pub(crate) fn key_of<K: SimObject>(obj: &K) -> Key {
    let m = obj.metadata();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// Everything behind the cluster's lock.
pub(crate) struct State {
    pub pods: BTreeMap<Key, Stored<Pod>>,
    pub nodes: BTreeMap<Key, Stored<Node>>,
    /// The last resourceVersion handed out.
    pub rv: u64,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Events with a resourceVersion up to this one are no longer kept:
    /// a watch from an older version gets 410 Gone.
    pub compacted_rv: u64,
    events: broadcast::Sender<Arc<Event>>,
    uid_counter: u64,
    /// Bumped whenever capacity may have been freed or added, so the
    /// scheduler retries unschedulable pods only then.
    pub capacity_gen: u64,
    pub wake_scheduler: Arc<Notify>,
    pub wake_kubelet: Arc<Notify>,
    /// The kubelet's running pods, by uid.
    pub runners: HashMap<String, RunnerHandle>,
    /// Pod logs, by uid.
    pub logs: HashMap<String, Arc<PodLog>>,
    pub faults: Faults,
    pub scripts: Vec<ScriptRule>,
    pub config: ClusterConfig,
}

impl State {
    pub fn new(config: ClusterConfig) -> Self {
        let history_limit = config.history_limit;
        let (events, _) = broadcast::channel(history_limit.max(1024));
        State {
            pods: BTreeMap::new(),
            nodes: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 0,
            events,
            uid_counter: 0,
            capacity_gen: 0,
            wake_scheduler: Arc::new(Notify::new()),
            wake_kubelet: Arc::new(Notify::new()),
            runners: HashMap::new(),
            logs: HashMap::new(),
            faults: Faults::default(),
            scripts: Vec::new(),
            config,
        }
    }

    /// A fresh uid, unique within this cluster, in the usual UUID shape.
    pub fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        let n = self.uid_counter;
        format!("5a7e0000-0000-4000-8000-{n:012x}")
    }

    pub fn get<K: SimObject>(&self, key: &Key) -> Option<&Stored<K>> {
        K::table(self).get(key)
    }

    /// Stores `obj` under the next resourceVersion and emits `etype`.
    /// Returns the stored JSON form.
    pub fn put<K: SimObject>(&mut self, mut obj: K, etype: EventType) -> Arc<Value> {
        self.rv += 1;
        obj.metadata_mut().resource_version = Some(self.rv.to_string());
        let json = Arc::new(to_json(&obj));
        let key = key_of(&obj);
        let old = K::table_mut(self)
            .insert(
                key,
                Stored {
                    obj,
                    json: json.clone(),
                },
            )
            .map(|s| s.json);
        if K::OBJ_KIND == ObjKind::Node
            || (is_terminal_json(&json) && !old.as_deref().is_some_and(is_terminal_json))
        {
            self.capacity_gen += 1;
        }
        self.emit(K::OBJ_KIND, etype, json.clone(), old);
        json
    }

    /// Removes an object, emitting DELETED with a new resourceVersion.
    pub fn remove<K: SimObject>(&mut self, key: &Key) -> Option<Arc<Value>> {
        let stored = K::table_mut(self).remove(key)?;
        self.rv += 1;
        let mut obj = stored.obj;
        obj.metadata_mut().resource_version = Some(self.rv.to_string());
        let json = Arc::new(to_json(&obj));
        if K::OBJ_KIND == ObjKind::Pod
            && let Some(uid) = obj.metadata().uid.as_ref()
        {
            self.logs.remove(uid);
        }
        self.capacity_gen += 1;
        self.emit(
            K::OBJ_KIND,
            EventType::Deleted,
            json.clone(),
            Some(stored.json),
        );
        Some(json)
    }

    fn emit(
        &mut self,
        kind: ObjKind,
        etype: EventType,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        let event = Arc::new(Event {
            rv: self.rv,
            kind,
            etype,
            object,
            old,
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_rv = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
        self.wake_scheduler.notify_one();
        self.wake_kubelet.notify_one();
    }

    /// Forgets the whole history: every watch from an older version gets 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    /// Events newer than `rv` plus a live subscription, taken atomically.
    /// `Err(oldest)` when events after `rv` have been dropped already.
    pub fn subscribe_from(&self, rv: u64) -> Result<Subscription, u64> {
        if rv < self.compacted_rv {
            return Err(self.compacted_rv + 1);
        }
        let backlog = self.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((backlog, self.events.subscribe()))
    }

    /// A live subscription starting now.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }
}

/// The JSON form of an object (k8s-openapi writes `apiVersion` and `kind`).
pub(crate) fn to_json<K: Serialize>(obj: &K) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

/// Whether a pod in JSON form has Succeeded or Failed.
fn is_terminal_json(v: &Value) -> bool {
    matches!(
        v.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}
