//! `shoal env MACHINE`: the exports that reach a machine's engine, like `docker-machine env`.

use super::common::{load_cluster, RepoDriver};
use anyhow::Result;
use shoal::model::DriverKind;
use shoal::observe::OpenDriver;
use std::path::Path;

/// Every variable `shoal env` may set: `--unset` clears them all together, since a
/// `DOCKER_TLS_VERIFY` left without its `DOCKER_HOST` sends the docker CLI to
/// tcp://localhost:2376.
const VARIABLES: [&str; 4] = [
    "DOCKER_TLS_VERIFY",
    "DOCKER_HOST",
    "DOCKER_CERT_PATH",
    "DOCKER_MACHINE_NAME",
];

/// Prints the exports (or, with `unset`, the unsets); needs machines.yml only.
pub async fn run(
    repo: &Path,
    driver_override: Option<DriverKind>,
    machine: &str,
    unset: bool,
) -> Result<u8> {
    if unset {
        println!("unset {}", VARIABLES.join(" "));
        println!("# Run this command to configure your shell:");
        println!("# eval $(shoal env --unset)");
        return Ok(0);
    }
    let desired = load_cluster(repo, driver_override)?;
    let driver = RepoDriver(repo).open(&desired).await?;
    let exports = driver.env(machine).await?;
    let set: Vec<&str> = exports.iter().map(|(name, _)| name.as_str()).collect();
    let stale: Vec<&str> = VARIABLES
        .iter()
        .copied()
        .filter(|v| !set.contains(v) && *v != "DOCKER_MACHINE_NAME")
        .collect();
    if !stale.is_empty() {
        println!("unset {}", stale.join(" "));
    }
    for (name, value) in &exports {
        println!("export {name}={}", quote(value));
    }
    println!("# Run this command to configure your shell:");
    println!("# eval $(shoal env --repo {} {machine})", repo.display());
    Ok(0)
}

/// Quotes a value for a POSIX shell when it needs it.
fn quote(value: &str) -> String {
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/:._-@=,+[]".contains(&b));
    if plain && !value.is_empty() {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}
