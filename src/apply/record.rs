//! A driver and engine layer that counts every write, and in a dry run records it instead.
//!
//! Reads always go to the real backend. In a dry run, machines and nodes that the run would
//! have created exist only here ("phantoms"), so later steps can still read them.

use crate::drivers::lock::{HeldLock, LockHolder};
use crate::drivers::{Driver, DriverError, DriverResult};
use crate::engine::{
    EngineError, EngineInfo, EngineResult, JoinTokens, NodeSpecUpdate, Swarm, SwarmObject,
};
use crate::model::content_key::LABEL_CONTENT_KEY;
use crate::model::observed::{LocalSwarmState, ObservedTask};
use crate::model::spec::{NetworkSpec, ObjectSpec, ServiceSpec};
use crate::model::{
    Availability, MachineSpec, NodeState, ObservedMachine, ObservedNode, ObservedObject,
    ObservedService, Reachability, Role,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// What a dry run pretends to have done, so that later reads see it.
#[derive(Default)]
struct Phantoms {
    machines: BTreeSet<String>,
    destroyed: BTreeSet<String>,
    nodes: BTreeMap<String, ObservedNode>,
    /// Machines whose engines left the swarm in this dry run.
    left: BTreeSet<String>,
    /// Nodes removed in this dry run.
    removed_nodes: BTreeSet<String>,
    /// Spec updates of existing nodes in this dry run, by node ID.
    updated_nodes: BTreeMap<String, NodeSpecUpdate>,
    swarm_initialized: bool,
}

/// The shared write log.
#[derive(Default)]
struct Log {
    writes: u64,
    recorded: Vec<String>,
    phantoms: Phantoms,
}

/// Wraps a driver: counts writes, or records them in a dry run.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<dyn Driver>,
    dry_run: bool,
    log: Arc<Mutex<Log>>,
}

impl Recorder {
    /// Wraps `inner`; with `dry_run`, no write reaches it.
    pub fn new(inner: Arc<dyn Driver>, dry_run: bool) -> Recorder {
        Recorder {
            inner,
            dry_run,
            log: Arc::default(),
        }
    }

    /// Writes actually sent: none in a dry run, whose writes are [`Recorder::recorded`].
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// The writes recorded in a dry run, in order.
    pub fn recorded(&self) -> Vec<String> {
        self.lock().recorded.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a write that is sent, or records it in a dry run; returns true when it must
    /// really be sent.
    fn write(&self, what: String) -> bool {
        let mut log = self.lock();
        if self.dry_run {
            log.recorded.push(what);
        } else {
            log.writes += 1;
        }
        !self.dry_run
    }
}

#[async_trait]
impl Driver for Recorder {
    fn changes_on_its_own(&self) -> bool {
        self.inner.changes_on_its_own()
    }

    fn pulls_images(&self) -> bool {
        self.inner.pulls_images()
    }

    fn side_loaded_images(&self) -> Vec<String> {
        self.inner.side_loaded_images()
    }

    async fn list(&self) -> DriverResult<Vec<ObservedMachine>> {
        self.inner.list().await
    }

    async fn create(&self, machine: &MachineSpec) -> DriverResult<()> {
        if self.write(format!(
            "driver: create machine {} ({})",
            machine.name, machine.role
        )) {
            return self.inner.create(machine).await;
        }
        let mut log = self.lock();
        log.phantoms.destroyed.remove(&machine.name);
        log.phantoms.machines.insert(machine.name.clone());
        Ok(())
    }

    async fn start(&self, machine: &str) -> DriverResult<()> {
        if self.write(format!("driver: start machine {machine}")) {
            return self.inner.start(machine).await;
        }
        self.lock().phantoms.machines.insert(machine.to_string());
        Ok(())
    }

    async fn destroy(&self, machine: &str) -> DriverResult<()> {
        if self.write(format!("driver: destroy machine {machine}")) {
            return self.inner.destroy(machine).await;
        }
        let mut log = self.lock();
        log.phantoms.machines.remove(machine);
        log.phantoms.destroyed.insert(machine.to_string());
        Ok(())
    }

