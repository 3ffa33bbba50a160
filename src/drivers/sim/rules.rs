//! The Docker Engine's swarm rules, applied to a [`SimState`]: membership, tokens, roles,
//! quorum, versions, references and refusals, with the engine's own error texts.
//!
//! Each operation is a synchronous method taking the caller's `now`. A write first checks that
//! the engine answers (its machine exists and runs), counts itself in
//! [`SimCounters::writes`](super::state::SimCounters), then validates everything before it
//! changes anything, so a refused request leaves the cluster as it was. After every change
//! [`SimState::refresh`] recomputes node status, reachability, the Raft leader and the tasks.

use super::engine_checks::{
    conflicting_target, has_duplicate_published_port, port_held_by, MAX_REPLICAS,
};
use super::sched::{self, constraints_of};
use super::state::{
    sha256_hex, SimEngineState, SimMachine, SimNetwork, SimNode, SimObject, SimService, SimState,
    SimSwarm, SimTokens,
};
use crate::engine::{
    EngineError, EngineInfo, EngineResult, JoinTokens, NodeSpecUpdate, SwarmObject,
};
use crate::model::observed::{LocalSwarmState, ObservedTask, TaskState};
use crate::model::spec::{NetworkSpec, ObjectSpec, ServiceSpec};
use crate::model::{
    Availability, NetworkSettings, NodeState, ObservedNode, ObservedObject, ObservedService,
    Reachability, Role, LABEL_STACK_NAMESPACE,
};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The port managers listen on for joins.
pub(super) const SWARM_PORT: u16 = 2377;

const ALREADY_IN_SWARM: &str = "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.";
const NOT_IN_SWARM: &str = "This node is not part of a swarm";
const NO_SWARM_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
const NOT_MANAGER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";
const NO_LEADER: &str = "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.";
const LAST_MANAGER: &str = "attempting to demote the last manager of the swarm";
const QUORUM_LOSS: &str =
    "can't remove member from the raft: this would result in a loss of quorum";
const INVALID_TOKEN: &str = "invalid join token";
const MODE_CHANGE: &str = "service mode change is not allowed";
const RENAME: &str = "renaming services is not supported";
const BAD_NAME: &str = "name must be valid as a DNS name component";
const DUPLICATE_PORTS: &str = "EndpointSpec: duplicate published ports provided";
const MAX_SECRET_SIZE: usize = 500 * 1024;
const MAX_CONFIG_SIZE: usize = 1000 * 1024;

/// Where an engine stands in the swarms of the state.
enum Membership {
    /// In no swarm.
    Inactive,
    /// Believes it is a member, but its swarm was dissolved or its node removed.
    Orphan(String),
    /// A member: swarm ID and node ID.
    Member(String, String),
}

/// Secrets and configs share their rules; this says which one an operation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ObjectKind {
    /// A secret.
    Secret,
    /// A config.
    Config,
}

impl ObjectKind {
    fn name(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secret",
            ObjectKind::Config => "config",
        }
    }

    fn max_size(self) -> usize {
        match self {
            ObjectKind::Secret => MAX_SECRET_SIZE,
            ObjectKind::Config => MAX_CONFIG_SIZE,
        }
    }

    fn objects(self, swarm: &SimSwarm) -> &BTreeMap<String, SimObject> {
        match self {
            ObjectKind::Secret => &swarm.secrets,
            ObjectKind::Config => &swarm.configs,
        }
    }

    fn objects_mut(self, swarm: &mut SimSwarm) -> &mut BTreeMap<String, SimObject> {
        match self {
            ObjectKind::Secret => &mut swarm.secrets,
            ObjectKind::Config => &mut swarm.configs,
        }
    }

    /// Whether a service spec refers to the object with this ID or name.
    fn used_by(self, spec: &ServiceSpec, id: &str, name: &str) -> bool {
        let container = &spec.task_template.container_spec;
        match self {
            ObjectKind::Secret => container
                .secrets
                .iter()
                .any(|r| r.secret_name == name || r.secret_id == id),
            ObjectKind::Config => container
                .configs
                .iter()
                .any(|r| r.config_name == name || r.config_id == id),
        }
    }
}

/// The address an engine advertises for swarm traffic.
pub(super) fn node_addr(machine: &str) -> String {
    format!("{machine}:{SWARM_PORT}")
}

/// The machine named by a manager address: `host`, `host:2377` or `tcp://host:2377`.
fn host_of(remote_addr: &str) -> Option<&str> {
    let addr = remote_addr.strip_prefix("tcp://").unwrap_or(remote_addr);
    match addr.rsplit_once(':') {
        Some((host, port)) => (port.parse::<u16>().ok()? == SWARM_PORT).then_some(host),
        None => Some(addr),
    }
}

