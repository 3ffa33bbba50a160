//! The `sim` driver: an in-memory swarm with the real engine's rules, for tests, benchmarks
//! at thousands of nodes, and demos without Docker.
//!
//! It is a test double: machines are entries in a [`SimState`], each with an engine whose
//! [`Swarm`] API follows the Docker Engine's rules (join tokens, roles, quorum, the demote,
//! leave and remove refusals, version checks, references between objects) and answers with
//! the same [`EngineError`](crate::engine::EngineError) kinds and texts. Tasks are placed on
//! eligible nodes and moved when a node goes down or is drained, never rebalanced.
//!
//! [`SimDriver::open`] keeps the state in `<repo>/.shoal/sim.json`, loaded once and saved once
//! per batch of changes under a file lock, so processes share one cluster (see `store`);
//! [`SimDriver::in_memory`] keeps it in the process. The `shoal sim` faults
//! ([`SimDriver::kill_machine`], [`SimDriver::down_node`], [`SimDriver::up_node`],
//! [`SimDriver::set_replicas`]) change the cluster behind shoal's back, saved at once.
//!
//! The sim reads the clock ([`crate::clock::unix_now`]) only here, at its edge: every rule takes
//! `now` as an argument.

mod engine;
mod engine_checks;
mod rules;
mod sched;
mod state;
mod store;
#[cfg(test)]
mod tests;

pub use engine::SimEngine;
pub use state::{
    SimCounters, SimEngineState, SimMachine, SimNetwork, SimNode, SimObject, SimService, SimState,
    SimSwarm, SimTask, SimTokens,
};

use super::lock::{HeldLock, LockHolder};
use super::{Driver, DriverError, DriverResult};
use crate::engine::Swarm;
use crate::model::observed::LocalSwarmState;
use crate::model::{MachineSpec, MachineState, ObservedMachine};
use async_trait::async_trait;
use std::path::Path;
use std::sync::{Arc, Mutex};
use store::{Flush, Store};

/// Where the sim's clock comes from: seconds since the Unix epoch.
pub(crate) type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The folder, under the repository, that holds the sim's files.
pub const STATE_DIR: &str = ".shoal";

/// The simulated cluster's driver. Cheap to clone; clones share the same state.
#[derive(Clone)]
pub struct SimDriver {
    store: Store,
    cluster: String,
    clock: Clock,
}

impl std::fmt::Debug for SimDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDriver")
            .field("cluster", &self.cluster)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn io_error(error: std::io::Error) -> DriverError {
    DriverError::Other(format!("sim state: {error}"))
}

impl SimDriver {
    /// A driver over the state kept in `<repo_dir>/.shoal/sim.json` (created on first write;
    /// a missing file is an empty cluster). Drivers opened on the same folder within one
    /// process share the state; its last changes are saved when the last of them is dropped.
    pub fn open(repo_dir: &Path, cluster: &str) -> DriverResult<SimDriver> {
        Ok(SimDriver {
            store: Store::file(repo_dir.join(STATE_DIR)),
            cluster: cluster.to_string(),
            clock: Arc::new(crate::clock::unix_now),
        })
    }

    /// A driver over a fresh, empty state kept in this process only (cluster name `sim`).
    pub fn in_memory() -> SimDriver {
        SimDriver {
            store: Store::Memory(Arc::new(Mutex::new(SimState::default()))),
            cluster: "sim".to_string(),
            clock: Arc::new(crate::clock::unix_now),
        }
    }

    /// The same driver reading time from `clock` (seconds since the epoch) instead of the
    /// system clock; for tests that check timestamps.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> SimDriver {
        self.clock = Arc::new(clock);
        self
    }

    /// The cluster name endpoints carry.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The state as it is now, or why it could not be read.
    pub fn try_snapshot(&self) -> DriverResult<SimState> {
        self.store.read(SimState::clone).map_err(io_error)
    }

    /// The state as it is now.
    ///
    /// # Panics
    /// When the state file cannot be read (never for an in-memory driver); use
    /// [`SimDriver::try_snapshot`] to handle that.
    pub fn snapshot(&self) -> SimState {
        match self.try_snapshot() {
            Ok(state) => state,
            Err(e) => panic!("{e}"),
        }
    }

    /// How many mutating requests the sim has received (see [`SimCounters::writes`]).
    ///
    /// # Panics
    /// When the state file cannot be read (never for an in-memory driver).
    pub fn writes(&self) -> u64 {
        match self.store.read(|s| s.counters.writes) {
            Ok(writes) => writes,
            Err(e) => panic!("sim state: {e}"),
        }
    }

    /// The engine of a machine, as [`Driver::engine`] returns it but with its concrete type.
    pub fn sim_engine(&self, machine: &str) -> DriverResult<SimEngine> {
        self.existing(machine)?;
        Ok(SimEngine::new(
            self.store.clone(),
            machine,
            Arc::clone(&self.clock),
        ))
    }

    fn existing(&self, machine: &str) -> DriverResult<()> {
        let exists = self
            .store
            .read(|s| s.machines.contains_key(machine))
            .map_err(io_error)?;
        if exists {
            Ok(())
        } else {
            Err(DriverError::NoSuchMachine(machine.to_string()))
        }
    }

    /// Fault: the machine vanishes, as a deleted VM does. Its node stays in the swarm, down
    /// from now (the driver's clock). Not counted as a write.
    pub fn kill_machine(&self, name: &str) -> DriverResult<()> {
        let now = (self.clock)();
        let removed = self
            .store
            .write(Flush::Now, |s| s.remove_machine(name, now))
            .map_err(io_error)?;
        removed
            .then_some(())
            .ok_or_else(|| DriverError::NoSuchMachine(name.to_string()))
    }

    /// Fault: the machine stops (it still exists); its node goes down at `now`. Not counted.
    pub fn down_node(&self, name: &str, now: u64) -> DriverResult<()> {
        self.set_running(name, false, now)
    }

    /// Fault repair: the machine runs again and its node is ready from now (the driver's
    /// clock), unless the swarm removed the node meanwhile: then the engine is out of the
    /// swarm. Not counted.
    pub fn up_node(&self, name: &str) -> DriverResult<()> {
        self.set_running(name, true, (self.clock)())
    }

    fn set_running(&self, name: &str, running: bool, now: u64) -> DriverResult<()> {
        let found = self
            .store
            .write(Flush::Now, |s| s.set_running(name, running, now))
            .map_err(io_error)?;
        found
            .then_some(())
            .ok_or_else(|| DriverError::NoSuchMachine(name.to_string()))
    }

    /// Drift: sets a replicated service's replica count (by full service name) and bumps its
    /// version, as `docker service scale` does. Refused for other modes and without quorum.
    /// Not counted as a write.
    pub fn set_replicas(&self, service: &str, replicas: u64) -> DriverResult<()> {
        let now = (self.clock)();
        self.store
            .write(Flush::Now, |s| s.scale(service, replicas, now))
            .map_err(io_error)?
            .map_err(DriverError::Other)
    }
}