    async fn endpoint(&self, machine: &str) -> DriverResult<String> {
        self.inner.endpoint(machine).await
    }

    async fn engine(&self, machine: &str) -> DriverResult<Arc<dyn Swarm>> {
        let phantom = {
            let log = self.lock();
            log.phantoms.machines.contains(machine) || log.phantoms.destroyed.contains(machine)
        };
        let inner = if phantom {
            None
        } else {
            match self.inner.engine(machine).await {
                Ok(engine) => Some(engine),
                Err(DriverError::NoSuchMachine(_)) if self.dry_run => None,
                Err(e) => return Err(e),
            }
        };
        Ok(Arc::new(RecordingEngine {
            machine: machine.to_string(),
            inner,
            recorder: self.clone(),
        }))
    }

    async fn lock(&self, holder: &LockHolder, now: u64, ttl_seconds: u64) -> DriverResult<()> {
        if self.dry_run {
            return Ok(());
        }
        self.inner.lock(holder, now, ttl_seconds).await
    }

    async fn unlock(&self, holder: &LockHolder) -> DriverResult<()> {
        if self.dry_run {
            return Ok(());
        }
        self.inner.unlock(holder).await
    }

    async fn force_unlock(&self, lock_id: &str) -> DriverResult<Option<HeldLock>> {
        if self.dry_run {
            return Ok(None);
        }
        self.inner.force_unlock(lock_id).await
    }

    async fn destroy_all(&self) -> DriverResult<()> {
        if self.write("driver: destroy all machines".to_string()) {
            return self.inner.destroy_all().await;
        }
        Ok(())
    }
}

/// One machine's engine behind the recorder.
struct RecordingEngine {
    machine: String,
    /// The real engine; `None` for a machine that exists only in this dry run.
    inner: Option<Arc<dyn Swarm>>,
    recorder: Recorder,
}

impl RecordingEngine {
    fn real(&self) -> EngineResult<&Arc<dyn Swarm>> {
        self.inner
            .as_ref()
            .ok_or_else(|| EngineError::Unreachable(format!("{} does not exist yet", self.machine)))
    }

    fn phantom_id(&self) -> String {
        format!("dry-run-node-{}", self.machine)
    }

    /// Counts a write; `Some(result)` when it was recorded instead of sent.
    fn dry<T>(&self, what: String, result: impl FnOnce(&mut Phantoms) -> T) -> Option<T> {
        if self.recorder.write(format!("{}: {what}", self.machine)) {
            return None;
        }
        let mut log = self.recorder.lock();
        Some(result(&mut log.phantoms))
    }

    fn add_phantom_node(&self, phantoms: &mut Phantoms, role: Role) {
        let id = self.phantom_id();
        phantoms.nodes.insert(
            id.clone(),
            ObservedNode {
                id,
                machine: Some(self.machine.clone()),
                hostname: self.machine.clone(),
                role,
                availability: Availability::Active,
                labels: BTreeMap::new(),
                state: NodeState::Ready,
                leader: false,
                reachability: (role == Role::Manager).then_some(Reachability::Reachable),
                version: 1,
                down_for_seconds: None,
            },
        );
    }
}

#[async_trait]
impl Swarm for RecordingEngine {
    async fn info(&self) -> EngineResult<EngineInfo> {
        let phantom = self
            .recorder
            .lock()
            .phantoms
            .nodes
            .get(&self.phantom_id())
            .cloned();
        if let Some(node) = phantom {
            return Ok(EngineInfo {
                api_version: None,
                swarm_state: LocalSwarmState::Active,
                node_id: Some(node.id),
                control_available: node.role == Role::Manager,
                node_addr: format!("{}:2377", self.machine),
                engine_id: None,
            });
        }
        match &self.inner {
            Some(inner) => inner.info().await,
            None => Ok(EngineInfo {
                node_addr: format!("{}:2377", self.machine),
                ..EngineInfo::default()
            }),
        }
    }

