//! `shoal env MACHINE`: the exports that reach a machine's engine, like `docker-machine env`.

use super::common::{load_cluster, RepoDriver};
use anyhow::Result;
use shoal::model::DriverKind;
use shoal::observe::OpenDriver;
use shoal::render::{render_env, render_unset, shell_quote};
use std::path::Path;

/// Prints the exports (or, with `unset`, the unsets); needs machines.yml only.
pub async fn run(
    repo: &Path,
    driver_override: Option<DriverKind>,
    machine: &str,
    unset: bool,
) -> Result<u8> {
    if unset {
        // What `shoal env MACHINE` left running (an ssh forward) ends too, when the cluster
        // can be read; the unsets are printed either way.
        if !machine.is_empty() {
            if let Ok(desired) = load_cluster(repo, driver_override) {
                let driver = RepoDriver(repo).open(&desired).await?;
                driver.unset_env(machine).await?;
            }
        }
        print!("{}", render_unset("shoal env --unset"));
        return Ok(0);
    }
    let desired = load_cluster(repo, driver_override)?;
    let driver = RepoDriver(repo).open(&desired).await?;
    let exports = driver.env(machine).await?;
    let command = format!(
        "shoal env --repo {} {}",
        shell_quote(&repo.display().to_string()),
        shell_quote(machine)
    );
    print!("{}", render_env(&exports, &command));
    Ok(0)
}
