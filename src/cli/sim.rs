//! `shoal sim ...`: faults and drift injected into the sim driver's cluster.

use super::common::load_cluster;
use anyhow::Result;
use clap::Subcommand;
use shoal::clock::unix_now;
use shoal::drivers::sim::SimDriver;
use shoal::model::DriverKind;
use std::path::Path;

/// What to do to the sim cluster.
#[derive(Subcommand, Debug)]
pub enum SimAction {
    /// The machine vanishes; its node goes down.
    KillMachine {
        /// Machine name.
        name: String,
    },
    /// The machine stops; its node goes down.
    DownNode {
        /// Machine name.
        name: String,
    },
    /// The machine and its node come back.
    UpNode {
        /// Machine name.
        name: String,
    },
    /// Change a service's replicas by hand, as `docker service scale` would.
    SetReplicas {
        /// Full service name (`dataapp_dataservice`).
        service: String,
        /// Replica count.
        replicas: u64,
    },
}

/// Changes the sim cluster kept in the repository folder; needs machines.yml only.
pub fn run(repo: &Path, action: SimAction) -> Result<u8> {
    let desired = load_cluster(repo, Some(DriverKind::Sim))?;
    let sim = SimDriver::open(repo, &desired.cluster)?;
    match action {
        SimAction::KillMachine { name } => sim.kill_machine(&name)?,
        SimAction::DownNode { name } => sim.down_node(&name, unix_now())?,
        SimAction::UpNode { name } => sim.up_node(&name)?,
        SimAction::SetReplicas { service, replicas } => sim.set_replicas(&service, replicas)?,
    }
    println!("Done.");
    Ok(0)
}