    async fn init_swarm(&self) -> EngineResult<String> {
        if self
            .dry("init swarm".into(), |p| p.swarm_initialized = true)
            .is_some()
        {
            let mut log = self.recorder.lock();
            self.add_phantom_node(&mut log.phantoms, Role::Manager);
            return Ok(self.phantom_id());
        }
        self.real()?.init_swarm().await
    }

    async fn join_swarm(&self, remote_addr: &str, token: &str) -> EngineResult<()> {
        let manager = token == "dry-run-manager-token";
        if self
            .dry(format!("join swarm through {remote_addr}"), |_| ())
            .is_some()
        {
            let role = if manager { Role::Manager } else { Role::Worker };
            let mut log = self.recorder.lock();
            self.add_phantom_node(&mut log.phantoms, role);
            return Ok(());
        }
        self.real()?.join_swarm(remote_addr, token).await
    }

    async fn leave_swarm(&self, force: bool) -> EngineResult<()> {
        let id = self.phantom_id();
        let machine = self.machine.clone();
        if self
            .dry(format!("leave swarm (force: {force})"), |p| {
                p.nodes.remove(&id);
                p.left.insert(machine);
            })
            .is_some()
        {
            return Ok(());
        }
        self.real()?.leave_swarm(force).await
    }

    async fn inspect_swarm(&self) -> EngineResult<SwarmObject> {
        match &self.inner {
            Some(inner) if !self.recorder.lock().phantoms.swarm_initialized => {
                inner.inspect_swarm().await
            }
            _ => Ok(SwarmObject::default()),
        }
    }

    async fn join_tokens(&self) -> EngineResult<JoinTokens> {
        if self.recorder.dry_run {
            return Ok(JoinTokens {
                worker: "dry-run-worker-token".into(),
                manager: "dry-run-manager-token".into(),
            });
        }
        self.real()?.join_tokens().await
    }

    async fn update_swarm_labels(
        &self,
        version: u64,
        labels: BTreeMap<String, String>,
    ) -> EngineResult<()> {
        // The content key is never shown, not even as a write a dry run would send.
        let shown: Vec<String> = labels
            .iter()
            .map(|(k, v)| match k.as_str() {
                LABEL_CONTENT_KEY => format!("{k}=(secret)"),
                _ => format!("{k}={v}"),
            })
            .collect();
        if self
            .dry(format!("update swarm labels {}", shown.join(",")), |_| ())
            .is_some()
        {
            return Ok(());
        }
        self.real()?.update_swarm_labels(version, labels).await
    }

    async fn list_nodes(&self) -> EngineResult<Vec<ObservedNode>> {
        let mut nodes = match &self.inner {
            Some(inner) if !self.recorder.lock().phantoms.swarm_initialized => {
                inner.list_nodes().await?
            }
            _ => Vec::new(),
        };
        let log = self.recorder.lock();
        let phantoms = &log.phantoms;
        nodes.retain(|n| !phantoms.removed_nodes.contains(&n.id));
        nodes.extend(phantoms.nodes.values().cloned());
        for node in &mut nodes {
            if phantoms.left.contains(&node.hostname) || phantoms.destroyed.contains(&node.hostname)
            {
                node.state = NodeState::Down;
            }
            if let Some(spec) = phantoms.updated_nodes.get(&node.id) {
                node.role = spec.role;
                node.availability = spec.availability;
                node.labels = spec.labels.clone();
                node.reachability = match spec.role {
                    Role::Manager => Some(node.reachability.unwrap_or(Reachability::Reachable)),
                    Role::Worker => None,
                };
            }
        }
        Ok(nodes)
    }

    async fn update_node(&self, id: &str, version: u64, spec: NodeSpecUpdate) -> EngineResult<()> {
        let what = format!(
            "update node {id} (role {}, availability {}, {} label(s))",
            spec.role,
            spec.availability.as_str(),
            spec.labels.len()
        );
        if self
            .dry(what, |p| {
                p.updated_nodes.insert(id.to_string(), spec.clone());
            })
            .is_some()
        {
            return Ok(());
        }
        self.real()?.update_node(id, version, spec).await
    }

