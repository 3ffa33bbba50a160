//! `shoal destroy`: destroy every machine of the cluster, after confirmation, under the apply
//! lock (so it never interleaves with a running apply or watcher pass).

use super::common::{confirm, load_cluster, Console, RepoDriver};
use anyhow::Result;
use shoal::apply::ApplyOptions;
use shoal::clock::unix_now;
use shoal::drivers::lock::LockHolder;
use shoal::model::DriverKind;
use shoal::observe::OpenDriver;
use std::path::Path;

/// Lists the machines, asks, destroys; needs machines.yml only.
pub async fn run(repo: &Path, driver_override: Option<DriverKind>, yes: bool) -> Result<u8> {
    let desired = load_cluster(repo, driver_override)?;
    let driver = RepoDriver(repo).open(&desired).await?;
    let holder = LockHolder::this_process("shoal destroy");
    driver
        .lock(
            &holder,
            unix_now(),
            ApplyOptions::default().lock_ttl_seconds,
        )
        .await?;
    let outcome = destroy(&desired.cluster, driver.as_ref(), yes).await;
    if let Err(e) = driver.unlock(&holder).await {
        eprintln!("warning: could not release the apply lock: {e}");
    }
    outcome
}

/// Lists the machines, asks, destroys them all.
async fn destroy(cluster: &str, driver: &dyn shoal::drivers::Driver, yes: bool) -> Result<u8> {
    let machines = driver.list().await?;
    if machines.is_empty() {
        // What a failed first apply may have left (the dind network, its registry) goes too,
        // after the same question: the registry's images are on it.
        let leftovers = driver.leftovers().await?;
        if leftovers.is_empty() {
            println!("Cluster {cluster} has no machines: nothing to destroy.");
            return Ok(0);
        }
        println!(
            "Cluster {cluster} has no machines; this removes what is left of it: {}.",
            leftovers.join(", ")
        );
        confirm(yes, "destroy", Console::Stdout)?;
        driver.destroy_all().await?;
        println!("Removed what was left of cluster {cluster}.");
        return Ok(0);
    }
    let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    println!(
        "This destroys cluster {cluster}: {} machine(s) ({}) and everything on them.",
        names.len(),
        names.join(", ")
    );
    confirm(yes, "destroy", Console::Stdout)?;
    driver.destroy_all().await?;
    println!("Destroyed cluster {cluster}.");
    Ok(0)
}
