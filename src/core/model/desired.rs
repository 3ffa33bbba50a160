//! The desired cluster, as the repository's files describe it after validation.

use super::spec::{NetworkSpec, ObjectSpec, ServiceSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A swarm role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs Raft and the control plane (and tasks, unless drained).
    Manager,
    /// Runs tasks only.
    Worker,
}

impl Role {
    /// The role's name as the docker CLI writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Which machine driver creates and destroys machines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriverKind {
    /// Privileged containers running their own dockerd, on the local engine.
    #[default]
    Dind,
    /// The in-memory simulated swarm kept in `.shoal/sim.json`.
    Sim,
    /// Existing hosts, one Docker endpoint each.
    Generic,
    /// The `docker-machine` binary.
    DockerMachine,
    /// Local qemu VMs with real kernels, built from Debian's packages.
    Qemu,
}

impl DriverKind {
    /// Every driver.
    pub const ALL: [DriverKind; 5] = [
        DriverKind::Dind,
        DriverKind::Sim,
        DriverKind::Generic,
        DriverKind::DockerMachine,
        DriverKind::Qemu,
    ];
    /// Every driver's name as machines.yml writes it.
    pub const NAMES: [&'static str; 5] = [
        DriverKind::Dind.as_str(),
        DriverKind::Sim.as_str(),
        DriverKind::Generic.as_str(),
        DriverKind::DockerMachine.as_str(),
        DriverKind::Qemu.as_str(),
    ];

    /// The driver machines.yml (or `--driver`) names `name`.
    pub fn named(name: &str) -> Option<DriverKind> {
        DriverKind::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// The driver's name as machines.yml writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            DriverKind::Dind => "dind",
            DriverKind::Sim => "sim",
            DriverKind::Generic => "generic",
            DriverKind::DockerMachine => "docker-machine",
            DriverKind::Qemu => "qemu",
        }
    }

    /// Whether the driver creates and destroys machines; `generic` hosts exist already and are
    /// only joined to and taken out of the swarm.
    pub fn manages_machines(self) -> bool {
        self != DriverKind::Generic
    }
}

/// One machine after `count` expansion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineSpec {
    /// Machine name (`vm-worker2`).
    pub name: String,
    /// Swarm role.
    pub role: Role,
    /// Swarm node labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Docker endpoint of an existing host (generic driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// How a driver reaches or makes one machine, beyond its role: machines.yml's per-machine
/// `tls:`, `ssh:`, `flags:`, `memory:` and `cpus:` with the `driver_options` defaults applied. Paths are as written:
/// relative to the repository folder, or absolute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineAccess {
    /// generic, `tcp://` hosts: the folder with `ca.pem`, `cert.pem` and `key.pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// generic, `ssh://` hosts: the key and known_hosts files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshAccess>,
    /// docker-machine: flags appended to `docker-machine create` for this machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// qemu: this VM's memory in MiB, instead of `driver_options.qemu.memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    /// qemu: this VM's virtual CPUs, instead of `driver_options.qemu.cpus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
}

/// An ssh login's files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshAccess {
    /// The private key file.
    pub key: String,
    /// The known_hosts file that must hold the host's key.
    pub known_hosts: String,
}

/// Cluster-wide policy switches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Remove labelled services, networks, secrets and configs the files no longer name.
    pub prune: bool,
    /// Replace machines that are gone or whose node is down past the grace period.
    pub self_heal: bool,
    /// Force-update services after new nodes join so that tasks spread onto them.
    pub rebalance: bool,
    /// Seconds a node may be down before self-heal replaces it.
    pub down_grace_seconds: u64,
    /// Keys whose values plans show although they look secret (`policy.show_values`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub show_values: Vec<String>,
    /// How service images are sent (`policy.images`).
    #[serde(default)]
    pub images: ImagePolicy,
    /// What a watcher does when a commit leaves a service it changed degraded
    /// (`policy.on_failure`).
    #[serde(default)]
    pub on_failure: OnFailure,
}

/// `policy.on_failure`: what happens to a commit that leaves a service it changed degraded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// The cluster stays at the failed commit; the failure is reported (the default).
    #[default]
    Hold,
    /// The services, secrets and configs of the last healthy revision are applied again.
    Rollback,
}