/// The text the engine answers a manager's `swarm leave` without force with.
fn leave_refusal(swarm: &SimSwarm) -> String {
    let reachable = swarm.managers().filter(|n| n.is_reachable()).count() as i64;
    let unreachable = swarm.managers().count() as i64 - reachable;
    let mut msg = String::from(
        "You are attempting to leave the swarm on a node that is participating as a manager. ",
    );
    if reachable - 2 <= unreachable {
        if reachable == 1 && unreachable == 0 {
            msg.push_str("Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. ");
            return msg;
        }
        msg.push_str(&format!(
            "Removing this node leaves {} managers out of {}. Without a Raft quorum your swarm will be inaccessible. ",
            reachable - 1,
            reachable + unreachable
        ));
    }
    msg.push_str("The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.");
    msg
}

/// A node by ID or, failing that, by hostname.
fn resolve_node(swarm: &SimSwarm, key: &str) -> EngineResult<String> {
    if swarm.nodes.contains_key(key) {
        return Ok(key.to_string());
    }
    let found: Vec<&SimNode> = swarm.nodes.values().filter(|n| n.hostname == key).collect();
    match found.as_slice() {
        [] => Err(EngineError::NotFound(format!("node {key} not found"))),
        [node] => Ok(node.id.clone()),
        many => Err(EngineError::Refused(format!(
            "node {key} is ambiguous ({} matches found)",
            many.len()
        ))),
    }
}

/// A service by ID or name.
fn resolve_service(swarm: &SimSwarm, key: &str) -> EngineResult<String> {
    if swarm.services.contains_key(key) {
        return Ok(key.to_string());
    }
    swarm
        .service_by_name(key)
        .map(|s| s.id.clone())
        .ok_or_else(|| EngineError::NotFound(format!("service {key} not found")))
}

/// A network by ID or name.
fn resolve_network<'a>(swarm: &'a SimSwarm, key: &str) -> Option<&'a SimNetwork> {
    swarm
        .networks
        .get(key)
        .or_else(|| swarm.networks.values().find(|n| n.spec.name == key))
}

/// Checks a service spec's constraints and references; returns it as the engine stores it,
/// with the secret and config IDs filled in.
/// `updating` is the ID of the service a spec replaces, which may keep its own ports.
fn checked_spec(
    swarm: &SimSwarm,
    spec: &ServiceSpec,
    updating: Option<&str>,
) -> EngineResult<ServiceSpec> {
    if spec.name.is_empty() {
        return Err(EngineError::Refused(BAD_NAME.to_string()));
    }
    constraints_of(spec).map_err(EngineError::Refused)?;
    if let Some(replicas) = spec.replicas().filter(|&r| r > MAX_REPLICAS) {
        return Err(EngineError::Refused(format!(
            "the sim holds at most {MAX_REPLICAS} replicas per service, not {replicas}"
        )));
    }
    if has_duplicate_published_port(spec) {
        return Err(EngineError::Refused(DUPLICATE_PORTS.to_string()));
    }
    if let Some(conflict) = conflicting_target(spec) {
        return Err(EngineError::Refused(conflict));
    }
    let others = swarm
        .services
        .values()
        .filter(|s| Some(s.id.as_str()) != updating);
    for other in others {
        if let Some(held) = port_held_by(spec, &other.spec) {
            let how = if held.host_mode {
                "a host-published port"
            } else {
                "an ingress port"
            };
            return Err(EngineError::Refused(format!(
                "port '{}' is already in use by service '{}' ({}) as {how}",
                held.port, other.spec.name, other.id
            )));
        }
    }
    for attachment in &spec.task_template.networks {
        match resolve_network(swarm, &attachment.target) {
            None => {
                return Err(EngineError::NotFound(format!(
                    "network {} not found",
                    attachment.target
                )))
            }
            Some(network) if network.spec.name == "ingress" => {
                return Err(EngineError::Refused(
                    "service cannot be explicitly attached to the ingress network \"ingress\""
                        .to_string(),
                ))
            }
            Some(_) => {}
        }
    }
    let mut stored = spec.clone();
    let container = &mut stored.task_template.container_spec;
    for reference in &mut container.secrets {
        let secret = swarm
            .secrets
            .values()
            .find(|s| s.name == reference.secret_name)
            .ok_or_else(|| {
                EngineError::NotFound(format!("secret not found: {}", reference.secret_name))
            })?;
        reference.secret_id = secret.id.clone();
    }
    for reference in &mut container.configs {
        let config = swarm
            .configs
            .values()
            .find(|c| c.name == reference.config_name)
            .ok_or_else(|| {
                EngineError::NotFound(format!("config not found: {}", reference.config_name))
            })?;
        reference.config_id = config.id.clone();
    }
    Ok(stored)
}

/// Recomputes one swarm's node status and reachability from which nodes have a running
/// engine, then its leader, then (with a leader) the tasks: of every service, or with `only`
/// of that service alone unless a node changed status.
fn refresh_swarm(swarm: &mut SimSwarm, ready: &HashSet<&str>, now: u64, only: Option<&str>) {
    let mut only = only;
    for node in swarm.nodes.values_mut() {
        let is_ready = ready.contains(node.id.as_str());
        let state = if is_ready {
            NodeState::Ready
        } else {
            NodeState::Down
        };
        if node.state != state {
            only = None;
            swarm.index += 1;
            node.version = swarm.index;
            node.state = state;
            node.updated_at = now;
            node.down_since = (!is_ready).then_some(now);
        }
        node.reachability = (node.role == Role::Manager).then_some(if is_ready {
            Reachability::Reachable
        } else {
            Reachability::Unreachable
        });
    }
    if swarm.has_quorum() {
        let current = swarm
            .leader
            .as_ref()
            .and_then(|id| swarm.nodes.get(id))
            .filter(|n| n.is_reachable());
        if current.is_none() {
            let next = swarm
                .managers()
                .find(|n| n.is_reachable())
                .map(|n| n.id.clone());
            swarm.leader = next;
        }
        sched::reconcile(swarm, only);
    } else {
        swarm.leader = None;
    }
}

