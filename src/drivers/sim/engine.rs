//! One simulated machine's Engine API: the [`Swarm`] trait over the sim's shared state.

use super::rules::ObjectKind;
use super::store::{Flush, Store};
use super::Clock;
use crate::engine::{
    EngineError, EngineInfo, EngineResult, JoinTokens, NodeSpecUpdate, Swarm, SwarmObject,
};
use crate::model::observed::ObservedTask;
use crate::model::spec::{NetworkSpec, ObjectSpec, ServiceSpec};
use crate::model::{ObservedNode, ObservedObject, ObservedService};
use async_trait::async_trait;
use std::collections::BTreeMap;

/// The engine of one simulated machine. Every call works on the shared state, applies the real
/// engine's rules as this machine sees them, and keeps the result; a call on a machine that
/// is stopped or gone fails with [`EngineError::Unreachable`].
#[derive(Clone)]
pub struct SimEngine {
    store: Store,
    machine: String,
    clock: Clock,
}

impl std::fmt::Debug for SimEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimEngine")
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

impl SimEngine {
    pub(super) fn new(store: Store, machine: &str, clock: Clock) -> SimEngine {
        SimEngine {
            store,
            machine: machine.to_string(),
            clock,
        }
    }

    /// The machine this engine belongs to.
    pub fn machine(&self) -> &str {
        &self.machine
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&super::SimState, &str) -> EngineResult<R>,
    ) -> EngineResult<R> {
        self.store
            .read(|state| f(state, &self.machine))
            .map_err(|e| EngineError::Other(e.to_string()))?
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&mut super::SimState, &str, u64) -> EngineResult<R>,
    ) -> EngineResult<R> {
        let now = (self.clock)();
        self.store
            .write(Flush::Later, |state| f(state, &self.machine, now))
            .map_err(|e| EngineError::Other(e.to_string()))?
    }
}

#[async_trait]
impl Swarm for SimEngine {
    async fn info(&self) -> EngineResult<EngineInfo> {
        self.read(|s, m| s.info(m))
    }

    async fn init_swarm(&self) -> EngineResult<String> {
        self.write(|s, m, now| s.init_swarm(m, now))
    }

    async fn join_swarm(&self, remote_addr: &str, token: &str) -> EngineResult<()> {
        self.write(|s, m, now| s.join_swarm(m, remote_addr, token, now))
    }

    async fn leave_swarm(&self, force: bool) -> EngineResult<()> {
        self.write(|s, m, now| s.leave_swarm(m, force, now))
    }

    async fn inspect_swarm(&self) -> EngineResult<SwarmObject> {
        self.read(|s, m| s.inspect_swarm(m))
    }

    async fn join_tokens(&self) -> EngineResult<JoinTokens> {
        self.read(|s, m| s.join_tokens(m))
    }

    async fn update_swarm_labels(
        &self,
        version: u64,
        labels: BTreeMap<String, String>,
    ) -> EngineResult<()> {
        self.write(|s, m, _| s.update_swarm_labels(m, version, labels))
    }

    async fn list_nodes(&self) -> EngineResult<Vec<ObservedNode>> {
        let now = (self.clock)();
        self.read(|s, m| s.list_nodes(m, now))
    }

    async fn update_node(&self, id: &str, version: u64, spec: NodeSpecUpdate) -> EngineResult<()> {
        self.write(|s, m, now| s.update_node(m, id, version, spec, now))
    }

    async fn remove_node(&self, id: &str, force: bool) -> EngineResult<()> {
        self.write(|s, m, now| s.remove_node(m, id, force, now))
    }

    async fn list_services(&self) -> EngineResult<Vec<ObservedService>> {
        self.read(|s, m| s.list_services(m))
    }

    async fn create_service(&self, spec: &ServiceSpec) -> EngineResult<String> {
        self.write(|s, m, now| s.create_service(m, spec, now))
    }

    async fn update_service(&self, id: &str, version: u64, spec: &ServiceSpec) -> EngineResult<()> {
        self.write(|s, m, now| s.update_service(m, id, version, spec, now))
    }

    async fn remove_service(&self, id: &str) -> EngineResult<()> {
        self.write(|s, m, now| s.remove_service(m, id, now))
    }

    async fn list_networks(&self) -> EngineResult<BTreeMap<String, ObservedObject>> {
        self.read(|s, m| s.list_networks(m))
    }

    async fn create_network(&self, spec: &NetworkSpec) -> EngineResult<String> {
        self.write(|s, m, _| s.create_network(m, spec))
    }

    async fn remove_network(&self, id: &str) -> EngineResult<()> {
        self.write(|s, m, _| s.remove_network(m, id))
    }

    async fn list_secrets(&self) -> EngineResult<BTreeMap<String, ObservedObject>> {
        self.read(|s, m| s.list_objects(m, ObjectKind::Secret))
    }

    async fn create_secret(&self, spec: &ObjectSpec) -> EngineResult<String> {
        self.write(|s, m, _| s.create_object(m, ObjectKind::Secret, spec))
    }

    async fn remove_secret(&self, id: &str) -> EngineResult<()> {
        self.write(|s, m, _| s.remove_object(m, ObjectKind::Secret, id))
    }

    async fn list_configs(&self) -> EngineResult<BTreeMap<String, ObservedObject>> {
        self.read(|s, m| s.list_objects(m, ObjectKind::Config))
    }

    async fn create_config(&self, spec: &ObjectSpec) -> EngineResult<String> {
        self.write(|s, m, _| s.create_object(m, ObjectKind::Config, spec))
    }

    async fn remove_config(&self, id: &str) -> EngineResult<()> {
        self.write(|s, m, _| s.remove_object(m, ObjectKind::Config, id))
    }

    async fn list_tasks(&self) -> EngineResult<Vec<ObservedTask>> {
        self.read(|s, m| s.list_tasks(m))
    }
}
