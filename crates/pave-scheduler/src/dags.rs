//! DAG versions as the driver uses them: parsed once from the store's
//! serialized form and kept with what is derived from them (priority weights).

use crate::error::SchedulerError;
use pave_core::Dag;
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
        let loaded = Arc::new(LoadedDag {
            version,
            weights: pave_core::priority::effective_weights(&dag),
            dag,
        });
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
