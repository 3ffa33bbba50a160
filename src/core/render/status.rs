//! `shoal status`: the machines and services of the cluster, as a table or as JSON.

use super::Style;
use crate::health::{self, Health, HealthState};
use crate::model::{Desired, NodeState, Observed, Role, LABEL_STACK_NAMESPACE};
use crate::plan::LABEL_STACKS;
use serde::Serialize;
use std::fmt::Write;

/// One machine's line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MachineStatus {
    /// Machine name.
    pub name: String,
    /// Its node's role, else the role machines.yml gives it.
    pub role: Role,
    /// `running`, `stopped` or `missing`.
    pub machine_state: String,
    /// `ready`, `down`, `unknown`, `disconnected`, or `none` when not in the swarm.
    pub node_state: String,
    /// `active`, `pause`, `drain`, or `none`.
    pub availability: String,
    /// Whether its node leads the managers.
    pub leader: bool,
    /// Its swarm node's ID, when it is a member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The address its driver reaches it at (a VM's IP), when the driver gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// One service's line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// Full service name.
    pub name: String,
    /// Its stack.
    pub stack: String,
    /// Image as stored.
    pub image: String,
    /// `replicated`, `global`, ...
    pub mode: String,
    /// Tasks wanted.
    pub replicas: u64,
    /// Tasks running.
    pub running: u64,
    /// How it is doing, and why (DESIGN §6).
    pub health: Health,
    /// When it is not healthy: its last task errors, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// How many task errors `status` shows for a service that is not healthy.
const TASK_ERRORS: usize = 3;

/// `status --json` (DESIGN §2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Cluster name.
    pub cluster: String,
    /// Driver name.
    pub driver: String,
    /// Revision applied last.
    pub revision: Option<String>,
    /// Machines, desired ones and those that exist.
    pub machines: Vec<MachineStatus>,
    /// Services of stacks.
    pub services: Vec<ServiceStatus>,
    /// Stacks shoal still remembers as managed that machines.yml no longer names (kept while
    /// policy.prune is off; prune: true removes their services).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_stacks: Vec<String>,
    /// Who paused the cluster, since when and why (`shoal pause`); absent when not paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<crate::model::pause::Pause>,
    /// The last revision recorded as healthy (`io.shoal.revision.healthy`), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_revision: Option<String>,
    /// The commit rolled back from and the revision held at (`policy.on_failure: rollback`);
    /// absent when no commit is held back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<crate::model::rollback::Held>,
}

