//! The observed cluster: what the driver and the swarm report, gathered by `observe`.

use super::content_key::SwarmContentKey;
use super::desired::Role;
use super::spec::ServiceSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether a machine exists and runs, as its driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineState {
    /// Up, its engine answers.
    Running,
    /// Exists but does not run: shoal starts it, never destroys it for being stopped.
    Stopped,
    /// Runs (as far as its driver knows) but its engine does not answer: reported and waited for.
    Unreachable,
    /// Created, but its driver-side setup (e.g. preloading images) did not finish: finished or
    /// created again.
    Incomplete,
}

impl MachineState {
    /// The state's name in status output and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MachineState::Running => "running",
            MachineState::Stopped => "stopped",
            MachineState::Unreachable => "unreachable",
            MachineState::Incomplete => "incomplete",
        }
    }
}

/// A swarm node's own view of its membership (`/info` → `Swarm.LocalNodeState`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalSwarmState {
    /// Not in a swarm.
    #[default]
    Inactive,
    /// Joining.
    Pending,
    /// A member.
    Active,
    /// In an error state.
    Error,
    /// Locked (autolock).
    Locked,
}

/// A machine, as its driver and its own engine report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedMachine {
    /// Machine name.
    pub name: String,
    /// Whether it runs.
    pub state: MachineState,
    /// The role it was created for (driver label), if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_role: Option<Role>,
    /// Its engine's swarm membership.
    #[serde(default)]
    pub swarm_state: LocalSwarmState,
    /// Its swarm node ID, when it is a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Its engine's own ID (`docker info`), when the engine answered and said: two machines
    /// with one engine ID are one host under two names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_id: Option<String>,
    /// Why it could not be seen (its engine refused or did not answer), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The address the driver reaches it at (a VM's IP), when the driver gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl ObservedMachine {
    /// Whether shoal knows which node this machine is, if any: its engine answered and said.
    /// A stopped, unreachable or half-made machine may be any down node of the swarm.
    pub fn is_accounted_for(&self) -> bool {
        match self.state {
            MachineState::Running => {
                self.swarm_state == LocalSwarmState::Inactive || self.node_id.is_some()
            }
            MachineState::Stopped | MachineState::Unreachable | MachineState::Incomplete => false,
        }
    }
}

/// A node's state in the swarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Unknown.
    Unknown,
    /// Down.
    Down,
    /// Ready.
    Ready,
    /// Disconnected.
    Disconnected,
}

/// A node's availability for tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    /// Takes tasks.
    Active,
    /// Keeps its tasks, takes no new ones.
    Pause,
    /// Its tasks are moved away.
    Drain,
}

impl Availability {
    /// The name the Engine API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }
}

/// A manager's Raft reachability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// Unknown.
    Unknown,
    /// Not reachable from the leader.
    Unreachable,
    /// Reachable.
    Reachable,
}

/// A swarm node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedNode {
    /// Node ID.
    pub id: String,
    /// The machine this node is, when it could be matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Hostname the node reports.
    pub hostname: String,
    /// Role in its spec.
    pub role: Role,
    /// Availability in its spec.
    pub availability: Availability,
    /// Labels in its spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Status.
    pub state: NodeState,
    /// Whether it leads the Raft group.
    #[serde(default)]
    pub leader: bool,
    /// Manager reachability (managers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachability: Option<Reachability>,
    /// Object version, for updates.
    pub version: u64,
    /// Seconds since the node was last seen changing state, when it is down (from the caller's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_for_seconds: Option<u64>,
}

impl ObservedNode {
    /// Whether this manager counts towards quorum right now.
    pub fn is_reachable_manager(&self) -> bool {
        self.role == Role::Manager
            && self.state == NodeState::Ready
            && self.reachability != Some(Reachability::Unreachable)
    }
}

/// A service of a managed stack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObservedService {
    /// Service ID.
    pub id: String,
    /// Object version, for updates.
    pub version: u64,
    /// Its spec as stored.
    pub spec: ServiceSpec,
    /// Tasks running.
    #[serde(default)]
    pub running: u64,
    /// Tasks wanted.
    #[serde(default)]
    pub desired: u64,
    /// Its rolling update's status, once it has been updated (`UpdateStatus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
    /// What tells its task template's versions apart (see [`ObservedTask::spec_key`]); `None`
    /// when the engine does not say, and then every task counts as current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_key: Option<String>,
}

