//! Machine drivers: what creates, lists and destroys the machines, and reaches their engines.

pub mod dind;
pub mod docker_machine;
pub mod generic;
pub mod lock;
pub mod qemu;
pub mod sim;
pub mod swarm_lock;

use crate::engine::Swarm;
use crate::model::{Desired, DriverKind, MachineSpec, ObservedMachine};
use async_trait::async_trait;
use lock::{HeldLock, LockHolder};
use std::path::Path;
use std::sync::Arc;

/// What a driver failed with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The machine does not exist.
    #[error("machine {0} does not exist")]
    NoSuchMachine(String),
    /// The machine exists already.
    #[error("machine {0} exists already")]
    MachineExists(String),
    /// The apply lock is held by someone else.
    #[error("{0}")]
    Locked(Box<lock::HeldLock>),
    /// The driver cannot work here (missing binary, no engine, bad options).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Result of a driver call.
pub type DriverResult<T> = Result<T, DriverError>;

/// Creates, lists and destroys the cluster's machines and connects to their engines.
#[async_trait]
pub trait Driver: Send + Sync {
    /// The machines of this cluster that exist, with their engine's swarm membership.
    async fn list(&self) -> DriverResult<Vec<ObservedMachine>>;
    /// Creates and starts a machine; returns once its engine answers.
    async fn create(&self, machine: &MachineSpec) -> DriverResult<()>;
    /// Starts a stopped machine and waits until its engine answers.
    async fn start(&self, machine: &str) -> DriverResult<()>;
    /// Sets up what the machines rely on besides themselves (the dind driver's registry, with
    /// the preloaded images pushed into it). Called by apply and each watcher pass under the
    /// apply lock, before they plan; never by `plan`, which writes nothing.
    async fn prepare(&self) -> DriverResult<()> {
        Ok(())
    }
    /// Destroys a machine and everything the driver made for it.
    async fn destroy(&self, machine: &str) -> DriverResult<()>;
    /// The `DOCKER_HOST` value that reaches the machine's engine.
    async fn endpoint(&self, machine: &str) -> DriverResult<String>;
    /// The environment variables that point the docker CLI at the machine's engine, in the
    /// order `shoal env` prints them (`DOCKER_HOST`, and the TLS variables where TLS is used).
    async fn env(&self, machine: &str) -> DriverResult<Vec<(String, String)>> {
        Ok(vec![(
            "DOCKER_HOST".to_string(),
            self.endpoint(machine).await?,
        )])
    }
    /// Ends what [`Driver::env`] left running for the docker CLI (the generic driver's ssh
    /// forward), for `shoal env --unset MACHINE`.
    async fn unset_env(&self, _machine: &str) -> DriverResult<()> {
        Ok(())
    }
    /// The machine's engine.
    async fn engine(&self, machine: &str) -> DriverResult<Arc<dyn Swarm>>;
    /// Takes the cluster's apply lock for `holder` until `now + ttl_seconds` (a renewal when
    /// `holder` has it); takes over an expired lock or one whose holder is dead on this host;
    /// refuses with [`DriverError::Locked`] while another holder's lock is live.
    async fn lock(&self, holder: &LockHolder, now: u64, ttl_seconds: u64) -> DriverResult<()>;
    /// Releases the apply lock if `holder` holds it.
    async fn unlock(&self, holder: &LockHolder) -> DriverResult<()>;
    /// Removes the apply lock whose ID is `lock_id`, whoever holds it (`shoal unlock`);
    /// returns the lock removed, `None` when no lock has that ID.
    async fn force_unlock(&self, lock_id: &str) -> DriverResult<Option<HeldLock>>;
    /// Destroys every machine and everything else the driver made for the cluster.
    async fn destroy_all(&self) -> DriverResult<()>;
    /// What the driver made for the cluster besides machines and the apply lock (the dind
    /// network and registry), by name: what `destroy` still removes when no machine exists.
    async fn leftovers(&self) -> DriverResult<Vec<String>> {
        Ok(Vec::new())
    }
    /// What the driver found that people should know about the cluster (machines named like
    /// the cluster's that are not its own), added to every plan's warnings.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether the swarm's ingress routing mesh and VIPs can work on these machines (they need
    /// IPVS in the kernel); `None` when the driver cannot tell.
    fn routing_mesh(&self) -> Option<bool> {
        None
    }
    /// Whether the cluster changes on its own after a write (tasks start, fail, move), so that
    /// apply waits for what it changed to become healthy. A cluster that changes only when
    /// written to (the sim) is seen whole at one look.
    fn changes_on_its_own(&self) -> bool {
        true
    }
    /// Whether nodes pull images from registries, so that tags are pinned to the digests they
    /// point to at plan time (`policy.images: pin`). Nodes that pull nothing (the sim) are not.
    fn pulls_images(&self) -> bool {
        true
    }
    /// The events of the machines themselves, beside their engines' (the dind driver: the host
    /// engine's `die`, `stop`, `kill` and `destroy` of the cluster's machine containers), after
    /// `since_nano` when given; `None` when the driver has no such events.
    async fn machine_events(
        &self,
        _since_nano: Option<i64>,
    ) -> Option<DriverResult<crate::engine::EventStream>> {
        None
    }
    /// Images the driver copies into every node itself (not from a registry), by reference as
    /// written: they are not pinned, as no registry knows them.
    fn side_loaded_images(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The checks of what the driver of `desired` can do here (`shoal doctor`), relative paths in
/// its options taken from `base` (the repository folder); `None` for a driver without any.
pub async fn doctor(desired: &Desired, base: &Path) -> Option<dind::DoctorReport> {
    match desired.driver {
        DriverKind::Dind => Some(dind::doctor(&desired.driver_options.dind, base).await),
        DriverKind::Qemu => Some(qemu::doctor::doctor(&desired.driver_options.qemu, base).await),
        DriverKind::Sim | DriverKind::Generic | DriverKind::DockerMachine => None,
    }
}

/// Opens the driver of `desired`; the sim keeps its state under `state_dir/.shoal`, the
/// generic driver reads relative `tls:`/`ssh:` paths from `state_dir` (the repository folder),
/// and the docker-machine driver a relative `storage_path`.
pub async fn open_driver(
    desired: &Desired,
    state_dir: &Path,
) -> Result<Arc<dyn Driver>, DriverError> {
    match desired.driver {
        DriverKind::Sim => Ok(Arc::new(sim::SimDriver::open(state_dir, &desired.cluster)?)),
        DriverKind::Dind => Ok(Arc::new(
            dind::DindDriver::connect(&desired.cluster, &desired.driver_options.dind, state_dir)
                .await?,
        )),
        DriverKind::Generic => Ok(Arc::new(generic::GenericDriver::new(desired, state_dir))),
        DriverKind::DockerMachine => {
            let options = docker_machine::DockerMachineOptions::from_settings(
                &desired.driver_options.docker_machine,
                state_dir,
            );
            Ok(Arc::new(docker_machine::DockerMachineDriver::new(
                desired, options,
            )))
        }
        DriverKind::Qemu => {
            let options = qemu::QemuOptions::from_settings(&desired.driver_options.qemu, state_dir);
            Ok(Arc::new(qemu::QemuDriver::new(desired, options)))
        }
    }
}
