//! `shoal pause [--reason TEXT]` and `shoal resume`: set and clear the swarm labels that make
//! apply refuse to write and the watcher observe without writing (see
//! [`shoal::model::pause`]). Needs machines.yml only, and a swarm to keep the labels in.

use super::common::{load_cluster, RepoDriver};
use anyhow::{anyhow, bail, Result};
use shoal::drivers::lock::local_time;
use shoal::drivers::swarm_lock::{change_labels, swarm_manager};
use shoal::model::pause::Pause;
use shoal::model::DriverKind;
use shoal::observe::OpenDriver;
use std::path::Path;

/// Pauses the cluster (`reason`), or resumes it (`reason` ignored); exit 0, also when it was
/// already so.
pub async fn run(
    repo: &Path,
    driver_override: Option<DriverKind>,
    pause: bool,
    reason: Option<&str>,
) -> Result<u8> {
    let desired = load_cluster(repo, driver_override)?;
    let driver = RepoDriver(repo).open(&desired).await?;
    let machines: Vec<String> = driver.list().await?.into_iter().map(|m| m.name).collect();
    let Some(manager) = swarm_manager(driver.as_ref(), &machines).await else {
        bail!(
            "cluster {} has no manager answering, so there is no swarm to keep the pause in: run `shoal status` to see its machines",
            desired.cluster
        );
    };
    let cluster = &desired.cluster;
    if pause {
        let now = shoal::clock::unix_now();
        let wanted = Pause {
            by: who(),
            since: now,
            reason: reason.unwrap_or_default().to_string(),
        };
        let mut already = None;
        change_labels(manager.as_ref(), |labels| {
            if let Some(existing) = Pause::from_labels(labels) {
                already = Some(existing);
                return None;
            }
            let mut next = labels.clone();
            wanted.write_into(&mut next);
            Some(next)
        })
        .await
        .map_err(|e| anyhow!("cannot pause cluster {cluster}: {e}"))?;
        match already {
            Some(existing) => println!(
                "Cluster {cluster} is already {}; nothing changed.",
                existing.line(&local_time(existing.since))
            ),
            None => println!(
                "Paused cluster {cluster}: apply refuses to write (unless --ignore-pause) and the watcher only observes and plans, until `shoal resume`."
            ),
        }
    } else {
        let mut was = None;
        change_labels(manager.as_ref(), |labels| {
            was = Pause::from_labels(labels);
            let mut next = labels.clone();
            Pause::clear(&mut next).then_some(next)
        })
        .await
        .map_err(|e| anyhow!("cannot resume cluster {cluster}: {e}"))?;
        match was {
            Some(pause) => println!(
                "Resumed cluster {cluster}, {}: apply and the watcher write again.",
                pause.line(&local_time(pause.since))
            ),
            None => println!("Cluster {cluster} is not paused; nothing changed."),
        }
    }
    Ok(0)
}

/// `user@host` of this process.
fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "someone".to_string());
    format!("{user}@{}", shoal::drivers::lock::this_host())
}