impl ObservedService {
    /// A digest of its spec as observed (`sha256:<hex>` of its JSON): what a write checks
    /// again just before it is sent, so a change made since the plan is never overwritten.
    /// The rolling update's progress is not part of it (it moves the object's version, not
    /// its spec).
    pub fn spec_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(&self.spec).unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(json)))
    }
}

/// Where a service's rolling update is (`UpdateStatus.State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// Tasks are being replaced.
    Updating,
    /// Stopped after a task failed (`failure_action: pause`).
    Paused,
    /// Every task runs the new spec.
    Completed,
    /// Going back to the previous spec.
    RollbackStarted,
    /// The rollback stopped after a task failed.
    RollbackPaused,
    /// Back at the previous spec: the update failed.
    RollbackCompleted,
    /// A state this version of shoal does not know.
    #[serde(other)]
    Unknown,
}

/// A service's rolling update status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// Where the update is.
    pub state: UpdateState,
    /// The engine's message, e.g. "update paused due to failure or early termination of task …".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A task's state (`Status.State`, and `DesiredState`), in the engine's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Created.
    New,
    /// Resources allocated.
    Allocated,
    /// Waiting for a node.
    Pending,
    /// Given to a node.
    Assigned,
    /// Accepted by its node.
    Accepted,
    /// Being prepared (image pulled, container created).
    Preparing,
    /// Prepared, not started.
    Ready,
    /// Started, its health check not yet passed.
    Starting,
    /// Running (and healthy, when it has a health check).
    Running,
    /// Exited with code 0.
    Complete,
    /// Stopped on purpose.
    Shutdown,
    /// Exited with an error or failed to start.
    Failed,
    /// Refused by its node (e.g. no such image).
    Rejected,
    /// Being removed.
    Remove,
    /// Its node went away.
    Orphaned,
    /// A state this version of shoal does not know.
    #[serde(other)]
    Unknown,
}

impl TaskState {
    /// The state's name, as the engine writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Allocated => "allocated",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
            TaskState::Unknown => "unknown",
        }
    }
}

/// A task of a service, as `GET /tasks` lists it (current ones and the history swarm keeps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedTask {
    /// Task ID.
    pub id: String,
    /// Its service's ID.
    pub service_id: String,
    /// Its replica slot (replicated services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    /// The node it is assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// What the orchestrator wants of it.
    pub desired_state: TaskState,
    /// What it is.
    pub state: TaskState,
    /// The engine's message for the state ("started", "finished", …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Why it failed or waits ("No such image: …", "no suitable node (…)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its container's exit code, once it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// When it reached its state, seconds since the epoch.
    #[serde(default)]
    pub timestamp: i64,
    /// What tells its spec's versions apart; equal to its service's
    /// [`ObservedService::template_key`] when it runs the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_key: Option<String>,
    /// Whether its spec has a health check (a task of a rolled-back spec may have one its
    /// service no longer has).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub health_checked: bool,
}

impl ObservedTask {
    /// Whether the orchestrator wants it to run (rather than to be shut down).
    pub fn wanted(&self) -> bool {
        matches!(self.desired_state, TaskState::Ready | TaskState::Running)
    }

    /// Whether it runs as wanted.
    pub fn is_running(&self) -> bool {
        self.state == TaskState::Running && self.wanted()
    }
}

/// A network, secret or config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedObject {
    /// Object ID.
    pub id: String,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A network's settings, which swarm cannot update; `None` for secrets and configs, and
    /// where they were not observed (then they are not compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSettings>,
    /// The sha256 (hex) of a config's data, which the engine returns (never of a secret's);
    /// `None` where not read. Never serialized: configs hold credentials too.
    #[serde(skip)]
    pub content_sha256: Option<String>,
}

/// What a network was created with, as its engine reports it (engine defaults included).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSettings {
    /// Driver (`overlay`).
    pub driver: String,
    /// Standalone containers may attach.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    /// No external connectivity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// Driver options, with those the engine adds (e.g. the overlay's VXLAN ID).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// IPAM subnets, whether asked for or allocated from the swarm's address pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
}

/// The swarm as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedSwarm {
    /// Cluster ID.
    pub id: String,
    /// Swarm labels (holds `io.shoal.revision`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Set when the managers answered but have no leader: quorum is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_error: Option<String>,
    /// The cluster's content key (the label `io.shoal.content-key`, kept out of `labels` so
    /// that no output showing the labels shows it). Never serialized.
    #[serde(skip)]
    pub content_key: SwarmContentKey,
}

