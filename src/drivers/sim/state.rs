//! The sim driver's state: machines, their engines and the swarms they form, as plain serde data.
//!
//! Everything lives in one [`SimState`] value so that the whole cluster can be loaded from and
//! written back to `.shoal/sim.json` in one piece. Maps are `BTreeMap`s, so the file and every
//! listing come out in a deterministic order.

use crate::model::observed::{LocalSwarmState, NodeState, Reachability};
use crate::model::spec::{NetworkSpec, ServiceSpec};
use crate::model::{Availability, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole simulated cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimState {
    /// Machines that exist, by name.
    #[serde(default)]
    pub machines: BTreeMap<String, SimMachine>,
    /// Swarms by cluster ID. Normally one; `init` on an engine outside it makes a second, as on
    /// real engines, and a swarm whose last manager leaves is dissolved.
    #[serde(default)]
    pub swarms: BTreeMap<String, SimSwarm>,
    /// The driver's apply lock, when taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<crate::drivers::lock::HeldLock>,
    /// Counters.
    #[serde(default)]
    pub counters: SimCounters,
}

/// Counters kept across operations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCounters {
    /// Mutating requests received: driver `create`, `destroy`, `destroy_all`, and every Engine
    /// API write that reached a running engine, whether it succeeded or was refused. Reads,
    /// the apply lock and injected faults do not count.
    pub writes: u64,
    /// Objects created so far; seeds the next ID.
    pub ids: u64,
    /// Swarms initialized so far; orders them.
    pub swarms: u64,
}

/// A machine and its engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimMachine {
    /// The role the machine was created for (its driver label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Whether the machine runs (its engine answers).
    pub running: bool,
    /// The engine's own view of its swarm membership.
    #[serde(default)]
    pub engine: SimEngineState,
}

/// An engine's local swarm state (what `/info` reports).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimEngineState {
    /// Inactive, or active in a swarm.
    pub swarm_state: LocalSwarmState,
    /// The swarm it belongs to. It may name a swarm that was dissolved meanwhile: the engine
    /// then still believes it is a member until it leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_id: Option<String>,
    /// Its node ID in that swarm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

impl SimEngineState {
    /// The state of an engine that is in no swarm.
    pub fn inactive() -> Self {
        SimEngineState::default()
    }

    /// Whether this engine is bound to the given node of the given swarm.
    pub fn is_node(&self, swarm_id: &str, node_id: &str) -> bool {
        self.swarm_state == LocalSwarmState::Active
            && self.swarm_id.as_deref() == Some(swarm_id)
            && self.node_id.as_deref() == Some(node_id)
    }
}

/// The join tokens of a swarm. Its `Debug` output hides them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimTokens {
    /// Token that joins a worker.
    pub worker: String,
    /// Token that joins a manager.
    pub manager: String,
}

impl std::fmt::Debug for SimTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimTokens { <redacted> }")
    }
}

/// One swarm: its object, its Raft leader and everything stored in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimSwarm {
    /// Cluster ID.
    pub id: String,
    /// Creation order among the swarms of this state (1 for the first).
    pub serial: u64,
    /// Version of the swarm object.
    pub version: u64,
    /// Swarm labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Join tokens.
    pub tokens: SimTokens,
    /// Node ID of the Raft leader; `None` while quorum is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The store's write index: every object write takes the next value as its version.
    pub index: u64,
    /// Nodes by ID.
    #[serde(default)]
    pub nodes: BTreeMap<String, SimNode>,
    /// Services by ID.
    #[serde(default)]
    pub services: BTreeMap<String, SimService>,
    /// Networks by ID.
    #[serde(default)]
    pub networks: BTreeMap<String, SimNetwork>,
    /// Secrets by ID (their data is not kept).
    #[serde(default)]
    pub secrets: BTreeMap<String, SimObject>,
    /// Configs by ID (their data is not kept).
    #[serde(default)]
    pub configs: BTreeMap<String, SimObject>,
}

