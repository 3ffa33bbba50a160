//! `shoal validate`: check machines.yml and the compose files.

use super::common::load;
use anyhow::Result;
use shoal::model::DriverKind;
use std::path::Path;

/// Prints the warnings and a summary; invalid files are an error (exit 1).
pub fn run(repo: &Path, driver_override: Option<DriverKind>) -> Result<u8> {
    let desired = load(repo, driver_override)?;
    for warning in &desired.warnings {
        eprintln!("{warning}");
    }
    let services: usize = desired.stacks.values().map(|s| s.services.len()).sum();
    println!(
        "Valid: cluster {}, {} machine(s), {} stack(s), {} service(s).",
        desired.cluster,
        desired.machines.len(),
        desired.stacks.len(),
        services
    );
    Ok(0)
}
