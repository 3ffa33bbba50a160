//! `shoal doctor`: what the driver and the engine can do here.

use super::common::load;
use anyhow::Result;
use shoal::drivers::doctor;
use shoal::model::DriverKind;
use std::path::Path;

/// Runs the driver's checks; exit 1 when one fails.
pub async fn run(repo: &Path, driver_override: Option<DriverKind>, json: bool) -> Result<u8> {
    let desired = load(repo, driver_override)?;
    let Some(report) = doctor(&desired, repo).await else {
        println!(
            "Driver {} has no checks to run here.",
            desired.driver.as_str()
        );
        return Ok(0);
    };
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
