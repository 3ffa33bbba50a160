//! `shoal env MACHINE`: the DOCKER_HOST export that reaches a machine's engine.

use super::common::{load_cluster, RepoDriver};
use anyhow::Result;
use shoal::model::DriverKind;
use shoal::observe::OpenDriver;
use std::path::Path;

/// Prints the export, like `docker-machine env`; needs machines.yml only.
pub async fn run(repo: &Path, driver_override: Option<DriverKind>, machine: &str) -> Result<u8> {
    let desired = load_cluster(repo, driver_override)?;
    let driver = RepoDriver(repo).open(&desired).await?;
    let endpoint = driver.endpoint(machine).await?;
    println!("export DOCKER_HOST={endpoint}");
    println!("# Run this command to configure your shell:");
    println!("# eval $(shoal env --repo {} {machine})", repo.display());
    Ok(0)
}