impl SimSwarm {
    /// Takes the next store index, to version an object being written.
    pub fn next_version(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// Manager nodes (by spec role), in ID order.
    pub fn managers(&self) -> impl Iterator<Item = &SimNode> {
        self.nodes.values().filter(|n| n.role == Role::Manager)
    }

    /// Whether the managers that are reachable form a majority of all managers.
    pub fn has_quorum(&self) -> bool {
        let managers = self.managers().count();
        let reachable = self.managers().filter(|n| n.is_reachable()).count();
        managers > 0 && reachable * 2 > managers
    }

    /// The service with this name.
    pub fn service_by_name(&self, name: &str) -> Option<&SimService> {
        self.services.values().find(|s| s.spec.name == name)
    }

    /// How many tasks of the named service each node holds, by node hostname
    /// (`<hostname> (<id>)` when two nodes share a hostname); pending tasks are under `""`.
    pub fn task_spread(&self, service_name: &str) -> BTreeMap<String, u64> {
        let mut spread = BTreeMap::new();
        let Some(service) = self.service_by_name(service_name) else {
            return spread;
        };
        for task in &service.tasks {
            let key = match task.node.as_deref().and_then(|id| self.nodes.get(id)) {
                Some(node) => {
                    let shared = self
                        .nodes
                        .values()
                        .filter(|n| n.hostname == node.hostname)
                        .count()
                        > 1;
                    if shared {
                        format!("{} ({})", node.hostname, node.id)
                    } else {
                        node.hostname.clone()
                    }
                }
                None => String::new(),
            };
            *spread.entry(key).or_insert(0) += 1;
        }
        spread
    }

    /// Tasks of a service that run: assigned to a node that is ready.
    pub fn running_tasks(&self, service: &SimService) -> u64 {
        service
            .tasks
            .iter()
            .filter(|t| {
                t.node
                    .as_deref()
                    .and_then(|id| self.nodes.get(id))
                    .is_some_and(|n| n.state == NodeState::Ready)
            })
            .count() as u64
    }
}

/// A swarm node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimNode {
    /// Node ID.
    pub id: String,
    /// Hostname: the machine's name.
    pub hostname: String,
    /// Role in its spec.
    pub role: Role,
    /// Availability in its spec.
    pub availability: Availability,
    /// Labels in its spec.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Object version.
    pub version: u64,
    /// Status: ready while its machine runs and its engine is this node, down otherwise.
    pub state: NodeState,
    /// Manager reachability, for managers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachability: Option<Reachability>,
    /// When the node object last changed (spec or status), seconds since the epoch.
    pub updated_at: u64,
    /// When the node went down, while it is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_since: Option<u64>,
}

impl SimNode {
    /// Whether this node is a manager that counts towards quorum.
    pub fn is_reachable(&self) -> bool {
        self.role == Role::Manager && self.state == NodeState::Ready
    }
}

/// A service, its version and its tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimService {
    /// Service ID.
    pub id: String,
    /// Object version.
    pub version: u64,
    /// Its spec as stored (secret and config IDs filled in).
    pub spec: ServiceSpec,
    /// Its tasks; a replicated service has one per replica.
    #[serde(default)]
    pub tasks: Vec<SimTask>,
}

/// One task of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimTask {
    /// The node it is assigned to; `None` while no node is eligible (pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A swarm-scoped network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimNetwork {
    /// Network ID.
    pub id: String,
    /// Object version.
    pub version: u64,
    /// Its spec.
    pub spec: NetworkSpec,
}

/// A secret or config. Neither its data nor a digest of it is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimObject {
    /// Object ID.
    pub id: String,
    /// Object version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    // The data is not kept, nor any digest of it (a digest of a secret's plaintext in
    // `.shoal/sim.json` would be an offline guessing oracle); state files of earlier versions
    // hold a `sha256` field, which is ignored.
}

pub(super) use crate::compose::convert::sha256_hex;

impl SimState {
    /// The swarm most recently initialized, if any is left. With one swarm, that one.
    pub fn swarm(&self) -> Option<&SimSwarm> {
        self.swarms.values().max_by_key(|s| s.serial)
    }

    /// The swarm a machine's engine belongs to, if it exists.
    pub fn swarm_of(&self, machine: &str) -> Option<&SimSwarm> {
        let id = self.machines.get(machine)?.engine.swarm_id.as_deref()?;
        self.swarms.get(id)
    }

    /// A fresh, deterministic object ID (25 lowercase hex characters, like the engine's length).
    pub(super) fn new_id(&mut self, kind: &str) -> String {
        self.counters.ids += 1;
        let digest = sha256_hex(format!("shoal-sim:{kind}:{}", self.counters.ids).as_bytes());
        digest[..25].to_string()
    }
}
