//! `shoal destroy`: destroy every machine of the cluster, after confirmation.

use super::common::{confirm, load_cluster, RepoDriver};
use anyhow::Result;
use shoal::model::DriverKind;
use shoal::observe::OpenDriver;
use std::path::Path;

/// Lists the machines, asks, destroys; needs machines.yml only.
pub async fn run(repo: &Path, driver_override: Option<DriverKind>, yes: bool) -> Result<u8> {
    let desired = load_cluster(repo, driver_override)?;
    let driver = RepoDriver(repo).open(&desired).await?;
    let machines = driver.list().await?;
    if machines.is_empty() {
        println!(
            "Cluster {} has no machines: nothing to destroy.",
            desired.cluster
        );
        return Ok(0);
    }
    let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    println!(
        "This destroys cluster {}: {} machine(s) ({}) and everything on them.",
        desired.cluster,
        names.len(),
        names.join(", ")
    );
    confirm(yes, "destroy")?;
    driver.destroy_all().await?;
    println!("Destroyed cluster {}.", desired.cluster);
    Ok(0)
}