impl Status {
    /// Builds the status from what the files want and what is there.
    pub fn new(desired: &Desired, observed: &Observed) -> Status {
        let mut names: Vec<&String> = desired
            .machines
            .keys()
            .chain(observed.machines.keys())
            .collect();
        names.sort();
        names.dedup();
        let machines = names
            .into_iter()
            .map(|name| {
                let machine = observed.machines.get(name);
                let node = observed.node_of(name);
                MachineStatus {
                    name: name.clone(),
                    role: node
                        .map(|n| n.role)
                        .or_else(|| desired.machines.get(name).map(|m| m.role))
                        .or_else(|| machine.and_then(|m| m.created_role))
                        .unwrap_or(Role::Worker),
                    machine_state: machine.map_or("gone", |m| m.state.as_str()).to_string(),
                    node_state: match node.map(|n| n.state) {
                        Some(NodeState::Ready) => "ready",
                        Some(NodeState::Down) => "down",
                        Some(NodeState::Unknown) => "unknown",
                        Some(NodeState::Disconnected) => "disconnected",
                        None => "none",
                    }
                    .to_string(),
                    availability: node
                        .map(|n| n.availability.as_str())
                        .unwrap_or("none")
                        .to_string(),
                    leader: node.is_some_and(|n| n.leader),
                    node_id: node.map(|n| n.id.clone()),
                    address: machine.and_then(|m| m.address.clone()),
                }
            })
            .collect();
        let mut services: Vec<ServiceStatus> = observed
            .services
            .iter()
            .map(|(name, s)| {
                let health = health::health_of(observed, name);
                let errors = if health.is_healthy() {
                    Vec::new()
                } else {
                    health::task_errors(observed, name, TASK_ERRORS)
                };
                ServiceStatus {
                    name: name.clone(),
                    stack: s
                        .spec
                        .labels
                        .get(LABEL_STACK_NAMESPACE)
                        .cloned()
                        .unwrap_or_default(),
                    image: s.spec.task_template.container_spec.image.clone(),
                    mode: s.spec.mode_name().to_string(),
                    replicas: s.desired,
                    running: s.running,
                    health,
                    errors,
                }
            })
            .collect();
        for (stack, spec) in desired
            .stacks
            .values()
            .flat_map(|stack| stack.services.values().map(move |s| (stack, s)))
            .filter(|(_, spec)| !observed.services.contains_key(&spec.name))
        {
            services.push(ServiceStatus {
                name: spec.name.clone(),
                stack: stack.name.clone(),
                image: spec.task_template.container_spec.image.clone(),
                mode: spec.mode_name().to_string(),
                replicas: spec.replicas().unwrap_or(0),
                running: 0,
                health: Health::missing(),
                errors: Vec::new(),
            });
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        let dropped_stacks = observed
            .swarm
            .as_ref()
            .and_then(|swarm| swarm.labels.get(LABEL_STACKS))
            .into_iter()
            .flat_map(|list| list.split(','))
            .filter(|stack| !stack.is_empty() && !desired.stacks.contains_key(*stack))
            .map(str::to_string)
            .collect();
        Status {
            cluster: desired.cluster.clone(),
            driver: desired.driver.as_str().to_string(),
            revision: observed.revision().map(str::to_string),
            machines,
            services,
            dropped_stacks,
            paused: observed.pause(),
            healthy_revision: observed.healthy_revision().map(str::to_string),
            held: observed.held(),
        }
    }
}

/// Renders the status as two tables.
pub fn render_status(status: &Status, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Cluster {} (driver {}), revision {}\n",
        style.bold(&status.cluster),
        status.driver,
        status.revision.as_deref().unwrap_or("none applied")
    );
    if let Some(held) = &status.held {
        let _ = writeln!(
            out,
            "{} (rolled back; the failed commit is applied again only when the branch moves)\n",
            style.red(&format!("Cluster {}", held.line()))
        );
    }
    // Drivers that give addresses (the qemu VMs') get an ADDRESS column.
    let addressed = status.machines.iter().any(|m| m.address.is_some());
    let address_column = |address: Option<&str>| {
        if addressed {
            format!(" {:<15}", address.unwrap_or("-"))
        } else {
            String::new()
        }
    };
    let _ = writeln!(
        out,
        "{:<24} {:<8} {:<8} {:<8} {:<12}{} LEADER",
        "MACHINE",
        "ROLE",
        "MACHINE",
        "NODE",
        "AVAILABILITY",
        address_column(Some("ADDRESS"))
    );
    for m in &status.machines {
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:<8} {:<8} {:<12}{} {}",
            m.name,
            m.role,
            m.machine_state,
            m.node_state,
            m.availability,
            address_column(m.address.as_deref()),
            if m.leader { "*" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        "\n{:<32} {:<12} {:<10} {:<9} {:<12} IMAGE",
        "SERVICE", "STACK", "MODE", "REPLICAS", "HEALTH"
    );
    for s in &status.services {
        let replicas = format!("{}/{}", s.running, s.replicas);
        // A completed job runs no task: 0/1 is all it should be.
        let painted = if s.running < s.replicas && !s.health.is_healthy() {
            style.yellow(&replicas)
        } else {
            replicas.clone()
        };
        let pad = 9usize.saturating_sub(replicas.len());
        let state = s.health.state.as_str();
        let health = match s.health.state {
            HealthState::Healthy | HealthState::Completed => style.green(state),
            HealthState::Progressing => style.yellow(state),
            HealthState::Degraded | HealthState::Missing | HealthState::Failed => style.red(state),
        };
        let _ = writeln!(
            out,
            "{:<32} {:<12} {:<10} {painted}{} {health}{} {}",
            s.name,
            s.stack,
            s.mode,
            " ".repeat(pad),
            " ".repeat(12usize.saturating_sub(state.len())),
            s.image
        );
        if !s.health.reason.is_empty() {
            let _ = writeln!(out, "  {}", s.health.reason);
        }
        for error in s
            .errors
            .iter()
            .filter(|e| !s.health.reason.contains(e.as_str()))
        {
            let _ = writeln!(out, "    {error}");
        }
    }
    if !status.dropped_stacks.is_empty() {
        let _ = writeln!(
            out,
            "\nStacks no longer in machines.yml, kept while policy.prune is off: {}",
            status.dropped_stacks.join(", ")
        );
    }
    out
}
