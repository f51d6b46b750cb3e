//! The DAG processor: reads DAG files from a folder, validates them, stores
//! every changed DAG as a new version and records import errors. A broken
//! file never stops the others.

use anyhow::Result;
use chrono::Utc;
use pave_core::Dag;
use pave_store::{ImportErrorRecord, ParsedDag, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// Where `seen` is kept between processes (see [`DagProcessor::with_cache`]).
    cache: Option<PathBuf>,
    /// The scheduler whose tasks' zygotes parse Python files (see
    /// [`DagProcessor::with_zygotes`]).
    zygotes: Option<pave_scheduler::SchedulerConfig>,
}

/// The file behind [`DagProcessor::with_cache`]: modification times of the
/// files parsed, valid only under the same `key` (pave version, Python
/// parser, pools: anything else that changes what a parse gives).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct ParseCache {
    key: String,
    /// File path -> modification time in nanoseconds since the epoch.
    files: HashMap<String, u128>,
}

impl DagProcessor {
    pub fn with_python(python: Option<PythonParser>) -> Self {
        DagProcessor {
            seen: HashMap::new(),
            python,
            cache: None,
            zygotes: None,
        }
    }

    /// Parses each changed Python file in the pre-forked interpreter that
    /// the tasks of the scheduler configured by `cfg` will use
    /// ([`parse_python_in_zygote`]): it imports the file once, under the
    /// parser's time and memory limits, and then serves the attempts of the
    /// runs that follow, which no longer pay for its start. A file whose
    /// zygote is already listening (an unchanged file, or one changed under
    /// its running zygote) is parsed by `pave.parse` as before.
    pub fn with_zygotes(mut self, cfg: pave_scheduler::SchedulerConfig) -> Self {
        self.zygotes = Some(cfg);
        self
    }

    /// Keeps what was parsed in `path` across processes, so that a CLI
    /// command (`pave dags list`, ...) re-parses only the files changed
    /// since the last one, as a running `pave standalone` does in memory.
    /// A file is parsed again when it changed, when the cache was written
    /// by another pave version, parser or set of pools, or when the store
    /// has neither a DAG nor an import error from it.
    pub fn with_cache(mut self, path: PathBuf) -> Self {
        self.cache = Some(path);
        self
    }