impl SimState {
    /// Recomputes every swarm after a change (see the module docs).
    pub(super) fn refresh(&mut self, now: u64) {
        self.refresh_tasks_of(None, now);
    }

    /// Recomputes every swarm after a change to one service alone: only its tasks are placed
    /// again, as every other service is placed already (every change refreshes).
    fn refresh_service(&mut self, service_id: &str, now: u64) {
        self.refresh_tasks_of(Some(service_id), now);
    }

    fn refresh_tasks_of(&mut self, only: Option<&str>, now: u64) {
        let mut ready: HashMap<&str, HashSet<&str>> = HashMap::new();
        for machine in self.machines.values().filter(|m| m.running) {
            let engine = &machine.engine;
            if let (LocalSwarmState::Active, Some(swarm), Some(node)) =
                (engine.swarm_state, &engine.swarm_id, &engine.node_id)
            {
                ready
                    .entry(swarm.as_str())
                    .or_default()
                    .insert(node.as_str());
            }
        }
        let empty = HashSet::new();
        for swarm in self.swarms.values_mut() {
            let ready = ready.get(swarm.id.as_str()).unwrap_or(&empty);
            refresh_swarm(swarm, ready, now, only);
        }
    }

    /// The machine whose engine answers a request, or why it does not.
    fn engine(&self, machine: &str) -> EngineResult<&SimMachine> {
        match self.machines.get(machine) {
            None => Err(EngineError::Unreachable(format!(
                "machine {machine} does not exist"
            ))),
            Some(m) if !m.running => Err(EngineError::Unreachable(format!(
                "machine {machine} is stopped"
            ))),
            Some(m) => Ok(m),
        }
    }

    /// The engine's state, for changing it.
    fn engine_mut(&mut self, machine: &str) -> EngineResult<&mut SimEngineState> {
        self.machines
            .get_mut(machine)
            .map(|m| &mut m.engine)
            .ok_or_else(|| EngineError::Unreachable(format!("machine {machine} does not exist")))
    }

    /// A write request arrives at a machine's engine: it must answer, then it counts.
    fn receive_write(&mut self, machine: &str) -> EngineResult<()> {
        self.engine(machine)?;
        self.counters.writes += 1;
        Ok(())
    }

    fn membership(&self, machine: &SimMachine) -> Membership {
        let engine = &machine.engine;
        if engine.swarm_state != LocalSwarmState::Active {
            return Membership::Inactive;
        }
        let node_id = engine.node_id.clone().unwrap_or_default();
        match engine
            .swarm_id
            .as_deref()
            .and_then(|id| self.swarms.get(id))
        {
            Some(swarm) if swarm.nodes.contains_key(&node_id) => {
                Membership::Member(swarm.id.clone(), node_id)
            }
            _ => Membership::Orphan(node_id),
        }
    }

    /// The swarm a manager-only request is served from, or the refusal.
    fn manager_swarm(&self, machine: &str) -> EngineResult<String> {
        let m = self.engine(machine)?;
        match self.membership(m) {
            Membership::Inactive => Err(EngineError::NotManager(NO_SWARM_MANAGER.to_string())),
            Membership::Orphan(_) => Err(EngineError::NotManager(NOT_MANAGER.to_string())),
            Membership::Member(swarm_id, node_id) => {
                let swarm = &self.swarms[&swarm_id];
                if swarm.nodes[&node_id].role != Role::Manager {
                    return Err(EngineError::NotManager(NOT_MANAGER.to_string()));
                }
                if swarm.leader.is_none() {
                    return Err(EngineError::NoLeader(NO_LEADER.to_string()));
                }
                Ok(swarm_id)
            }
        }
    }

    /// The swarm of a manager-only request, for reading.
    fn read_swarm(&self, machine: &str) -> EngineResult<&SimSwarm> {
        let id = self.manager_swarm(machine)?;
        Ok(&self.swarms[&id])
    }

    /// The swarm of a manager-only request, for writing.
    fn write_swarm(&mut self, swarm_id: &str) -> &mut SimSwarm {
        self.swarms
            .get_mut(swarm_id)
            .unwrap_or_else(|| unreachable!("swarm {swarm_id} was checked under the same lock"))
    }

    /// The swarm a manager at `remote_addr` serves, if one answers there.
    fn manager_at(&self, remote_addr: &str) -> Option<String> {
        let machine = self.machines.get(host_of(remote_addr)?)?;
        if !machine.running {
            return None;
        }
        match self.membership(machine) {
            Membership::Member(swarm_id, node_id)
                if self.swarms[&swarm_id].nodes[&node_id].role == Role::Manager =>
            {
                Some(swarm_id)
            }
            _ => None,
        }
    }

