//! `shoal doctor`: what the driver and the engine can do here.

use super::common::load;
use anyhow::Result;
use shoal::drivers::dind::doctor;
use shoal::model::DriverKind;
use std::path::Path;

/// Runs the dind driver's checks; exit 1 when one fails.
pub async fn run(repo: &Path, driver_override: Option<DriverKind>, json: bool) -> Result<u8> {
    let desired = load(repo, driver_override)?;
    if desired.driver != DriverKind::Dind {
        println!(
            "Driver {} needs no checks: it runs in memory, without Docker.",
            desired.driver.as_str()
        );
        return Ok(0);
    }
    let report = doctor(&desired.options_in_use(), repo).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for check in &report.checks {
            println!(
                "{:<8} {:<28} {}",
                format!("{:?}", check.status).to_lowercase(),
                check.name,
                check.detail
            );
        }
        println!("\n{}", report.verdict);
    }
    Ok(if report.ok() { 0 } else { 1 })
}