    fn cache_key(&self, pools: &BTreeSet<String>) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(env!("CARGO_PKG_VERSION"));
        if let Some(py) = &self.python {
            h.update(format!("\0{}\0{}", py.python, py.sdk_path.display()));
        }
        for p in pools {
            h.update(format!("\0pool {p}"));
        }
        format!("{:x}", h.finalize())
    }

    /// Fills `seen` from the cache file, for the files the store knows.
    async fn load_cache(&mut self, store: &dyn Store, key: &str) -> Result<()> {
        let Some(path) = &self.cache else {
            return Ok(());
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(());
        };
        let cache: ParseCache = match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("ignoring the parse cache {}: {e}", path.display());
                return Ok(());
            }
        };
        if cache.key != key {
            return Ok(());
        }
        let mut known: BTreeSet<String> = store
            .list_dags()
            .await?
            .into_iter()
            .filter_map(|d| d.fileloc)
            .collect();
        known.extend(
            store
                .list_import_errors()
                .await?
                .into_iter()
                .map(|e| e.fileloc),
        );
        for (file, nanos) in cache.files {
            if known.contains(&file) {
                let t = SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                self.seen.entry(PathBuf::from(file)).or_insert(t);
            }
        }
        Ok(())
    }

    /// Writes `seen` to the cache file (atomically; failures only logged).
    fn save_cache(&self, key: &str) {
        let Some(path) = &self.cache else {
            return;
        };
        let cache = ParseCache {
            key: key.to_owned(),
            files: self
                .seen
                .iter()
                .filter_map(|(p, t)| {
                    let nanos = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_nanos();
                    Some((p.display().to_string(), nanos))
                })
                .collect(),
        };
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let written = serde_json::to_vec(&cache)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!("cannot write the parse cache {}: {e}", path.display());
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
        let key = self.cache_key(&pools);
        self.load_cache(store, &key).await?;
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
                match (&self.python, &self.zygotes) {
                    (Some(py), Some(cfg)) => parse_python_in_zygote(py, cfg, &path, &opts).await,
                    (Some(py), None) => parse_python(py, &path, &opts).await,
                    (None, _) => Err(format!(
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
        self.save_cache(&key);
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
        return spec_dags(&stdout, &fileloc, opts);
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

/// The DAGs of a spec document printed by `pave.parse` (or by a zygote for it).
fn spec_dags(
    spec: &str,
    fileloc: &str,
    opts: &pave_spec::ValidateOptions,
) -> Result<Vec<Dag>, String> {
    let mut dags = pave_spec::parse_json(spec, fileloc, opts).map_err(|e| e.to_string())?;
    for dag in &mut dags {
        dag.fileloc = Some(fileloc.to_owned());
    }
    Ok(dags)
}

/// Parses a Python DAG file in the pre-forked interpreter its tasks will
/// use (docs/python-runtime.md), started now with exactly the environment
/// the scheduler gives those tasks: the zygote imports the file once,
/// prints its spec as `pave.parse` would and then serves the run's first
/// attempt at once, so `pave dags test` starts one interpreter where it
/// started two, one after the other. Whenever the zygote gives no spec
/// (pre-forking is off, the import or the spec failed), this is
/// [`parse_python`], whose report names the error. The parser's time limit
/// applies to the zygote's start and its memory limit to the import (the
/// zygote lifts it afterwards: the tasks it forks must not inherit it).
pub async fn parse_python_in_zygote(
    py: &PythonParser,
    cfg: &pave_scheduler::SchedulerConfig,
    path: &Path,
    opts: &pave_spec::ValidateOptions,
) -> Result<Vec<Dag>, String> {
    let fileloc = path.display().to_string();
    if let Some(req) = prestart_request(py, cfg, &fileloc) {
        let started = tokio::task::spawn_blocking(move || pave_executor::prestart(&req)).await;
        match started {
            Ok(
                pave_executor::Prestarted::Started { spec: Some(spec) }
                | pave_executor::Prestarted::Unusable {
                    spec: Some(spec), ..
                },
            ) => return spec_dags(&spec, &fileloc, opts),
            Ok(pave_executor::Prestarted::TimedOut { .. }) => {
                return Err(format!(
                    "{fileloc}: parsing took longer than {}s and was stopped; \
                     a DAG file must not do heavy work at import time",
                    py.timeout.as_secs()
                ));
            }
            Ok(other) => {
                tracing::debug!("{fileloc}: parsed by pave.parse instead of a zygote: {other:?}")
            }
            Err(e) => tracing::debug!("{fileloc}: starting its zygote failed: {e}"),
        }
    }
    parse_python(py, path, opts).await
}

/// What a supervisor of a Python attempt of `fileloc` (with no `env` of
/// its own) will see: this process's environment (the local executor's
/// supervisors inherit it) under the scheduler's, and this process's
/// working directory. `None` when Python tasks do not pre-fork.
fn prestart_request(
    py: &PythonParser,
    cfg: &pave_scheduler::SchedulerConfig,
    fileloc: &str,
) -> Option<pave_executor::Prestart> {
    let tasks = cfg.python.as_ref().filter(|t| t.zygote_dir.is_some())?;
    let mut env = BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        env.insert(k.into_string().ok()?, v.into_string().ok()?);
    }
    env.extend(pave_scheduler::attempt::python_env(
        cfg,
        tasks,
        fileloc,
        BTreeMap::new(),
    ));
    Some(pave_executor::Prestart {
        argv: pave_scheduler::attempt::python_argv(tasks),
        cwd: None,
        env,
        parse: true,
        timeout: py.timeout,
        import_memory_kib: Some(py.memory_kib),
    })
}
