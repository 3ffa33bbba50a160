//! Why a step is in the plan: a closed enum for people (Terraform's `ActionReason`).
//!
//! Apply never branches on a reason. In JSON a reason is `{"text": ..., "code": ..., FIELDS}`:
//! a stable snake_case code per variant, the fields it carries, and its text for people
//! (`plan::wire`). A version-1 plan file holds text only: it reads back as [`Reason::Saved`].

use crate::model::{Availability, NodeState, Role};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// What happened to a machine that self-heal replaces. In JSON `{"kind": "gone"}`,
/// `{"kind": "down", "node": {"state": "down", "seconds": 400}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Loss {
    /// The machine no longer exists.
    Gone,
    /// The machine's driver-side setup never finished (e.g. a crash while preloading images).
    Incomplete,
    /// The machine's setup record is missing and its node has been down past the grace period.
    Down {
        /// Its node's state and for how long, `None` when it has no node.
        node: Option<DownNode>,
    },
}

/// The node of a machine self-heal replaces for being down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownNode {
    /// Its state.
    pub state: NodeState,
    /// For how long it has been in it, in seconds.
    pub seconds: u64,
}

/// Which part of a self-heal replacement a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealStage {
    /// The lost manager is demoted.
    FreeManagerSeat,
    /// Its node is removed.
    RemoveNode,
    /// The old machine is destroyed.
    DestroyMachine,
    /// The machine is created (again).
    CreateMachine,
}

/// Which part of taking a machine (or a node of no machine) out a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveStage {
    /// Drain before remove: its tasks move first.
    Drain,
    /// Demote before remove: it leaves the managers first.
    Demote,
    /// Its node is removed, or its machine destroyed.
    Remove,
}

/// Why a step is in the plan. In JSON its code is the variant's name in snake_case
/// (`self_heal`, `missing_machines`, ...), beside the fields it carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// Self-heal replaces a lost machine.
    SelfHeal {
        /// The machine.
        machine: String,
        /// What happened to it.
        loss: Loss,
        /// Which part of the replacement.
        stage: HealStage,
    },
    /// A machine exists but is stopped: self-heal starts it (it keeps its disk and swarm state).
    Stopped {
        /// The machine.
        machine: String,
    },
    /// machines.yml wants more machines of a role than exist.
    MissingMachines {
        /// The role.
        role: Role,
        /// How many machines.yml wants.
        wanted: usize,
        /// How many exist.
        existing: usize,
    },
    /// No swarm exists; `machine` initializes it.
    NoSwarm {
        /// The machine.
        machine: String,
    },
    /// A machine is not in the swarm and joins it.
    NotInSwarm {
        /// The machine.
        machine: String,
        /// The role it joins as.
        role: Role,
    },
    /// The machine that initialized the swarm gets its node labels.
    InitLabels {
        /// The machine.
        machine: String,
    },
    /// machines.yml gives a member another role.
    RoleChange {
        /// The machine.
        machine: String,
        /// Its new role.
        role: Role,
    },
    /// A member's node labels or availability differ from machines.yml.
    NodeSpecDrift {
        /// Whether the labels differ.
        labels: bool,
        /// The node's availability, when it is not active.
        inactive: Option<Availability>,
    },
    /// A stack uses a network that does not exist.
    NetworkMissing {
        /// The stack.
        stack: String,
        /// The network.
        network: String,
    },
    /// A secret or config content is not yet in the swarm.
    ObjectMissing {
        /// `secret` or `config`.
        #[serde(deserialize_with = "object_kind")]
        kind: &'static str,
        /// Its file.
        source: String,
    },
    /// A stack defines a service that does not exist.
    ServiceMissing {
        /// The stack.
        stack: String,
        /// The service.
        service: String,
    },
    /// New nodes joined and policy.rebalance is on.
    Rebalance,
    /// Swarm rolled the service's last update back, and its spec matches the files again: a
    /// forced update clears the rolled-back state, which would otherwise keep it degraded.
    RolledBack {
        /// The engine's words for the rollback.
        message: String,
    },
    /// Only the replica count differs.
    Scale {
        /// Observed replicas, if any.
        from: Option<u64>,
        /// Desired replicas.
        to: u64,
    },
    /// A service's mode changes, which swarm cannot update in place: it is removed first.
    ModeChange {
        /// Observed mode.
        #[serde(deserialize_with = "service_mode")]
        from: &'static str,
        /// Desired mode.
        #[serde(deserialize_with = "service_mode")]
        to: &'static str,
    },
    /// The service removed for a mode change is created again.
    Recreated {
        /// Desired mode.
        #[serde(deserialize_with = "service_mode")]
        mode: &'static str,
    },
    /// Fields of a service differ from the compose file.
    SpecDrift {
        /// Dotted paths of the fields.
        fields: Vec<String>,
    },
    /// A stack defines a job that does not exist: creating it runs it.
    JobMissing {
        /// The stack.
        stack: String,
        /// The job.
        service: String,
    },
    /// Fields of a job differ from the compose file: updating it runs it again.
    JobChanged {
        /// Dotted paths of the fields.
        fields: Vec<String>,
    },
    /// A managed stack no longer defines a service.
    ServiceDropped {
        /// The stack.
        stack: String,
        /// The service.
        service: String,
    },
    /// A managed stack no longer uses a network, secret or config.
    ObjectDropped {
        /// The stack.
        stack: String,
        /// `network`, `secret` or `config`.
        #[serde(deserialize_with = "object_kind")]
        kind: &'static str,
        /// The object.
        name: String,
    },
    /// A network, secret or config exists with settings swarm cannot update: it is removed,
    /// then created again with the compose file's.
    ObjectChanged {
        /// `network`, `secret` or `config`.
        #[serde(deserialize_with = "object_kind")]
        kind: &'static str,
        /// The object.
        name: String,
        /// The compose keys that differ (`attachable`, `driver_opts`, `labels`, ...).
        changes: Vec<String>,
        /// Whether the step removes it (else it creates it again).
        removed: bool,
    },
    /// machines.yml names no machines and --allow-destroy-all was given.
    TearDown,
    /// A machine is no longer in machines.yml, or a down node belongs to no machine.
    Leaving {
        /// Machine name or node hostname.
        target: String,
        /// Whether it is a node of no machine.
        orphan: bool,
        /// Which part of the removal.
        stage: LeaveStage,
    },
    /// A reason read back from a version-1 plan file: its text only. Written as that text
    /// (a JSON string), with the step's `replace` flag.
    #[serde(skip)]
    Saved {
        /// The text.
        text: String,
        /// Whether the step is part of a replacement (`-/+`).
        replaces: bool,
    },
}

