//! The plan: an ordered list of steps with dependencies, as plain data (DESIGN §3).

use crate::model::spec::{NetworkSpec, ObjectSpec, ServiceSpec};
use crate::model::{Availability, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The plan format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What a step does. The serialized names are part of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Create a machine through the driver.
    CreateMachine,
    /// Destroy a machine through the driver.
    DestroyMachine,
    /// Initialize the swarm on a manager.
    InitSwarm,
    /// Join a machine to the swarm.
    JoinSwarm,
    /// Make a worker a manager.
    PromoteNode,
    /// Make a manager a worker.
    DemoteNode,
    /// Set a node's availability to drain.
    DrainNode,
    /// Set a node's labels or availability.
    UpdateNode,
    /// Remove a node from the swarm.
    RemoveNode,
    /// Create an overlay network.
    CreateNetwork,
    /// Remove a network.
    RemoveNetwork,
    /// Create a secret.
    CreateSecret,
    /// Remove a secret.
    RemoveSecret,
    /// Create a config.
    CreateConfig,
    /// Remove a config.
    RemoveConfig,
    /// Create a service.
    CreateService,
    /// Update a service's spec.
    UpdateService,
    /// Change only a service's replica count.
    ScaleService,
    /// Remove a service.
    RemoveService,
    /// Force-update a service so its tasks spread onto new nodes.
    RebalanceService,
}

/// How a step counts in the plan's summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Something is created.
    Add,
    /// Something existing changes.
    Change,
    /// Something is removed.
    Destroy,
}

impl Action {
    /// The action's contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CreateMachine => "create_machine",
            Action::DestroyMachine => "destroy_machine",
            Action::InitSwarm => "init_swarm",
            Action::JoinSwarm => "join_swarm",
            Action::PromoteNode => "promote_node",
            Action::DemoteNode => "demote_node",
            Action::DrainNode => "drain_node",
            Action::UpdateNode => "update_node",
            Action::RemoveNode => "remove_node",
            Action::CreateNetwork => "create_network",
            Action::RemoveNetwork => "remove_network",
            Action::CreateSecret => "create_secret",
            Action::RemoveSecret => "remove_secret",
            Action::CreateConfig => "create_config",
            Action::RemoveConfig => "remove_config",
            Action::CreateService => "create_service",
            Action::UpdateService => "update_service",
            Action::ScaleService => "scale_service",
            Action::RemoveService => "remove_service",
            Action::RebalanceService => "rebalance_service",
        }
    }

    /// Whether the step adds, changes or destroys something.
    pub fn effect(self) -> Effect {
        use Action::*;
        match self {
            CreateMachine | InitSwarm | JoinSwarm | CreateNetwork | CreateSecret | CreateConfig
            | CreateService => Effect::Add,
            DestroyMachine | RemoveNode | RemoveNetwork | RemoveSecret | RemoveConfig
            | RemoveService => Effect::Destroy,
            PromoteNode | DemoteNode | DrainNode | UpdateNode | UpdateService | ScaleService
            | RebalanceService => Effect::Change,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One changed field of a service, as a path and the two values rendered as YAML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Dotted path in the spec (`TaskTemplate.ContainerSpec.Image`).
    pub path: String,
    /// The observed value, `null` when absent.
    pub before: serde_json::Value,
    /// The desired value, `null` when absent.
    pub after: serde_json::Value,
}

/// What apply needs to carry a step out. Which fields are set depends on the action.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// Role of the machine or node (create_machine, join_swarm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Node labels to set (create_machine, join_swarm, update_node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Availability to set (update_node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// Manager machine to initialize the swarm on (init_swarm) or to join through (join_swarm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Force-update counter to set (rebalance_service: the observed one plus one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_update: Option<u64>,
    /// Node ID (node steps on nodes that exist at plan time; remove_node of a vanished machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Object ID (service, network, secret and config removals and updates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// join_swarm: the machine must leave a swarm it is still in first;
    /// remove_node: remove with force (its machine is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    /// Service spec to create, or to update to (with the observed digest-pinned image and
    /// force-update counter kept, so nothing restarts that need not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Box<ServiceSpec>>,
    /// Replica count (scale_service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    /// Field-level changes (update_service).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// Network to create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// Secret or config to create (its data is never serialized; apply reads it from the repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectSpec>,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Position in the plan, from 1.
    pub id: u32,
    /// What the step does.
    pub action: Action,
    /// Machine name, `swarm`, or the full swarm name of the object.
    pub target: String,
    /// Steps that must be done first.
    pub depends_on: Vec<u32>,
    /// Why, for people; apply never branches on it.
    pub reason: String,
    /// What apply needs.
    pub detail: Detail,
}

/// Counts of the plan's steps by effect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Steps that create.
    pub add: usize,
    /// Steps that change.
    pub change: usize,
    /// Steps that destroy.
    pub destroy: usize,
}

/// A plan, as `plan --json` prints it and `plan --out` saves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Commit the desired state came from; null for a modified working tree.
    pub revision: Option<String>,
    /// Fingerprint of the observed state the plan was made against.
    pub fingerprint: String,
    /// Counts by effect.
    pub summary: Summary,
    /// Warnings for people.
    pub warnings: Vec<String>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}