    /// Resets the engines bound to a node that no longer exists, as the real engine does once
    /// its node is removed from the swarm.
    fn evict(&mut self, swarm_id: &str, node_id: &str) {
        for machine in self.machines.values_mut() {
            if machine.engine.is_node(swarm_id, node_id) {
                machine.engine = SimEngineState::inactive();
            }
        }
    }

    /// `GET /info`.
    pub(super) fn info(&self, machine: &str) -> EngineResult<EngineInfo> {
        let m = self.engine(machine)?;
        let node_addr = node_addr(machine);
        let engine_id = Some(format!("sim-engine-{machine}"));
        Ok(match self.membership(m) {
            Membership::Inactive => EngineInfo {
                api_version: None,
                swarm_state: LocalSwarmState::Inactive,
                node_id: None,
                control_available: false,
                node_addr,
                engine_id,
            },
            Membership::Orphan(node_id) => EngineInfo {
                api_version: None,
                swarm_state: LocalSwarmState::Active,
                node_id: Some(node_id),
                control_available: false,
                node_addr,
                engine_id,
            },
            Membership::Member(swarm_id, node_id) => EngineInfo {
                api_version: None,
                swarm_state: LocalSwarmState::Active,
                control_available: self.swarms[&swarm_id].nodes[&node_id].role == Role::Manager,
                node_id: Some(node_id),
                node_addr,
                engine_id,
            },
        })
    }

    /// `POST /swarm/init`.
    pub(super) fn init_swarm(&mut self, machine: &str, now: u64) -> EngineResult<String> {
        self.receive_write(machine)?;
        if self.engine(machine)?.engine.swarm_state != LocalSwarmState::Inactive {
            return Err(EngineError::Refused(ALREADY_IN_SWARM.to_string()));
        }
        self.counters.swarms += 1;
        let swarm_id = self.new_id("swarm");
        let node_id = self.new_id("node");
        let ingress_id = self.new_id("network");
        let ca = sha256_hex(format!("ca:{swarm_id}").as_bytes());
        let token = |kind: &str| {
            let secret = sha256_hex(format!("{kind}:{swarm_id}").as_bytes());
            format!("SWMTKN-1-{}-{}", &ca[..50], &secret[..25])
        };
        let mut swarm = SimSwarm {
            id: swarm_id.clone(),
            serial: self.counters.swarms,
            version: 0,
            labels: BTreeMap::new(),
            tokens: SimTokens {
                worker: token("worker"),
                manager: token("manager"),
            },
            leader: Some(node_id.clone()),
            index: 0,
            nodes: BTreeMap::new(),
            services: BTreeMap::new(),
            networks: BTreeMap::new(),
            secrets: BTreeMap::new(),
            configs: BTreeMap::new(),
        };
        swarm.version = swarm.next_version();
        let version = swarm.next_version();
        swarm.nodes.insert(
            node_id.clone(),
            SimNode {
                id: node_id.clone(),
                hostname: machine.to_string(),
                role: Role::Manager,
                availability: Availability::Active,
                labels: BTreeMap::new(),
                version,
                state: NodeState::Ready,
                reachability: Some(Reachability::Reachable),
                updated_at: now,
                down_since: None,
            },
        );
        let version = swarm.next_version();
        swarm.networks.insert(
            ingress_id.clone(),
            SimNetwork {
                id: ingress_id,
                version,
                spec: NetworkSpec {
                    name: "ingress".to_string(),
                    driver: "overlay".to_string(),
                    ..NetworkSpec::default()
                },
            },
        );
        self.swarms.insert(swarm_id.clone(), swarm);
        *self.engine_mut(machine)? = SimEngineState {
            swarm_state: LocalSwarmState::Active,
            swarm_id: Some(swarm_id),
            node_id: Some(node_id.clone()),
        };
        self.refresh(now);
        Ok(node_id)
    }

    /// `POST /swarm/join`.
    pub(super) fn join_swarm(
        &mut self,
        machine: &str,
        remote_addr: &str,
        token: &str,
        now: u64,
    ) -> EngineResult<()> {
        self.receive_write(machine)?;
        if self.engine(machine)?.engine.swarm_state != LocalSwarmState::Inactive {
            return Err(EngineError::Refused(ALREADY_IN_SWARM.to_string()));
        }
        let swarm_id = self.manager_at(remote_addr).ok_or_else(|| {
            EngineError::Refused(format!(
                "could not join through {remote_addr}: no swarm manager answers there"
            ))
        })?;
        let swarm = &self.swarms[&swarm_id];
        if swarm.leader.is_none() {
            return Err(EngineError::NoLeader(NO_LEADER.to_string()));
        }
        let role = if token == swarm.tokens.worker {
            Role::Worker
        } else if token == swarm.tokens.manager {
            Role::Manager
        } else {
            return Err(EngineError::Refused(INVALID_TOKEN.to_string()));
        };
        let node_id = self.new_id("node");
        let swarm = self.write_swarm(&swarm_id);
        let version = swarm.next_version();
        swarm.nodes.insert(
            node_id.clone(),
            SimNode {
                id: node_id.clone(),
                hostname: machine.to_string(),
                role,
                availability: Availability::Active,
                labels: BTreeMap::new(),
                version,
                state: NodeState::Ready,
                reachability: (role == Role::Manager).then_some(Reachability::Reachable),
                updated_at: now,
                down_since: None,
            },
        );
        *self.engine_mut(machine)? = SimEngineState {
            swarm_state: LocalSwarmState::Active,
            swarm_id: Some(swarm_id),
            node_id: Some(node_id),
        };
        self.refresh(now);
        Ok(())
    }

