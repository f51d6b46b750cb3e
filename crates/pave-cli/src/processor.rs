//! The DAG processor: reads DAG files from a folder, validates them, stores
//! every changed DAG as a new version and records import errors. A broken
//! file never stops the others.

use anyhow::Result;
use chrono::Utc;
use pave_core::Dag;
use pave_store::{ImportErrorRecord, ParsedDag, Store};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What one pass over the folder found.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub dags: Vec<String>,
    pub new_versions: Vec<String>,
    pub errors: Vec<(String, String)>,
}

/// Remembers file modification times so unchanged files are not re-parsed.
#[derive(Default)]
pub struct DagProcessor {
    seen: HashMap<PathBuf, SystemTime>,
}

impl DagProcessor {
    /// Parses every changed DAG file in `dir` and stores the results.
    pub async fn sync(&mut self, store: &dyn Store, dir: &Path) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let pools: BTreeSet<String> = store
            .list_pools()
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect();
        let opts = pave_spec::ValidateOptions {
            known_pools: Some(pools),
        };
        let files = dag_files(dir)?;
        // A file that is gone takes its import error with it.
        let present: BTreeSet<String> = files.iter().map(|p| p.display().to_string()).collect();
        let prefix = dir.display().to_string();
        for e in store.list_import_errors().await? {
            if e.fileloc.starts_with(&prefix) && !present.contains(&e.fileloc) {
                store.clear_import_error(&e.fileloc).await?;
            }
        }
        for path in files {
            let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if mtime.is_some() && self.seen.get(&path) == mtime.as_ref() {
                continue;
            }
            let fileloc = path.display().to_string();
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {fileloc}: {e}"))
                .and_then(|text| {
                    pave_spec::load_file(&fileloc, &text, &opts).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(dags) => {
                    store.clear_import_error(&fileloc).await?;
                    for dag in dags {
                        let id = dag.dag_id.to_string();
                        if store_dag(store, &dag, &fileloc).await? {
                            report.new_versions.push(id.clone());
                        }
                        report.dags.push(id);
                    }
                }
                Err(message) => {
                    store
                        .put_import_error(ImportErrorRecord {
                            fileloc: fileloc.clone(),
                            timestamp: Utc::now(),
                            stacktrace: message.clone(),
                        })
                        .await?;
                    report.errors.push((fileloc, message));
                }
            }
            if let Some(m) = mtime {
                self.seen.insert(path, m);
            }
        }
        Ok(report)
    }
}

/// Stores one DAG; true when it is a new version.
pub async fn store_dag(store: &dyn Store, dag: &Dag, fileloc: &str) -> Result<bool> {
    let upserted = store
        .upsert_dag(ParsedDag {
            dag_id: dag.dag_id.clone(),
            fileloc: Some(fileloc.to_owned()),
            spec: pave_scheduler::dags::encode(dag),
            parsed_at: Utc::now(),
            paused_at_creation: false,
        })
        .await?;
    Ok(upserted.is_new_version)
}

/// DAG files directly in `dir` and its subfolders, sorted.
fn dag_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => anyhow::bail!("cannot read the DAGs folder {}: {e}", d.display()),
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