impl Reason {
    /// Whether the step is half of a replacement, shown as `-/+`.
    pub fn replaces(&self) -> bool {
        match self {
            Reason::SelfHeal { stage, .. } => {
                matches!(stage, HealStage::DestroyMachine | HealStage::CreateMachine)
            }
            Reason::ModeChange { .. } | Reason::Recreated { .. } | Reason::ObjectChanged { .. } => {
                true
            }
            Reason::Saved { replaces, .. } => *replaces,
            _ => false,
        }
    }
}

/// `A differs` or `A, B differ`.
fn differ(fields: &[String]) -> String {
    let verb = if fields.len() == 1 {
        "differs"
    } else {
        "differ"
    };
    format!("{} {verb}", fields.join(", "))
}

/// The kinds of stack objects a reason names.
const OBJECT_KINDS: &[&str] = &["network", "secret", "config"];
/// The service modes a reason names ([`crate::model::spec::ServiceSpec::mode_name`]).
const SERVICE_MODES: &[&str] = &["replicated", "global", "replicated-job", "global-job"];

/// Reads one of `words` as the word itself, so a reason read back holds what the planner made.
fn one_of<'de, D: Deserializer<'de>>(
    deserializer: D,
    words: &'static [&'static str],
) -> Result<&'static str, D::Error> {
    let word = String::deserialize(deserializer)?;
    words
        .iter()
        .find(|w| **w == word)
        .copied()
        .ok_or_else(|| serde::de::Error::unknown_variant(&word, words))
}

fn object_kind<'de, D: Deserializer<'de>>(deserializer: D) -> Result<&'static str, D::Error> {
    one_of(deserializer, OBJECT_KINDS)
}

fn service_mode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<&'static str, D::Error> {
    one_of(deserializer, SERVICE_MODES)
}

/// How people say a node's availability.
fn availability_word(availability: Availability) -> &'static str {
    match availability {
        Availability::Active => "active",
        Availability::Pause => "paused",
        Availability::Drain => "drained",
    }
}