    /// `POST /swarm/leave`.
    pub(super) fn leave_swarm(&mut self, machine: &str, force: bool, now: u64) -> EngineResult<()> {
        self.receive_write(machine)?;
        match self.membership(self.engine(machine)?) {
            Membership::Inactive => return Err(EngineError::NotManager(NOT_IN_SWARM.to_string())),
            Membership::Orphan(_) => {}
            Membership::Member(swarm_id, node_id) => {
                let swarm = &self.swarms[&swarm_id];
                if swarm.nodes[&node_id].role == Role::Manager {
                    if !force {
                        return Err(EngineError::Refused(leave_refusal(swarm)));
                    }
                    if swarm.managers().count() == 1 {
                        self.swarms.remove(&swarm_id);
                    }
                }
            }
        }
        *self.engine_mut(machine)? = SimEngineState::inactive();
        self.refresh(now);
        Ok(())
    }

    /// `GET /swarm`.
    pub(super) fn inspect_swarm(&self, machine: &str) -> EngineResult<SwarmObject> {
        let swarm = self.read_swarm(machine)?;
        Ok(SwarmObject {
            id: swarm.id.clone(),
            version: swarm.version,
            labels: swarm.labels.clone(),
        })
    }

    /// The join tokens.
    pub(super) fn join_tokens(&self, machine: &str) -> EngineResult<JoinTokens> {
        let swarm = self.read_swarm(machine)?;
        Ok(JoinTokens {
            worker: swarm.tokens.worker.clone(),
            manager: swarm.tokens.manager.clone(),
        })
    }

    /// `POST /swarm/update` with new labels.
    pub(super) fn update_swarm_labels(
        &mut self,
        machine: &str,
        version: u64,
        labels: BTreeMap<String, String>,
    ) -> EngineResult<()> {
        self.receive_write(machine)?;
        let swarm_id = self.manager_swarm(machine)?;
        let swarm = self.write_swarm(&swarm_id);
        if swarm.version != version {
            return Err(EngineError::OutOfSequence(format!(
                "swarm {swarm_id} is at version {}, not {version}",
                swarm.version
            )));
        }
        swarm.version = swarm.next_version();
        swarm.labels = labels;
        Ok(())
    }

    /// `GET /nodes`; `down_for_seconds` is counted from `now`.
    pub(super) fn list_nodes(&self, machine: &str, now: u64) -> EngineResult<Vec<ObservedNode>> {
        let swarm = self.read_swarm(machine)?;
        Ok(swarm
            .nodes
            .values()
            .map(|n| ObservedNode {
                id: n.id.clone(),
                machine: None,
                hostname: n.hostname.clone(),
                role: n.role,
                availability: n.availability,
                labels: n.labels.clone(),
                state: n.state,
                leader: swarm.leader.as_deref() == Some(n.id.as_str()),
                reachability: n.reachability,
                version: n.version,
                down_for_seconds: match n.state {
                    NodeState::Ready => None,
                    _ => n.down_since.map(|since| now.saturating_sub(since)),
                },
            })
            .collect())
    }

    /// `POST /nodes/{id}/update?version=`.
    pub(super) fn update_node(
        &mut self,
        machine: &str,
        id: &str,
        version: u64,
        spec: NodeSpecUpdate,
        now: u64,
    ) -> EngineResult<()> {
        self.receive_write(machine)?;
        let swarm_id = self.manager_swarm(machine)?;
        let swarm = &self.swarms[&swarm_id];
        let node_id = resolve_node(swarm, id)?;
        let node = &swarm.nodes[&node_id];
        if node.version != version {
            return Err(EngineError::OutOfSequence(format!(
                "node {node_id} is at version {}, not {version}",
                node.version
            )));
        }
        if node.role == Role::Manager && spec.role == Role::Worker {
            let managers: Vec<&SimNode> = swarm.managers().collect();
            if managers.len() == 1 {
                return Err(EngineError::Refused(LAST_MANAGER.to_string()));
            }
            let reachable_after = managers
                .iter()
                .filter(|m| m.id != node_id && m.is_reachable())
                .count();
            if reachable_after < (managers.len() - 1) / 2 + 1 {
                return Err(EngineError::QuorumLoss(QUORUM_LOSS.to_string()));
            }
        }
        let swarm = self.write_swarm(&swarm_id);
        let version = swarm.next_version();
        if let Some(node) = swarm.nodes.get_mut(&node_id) {
            node.role = spec.role;
            node.availability = spec.availability;
            node.labels = spec.labels;
            node.version = version;
            node.updated_at = now;
        }
        self.refresh(now);
        Ok(())
    }