/// `policy.images`: whether tags are resolved to digests at plan time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImagePolicy {
    /// Resolve each tag to its digest through the registry, as `docker stack deploy` does, so
    /// a tag that moved plans an update.
    #[default]
    Pin,
    /// Send references as written (`docker stack deploy --resolve-image never`).
    AsWritten,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            prune: true,
            self_heal: true,
            rebalance: false,
            down_grace_seconds: 60,
            show_values: Vec::new(),
            images: ImagePolicy::Pin,
            on_failure: OnFailure::Hold,
        }
    }
}

/// A stack: what one compose file turns into.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    /// Stack name (the namespace).
    pub name: String,
    /// Compose file, relative to the repository.
    pub file: String,
    /// Services by full swarm name.
    pub services: BTreeMap<String, ServiceSpec>,
    /// Networks the stack creates, by full swarm name (external ones are not here).
    pub networks: BTreeMap<String, NetworkSpec>,
    /// External networks the services use, which must already exist (see
    /// [`is_node_local_network`] for the ones every node has).
    pub external_networks: Vec<String>,
    /// Secrets the stack creates, by full (content-derived) swarm name.
    pub secrets: BTreeMap<String, ObjectSpec>,
    /// Configs the stack creates, by full (content-derived) swarm name.
    pub configs: BTreeMap<String, ObjectSpec>,
    /// `depends_on`: by full service name, what each service waits for before it is created
    /// or updated (DESIGN §9); only services that name some are here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Vec<Dependency>>,
}

/// What a dependant waits for: compose's `depends_on.<service>.condition`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The dependency's service exists and a task of it runs (the default).
    #[default]
    ServiceStarted,
    /// The dependency is healthy: every task runs, each passing its health check.
    ServiceHealthy,
    /// The dependency is a job that completed.
    ServiceCompletedSuccessfully,
}

impl Condition {
    /// Every condition, as compose writes them.
    pub const ALL: [Condition; 3] = [
        Condition::ServiceStarted,
        Condition::ServiceHealthy,
        Condition::ServiceCompletedSuccessfully,
    ];

    /// The condition's compose name.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::ServiceStarted => "service_started",
            Condition::ServiceHealthy => "service_healthy",
            Condition::ServiceCompletedSuccessfully => "service_completed_successfully",
        }
    }

    /// How a plan says a dependency reached it (`#3 is healthy`).
    pub fn reached(self) -> &'static str {
        match self {
            Condition::ServiceStarted => "has started",
            Condition::ServiceHealthy => "is healthy",
            Condition::ServiceCompletedSuccessfully => "completed",
        }
    }
}

/// One entry of a service's `depends_on`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dependency {
    /// The service depended on, by full swarm name (same stack).
    pub service: String,
    /// What it must reach first.
    pub condition: Condition,
}

/// The desired cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    /// Cluster name.
    pub cluster: String,
    /// Machine driver.
    pub driver: DriverKind,
    /// The drivers' options, read.
    pub driver_options: super::DriverOptions,
    /// Machines by name, after `count` expansion.
    pub machines: BTreeMap<String, MachineSpec>,
    /// How the driver reaches or makes each machine (generic and docker-machine), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub access: BTreeMap<String, MachineAccess>,
    /// Stacks by name.
    pub stacks: BTreeMap<String, Stack>,
    /// Policy switches.
    pub policy: Policy,
    /// Warnings found while loading the files.
    pub warnings: Vec<String>,
    /// The `notify:` webhooks, resolved from the environment (DESIGN §9). Never serialized:
    /// their URLs and secrets come from the environment and stay out of plans and logs.
    #[serde(skip)]
    pub notify: Vec<super::notifications::NotifyTarget>,
}

impl Desired {
    /// The machines with the given role, in name order.
    pub fn machines_with_role(&self, role: Role) -> impl Iterator<Item = &MachineSpec> {
        self.machines.values().filter(move |m| m.role == role)
    }
}

/// Whether `name` is a network every Docker engine has on its own (`bridge`, `host`, `none`),
/// which `docker stack deploy` accepts as external without looking for it in the swarm.
pub fn is_node_local_network(name: &str) -> bool {
    matches!(name, "bridge" | "host" | "none" | "default")
}
