//! `driver_options` of machines.yml, read once (by the config module, whose errors name the
//! file, line and column) into one typed struct per driver; each driver takes its own.
//!
//! machines.yml keys the options by driver name (`driver_options: {dind: {...}, generic:
//! {...}}`, so `--driver` can switch between them), or writes the options of its `driver`
//! alone (`driver_options: {preload_images: [...]}`). Plain data: paths as written, and the
//! defaults that depend on the machine shoal runs on (the dind state folder) left to the driver.

use super::desired::SshAccess;
use serde::{Deserialize, Serialize};

/// The options of every driver machines.yml writes options for (defaults for the others).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriverOptions {
    /// `driver_options.dind`.
    #[serde(skip_serializing_if = "is_default")]
    pub dind: DindSettings,
    /// `driver_options.generic`: defaults of each machine's `tls` and `ssh`.
    #[serde(skip_serializing_if = "is_default")]
    pub generic: GenericSettings,
    /// `driver_options.docker-machine`.
    #[serde(rename = "docker-machine", skip_serializing_if = "is_default")]
    pub docker_machine: DockerMachineSettings,
    /// `driver_options.qemu`.
    #[serde(skip_serializing_if = "is_default")]
    pub qemu: QemuSettings,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `driver_options.dind`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DindSettings {
    /// A node image on the host engine to use instead of the one built from the host's binaries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Host images copied into every node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preload_images: Vec<String>,
    /// The Docker version nodes run (`host`, `26`, `28`); `None` for the host's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The Debian archive Debian-built engines come from, without a trailing `/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debian_mirror: Option<String>,
    /// The host folder holding the node sockets; `None` for the driver's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// The cluster's own registry, when `registry` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySettings>,
}

/// `driver_options.dind.registry`: the cluster's own registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySettings {
    /// The port on the host's 127.0.0.1 and every node's.
    pub port: u16,
    /// An htpasswd file that turns on basic authentication, as written (relative to the
    /// repository unless absolute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub htpasswd: Option<String>,
}

/// `driver_options.generic`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenericSettings {
    /// The default cert folder of `tcp://` hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The default key and known_hosts of `ssh://` hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshAccess>,
}

/// `driver_options.docker-machine`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DockerMachineSettings {
    /// The `docker-machine` binary; `None` for `docker-machine` on PATH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// docker-machine's store, as written; `None` for its own default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_path: Option<String>,
    /// The docker-machine driver; `None` for `virtualbox`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Flags passed to `create` for every machine.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// docker-machine names of unlabelled machines given to the cluster.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub adopt: Vec<String>,
}

/// `driver_options.qemu`. Unset fields take the driver's defaults (768 MiB, 1 CPU, `auto`
/// acceleration, a 4G disk, the image built from Debian's packages).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QemuSettings {
    /// Memory of each VM in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    /// Virtual CPUs of each VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// `auto`, `kvm`, `hvf` or `tcg`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// Size of each VM's disk in bytes (written `4G`, `8192M`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// A folder holding a built VM image (`vmlinuz`, `initrd.img`, `root.img`), as written;
    /// `None` (or `auto`) for the one built from Debian's packages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Host images copied into every VM.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preload_images: Vec<String>,
    /// The IPv4 network of the VMs (`10.213.7.0/24`); `None` for one chosen free.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// The folder holding the VMs, as written; `None` for the driver's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// The Debian archive the kernel comes from, without a trailing `/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debian_mirror: Option<String>,
}