    /// `DELETE /nodes/{id}`.
    pub(super) fn remove_node(
        &mut self,
        machine: &str,
        id: &str,
        force: bool,
        now: u64,
    ) -> EngineResult<()> {
        self.receive_write(machine)?;
        let swarm_id = self.manager_swarm(machine)?;
        let swarm = &self.swarms[&swarm_id];
        let node_id = resolve_node(swarm, id)?;
        let node = &swarm.nodes[&node_id];
        if node.role == Role::Manager {
            return Err(EngineError::Refused(format!(
                "node {node_id} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal"
            )));
        }
        if node.state == NodeState::Ready && !force {
            return Err(EngineError::Refused(format!(
                "node {node_id} is not down and can't be removed"
            )));
        }
        self.write_swarm(&swarm_id).nodes.remove(&node_id);
        self.evict(&swarm_id, &node_id);
        self.refresh(now);
        Ok(())
    }

    /// `GET /services?status=true`, the services carrying the stack namespace label.
    pub(super) fn list_services(&self, machine: &str) -> EngineResult<Vec<ObservedService>> {
        let swarm = self.read_swarm(machine)?;
        Ok(swarm
            .services
            .values()
            .filter(|s| s.spec.labels.contains_key(LABEL_STACK_NAMESPACE))
            .map(|s| ObservedService {
                id: s.id.clone(),
                version: s.version,
                spec: s.spec.clone(),
                running: if sched::image_missing(&s.spec) {
                    0
                } else {
                    swarm.running_tasks(s)
                },
                desired: s.spec.replicas().unwrap_or(s.tasks.len() as u64),
                update_status: None,
                template_key: None,
            })
            .collect())
    }

    /// `GET /tasks`: one task per task of each stack service, as the engine would list it
    /// (the sim keeps no history): running on a ready node, pending without a node ("no
    /// suitable node"), rejected when no node has the image.
    pub(super) fn list_tasks(&self, machine: &str) -> EngineResult<Vec<ObservedTask>> {
        let swarm = self.read_swarm(machine)?;
        let mut tasks = Vec::new();
        for service in swarm.services.values() {
            let missing = sched::image_missing(&service.spec);
            let replicated = service.spec.replicas().is_some();
            for (index, task) in service.tasks.iter().enumerate() {
                let node = task.node.as_deref().and_then(|id| swarm.nodes.get(id));
                let (state, error) = match node {
                    None => (
                        TaskState::Pending,
                        Some(format!(
                            "no suitable node (scheduling constraints not satisfied on {} nodes)",
                            swarm.nodes.len()
                        )),
                    ),
                    Some(_) if missing => (
                        TaskState::Rejected,
                        Some(format!(
                            "No such image: {}",
                            service.spec.task_template.container_spec.image
                        )),
                    ),
                    Some(node) if node.state == NodeState::Ready => (TaskState::Running, None),
                    Some(_) => (TaskState::Orphaned, None),
                };
                tasks.push(ObservedTask {
                    id: format!("{}.{}", service.id, index + 1),
                    service_id: service.id.clone(),
                    slot: replicated.then_some(index as u64 + 1),
                    node_id: task.node.clone(),
                    desired_state: TaskState::Running,
                    state,
                    message: String::new(),
                    error,
                    exit_code: None,
                    timestamp: 0,
                    spec_key: None,
                    health_checked: false,
                });
            }
        }
        Ok(tasks)
    }

    /// `POST /services/create`.
    pub(super) fn create_service(
        &mut self,
        machine: &str,
        spec: &ServiceSpec,
        now: u64,
    ) -> EngineResult<String> {
        self.receive_write(machine)?;
        let swarm_id = self.manager_swarm(machine)?;
        let swarm = &self.swarms[&swarm_id];
        if swarm.service_by_name(&spec.name).is_some() {
            return Err(EngineError::Conflict(format!(
                "service {} already exists",
                spec.name
            )));
        }
        let stored = checked_spec(swarm, spec, None)?;
        let id = self.new_id("service");
        let swarm = self.write_swarm(&swarm_id);
        let version = swarm.next_version();
        swarm.services.insert(
            id.clone(),
            SimService {
                id: id.clone(),
                version,
                spec: stored,
                tasks: Vec::new(),
            },
        );
        self.refresh_service(&id, now);
        Ok(id)
    }

