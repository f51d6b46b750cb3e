//! `pave pools ...`: the slots that limit how many task instances of a pool
//! run at once (Airflow's pools). `default_pool` always exists.

use crate::home::Home;
use crate::output;
use anyhow::{Result, bail};
use clap::Subcommand;
use pave_store::{PoolRecord, StoreError};
use std::process::ExitCode;

/// The longest pool name pave accepts (as the REST API).
const MAX_NAME_LEN: usize = 256;

#[derive(Subcommand, Debug)]
pub enum PoolsCommand {
    /// List pools with their slots and how many are taken now.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create a pool, or change its slots and description.
    Set {
        name: String,
        /// How many slots task instances of this pool may hold at once.
        slots: u32,
        #[arg(long)]
        description: Option<String>,
        /// Deferred task instances also take slots of this pool.
        #[arg(long)]
        include_deferred: bool,
    },
    /// Delete a pool (not `default_pool`).
    Delete { name: String },
}

/// Why `name` cannot name a pool, if it cannot.
fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.trim() != name {
        bail!(
            "pool name {name:?} is empty or starts or ends with spaces: give a name such as `gpu_pool`"
        );
    }
    if name.len() > MAX_NAME_LEN {
        bail!(
            "pool name is {} bytes long: the most is {MAX_NAME_LEN}",
            name.len()
        );
    }
    if name.chars().any(char::is_control) {
        bail!("pool name {name:?} contains control characters");
    }
    Ok(())
}

pub async fn run(home: Home, cmd: PoolsCommand) -> Result<ExitCode> {
    let store = home.open_store().await?;
    match cmd {
        PoolsCommand::List { json } => {
            let pools = store.list_pools().await?;
            let occupancy = store.occupancy().await?;
            let taken = |p: &PoolRecord| -> u64 {
                occupancy
                    .pools
                    .get(&p.name)
                    .map_or(0, |u| u.occupied(p.include_deferred))
            };
            if json {
                let rows: Vec<serde_json::Value> = pools
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "name": p.name,
                            "slots": p.slots,
                            "occupied_slots": taken(p),
                            "description": p.description,
                            "include_deferred": p.include_deferred,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let rows: Vec<Vec<String>> = pools
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.slots.to_string(),
                            taken(p).to_string(),
                            p.description.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(&["pool", "slots", "occupied", "description"], &rows);
            }
        }
        PoolsCommand::Set {
            name,
            slots,
            description,
            include_deferred,
        } => {
            check_name(&name)?;
            let description = match description {
                Some(d) => Some(d),
                None => match store.get_pool(&name).await {
                    Ok(p) => p.description,
                    Err(StoreError::NotFound { .. }) => None,
                    Err(e) => return Err(e.into()),
                },
            };
            store
                .put_pool(PoolRecord {
                    name: name.clone(),
                    slots,
                    description,
                    include_deferred,
                })
                .await?;
            println!("pool {name}: {slots} slots");
        }
        PoolsCommand::Delete { name } => match store.delete_pool(&name).await {
            Ok(()) => println!("deleted pool {name}"),
            Err(StoreError::NotFound { .. }) => {
                bail!("no pool named {name:?}: `pave pools list` shows the pools")
            }
            Err(StoreError::Conflict { what }) => bail!("cannot delete pool {name}: {what}"),
            Err(e) => return Err(e.into()),
        },
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn pool_names_are_checked_with_a_reason() {
        assert!(check_name("gpu_pool").is_ok());
        for bad in ["", " x", "x ", "a\nb"] {
            let e = check_name(bad).expect_err(bad).to_string();
            assert!(e.contains("pool name"), "{e}");
        }
        assert!(check_name(&"p".repeat(300)).is_err());
    }
}
