//! The plan: an ordered list of steps with dependencies, as plain data (DESIGN §3).

use super::reason::Reason;
use super::warning::Warning;
use super::wire::{ReadPlan, ReadStep, ShownPlan, WrittenStep};
use crate::model::content_key::ContentKey;
use crate::model::spec::{NetworkSpec, ObjectSpec, ServiceSpec};
use crate::model::{Availability, Condition, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The plan format this build writes. It reads this one and every earlier one (1: reasons
/// as text only, no `replace` flag).
pub const FORMAT_VERSION: u32 = 2;

/// What a step does. The serialized names are part of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Create a machine through the driver.
    CreateMachine,
    /// Start a stopped machine through the driver.
    StartMachine,
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
    /// Create a job service, or update its spec, which runs it again; apply awaits it.
    RunJob,
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
            Action::StartMachine => "start_machine",
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
            Action::RunJob => "run_job",
        }
    }

    /// Whether the step adds, changes or destroys something (`run_job` counts as a change;
    /// [`Step::effect`] tells a job's first run as an addition).
    pub fn effect(self) -> Effect {
        use Action::*;
        match self {
            CreateMachine | InitSwarm | JoinSwarm | CreateNetwork | CreateSecret | CreateConfig
            | CreateService => Effect::Add,
            DestroyMachine | RemoveNode | RemoveNetwork | RemoveSecret | RemoveConfig
            | RemoveService => Effect::Destroy,
            StartMachine | PromoteNode | DemoteNode | DrainNode | UpdateNode | UpdateService
            | ScaleService | RebalanceService | RunJob => Effect::Change,
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

/// A step's number in its plan, from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub u32);

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a step does, with exactly the data apply needs for it. In JSON it is the pair
/// `"action": NAME, "detail": {FIELDS}` (an adjacently tagged enum); `detail` is `{}` for the
/// actions that carry nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "detail", rename_all = "snake_case")]
pub enum StepOp {
    /// Create the target machine.
    CreateMachine {
        /// Role it is created for.
        role: Role,
        /// Node labels it will carry.
        #[serde(default)]
        labels: BTreeMap<String, String>,
    },
    /// Start the stopped target machine (it keeps its disk and its swarm membership). Braced,
    /// so its JSON detail is `{}` like every other action's.
    StartMachine {},
    /// Destroy the target machine.
    DestroyMachine {},
    /// Initialize the swarm on `via` (a machine in no swarm: nothing ever leaves one).
    InitSwarm {
        /// Manager machine that initializes it.
        via: String,
    },
    /// Join the target machine to the swarm through `via`.
    JoinSwarm {
        /// Role it joins as.
        role: Role,
        /// Node labels to set once joined (none when empty).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        labels: BTreeMap<String, String>,
        /// Manager machine to join through.
        via: String,
    },
    /// Make a worker a manager.
    PromoteNode {
        /// The node.
        node_id: String,
    },
    /// Make a manager a worker.
    DemoteNode {
        /// The node.
        node_id: String,
    },
    /// Set a node's availability to drain.
    DrainNode {
        /// The node.
        node_id: String,
    },
    /// Set a node's labels and availability.
    UpdateNode {
        /// Labels to set.
        labels: BTreeMap<String, String>,
        /// Availability to set.
        availability: Availability,
        /// The node; `None` for a node made in this plan (its machine's engine names it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node_id: Option<String>,
    },
    /// Remove a node from the swarm.
    RemoveNode {
        /// The node.
        node_id: String,
        /// Remove with force (its machine is gone or down), without asking it to leave.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    /// Create an overlay network.
    CreateNetwork {
        /// The network.
        network: NetworkSpec,
    },
    /// Remove a network.
    RemoveNetwork {
        /// Its ID.
        id: String,
    },
    /// Create a secret (its data is read from the repository at apply time).
    CreateSecret {
        /// The secret.
        object: ObjectSpec,
    },
    /// Remove a secret.
    RemoveSecret {
        /// Its ID.
        id: String,
    },
    /// Create a config.
    CreateConfig {
        /// The config.
        object: ObjectSpec,
    },
    /// Remove a config.
    RemoveConfig {
        /// Its ID.
        id: String,
    },
    /// Create a service.
    CreateService {
        /// The spec to create.
        #[serde(rename = "service")]
        spec: Box<ServiceSpec>,
    },
    /// Update a service's spec.
    UpdateService {
        /// Its ID.
        id: String,
        /// The spec to send (observed digest-pinned image and force-update counter kept).
        #[serde(rename = "service")]
        spec: Box<ServiceSpec>,
        /// Field-level changes, for people.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<FieldChange>,
        /// [`crate::model::ObservedService::spec_digest`] of the spec planned on: apply writes
        /// only while the service still has it (`None` in plans saved before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        observed_spec: Option<String>,
    },
    /// Change only a service's replica count.
    ScaleService {
        /// Its ID.
        id: String,
        /// Replica count.
        replicas: u64,
        /// The digest of the spec planned on, as for `UpdateService`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        observed_spec: Option<String>,
    },
    /// Remove a service.
    RemoveService {
        /// Its ID.
        id: String,
    },
    /// Force-update a service so its tasks spread onto new nodes.
    RebalanceService {
        /// Force-update counter to set (the observed one plus one).
        force_update: u64,
        /// Its ID.
        id: String,
        /// The digest of the spec planned on, as for `UpdateService`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        observed_spec: Option<String>,
    },
    /// Run a job (`replicated-job`, `global-job`): create it, or update its spec (swarm runs a
    /// job again whenever its spec changes), then await its completion.
    RunJob {
        /// Its ID; `None` when the job does not exist yet (it is created).
        id: Option<String>,
        /// The spec to send.
        spec: Box<ServiceSpec>,
        /// Field-level changes of an existing job, for people.
        changes: Vec<FieldChange>,
        /// The digest of the spec planned on, as for `UpdateService`.
        observed_spec: Option<String>,
    },
}

impl StepOp {
    /// The action this operation is.
    pub fn action(&self) -> Action {
        match self {
            StepOp::CreateMachine { .. } => Action::CreateMachine,
            StepOp::StartMachine {} => Action::StartMachine,
            StepOp::DestroyMachine {} => Action::DestroyMachine,
            StepOp::InitSwarm { .. } => Action::InitSwarm,
            StepOp::JoinSwarm { .. } => Action::JoinSwarm,
            StepOp::PromoteNode { .. } => Action::PromoteNode,
            StepOp::DemoteNode { .. } => Action::DemoteNode,
            StepOp::DrainNode { .. } => Action::DrainNode,
            StepOp::UpdateNode { .. } => Action::UpdateNode,
            StepOp::RemoveNode { .. } => Action::RemoveNode,
            StepOp::CreateNetwork { .. } => Action::CreateNetwork,
            StepOp::RemoveNetwork { .. } => Action::RemoveNetwork,
            StepOp::CreateSecret { .. } => Action::CreateSecret,
            StepOp::RemoveSecret { .. } => Action::RemoveSecret,
            StepOp::CreateConfig { .. } => Action::CreateConfig,
            StepOp::RemoveConfig { .. } => Action::RemoveConfig,
            StepOp::CreateService { .. } => Action::CreateService,
            StepOp::UpdateService { .. } => Action::UpdateService,
            StepOp::ScaleService { .. } => Action::ScaleService,
            StepOp::RemoveService { .. } => Action::RemoveService,
            StepOp::RebalanceService { .. } => Action::RebalanceService,
            StepOp::RunJob { .. } => Action::RunJob,
        }
    }

    /// Whether the step writes the swarm's stack objects only (networks, secrets, configs,
    /// services), never a machine, a node or the swarm's membership.
    pub fn writes_stack_objects_only(&self) -> bool {
        matches!(
            self,
            StepOp::CreateNetwork { .. }
                | StepOp::RemoveNetwork { .. }
                | StepOp::CreateSecret { .. }
                | StepOp::RemoveSecret { .. }
                | StepOp::CreateConfig { .. }
                | StepOp::RemoveConfig { .. }
                | StepOp::CreateService { .. }
                | StepOp::UpdateService { .. }
                | StepOp::ScaleService { .. }
                | StepOp::RemoveService { .. }
                | StepOp::RebalanceService { .. }
        )
    }

    /// The node the step acts on, when the plan knows it.
    pub fn node_id(&self) -> Option<&str> {
        match self {
            StepOp::PromoteNode { node_id }
            | StepOp::DemoteNode { node_id }
            | StepOp::DrainNode { node_id }
            | StepOp::RemoveNode { node_id, .. } => Some(node_id),
            StepOp::UpdateNode { node_id, .. } => node_id.as_deref(),
            _ => None,
        }
    }

    /// The service spec the step sends, for creations and updates.
    pub fn service(&self) -> Option<&ServiceSpec> {
        match self {
            StepOp::CreateService { spec }
            | StepOp::UpdateService { spec, .. }
            | StepOp::RunJob { spec, .. } => Some(spec),
            _ => None,
        }
    }

    /// The role a machine is created or joined as.
    pub fn role(&self) -> Option<Role> {
        match self {
            StepOp::CreateMachine { role, .. } | StepOp::JoinSwarm { role, .. } => Some(*role),
            _ => None,
        }
    }

    /// Field-level changes (update_service, run_job), empty otherwise.
    pub fn changes(&self) -> &[FieldChange] {
        match self {
            StepOp::UpdateService { changes, .. } | StepOp::RunJob { changes, .. } => changes,
            _ => &[],
        }
    }
}

/// One step of a plan. In JSON it is `{id, target, depends_on, reason, replace, action,
/// detail}` (DESIGN §3, `plan::wire`); a saved plan whose detail lacks what its action needs
/// is refused when read.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "ReadStep")]
pub struct Step {
    /// Position in the plan, from 1.
    pub id: StepId,
    /// Machine name, `swarm`, or the full swarm name of the object.
    pub target: String,
    /// Steps that must be done first.
    pub depends_on: Vec<StepId>,
    /// The services (compose `depends_on`) that must reach a condition before the step runs,
    /// each with the step of this plan that changes it, if any (in JSON: `waits`).
    pub waits: Vec<Wait>,
    /// Why, for people; apply never branches on it.
    pub reason: Reason,
    /// What the step does.
    pub op: StepOp,
}

impl Serialize for Step {
    /// The step as written, every secret-looking value masked.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WrittenStep::shown(self, &[]).serialize(serializer)
    }
}

impl Step {
    /// What the step does, as its contract name.
    pub fn action(&self) -> Action {
        self.op.action()
    }

    /// Whether the step adds, changes or destroys something: its action's effect, but a job
    /// run that creates the job adds it.
    pub fn effect(&self) -> Effect {
        match &self.op {
            StepOp::RunJob { id: None, .. } => Effect::Add,
            op => op.action().effect(),
        }
    }
}

/// A service a step waits for (compose `depends_on`, DESIGN §9): apply holds the step until
/// the service reaches the condition, and skips it, with the reason, when it does not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wait {
    /// The service, by full swarm name.
    pub service: String,
    /// What it must reach.
    pub condition: Condition,
    /// The step of this plan that creates or changes it (also in `depends_on`); `None` when
    /// the plan leaves it as it is (apply checks that it is in the condition already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepId>,
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

/// A plan, as `plan --json` prints it and `plan --out` saves it: its JSON form masks secret
/// values and credentials ([`super::mask`]); the plan in memory holds what apply sends.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "ReadPlan")]
pub struct Plan {
    /// Always [`FORMAT_VERSION`] (a plan read from an earlier format is read into this one).
    pub format_version: u32,
    /// Commit the desired state came from; null for a modified working tree.
    pub revision: Option<String>,
    /// Fingerprint of the observed state the plan was made against.
    pub fingerprint: String,
    /// Counts by effect.
    pub summary: Summary,
    /// Warnings for people.
    pub warnings: Vec<Warning>,
    /// What could not be observed, so what this plan cannot speak for (absent when everything
    /// answered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unseen: Vec<Unseen>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Keys whose values the plan shows although they look secret (`policy.show_values`). Not
    /// part of the JSON form: a plan read back has none.
    pub show_values: Vec<String>,
    /// The content key this plan versioned secrets and configs with, when the swarm has none
    /// yet: apply writes it into the swarm before it creates any. Never in the JSON form (`plan
    /// --json`); the saved plan file (0600) carries it ([`crate::plan::saved::saved_text`]), so a
    /// saved plan applied later gives the names it showed.
    pub new_content_key: Option<ContentKey>,
}

impl Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ShownPlan::of(self).serialize(serializer)
    }
}

/// A part of the cluster that could not be observed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unseen {
    /// What: `machine <name>` or `the swarm`.
    pub what: String,
    /// Why, in the words of the driver or the engine.
    pub why: String,
}

impl Plan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether the plan covers the whole cluster: every machine and the swarm were observed.
    /// An empty plan of a partly unseen cluster does not mean it is in sync.
    pub fn saw_everything(&self) -> bool {
        self.unseen.is_empty()
    }
}