    async fn remove_node(&self, id: &str, force: bool) -> EngineResult<()> {
        if self
            .dry(format!("remove node {id} (force: {force})"), |p| {
                p.nodes.remove(id);
                p.removed_nodes.insert(id.to_string());
            })
            .is_some()
        {
            return Ok(());
        }
        self.real()?.remove_node(id, force).await
    }

    async fn list_services(&self) -> EngineResult<Vec<ObservedService>> {
        match &self.inner {
            Some(inner) if !self.recorder.lock().phantoms.swarm_initialized => {
                inner.list_services().await
            }
            _ => Ok(Vec::new()),
        }
    }

    async fn list_tasks(&self) -> EngineResult<Vec<ObservedTask>> {
        match &self.inner {
            Some(inner) if !self.recorder.lock().phantoms.swarm_initialized => {
                inner.list_tasks().await
            }
            _ => Ok(Vec::new()),
        }
    }

    async fn create_service(&self, spec: &ServiceSpec) -> EngineResult<String> {
        if let Some(id) = self.dry(format!("create service {}", spec.name), |_| {
            format!("dry-run-service-{}", spec.name)
        }) {
            return Ok(id);
        }
        self.real()?.create_service(spec).await
    }

    async fn update_service(&self, id: &str, version: u64, spec: &ServiceSpec) -> EngineResult<()> {
        if self
            .dry(format!("update service {} ({id})", spec.name), |_| ())
            .is_some()
        {
            return Ok(());
        }
        self.real()?.update_service(id, version, spec).await
    }

    async fn remove_service(&self, id: &str) -> EngineResult<()> {
        if self.dry(format!("remove service {id}"), |_| ()).is_some() {
            return Ok(());
        }
        self.real()?.remove_service(id).await
    }

    async fn list_networks(&self) -> EngineResult<BTreeMap<String, ObservedObject>> {
        match &self.inner {
            Some(inner) => inner.list_networks().await,
            None => Ok(BTreeMap::new()),
        }
    }

    async fn create_network(&self, spec: &NetworkSpec) -> EngineResult<String> {
        if let Some(id) = self.dry(format!("create network {}", spec.name), |_| {
            format!("dry-run-network-{}", spec.name)
        }) {
            return Ok(id);
        }
        self.real()?.create_network(spec).await
    }

    async fn remove_network(&self, id: &str) -> EngineResult<()> {
        if self.dry(format!("remove network {id}"), |_| ()).is_some() {
            return Ok(());
        }
        self.real()?.remove_network(id).await
    }

    async fn list_secrets(&self) -> EngineResult<BTreeMap<String, ObservedObject>> {
        match &self.inner {
            Some(inner) => inner.list_secrets().await,
            None => Ok(BTreeMap::new()),
        }
    }

    async fn create_secret(&self, spec: &ObjectSpec) -> EngineResult<String> {
        if let Some(id) = self.dry(format!("create secret {}", spec.name), |_| {
            format!("dry-run-secret-{}", spec.name)
        }) {
            return Ok(id);
        }
        self.real()?.create_secret(spec).await
    }

    async fn remove_secret(&self, id: &str) -> EngineResult<()> {
        if self.dry(format!("remove secret {id}"), |_| ()).is_some() {
            return Ok(());
        }
        self.real()?.remove_secret(id).await
    }

    async fn list_configs(&self) -> EngineResult<BTreeMap<String, ObservedObject>> {
        match &self.inner {
            Some(inner) => inner.list_configs().await,
            None => Ok(BTreeMap::new()),
        }
    }

    async fn create_config(&self, spec: &ObjectSpec) -> EngineResult<String> {
        if let Some(id) = self.dry(format!("create config {}", spec.name), |_| {
            format!("dry-run-config-{}", spec.name)
        }) {
            return Ok(id);
        }
        self.real()?.create_config(spec).await
    }

    async fn remove_config(&self, id: &str) -> EngineResult<()> {
        if self.dry(format!("remove config {id}"), |_| ()).is_some() {
            return Ok(());
        }
        self.real()?.remove_config(id).await
    }
}
