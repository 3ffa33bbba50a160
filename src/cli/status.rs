//! `shoal status`: the machines, nodes and services as they are.

use super::common::{load_cluster, style_for_stdout, RepoDriver};
use anyhow::Result;
use shoal::clock::unix_now;
use shoal::model::DriverKind;
use shoal::observe::{observe, OpenDriver};
use shoal::render::{render_status, Status};
use std::path::Path;

/// Observes and prints; needs machines.yml only.
pub async fn run(repo: &Path, driver_override: Option<DriverKind>, json: bool) -> Result<u8> {
    let desired = load_cluster(repo, driver_override)?;
    let driver = RepoDriver(repo).open(&desired).await?;
    let observed = observe(&driver, unix_now()).await?;
    let status = Status::new(&desired, &observed);
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render_status(&status, style_for_stdout()));
    }
    Ok(0)
}
