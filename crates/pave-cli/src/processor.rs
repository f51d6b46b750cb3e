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

/// How Python DAG files are parsed: `PYTHON -m pave.parse FILE` in a child
/// process with a time limit and memory limit, so a broken or hanging file
/// never stops the others.
#[derive(Clone, Debug)]
pub struct PythonParser {
    pub python: String,
    pub sdk_path: PathBuf,
    pub timeout: std::time::Duration,
    /// Address-space limit of the parsing process, in KiB.
    pub memory_kib: u64,
}

/// Remembers file modification times so unchanged files are not re-parsed.
#[derive(Default)]
pub struct DagProcessor {
    seen: HashMap<PathBuf, SystemTime>,
    python: Option<PythonParser>,
}

impl DagProcessor {
    pub fn with_python(python: Option<PythonParser>) -> Self {
        DagProcessor {
            seen: HashMap::new(),
            python,
        }
    }

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
            let parsed = if fileloc.ends_with(".py") {
                match &self.python {
                    Some(py) => parse_python(py, &path, &opts).await,
                    None => Err(format!(
                        "{fileloc} is a Python DAG file, but no Python interpreter is configured"
                    )),
                }
            } else {
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {fileloc}: {e}"))
                    .and_then(|text| {
                        pave_spec::load_file(&fileloc, &text, &opts).map_err(|e| e.to_string())
                    })
            };
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
            } else if name.ends_with(".yaml")
                || name.ends_with(".yml")
                || name.ends_with(".json")
                || (name.ends_with(".py") && looks_like_dag_file(&p))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Airflow's "safe mode" heuristic: only Python files that mention both
/// `dag` and `pave` or `airflow` are DAG files; helper modules are skipped.
fn looks_like_dag_file(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    text.contains("dag") && (text.contains("pave") || text.contains("airflow"))
}

/// Runs `python -m pave.parse FILE` under a time and memory limit and
/// reads its JSON spec; an error comes back as one readable message with
/// the file, line and traceback.
pub async fn parse_python(
    py: &PythonParser,
    path: &Path,
    opts: &pave_spec::ValidateOptions,
) -> Result<Vec<Dag>, String> {
    let fileloc = path.display().to_string();
    let limits = format!(
        "ulimit -v {} 2>/dev/null; exec \"$0\" -m pave.parse \"$1\"",
        py.memory_kib
    );
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg(limits)
        .arg(&py.python)
        .arg(path)
        .env("PYTHONPATH", &py.sdk_path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(py.timeout, cmd.output()).await {
        Err(_) => {
            return Err(format!(
                "{fileloc}: parsing took longer than {}s and was stopped; \
                 a DAG file must not do heavy work at import time",
                py.timeout.as_secs()
            ));
        }
        Ok(Err(e)) => return Err(format!("{fileloc}: cannot run {}: {e}", py.python)),
        Ok(Ok(out)) => out,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() {
        let mut dags = pave_spec::parse_json(&stdout, &fileloc, opts).map_err(|e| e.to_string())?;
        for dag in &mut dags {
            dag.fileloc = Some(fileloc.clone());
        }
        return Ok(dags);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    match serde_json::from_str::<serde_json::Value>(stdout.trim()) {
        Ok(v) if v.get("error").is_some() => {
            let e = &v["error"];
            let line = e["line"]
                .as_u64()
                .map(|l| format!(", line {l}"))
                .unwrap_or_default();
            let message = e["message"]
                .as_str()
                .unwrap_or("the file could not be imported");
            let traceback = e["traceback"].as_str().unwrap_or("");
            Err(format!("{fileloc}{line}: {message}\n{traceback}"))
        }
        _ => Err(format!(
            "{fileloc}: the parser exited with {} ({})\n{stderr}",
            output.status,
            if output.status.code().is_none() {
                "killed: out of memory or time?"
            } else {
                "no error report"
            }
        )),
    }
}