    /// `POST /services/{id}/update?version=`.
    pub(super) fn update_service(
        &mut self,
        machine: &str,
        id: &str,
        version: u64,
        spec: &ServiceSpec,
        now: u64,
    ) -> EngineResult<()> {
        self.receive_write(machine)?;
        let swarm_id = self.manager_swarm(machine)?;
        let swarm = &self.swarms[&swarm_id];
        let service_id = resolve_service(swarm, id)?;
        let current = &swarm.services[&service_id];
        if current.version != version {
            return Err(EngineError::OutOfSequence(format!(
                "service {} is at version {}, not {version}",
                current.spec.name, current.version
            )));
        }
        if spec.name != current.spec.name {
            return Err(EngineError::Refused(RENAME.to_string()));
        }
        if spec.mode_name() != current.spec.mode_name() {
            return Err(EngineError::Refused(MODE_CHANGE.to_string()));
        }
        let stored = checked_spec(swarm, spec, Some(&service_id))?;
        let redeploy = stored.task_template != current.spec.task_template;
        let swarm = self.write_swarm(&swarm_id);
        let version = swarm.next_version();
        if let Some(service) = swarm.services.get_mut(&service_id) {
            service.spec = stored;
            service.version = version;
            if redeploy {
                service.tasks.clear();
            }
        }
        self.refresh_service(&service_id, now);
        Ok(())
    }

    /// `DELETE /services/{id}`.
    pub(super) fn remove_service(&mut self, machine: &str, id: &str, now: u64) -> EngineResult<()> {
        self.receive_write(machine)?;
        let swarm_id = self.manager_swarm(machine)?;
        let service_id = resolve_service(&self.swarms[&swarm_id], id)?;
        self.write_swarm(&swarm_id).services.remove(&service_id);
        self.refresh_service(&service_id, now);
        Ok(())
    }

    /// Swarm-scoped networks by name.
    pub(super) fn list_networks(
        &self,
        machine: &str,
    ) -> EngineResult<BTreeMap<String, ObservedObject>> {
        let swarm = self.read_swarm(machine)?;
        Ok(swarm
            .networks
            .values()
            .map(|n| {
                let settings = NetworkSettings {
                    driver: n.spec.driver.clone(),
                    attachable: n.spec.attachable,
                    internal: n.spec.internal,
                    options: n.spec.options.clone(),
                    subnets: n.spec.subnets.clone(),
                };
                let object = ObservedObject {
                    id: n.id.clone(),
                    labels: n.spec.labels.clone(),
                    network: Some(settings),
                    content_sha256: None,
                };
                (n.spec.name.clone(), object)
            })
            .collect())
    }

    /// `POST /networks/create`.
    pub(super) fn create_network(
        &mut self,
        machine: &str,
        spec: &NetworkSpec,
    ) -> EngineResult<String> {
        self.receive_write(machine)?;
        let swarm_id = self.manager_swarm(machine)?;
        if spec.name.is_empty() {
            return Err(EngineError::Refused(BAD_NAME.to_string()));
        }
        if resolve_network(&self.swarms[&swarm_id], &spec.name).is_some() {
            return Err(EngineError::Conflict(format!(
                "network with name {} already exists",
                spec.name
            )));
        }
        let id = self.new_id("network");
        let mut spec = spec.clone();
        if spec.driver.is_empty() {
            spec.driver = "overlay".to_string();
        }
        let swarm = self.write_swarm(&swarm_id);
        let version = swarm.next_version();
        swarm.networks.insert(
            id.clone(),
            SimNetwork {
                id: id.clone(),
                version,
                spec,
            },
        );
        Ok(id)
    }

    /// `DELETE /networks/{id}`.
    pub(super) fn remove_network(&mut self, machine: &str, id: &str) -> EngineResult<()> {
        self.receive_write(machine)?;
        let swarm_id = self.manager_swarm(machine)?;
        let swarm = &self.swarms[&swarm_id];
        let network = resolve_network(swarm, id)
            .ok_or_else(|| EngineError::NotFound(format!("network {id} not found")))?;
        let (network_id, name) = (network.id.clone(), network.spec.name.clone());
        if name == "ingress" {
            let user = swarm.services.values().find(|s| {
                s.spec
                    .endpoint_spec
                    .as_ref()
                    .is_some_and(|e| e.ports.iter().any(|p| p.publish_mode != "host"))
            });
            if let Some(user) = user {
                return Err(EngineError::Refused(format!(
                    "ingress network cannot be removed because service {} depends on it",
                    user.id
                )));
            }
        }
        let user = swarm.services.values().find(|s| {
            s.spec
                .task_template
                .networks
                .iter()
                .any(|n| n.target == name || n.target == network_id)
        });
        if let Some(user) = user {
            return Err(EngineError::Refused(format!(
                "network {name} is in use by service {}",
                user.id
            )));
        }
        self.write_swarm(&swarm_id).networks.remove(&network_id);
        Ok(())
    }

    /// Secrets or configs by name.
    pub(super) fn list_objects(
        &self,
        machine: &str,
        kind: ObjectKind,
    ) -> EngineResult<BTreeMap<String, ObservedObject>> {
        let swarm = self.read_swarm(machine)?;
        Ok(kind
            .objects(swarm)
            .values()
            .map(|o| {
                // The sim keeps no data: a config's cannot be compared (the engine's can).
                let object = ObservedObject {
                    id: o.id.clone(),
                    labels: o.labels.clone(),
                    network: None,
                    content_sha256: None,
                };
                (o.name.clone(), object)
            })
            .collect())
    }