/// Everything shoal observed of the cluster at one instant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Seconds since the Unix epoch when the observation was made.
    pub observed_at: u64,
    /// Machines the driver knows, by name.
    pub machines: BTreeMap<String, ObservedMachine>,
    /// The swarm, once initialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<ObservedSwarm>,
    /// Swarm nodes, by ID.
    pub nodes: BTreeMap<String, ObservedNode>,
    /// Services of stacks (carrying the stack label), by name.
    pub services: BTreeMap<String, ObservedService>,
    /// Networks by name (all swarm-scoped networks, labelled or not).
    pub networks: BTreeMap<String, ObservedObject>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, ObservedObject>,
    /// Configs by name.
    pub configs: BTreeMap<String, ObservedObject>,
    /// The tasks of the stacks' services (with the history swarm keeps), read once per
    /// observation; empty when the engine could not list them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<ObservedTask>,
    /// The lowest API version agreed with the managers' engines: what decides which service
    /// fields the cluster stores (see [`super::engine_api::EngineCaps`]); `None` when no
    /// engine said (the sim, no swarm yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<super::engine_api::ApiVersion>,
}

impl Observed {
    /// An observation in which every machine of `desired` runs and is a ready member of one
    /// swarm with the role and labels it should have (the first manager leads), and nothing
    /// else exists: the starting point of benchmarks and of tests that add the stacks' objects.
    pub fn with_members_of(desired: &super::Desired) -> Observed {
        let mut observed = Observed {
            swarm: Some(ObservedSwarm {
                id: "swarm".into(),
                labels: BTreeMap::new(),
                quorum_error: None,
                content_key: SwarmContentKey::Absent,
            }),
            ..Observed::default()
        };
        let leader = desired
            .machines
            .values()
            .find(|m| m.role == Role::Manager)
            .map(|m| m.name.clone());
        for (i, machine) in desired.machines.values().enumerate() {
            let id = format!("node{i:05}");
            observed.machines.insert(
                machine.name.clone(),
                ObservedMachine {
                    name: machine.name.clone(),
                    state: MachineState::Running,
                    created_role: Some(machine.role),
                    swarm_state: LocalSwarmState::Active,
                    node_id: Some(id.clone()),
                    engine_id: None,
                    problem: None,
                    address: None,
                },
            );
            observed.nodes.insert(
                id.clone(),
                ObservedNode {
                    id,
                    machine: Some(machine.name.clone()),
                    hostname: machine.name.clone(),
                    role: machine.role,
                    availability: Availability::Active,
                    labels: machine.labels.clone(),
                    state: NodeState::Ready,
                    leader: leader.as_ref() == Some(&machine.name),
                    reachability: (machine.role == Role::Manager)
                        .then_some(Reachability::Reachable),
                    version: 1,
                    down_for_seconds: None,
                },
            );
        }
        observed
    }

    /// Who paused the cluster, when its swarm carries the pause labels (`shoal pause`).
    pub fn pause(&self) -> Option<super::pause::Pause> {
        self.swarm
            .as_ref()
            .and_then(|s| super::pause::Pause::from_labels(&s.labels))
    }

    /// The commit held back after a rollback, and the revision held at (`shoal status` shows
    /// "held at A, B failed: reason"), when the swarm records one.
    pub fn held(&self) -> Option<super::rollback::Held> {
        self.swarm
            .as_ref()
            .and_then(|s| super::rollback::Held::from_labels(&s.labels))
    }

    /// The last revision recorded as healthy (`io.shoal.revision.healthy`), when there is one.
    pub fn healthy_revision(&self) -> Option<&str> {
        self.swarm
            .as_ref()
            .and_then(|s| s.labels.get(super::rollback::LABEL_HEALTHY))
            .map(String::as_str)
            .filter(|r| !r.is_empty())
    }

    /// The commit recorded as applied (`io.shoal.revision`), when the swarm has one.
    pub fn revision(&self) -> Option<&str> {
        self.swarm
            .as_ref()
            .and_then(|s| s.labels.get(super::LABEL_REVISION))
            .map(String::as_str)
    }

    /// The node of a machine, matched by the node ID its engine reports or else by hostname.
    pub fn node_of(&self, machine: &str) -> Option<&ObservedNode> {
        self.nodes
            .values()
            .find(|n| n.machine.as_deref() == Some(machine))
    }
}
