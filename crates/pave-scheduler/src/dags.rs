//! DAG versions as the driver uses them: parsed once from the store's
//! serialized form and kept with what is derived from them (priority weights).

use crate::error::SchedulerError;
use pave_core::Dag;
use pave_core::model::Task;
use pave_store::{DagVersionId, Store};
use std::collections::HashMap;
use std::sync::Arc;

/// One DAG version, ready to schedule.
#[derive(Debug)]
pub struct LoadedDag {
    pub version: DagVersionId,
    pub dag: Dag,
    /// Effective priority weight per task (Airflow's weight rules), indexed like `dag.tasks`.
    pub weights: Vec<i64>,
    /// Position in `dag.tasks` by task id, so hot paths need no linear search.
    index: HashMap<String, usize>,
    /// For each task whose `return_value` a mapped task expands over: the
    /// first such mapped task (in `dag.tasks` order), by position.
    mapping_dependant: HashMap<usize, usize>,
    /// Whether any task depends on the task at this position (lists it
    /// upstream or expands over its XCom), indexed like `dag.tasks`.
    has_downstream: Vec<bool>,
}

impl LoadedDag {
    /// Derives the indexes of `dag`.
    pub fn new(version: DagVersionId, dag: Dag) -> Self {
        let mut index: HashMap<String, usize> = HashMap::with_capacity(dag.tasks.len());
        for (i, t) in dag.tasks.iter().enumerate() {
            // The first task of an id wins, as in `Dag::task`.
            index.entry(t.task_id.as_str().to_owned()).or_insert(i);
        }
        let mut mapping_dependant = HashMap::new();
        for (i, t) in dag.tasks.iter().enumerate() {
            for source in pave_core::decide::mapping_sources(t) {
                if let Some(&s) = index.get(source.as_str()) {
                    mapping_dependant.entry(s).or_insert(i);
                }
            }
        }
        let mut has_downstream = vec![false; dag.tasks.len()];
        for t in &dag.tasks {
            for up in t
                .upstream
                .iter()
                .chain(pave_core::decide::mapping_sources(t))
            {
                if let Some(&u) = index.get(up.as_str()) {
                    has_downstream[u] = true;
                }
            }
        }
        LoadedDag {
            has_downstream,
            version,
            weights: pave_core::priority::effective_weights(&dag),
            dag,
            index,
            mapping_dependant,
        }
    }

    /// The task with this id (like `Dag::task`, by index).
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.index.get(id).and_then(|&i| self.dag.tasks.get(i))
    }

    /// The effective priority weight of the task with this id.
    pub fn weight(&self, id: &str) -> Option<i64> {
        self.index
            .get(id)
            .and_then(|&i| self.weights.get(i))
            .copied()
    }

    /// Whether some task depends on `task` (lists it upstream or expands
    /// over its XCom): only then can its end make another task runnable.
    pub fn has_downstream(&self, task: &Task) -> bool {
        self.index
            .get(task.task_id.as_str())
            .and_then(|&i| self.has_downstream.get(i))
            .copied()
            .unwrap_or(true)
    }

    /// The first mapped task that expands over `task`'s `return_value`, if
    /// any (what `pave_core::decide::mapping_dependant` finds, precomputed).
    pub fn mapping_dependant(&self, task: &Task) -> Option<&Task> {
        let i = self.index.get(task.task_id.as_str())?;
        self.mapping_dependant
            .get(i)
            .and_then(|&d| self.dag.tasks.get(d))
    }
}

/// Versions are immutable, so a cache keyed by version never goes stale.
#[derive(Default)]
pub struct DagCache {
    versions: HashMap<DagVersionId, Arc<LoadedDag>>,
}

impl DagCache {
    pub async fn get(
        &mut self,
        store: &dyn Store,
        version: DagVersionId,
    ) -> Result<Arc<LoadedDag>, SchedulerError> {
        if let Some(d) = self.versions.get(&version) {
            return Ok(d.clone());
        }
        let record = store.get_dag_version(version).await?;
        let dag = decode(
            &record.spec,
            &format!("{} of DAG `{}`", version, record.dag_id),
        )?;
        let loaded = Arc::new(LoadedDag::new(version, dag));
        self.versions.insert(version, loaded.clone());
        Ok(loaded)
    }
}

/// The serialized form stored for a DAG version (pave-spec's JSON spec v1).
pub fn encode(dag: &Dag) -> serde_json::Value {
    pave_spec::to_spec_json(std::slice::from_ref(dag))
}

/// Reads a stored DAG version back into the model.
pub fn decode(spec: &serde_json::Value, what: &str) -> Result<Dag, SchedulerError> {
    let mut dags =
        pave_spec::from_spec_value(spec, what, &pave_spec::ValidateOptions::default())
            .map_err(|e| SchedulerError::Corrupt(format!("stored {what} does not parse: {e}")))?;
    match dags.len() {
        1 => Ok(dags.remove(0)),
        n => Err(SchedulerError::Corrupt(format!(
            "stored {what} holds {n} DAGs, expected one"
        ))),
    }
}