    /// `POST /secrets/create` or `POST /configs/create`. The data is not kept.
    pub(super) fn create_object(
        &mut self,
        machine: &str,
        kind: ObjectKind,
        spec: &ObjectSpec,
    ) -> EngineResult<String> {
        self.receive_write(machine)?;
        let swarm_id = self.manager_swarm(machine)?;
        let what = kind.name();
        if spec.name.is_empty() {
            return Err(EngineError::Refused(BAD_NAME.to_string()));
        }
        if kind
            .objects(&self.swarms[&swarm_id])
            .values()
            .any(|o| o.name == spec.name)
        {
            return Err(EngineError::Conflict(format!(
                "{what} {} already exists",
                spec.name
            )));
        }
        if spec.data.is_empty() || spec.data.len() >= kind.max_size() {
            return Err(EngineError::Refused(format!(
                "{what} data must be larger than 0 and less than {} bytes",
                kind.max_size()
            )));
        }
        let id = self.new_id(what);
        let swarm = self.write_swarm(&swarm_id);
        let version = swarm.next_version();
        kind.objects_mut(swarm).insert(
            id.clone(),
            SimObject {
                id: id.clone(),
                version,
                name: spec.name.clone(),
                labels: spec.labels.clone(),
            },
        );
        Ok(id)
    }

    /// `DELETE /secrets/{id}` or `DELETE /configs/{id}`; refused while a service uses it.
    pub(super) fn remove_object(
        &mut self,
        machine: &str,
        kind: ObjectKind,
        id: &str,
    ) -> EngineResult<()> {
        self.receive_write(machine)?;
        let swarm_id = self.manager_swarm(machine)?;
        let swarm = &self.swarms[&swarm_id];
        let what = kind.name();
        let objects = kind.objects(swarm);
        let object = objects
            .get(id)
            .or_else(|| objects.values().find(|o| o.name == id))
            .ok_or_else(|| EngineError::NotFound(format!("{what} {id} not found")))?;
        let users: Vec<&str> = swarm
            .services
            .values()
            .filter(|s| kind.used_by(&s.spec, &object.id, &object.name))
            .map(|s| s.spec.name.as_str())
            .collect();
        if !users.is_empty() {
            return Err(EngineError::Refused(format!(
                "{what} '{}' is in use by the following service{}: {}",
                object.name,
                if users.len() == 1 { "" } else { "s" },
                users.join(", ")
            )));
        }
        let object_id = object.id.clone();
        kind.objects_mut(self.write_swarm(&swarm_id))
            .remove(&object_id);
        Ok(())
    }

    /// Creates a running machine whose engine is in no swarm; `false` if the name is taken.
    /// The request counts as a write either way.
    pub(super) fn create_machine(&mut self, name: &str, role: Role) -> bool {
        self.counters.writes += 1;
        if self.machines.contains_key(name) {
            return false;
        }
        self.machines.insert(
            name.to_string(),
            SimMachine {
                role: Some(role),
                running: true,
                engine: SimEngineState::inactive(),
            },
        );
        true
    }

    /// Removes a machine; its node, if any, stays in its swarm and goes down.
    pub(super) fn remove_machine(&mut self, name: &str, now: u64) -> bool {
        let removed = self.machines.remove(name).is_some();
        if removed {
            self.refresh(now);
        }
        removed
    }

    /// Stops or starts a machine. A machine that comes back to a swarm that removed its node
    /// in the meantime finds itself out of the swarm.
    pub(super) fn set_running(&mut self, name: &str, running: bool, now: u64) -> bool {
        let Some(machine) = self.machines.get(name) else {
            return false;
        };
        let evicted = running
            && match (&machine.engine.swarm_id, &machine.engine.node_id) {
                (Some(swarm), Some(node)) => self
                    .swarms
                    .get(swarm)
                    .is_some_and(|s| !s.nodes.contains_key(node)),
                _ => false,
            };
        if let Some(machine) = self.machines.get_mut(name) {
            machine.running = running;
            if evicted {
                machine.engine = SimEngineState::inactive();
            }
        }
        self.refresh(now);
        true
    }

    /// Sets a replicated service's replica count as `docker service scale` does.
    pub(super) fn scale(&mut self, service: &str, replicas: u64, now: u64) -> Result<(), String> {
        let (swarm_id, service_id) = self
            .swarms
            .values()
            .find_map(|s| {
                s.service_by_name(service)
                    .map(|v| (s.id.clone(), v.id.clone()))
            })
            .ok_or_else(|| format!("service {service} does not exist"))?;
        let swarm = self.write_swarm(&swarm_id);
        if swarm.leader.is_none() {
            return Err(NO_LEADER.to_string());
        }
        if replicas > MAX_REPLICAS {
            return Err(format!(
                "the sim holds at most {MAX_REPLICAS} replicas per service, not {replicas}"
            ));
        }
        let mode = swarm.services[&service_id].spec.mode_name();
        if mode != "replicated" {
            return Err(format!(
                "service {service} is {mode}: scale can only be used with replicated mode"
            ));
        }
        let version = swarm.next_version();
        if let Some(service) = swarm.services.get_mut(&service_id) {
            service.spec.set_replicas(replicas);
            service.version = version;
        }
        self.refresh_service(&service_id, now);
        Ok(())
    }
}