fn state_name(state: NodeState) -> &'static str {
    match state {
        NodeState::Unknown => "unknown",
        NodeState::Down => "down",
        NodeState::Ready => "ready",
        NodeState::Disconnected => "disconnected",
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loss::Gone => f.write_str("is gone"),
            Loss::Incomplete => f.write_str("was never fully set up"),
            Loss::Down {
                node: Some(DownNode { state, seconds }),
            } => write!(f, "is down (node {} for {seconds}s)", state_name(*state)),
            Loss::Down { node: None } => f.write_str("is down (node missing)"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::SelfHeal {
                machine,
                loss,
                stage,
            } => {
                write!(f, "{machine} {loss}: ")?;
                f.write_str(match (stage, loss) {
                    (HealStage::FreeManagerSeat, _) => {
                        "its manager seat is freed before it is replaced"
                    }
                    (HealStage::RemoveNode, _) => {
                        "its node is removed before the machine is replaced"
                    }
                    (HealStage::DestroyMachine, _) => "self-heal replaces the machine",
                    (HealStage::CreateMachine, Loss::Gone) => "self-heal creates it again",
                    (HealStage::CreateMachine, _) => "self-heal creates a new one",
                })
            }
            Reason::Stopped { machine } => write!(
                f,
                "{machine} is stopped: self-heal starts it, with its disk and swarm membership"
            ),
            Reason::MissingMachines {
                role,
                wanted,
                existing,
            } => write!(f, "machines.yml wants {wanted} {role}(s), {existing} exist"),
            Reason::NoSwarm { machine } => write!(f, "no swarm exists: {machine} initializes it"),
            Reason::NotInSwarm { machine, role } => {
                write!(f, "{machine} is not in the swarm: it joins as a {role}")
            }
            Reason::InitLabels { machine } => write!(f, "machines.yml gives {machine} node labels"),
            Reason::RoleChange { machine, role } => {
                write!(f, "machines.yml makes {machine} a {role}")
            }
            Reason::NodeSpecDrift { labels, inactive } => match (labels, inactive) {
                (true, Some(a)) => write!(
                    f,
                    "node labels differ from machines.yml and the node is {}",
                    availability_word(*a)
                ),
                (true, None) => f.write_str("node labels differ from machines.yml"),
                (false, a) => write!(
                    f,
                    "the node is {}; machines.yml keeps it active",
                    availability_word(a.unwrap_or(Availability::Active))
                ),
            },
            Reason::NetworkMissing { stack, network } => write!(
                f,
                "stack {stack} uses network {network}, which does not exist"
            ),
            Reason::ObjectMissing { kind, source } => {
                write!(f, "{kind} {source} has content not yet in the swarm")
            }
            Reason::ServiceMissing { stack, service } => {
                write!(f, "stack {stack} defines {service}, which does not exist")
            }
            Reason::Rebalance => f.write_str(
                "new nodes joined and policy.rebalance is on: tasks are spread onto them",
            ),
            Reason::RolledBack { message } => write!(
                f,
                "swarm rolled its last update back ({message}) and the files match it again: a forced update makes it healthy"
            ),
            Reason::Scale { from, to } => match from {
                Some(from) => write!(f, "replicas: {from} → {to}"),
                None => write!(f, "replicas: - → {to}"),
            },
            Reason::ModeChange { from, to } => write!(
                f,
                "mode changes from {from} to {to}, which swarm cannot update in place"
            ),
            Reason::Recreated { mode } => write!(f, "recreated as a {mode} service"),
            Reason::SpecDrift { fields } => write!(f, "{} from the compose file", differ(fields)),
            Reason::JobMissing { stack, service } => write!(
                f,
                "stack {stack} defines job {service}, which does not exist: it is created and runs"
            ),
            Reason::JobChanged { fields } => write!(
                f,
                "{} from the compose file: the job runs again",
                differ(fields)
            ),
            Reason::ServiceDropped { stack, service } => {
                write!(f, "stack {stack} no longer defines {service}")
            }
            Reason::ObjectDropped { stack, kind, name } => {
                write!(f, "stack {stack} no longer uses {kind} {name}")
            }
            Reason::ObjectChanged {
                kind,
                name,
                changes,
                removed: true,
            } => write!(
                f,
                "{kind} {name}: {} {} from the compose file and swarm cannot update {} in place: it is removed, then created again",
                changes.join(", "),
                if changes.len() == 1 { "differs" } else { "differ" },
                if changes.len() == 1 { "it" } else { "them" },
            ),
            Reason::ObjectChanged {
                kind,
                name,
                changes,
                removed: false,
            } => write!(
                f,
                "{kind} {name} is created again with the compose file's {}",
                changes.join(", ")
            ),
            Reason::TearDown => {
                f.write_str("machines.yml names no machines and --allow-destroy-all was given")
            }
            Reason::Leaving {
                target,
                orphan,
                stage,
            } => {
                if *orphan {
                    write!(
                        f,
                        "node {target} is down and belongs to no machine of this cluster"
                    )?;
                } else {
                    write!(f, "{target} is no longer in machines.yml")?;
                }
                f.write_str(match stage {
                    LeaveStage::Drain => ": its tasks move first",
                    LeaveStage::Demote => ": it leaves the managers first",
                    LeaveStage::Remove => "",
                })
            }
            Reason::Saved { text, .. } => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_read_as_before() {
        let heal = Reason::SelfHeal {
            machine: "vm-m1".into(),
            loss: Loss::Down {
                node: Some(DownNode {
                    state: NodeState::Down,
                    seconds: 400,
                }),
            },
            stage: HealStage::CreateMachine,
        };
        assert_eq!(
            heal.to_string(),
            "vm-m1 is down (node down for 400s): self-heal creates a new one"
        );
        assert!(heal.replaces());
        let drain = Reason::Leaving {
            target: "vm-w2".into(),
            orphan: false,
            stage: LeaveStage::Drain,
        };
        assert_eq!(
            drain.to_string(),
            "vm-w2 is no longer in machines.yml: its tasks move first"
        );
        assert!(!drain.replaces());
        let drift = Reason::SpecDrift {
            fields: vec!["TaskTemplate.ContainerSpec.Image".into()],
        };
        assert_eq!(
            drift.to_string(),
            "TaskTemplate.ContainerSpec.Image differs from the compose file"
        );
    }
}
