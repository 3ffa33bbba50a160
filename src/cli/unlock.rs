//! `shoal unlock LOCK_ID`: removes the apply lock with that ID (Terraform's `force-unlock`).

use super::common::{load_cluster, RepoDriver};
use anyhow::{bail, Result};
use shoal::drivers::lock::local_time;
use shoal::model::DriverKind;
use shoal::observe::OpenDriver;
use std::path::Path;

/// Removes the lock; exit 1 when no lock has that ID. Needs machines.yml only.
pub async fn run(repo: &Path, driver_override: Option<DriverKind>, lock_id: &str) -> Result<u8> {
    let desired = load_cluster(repo, driver_override)?;
    let driver = RepoDriver(repo).open(&desired).await?;
    match driver.force_unlock(lock_id).await? {
        Some(lock) => {
            println!(
                "Removed lock {lock_id} of cluster {}, held by {} (pid {} on {}) since {}.",
                desired.cluster,
                lock.holder.program,
                lock.holder.pid,
                lock.holder.host,
                local_time(lock.since)
            );
            Ok(0)
        }
        None => bail!(
            "cluster {} has no lock with ID {lock_id}: it was released or taken over already (`shoal apply` says who holds a lock, and its ID)",
            desired.cluster
        ),
    }
}
