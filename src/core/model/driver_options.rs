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