#[async_trait]
impl Driver for SimDriver {
    /// The sim's cluster changes only when written to.
    fn changes_on_its_own(&self) -> bool {
        false
    }

    /// The sim's nodes run no images.
    fn pulls_images(&self) -> bool {
        false
    }

    async fn list(&self) -> DriverResult<Vec<ObservedMachine>> {
        self.store
            .read(|s| {
                s.machines
                    .iter()
                    .map(|(name, m)| {
                        let answers = m.running;
                        ObservedMachine {
                            name: name.clone(),
                            state: if answers {
                                MachineState::Running
                            } else {
                                MachineState::Stopped
                            },
                            created_role: m.role,
                            swarm_state: if answers {
                                m.engine.swarm_state
                            } else {
                                LocalSwarmState::Inactive
                            },
                            node_id: m.engine.node_id.clone().filter(|_| answers),
                            engine_id: None,
                            problem: None,
                            address: None,
                        }
                    })
                    .collect()
            })
            .map_err(io_error)
    }

    async fn create(&self, machine: &MachineSpec) -> DriverResult<()> {
        let created = self
            .store
            .write(Flush::Later, |s| {
                s.create_machine(&machine.name, machine.role)
            })
            .map_err(io_error)?;
        created
            .then_some(())
            .ok_or_else(|| DriverError::MachineExists(machine.name.clone()))
    }

    async fn start(&self, machine: &str) -> DriverResult<()> {
        let now = (self.clock)();
        let found = self
            .store
            .write(Flush::Later, |s| {
                s.counters.writes += 1;
                s.set_running(machine, true, now)
            })
            .map_err(io_error)?;
        found
            .then_some(())
            .ok_or_else(|| DriverError::NoSuchMachine(machine.to_string()))
    }

    async fn destroy(&self, machine: &str) -> DriverResult<()> {
        let now = (self.clock)();
        let removed = self
            .store
            .write(Flush::Later, |s| {
                s.counters.writes += 1;
                s.remove_machine(machine, now)
            })
            .map_err(io_error)?;
        removed
            .then_some(())
            .ok_or_else(|| DriverError::NoSuchMachine(machine.to_string()))
    }

    async fn endpoint(&self, machine: &str) -> DriverResult<String> {
        self.existing(machine)?;
        Ok(format!("sim://{}/{machine}", self.cluster))
    }

    async fn engine(&self, machine: &str) -> DriverResult<Arc<dyn Swarm>> {
        Ok(Arc::new(self.sim_engine(machine)?))
    }

    async fn lock(&self, holder: &LockHolder, now: u64, ttl_seconds: u64) -> DriverResult<()> {
        self.store
            .write(Flush::Now, |s| match &s.lock {
                Some(lock) if !lock.can_be_taken_by(holder, now) => {
                    Err(DriverError::Locked(Box::new(lock.clone())))
                }
                _ => {
                    s.lock = Some(HeldLock {
                        holder: holder.clone(),
                        since: now,
                        expires_at: now.saturating_add(ttl_seconds),
                    });
                    Ok(())
                }
            })
            .map_err(io_error)?
    }

    async fn unlock(&self, holder: &LockHolder) -> DriverResult<()> {
        self.force_unlock(&holder.id).await.map(|_| ())
    }

    async fn force_unlock(&self, lock_id: &str) -> DriverResult<Option<HeldLock>> {
        self.store
            .write(Flush::Now, |s| {
                if s.lock.as_ref().is_some_and(|l| l.holder.id == lock_id) {
                    s.lock.take()
                } else {
                    None
                }
            })
            .map_err(io_error)
    }

    async fn destroy_all(&self) -> DriverResult<()> {
        self.store
            .write(Flush::Now, |s| {
                s.counters.writes += 1;
                s.machines.clear();
                s.swarms.clear();
            })
            .map_err(io_error)
    }
}
