//! `$PAVE_HOME`: where the database, logs and DAGs of an installation live.

use anyhow::{Context, Result};
use pave_store::{ApiStore, SqliteStore, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The example DAGs bundled into the binary, copied into a new home's DAGs folder.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "ml_pipeline.yaml",
        include_str!("../../../examples/ml_pipeline.yaml"),
    ),
    (
        "ml_pipeline.py",
        include_str!("../../../examples/ml_pipeline.py"),
    ),
];

#[derive(Clone, Debug)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    /// `--home`, else `$PAVE_HOME` (clap reads both), else `~/.pave`.
    pub fn resolve(flag: Option<PathBuf>) -> Result<Home> {
        let root = match flag {
            Some(p) => p,
            None => {
                let home = std::env::var_os("HOME").context(
                    "cannot find a home folder for pave: set PAVE_HOME (or HOME), or pass --home",
                )?;
                PathBuf::from(home).join(".pave")
            }
        };
        Ok(Home { root })
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("pave.db")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn default_dags_dir(&self) -> PathBuf {
        self.root.join("dags")
    }

    /// Creates the home folder if needed and opens (and migrates) its database.
    pub async fn open_store(&self) -> Result<Arc<dyn Store>> {
        let store: Arc<dyn Store> = self.open_api_store().await?;
        Ok(store)
    }

    /// The same database with the REST API's queries and accounts.
    pub async fn open_api_store(&self) -> Result<Arc<dyn ApiStore>> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create PAVE_HOME {}", self.root.display()))?;
        let store = SqliteStore::open(self.db_path())
            .await
            .with_context(|| format!("cannot open the database {}", self.db_path().display()))?;
        store
            .migrate()
            .await
            .context("cannot migrate the database")?;
        Ok(Arc::new(store))
    }

    /// The DAGs folder to use: the flag, else `$PAVE_HOME/dags`, which is
    /// created with the bundled examples the first time.
    pub fn dags_dir(&self, flag: Option<PathBuf>) -> Result<PathBuf> {
        if let Some(dir) = flag {
            if !dir.is_dir() {
                anyhow::bail!(
                    "the DAGs folder {} does not exist; create it or pass another --dags",
                    dir.display()
                );
            }
            return Ok(dir);
        }
        let dir = self.default_dags_dir();
        if !dir.exists() {
            seed_examples(&dir)?;
            eprintln!(
                "pave: created {} with the example DAGs ({})",
                dir.display(),
                EXAMPLES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(dir)
    }
}

fn seed_examples(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in EXAMPLES {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    Ok(())
}
