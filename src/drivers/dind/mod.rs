//! The `dind` driver: every machine is a container on the local Docker engine running its own
//! dockerd, the way kind and k3d run their nodes.
//!
//! A cluster gets a bridge network `<cluster>-net` (a subnet outside 10.0.0.0/8, which swarm keeps
//! for overlays). Each machine is a container `<cluster>-<machine>` with the machine's name as
//! hostname, `/var/lib/docker` on a named volume (so the inner engine can use overlay2), tmpfs
//! `/run` and `/tmp`, a private cgroup namespace, and a host folder
//! `<state dir>/<cluster>/<machine>/` bind-mounted at `/run/shoal-host`, where the inner dockerd
//! puts a second socket: the host reaches every node over a unix socket, never over the network.
//! Everything carries the `io.shoal.cluster` label, so [`Driver::list`] and
//! [`Driver::destroy_all`] need no state file.
//!
//! The node image is built locally from the host's own engine binaries (see [`NodeImage`]) unless
//! `driver_options.image` names one; images listed in `driver_options.preload_images` are copied
//! from the host engine into every node as it is created, so no registry is ever needed.
//!
//! Nodes run `--privileged` where that works. Docker before 23.0 fails to start privileged
//! containers when its own capability bounding set lacks a capability ("unable to apply caps");
//! the driver then falls back to every capability the daemon has, with seccomp, AppArmor and the
//! masked system paths lifted and all devices allowed (see [`Security`]). When the local dockerd
//! is visibly in that case (older than 23.0, capabilities missing from its `CapBnd`), the
//! fallback is used from the start; otherwise it is tried after a failed privileged start, and
//! the mode that worked is kept for the driver's later nodes.
//!
//! Driver options (`driver_options` in machines.yml):
//! - `image`: a node image on the host engine to use instead of building one;
//! - `engine`: the Docker version nodes run: `host` (default, the host's binaries), `"26"` or
//!   `"28"` (built from Debian's packages, see [`debian`]);
//! - `debian_mirror`: the Debian archive those are built from (default: `$SHOAL_DEBIAN_MIRROR`,
//!   else the machine's apt sources, else deb.debian.org);
//! - `preload_images`: host images to copy into each node;
//! - `state_dir`: the host folder for the node sockets (default `$SHOAL_DIND_DIR`, else
//!   `/tmp/shoal-dind`; keep it short, unix socket paths are limited to 107 bytes);
//! - `registry`: the cluster's own registry (see [`registry`]); `preload_images` are then
//!   pushed into it once instead of being copied into each node, where nodes can pull them.

pub mod debian;
mod demo;
mod doctor;
pub(crate) mod lock;
mod network;
pub(crate) mod node;
pub mod node_init;
pub(crate) mod nodeimage;
pub mod registry;
mod upload;

pub use crate::config::registry::RegistryOptions;
pub use demo::{build_demo_image, DEMO_IMAGE};
pub use doctor::{doctor, exec, Check, CheckStatus, DoctorReport};
pub use lock::{LABEL_LOCK_EXPIRES, LABEL_LOCK_HOLDER, LABEL_LOCK_NONCE, LABEL_LOCK_SINCE};
pub use node::Security;

/// Label of the volume that marks a machine whose setup (start, image preload) finished.
pub const LABEL_READY: &str = "io.shoal.ready";
/// Label of everything the driver makes while [`TEST_LABEL_ENV`] is set: what tests made, which
/// `.ci/run` removes after an interrupted run (never a user's own clusters, which lack it).
pub const LABEL_TEST: &str = "io.shoal.test";
/// Environment variable that the test helpers and `.ci/run` set (to any value, the label's) so
/// that what the driver makes carries [`LABEL_TEST`].
pub const TEST_LABEL_ENV: &str = "SHOAL_TEST_LABEL";
pub use nodeimage::{
    cached_images, ensure_node_image, shoal_binary, Engine, NodeImage, NODE_BINARY_ENV,
    NODE_IMAGE_LABEL, NODE_IMAGE_REPO,
};

use super::lock::{HeldLock, LockHolder};
use super::{Driver, DriverError, DriverResult};
use crate::docker::DockerEngine;
use crate::engine::Swarm;
use crate::model::driver_options::DindSettings;
use crate::model::{
    MachineSpec, MachineState, ObservedMachine, Role, LABEL_CLUSTER, LABEL_MACHINE, LABEL_ROLE,
};
use async_trait::async_trait;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions,
};
use bollard::Docker;
use registry::ClusterRegistry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Environment variable naming the host folder that holds the node sockets.
pub const STATE_DIR_ENV: &str = "SHOAL_DIND_DIR";
/// The host folder for node sockets when neither the option nor the variable is set.
pub const DEFAULT_STATE_DIR: &str = "/tmp/shoal-dind";
/// Where each node's host folder is mounted inside the node.
pub const NODE_HOST_DIR: &str = "/run/shoal-host";
/// Longest unix socket path the kernel accepts (`sun_path` is 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Timeout of each request to the host engine; image transfers can be long.
const HOST_TIMEOUT: Duration = Duration::from_secs(600);

/// The labels of what the driver makes for `cluster`: [`LABEL_CLUSTER`], `more`, and
/// [`LABEL_TEST`] when this process runs for the tests (read once per process).
pub(crate) fn labels_for<const N: usize>(
    cluster: &str,
    more: [(&str, String); N],
) -> HashMap<String, String> {
    static TEST: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let test = TEST.get_or_init(|| std::env::var(TEST_LABEL_ENV).ok());
    std::iter::once((LABEL_CLUSTER, cluster.to_string()))
        .chain(more)
        .chain(test.iter().map(|value| (LABEL_TEST, value.clone())))
        .map(|(key, value)| (key.to_string(), value))
        .collect()
}

/// What the dind driver failed with.
#[derive(Debug, thiserror::Error)]
pub enum DindError {
    /// The host engine refused or failed a request.
    #[error("{context}: {source}")]
    Docker {
        /// What was being done.
        context: String,
        /// The engine's answer.
        #[source]
        source: bollard::errors::Error,
    },
    /// A host file or folder could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The driver cannot work here: no engine, a missing host binary, bad options.
    #[error("{0}")]
    Unavailable(String),
    /// A node container started but its engine never answered, or it stopped.
    #[error("node {machine}: {problem}\n--- last lines of its log ---\n{log}")]
    NodeFailed {
        /// The machine.
        machine: String,
        /// What went wrong.
        problem: String,
        /// The tail of the container's log.
        log: String,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl DindError {
    pub(crate) fn docker(context: impl Into<String>, source: bollard::errors::Error) -> DindError {
        DindError::Docker {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> DindError {
        DindError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<DindError> for DriverError {
    fn from(error: DindError) -> DriverError {
        match error {
            DindError::Unavailable(message) => DriverError::Unavailable(message),
            other => DriverError::Other(other.to_string()),
        }
    }
}

/// HTTP status of an engine error, if it is one.
pub(crate) fn status_of(error: &bollard::errors::Error) -> Option<u16> {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Whether an engine error says the object does not exist, whatever its status.
pub(crate) use crate::docker::is_not_found_answer as is_not_found;

/// Removes a container, running or not, with its anonymous volumes; `false` when there was none.
pub(crate) async fn remove_container(docker: &Docker, name: &str) -> Result<bool, DindError> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(DindError::docker(
            format!("cannot remove container {name}"),
            e,
        )),
    }
}

/// The dind driver's options, read from `driver_options`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DindOptions {
    /// A node image on the host engine to use instead of building `shoal-node:<hash>`.
    pub image: Option<String>,
    /// Host images copied into every node after it starts.
    pub preload_images: Vec<String>,
    /// The Docker version the nodes run.
    pub engine: Engine,
    /// The Debian archive Debian-built engines come from (see [`debian::archive_url`]).
    pub debian_mirror: Option<String>,
    /// The host folder holding `<cluster>/<machine>/docker.sock`.
    pub state_dir: PathBuf,
    /// The cluster's own registry, when `registry` is set.
    pub registry: Option<RegistryOptions>,
}

impl Default for DindOptions {
    fn default() -> Self {
        DindOptions {
            image: None,
            preload_images: Vec::new(),
            engine: Engine::Host,
            debian_mirror: None,
            state_dir: default_state_dir(),
            registry: None,
        }
    }
}

fn default_state_dir() -> PathBuf {
    std::env::var_os(STATE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

impl DindOptions {
    /// The options machines.yml gives (read and checked by [`crate::config`]), relative paths
    /// in them taken from `base` (the repository folder), defaults filled in.
    pub fn from_settings(settings: &DindSettings, base: &Path) -> Result<DindOptions, DindError> {
        let engine = match settings.engine.as_deref() {
            None => Engine::Host,
            Some(name) => Engine::parse(name).ok_or_else(|| {
                DindError::Unavailable(format!(
                    "driver_options.engine must be one of {} for the dind driver, not `{name}`",
                    Engine::all()
                        .iter()
                        .map(|e| format!("\"{}\"", e.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        };
        let registry = (settings.registry.as_ref())
            .map(|r| RegistryOptions::at(r.port, r.htpasswd.as_deref(), base));
        Ok(DindOptions {
            image: settings.image.clone(),
            preload_images: settings.preload_images.clone(),
            engine,
            debian_mirror: settings.debian_mirror.clone(),
            state_dir: (settings.state_dir.as_ref())
                .map(PathBuf::from)
                .unwrap_or_else(default_state_dir),
            registry,
        })
    }
}

impl DindOptions {
    /// The images copied into every node (`preload_images`), except those pushed into the
    /// cluster's registry under their own name (`localhost:<port>/…`): those are in a
    /// registry, and pinned like any other.
    pub fn side_loaded_images(&self) -> Vec<String> {
        let registry = self.registry.as_ref();
        (self.preload_images.iter())
            .filter(|image| !registry.is_some_and(|r| r.names(image)))
            .cloned()
            .collect()
    }
}

/// Connects to the host engine the way the docker CLI does by default (`DOCKER_HOST` when it is
/// a unix socket, else `/var/run/docker.sock`) and agrees on an API version with it.
/// A `DOCKER_HOST` that points at one of shoal's own node sockets (left by
/// `eval $(shoal env MACHINE)`) is not the host engine and is ignored.
pub async fn connect_host() -> Result<Docker, DindError> {
    const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
    let host = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
    let node_socket = host.as_deref().is_some_and(|host| {
        host.strip_prefix("unix://")
            .is_some_and(|path| Path::new(path).starts_with(default_state_dir()))
    });
    let silent = |e: &dyn std::fmt::Display| {
        DindError::Unavailable(format!(
            "the dind driver needs a local Docker engine, and it does not answer: {e}; is dockerd running, and may this user use its socket?"
        ))
    };
    let socket = match host.as_deref() {
        None => Some(DEFAULT_SOCKET),
        Some(_) if node_socket => Some(DEFAULT_SOCKET),
        Some(host) => host.strip_prefix("unix://"),
    };
    if let Some(path) = socket {
        let docker = crate::docker::connect_unix(path, HOST_TIMEOUT.as_secs())
            .await
            .map_err(|e| silent(&e))?;
        return Ok(docker.with_timeout(HOST_TIMEOUT));
    }
    let docker = Docker::connect_with_local_defaults()
        .map_err(|e| {
            DindError::Unavailable(format!(
                "the dind driver needs a local Docker engine and cannot reach one: {e}"
            ))
        })?
        .with_timeout(HOST_TIMEOUT);
    crate::docker::negotiated(docker)
        .await
        .map_err(|e| silent(&e))
}

/// The driver of one cluster made of node containers on the local engine.
pub struct DindDriver {
    docker: Docker,
    cluster: String,
    options: DindOptions,
    image: tokio::sync::OnceCell<NodeImage>,
    network: tokio::sync::Mutex<()>,
    /// Addresses handed to machines being created by this process, not yet visible on the
    /// network.
    reserved: tokio::sync::Mutex<Vec<std::net::Ipv4Addr>>,
    security: Arc<Mutex<Option<Security>>>,
    /// The preloaded images this process pushed into the cluster's registry, with the host
    /// image ID pushed; held while the registry is made ready.
    pushed: tokio::sync::Mutex<HashMap<String, String>>,
    /// The registry image, once made sure of.
    registry_image: tokio::sync::OnceCell<String>,
    /// Whether each node container (by ID) was made to reach the registry as configured.
    reaches_registry: tokio::sync::Mutex<HashMap<String, bool>>,
    /// What the next `prepare` changes about the registry, as the last `list` found it.
    registry_change: Mutex<Option<String>>,
    /// The engine of each node reached, by node container ID: one connection (its API version
    /// negotiated once) per engine for the driver's life; a re-created node is a new container,
    /// reached anew.
    engines: Mutex<HashMap<String, Arc<DockerEngine>>>,
    /// Each running machine's node container as the last [`Driver::list`] found it, so that
    /// reaching its engine right after asks the host engine nothing more; forgotten for a
    /// machine this driver creates, starts or destroys.
    seen: Mutex<HashMap<String, NodeContainer>>,
}

/// A machine's node container: its ID and its address on the cluster network.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NodeContainer {
    id: String,
    address: String,
}

impl std::fmt::Debug for DindDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DindDriver")
            .field("cluster", &self.cluster)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl DindDriver {
    /// Connects to the local engine for `cluster`, with the options of machines.yml (relative
    /// paths in them taken from `base`, the repository folder).
    pub async fn connect(
        cluster: &str,
        settings: &DindSettings,
        base: &Path,
    ) -> DriverResult<DindDriver> {
        let options = DindOptions::from_settings(settings, base)?;
        let docker = connect_host().await?;
        Ok(DindDriver::with_docker(docker, cluster, options))
    }

    /// A driver over an engine connection made by the caller (already version-negotiated).
    pub fn with_docker(docker: Docker, cluster: &str, options: DindOptions) -> DindDriver {
        DindDriver {
            docker,
            cluster: cluster.to_string(),
            options,
            image: tokio::sync::OnceCell::new(),
            network: tokio::sync::Mutex::new(()),
            reserved: tokio::sync::Mutex::new(Vec::new()),
            security: Arc::new(Mutex::new(None)),
            pushed: tokio::sync::Mutex::new(HashMap::new()),
            registry_image: tokio::sync::OnceCell::new(),
            reaches_registry: tokio::sync::Mutex::new(HashMap::new()),
            registry_change: Mutex::new(None),
            engines: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Finds what the next `prepare` changes about the cluster's registry (see
    /// [`registry::pending_change`]), for the plan's warnings.
    async fn look_at_registry(&self) {
        let running = registry::running(&self.docker, &self.cluster).await;
        let wanted = self.options.registry.as_ref().map(|options| {
            let htpasswd = (options.htpasswd.as_deref())
                .and_then(|path| registry::read_htpasswd(path, options.repository.as_deref()).ok());
            (options, htpasswd)
        });
        let wanted = wanted.as_ref().map(|(o, h)| (*o, h.as_deref()));
        let change = registry::pending_change(&self.cluster, running.as_ref(), wanted);
        if let Ok(mut slot) = self.registry_change.lock() {
            *slot = change;
        }
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The options in use.
    pub fn options(&self) -> &DindOptions {
        &self.options
    }

    /// The host engine connection.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The node container's name, `<cluster>-<machine>`.
    pub fn container_name(&self, machine: &str) -> String {
        format!("{}-{machine}", self.cluster)
    }

    /// The cluster network's name, `<cluster>-net`.
    pub fn network_name(&self) -> String {
        format!("{}-net", self.cluster)
    }

    /// The node's data volume, `<cluster>-<machine>-data`.
    pub fn volume_name(&self, machine: &str) -> String {
        format!("{}-{machine}-data", self.cluster)
    }

    /// The volume whose existence says the machine's setup finished, `<cluster>-<machine>-ready`.
    /// Container labels cannot change after creation, so completion is recorded as an object
    /// created last; it survives restarts of the host.
    pub fn ready_marker_name(&self, machine: &str) -> String {
        format!("{}-{machine}-ready", self.cluster)
    }

    /// The host folder of the cluster, `<state dir>/<cluster>`.
    pub fn cluster_dir(&self) -> PathBuf {
        self.options.state_dir.join(&self.cluster)
    }

    /// The host folder mounted into the node at `/run/shoal-host`.
    pub fn host_dir(&self, machine: &str) -> PathBuf {
        self.cluster_dir().join(machine)
    }

    /// The host path of the node engine's socket.
    pub fn socket_path(&self, machine: &str) -> PathBuf {
        self.host_dir(machine).join("docker.sock")
    }

    /// How node containers are started here, once the first one has started.
    pub fn security(&self) -> Option<Security> {
        lock_security(&self.security).clone()
    }

    /// The node image: `driver_options.image`, or the image of `driver_options.engine` built
    /// on first use (and reused while its tag exists).
    pub async fn node_image(&self) -> Result<NodeImage, DindError> {
        self.image
            .get_or_try_init(|| async {
                match &self.options.image {
                    Some(image) => nodeimage::given_image(&self.docker, image).await,
                    None => {
                        ensure_node_image(
                            &self.docker,
                            self.options.engine,
                            self.options.debian_mirror.as_deref(),
                        )
                        .await
                    }
                }
            })
            .await
            .cloned()
    }

    /// The machine's address on the cluster network: what it advertises to the swarm.
    pub async fn address(&self, machine: &str) -> DriverResult<String> {
        Ok(self.node_container(machine).await?.address)
    }

    /// The machine's node container, as the host engine describes it now (one request).
    async fn node_container(&self, machine: &str) -> DriverResult<NodeContainer> {
        let name = self.container_name(machine);
        let inspect = self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.machine_error(machine, "inspect the node container", e))?;
        let network = self.network_name();
        let address = (inspect.network_settings)
            .and_then(|s| s.networks)
            .and_then(|mut n| n.remove(&network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| {
                DriverError::Other(format!(
                    "machine {machine} has no address on {network}: is its container running?"
                ))
            })?;
        Ok(NodeContainer {
            id: inspect.id.unwrap_or_default(),
            address,
        })
    }

    /// Forgets what the last list found of `machine`'s container (it is being created, started
    /// or destroyed).
    fn forget_seen(&self, machine: &str) {
        lock_poisoned(&self.seen).remove(machine);
    }

    fn machine_error(
        &self,
        machine: &str,
        doing: &str,
        error: bollard::errors::Error,
    ) -> DriverError {
        if is_not_found(&error) {
            DriverError::NoSuchMachine(machine.to_string())
        } else {
            DindError::docker(
                format!(
                    "cannot {doing} of machine {machine} ({})",
                    self.container_name(machine)
                ),
                error,
            )
            .into()
        }
    }

    /// Every container of the cluster, running or not: the nodes and the registry.
    async fn cluster_containers(
        &self,
    ) -> Result<Vec<bollard::models::ContainerSummary>, DindError> {
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.cluster_filter()),
                ..Default::default()
            }))
            .await
            .map_err(|e| DindError::docker("cannot list the cluster's containers", e))
    }

    /// Every volume of the cluster: node data, ready markers, the lock, the registry's.
    async fn cluster_volumes(&self) -> Result<Vec<bollard::models::Volume>, DindError> {
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(self.cluster_filter()),
            }))
            .await
            .map_err(|e| DindError::docker("cannot list the cluster's volumes", e))?;
        Ok(volumes.volumes.unwrap_or_default())
    }

    /// The cluster's networks.
    async fn cluster_networks(&self) -> Result<Vec<bollard::models::Network>, DindError> {
        self.docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(self.cluster_filter()),
            }))
            .await
            .map_err(|e| DindError::docker("cannot list the cluster's networks", e))
    }

    fn cluster_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_CLUSTER}={}", self.cluster)],
        )])
    }

    async fn ensure_network(&self) -> Result<String, DindError> {
        let _one_at_a_time = self.network.lock().await;
        let name = self.network_name();
        network::ensure(&self.docker, &name, &self.cluster).await?;
        Ok(name)
    }

    /// Makes sure the cluster's registry runs with `options` and holds the preloaded images
    /// it can serve, and names the nodes that do not reach it.
    async fn ensure_registry(&self, options: &RegistryOptions) -> Result<(), DindError> {
        let mut pushed = self.pushed.lock().await;
        let network = self.ensure_network().await?;
        let (subnet, _) = network::addresses_in_use(&self.docker, &network).await?;
        let address = registry::address(subnet);
        let placement = registry::Placement {
            cluster: &self.cluster,
            network: &network,
            address,
        };
        let image = self
            .registry_image
            .get_or_try_init(|| registry::ensure_image(&self.docker))
            .await?;
        registry::ensure(&self.docker, &placement, options, image).await?;
        let started = std::time::Instant::now();
        let sent = registry::push_preloaded(
            &self.docker,
            options,
            &self.options.preload_images,
            &mut pushed,
        )
        .await?;
        if !sent.is_empty() {
            tracing::info!(images = ?sent, seconds = started.elapsed().as_secs_f64(), "pushed the preloaded images into the cluster's registry");
        }
        self.warn_nodes_without_registry(&options.node_settings(address))
            .await;
        Ok(())
    }

    /// Warns about node containers made before the registry was set, or with other settings
    /// (port, mirror): their engine does not reach it as the others do, and a container's
    /// settings cannot change.
    async fn warn_nodes_without_registry(&self, (forward, args): &(String, Vec<String>)) {
        let expected = format!("SHOAL_REGISTRY_FORWARD={forward}");
        let Ok(containers) = self.cluster_containers().await else {
            return;
        };
        for container in containers {
            let labels = container.labels.unwrap_or_default();
            let (Some(machine), Some(id)) = (labels.get(LABEL_MACHINE), container.id) else {
                continue;
            };
            // A container's settings never change: each is inspected once per driver.
            let known = self.reaches_registry.lock().await.get(&id).copied();
            let reaches = match known {
                Some(reaches) => reaches,
                None => {
                    let config = self
                        .docker
                        .inspect_container(&id, None::<InspectContainerOptions>)
                        .await
                        .ok()
                        .and_then(|c| c.config)
                        .unwrap_or_default();
                    let reaches = config.env.unwrap_or_default().contains(&expected)
                        && config.cmd.unwrap_or_default() == *args;
                    self.reaches_registry.lock().await.insert(id, reaches);
                    reaches
                }
            };
            if !reaches {
                tracing::warn!(
                    machine = %machine,
                    "machine {machine} was created before driver_options.registry was set (or with another port or htpasswd) and does not pull from the cluster's registry as the others do; remove it from machines.yml, apply, and add it back"
                );
            }
        }
    }

    /// The preloaded images copied into each node: those the cluster's registry cannot serve.
    fn images_to_load(&self) -> Vec<String> {
        let registry = self.options.registry.as_ref();
        (self.options.preload_images.iter())
            .filter(|image| registry.and_then(|r| r.pushed_name(image)).is_none())
            .cloned()
            .collect()
    }

    async fn create_machine(&self, machine: &MachineSpec) -> Result<(), DindError> {
        let image = self.node_image().await?;
        let network = self.ensure_network().await?;
        self.remove_volume(&self.ready_marker_name(&machine.name))
            .await?;
        let (subnet, address) = self.reserve_address(&network).await?;
        // The registry itself is made ready by `prepare`, before apply plans.
        let registry = (self.options.registry.as_ref())
            .map(|options| options.node_settings(registry::address(subnet)));
        let host_dir = self.host_dir(&machine.name);
        std::fs::create_dir_all(&host_dir)
            .map_err(|e| DindError::io(format!("cannot create {}", host_dir.display()), e))?;
        let spec = node::NodeSpec {
            cluster: &self.cluster,
            machine: &machine.name,
            role: machine.role,
            container: self.container_name(&machine.name),
            image: &image.tag,
            network: &network,
            volume: self.volume_name(&machine.name),
            host_dir: &host_dir,
            socket: self.socket_path(&machine.name),
            socket_gid: node::host_socket_gid(),
            address: Some(address),
            registry,
        };
        let created = node::create(&self.docker, &spec, &self.security).await;
        self.reserved.lock().await.retain(|a| *a != address);
        created?;
        crate::crash::point("dind-before-preload");
        let to_load = self.images_to_load();
        if !to_load.is_empty() {
            let started = std::time::Instant::now();
            node::preload(&self.docker, &spec.socket, &machine.name, &to_load).await?;
            tracing::info!(
                machine = %machine.name,
                images = ?to_load,
                seconds = started.elapsed().as_secs_f64(),
                "preloaded images"
            );
        }
        self.mark_ready(&machine.name).await
    }

    /// Picks the next free fixed address on the cluster network and reserves it until the
    /// container holding it exists. Stopped node containers keep theirs, so they count as taken.
    /// Returns the network's subnet with it.
    async fn reserve_address(
        &self,
        network: &str,
    ) -> Result<(network::Subnet, std::net::Ipv4Addr), DindError> {
        let mut reserved = self.reserved.lock().await;
        let (subnet, mut taken) = network::addresses_in_use(&self.docker, network).await?;
        let containers = self.cluster_containers().await?;
        taken.extend(
            containers
                .iter()
                .filter_map(|c| c.network_settings.as_ref()?.networks.as_ref()?.get(network))
                .filter_map(|e| {
                    e.ipam_config
                        .as_ref()?
                        .ipv4_address
                        .as_deref()?
                        .parse::<std::net::Ipv4Addr>()
                        .ok()
                }),
        );
        taken.extend(reserved.iter().copied());
        let address = subnet.free_host(&taken).ok_or_else(|| {
            DindError::Unavailable(format!(
                "network {network} ({subnet}) has no free address left for another machine"
            ))
        })?;
        reserved.push(address);
        Ok((subnet, address))
    }

    /// Records that the machine's setup finished: creates its ready marker volume.
    async fn mark_ready(&self, machine: &str) -> Result<(), DindError> {
        let name = self.ready_marker_name(machine);
        let request = VolumeCreateRequest {
            name: Some(name.clone()),
            driver: Some("local".to_string()),
            labels: Some(labels_for(
                &self.cluster,
                [
                    (LABEL_MACHINE, machine.to_string()),
                    (LABEL_READY, "true".to_string()),
                ],
            )),
            ..Default::default()
        };
        self.docker
            .create_volume(request)
            .await
            .map_err(|e| DindError::docker(format!("cannot create volume {name}"), e))?;
        Ok(())
    }

    /// The machines whose ready marker exists.
    async fn ready_machines(&self) -> Result<BTreeSet<String>, DindError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_CLUSTER}={}", self.cluster),
                format!("{LABEL_READY}=true"),
            ],
        )]);
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| DindError::docker("cannot list the cluster's volumes", e))?;
        Ok(volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| v.labels.get(LABEL_MACHINE).cloned())
            .collect())
    }

    fn remove_host_dir(&self, dir: &Path) -> Result<(), DindError> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DindError::io(format!("cannot remove {}", dir.display()), e)),
        }
    }

    async fn remove_volume(&self, name: &str) -> Result<bool, DindError> {
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(DindError::docker(format!("cannot remove volume {name}"), e)),
        }
    }
}

fn lock_security(
    security: &Mutex<Option<Security>>,
) -> std::sync::MutexGuard<'_, Option<Security>> {
    lock_poisoned(security)
}

/// Locks `mutex`, also after a thread panicked holding it (what it guards stays usable).
fn lock_poisoned<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn parse_role(value: Option<&String>) -> Option<Role> {
    match value.map(String::as_str) {
        Some("manager") => Some(Role::Manager),
        Some("worker") => Some(Role::Worker),
        _ => None,
    }
}

#[async_trait]
impl Driver for DindDriver {
    fn side_loaded_images(&self) -> Vec<String> {
        self.options.side_loaded_images()
    }

    /// The host engine's events of the cluster's machine containers that mean one is gone.
    async fn machine_events(
        &self,
        since_nano: Option<i64>,
    ) -> Option<DriverResult<crate::engine::EventStream>> {
        let filters = BTreeMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{LABEL_CLUSTER}={}", self.cluster)],
            ),
            (
                "event".to_string(),
                ["die", "destroy", "stop", "kill"]
                    .map(str::to_string)
                    .to_vec(),
            ),
        ]);
        let query = crate::engine::EventQuery {
            filters,
            since_nano,
        };
        Some(Ok(DockerEngine::event_stream(&self.docker, query)))
    }

    /// Nodes share the host's kernel and cannot load modules, so the host decides.
    fn routing_mesh(&self) -> Option<bool> {
        Some(Path::new("/proc/net/ip_vs").exists() || Path::new("/proc/sys/net/ipv4/vs").exists())
    }

    async fn list(&self) -> DriverResult<Vec<ObservedMachine>> {
        // Three requests to the host engine, at once.
        let (_, containers, ready) = tokio::join!(
            self.look_at_registry(),
            self.cluster_containers(),
            self.ready_machines()
        );
        let (containers, ready) = (containers?, ready?);
        let network = self.network_name();
        let mut seen = HashMap::new();
        let mut machines: Vec<ObservedMachine> = containers
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let name = labels.get(LABEL_MACHINE)?.clone();
                let address = (c.network_settings.as_ref())
                    .and_then(|s| s.networks.as_ref()?.get(&network)?.ip_address.clone())
                    .filter(|ip| !ip.is_empty());
                if let (Some(id), Some(address)) = (c.id.clone(), address) {
                    seen.insert(name.clone(), NodeContainer { id, address });
                }
                use bollard::models::ContainerSummaryStateEnum as Container;
                let state = if !ready.contains(&name) {
                    MachineState::Incomplete
                } else {
                    match c.state {
                        Some(Container::RUNNING) => MachineState::Running,
                        // Frozen or coming back by itself: it exists and may run again, but
                        // `docker start` cannot help; it is waited for.
                        Some(Container::PAUSED | Container::RESTARTING) => {
                            MachineState::Unreachable
                        }
                        _ => MachineState::Stopped,
                    }
                };
                Some(ObservedMachine {
                    name,
                    state,
                    created_role: parse_role(labels.get(LABEL_ROLE)),
                    swarm_state: Default::default(),
                    node_id: None,
                    engine_id: None,
                    problem: None,
                    address: None,
                })
            })
            .collect();
        machines.sort_by(|a, b| a.name.cmp(&b.name));
        *lock_poisoned(&self.seen) = seen;
        Ok(machines)
    }

    async fn create(&self, machine: &MachineSpec) -> DriverResult<()> {
        let name = self.container_name(&machine.name);
        match self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
        {
            Ok(_) => return Err(DriverError::MachineExists(machine.name.clone())),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(DindError::docker(format!("cannot inspect {name}"), e).into()),
        }
        let socket = self.socket_path(&machine.name);
        let length = socket.as_os_str().len();
        if length > MAX_SOCKET_PATH {
            return Err(DriverError::Unavailable(format!(
                "the socket path {} is {length} bytes, more than unix sockets allow ({MAX_SOCKET_PATH}); set {STATE_DIR_ENV} or driver_options.state_dir to a shorter folder",
                socket.display()
            )));
        }
        let started = std::time::Instant::now();
        self.forget_seen(&machine.name);
        if let Err(error) = self.create_machine(machine).await {
            let _ = remove_container(&self.docker, &name).await;
            let _ = self.remove_volume(&self.volume_name(&machine.name)).await;
            let _ = self.remove_host_dir(&self.host_dir(&machine.name));
            return Err(error.into());
        }
        tracing::info!(
            machine = %machine.name,
            seconds = started.elapsed().as_secs_f64(),
            "node container up, its engine answers"
        );
        Ok(())
    }

    /// Starts the cluster's registry and pushes the preloaded images into it, before apply
    /// plans, so that images named for it resolve to digests; without `registry`, removes a
    /// registry container an earlier apply made (its images stay on its volume).
    fn warnings(&self) -> Vec<String> {
        self.registry_change
            .lock()
            .ok()
            .and_then(|change| change.clone())
            .into_iter()
            .collect()
    }

    async fn prepare(&self) -> DriverResult<()> {
        match &self.options.registry {
            Some(options) => self.ensure_registry(options).await?,
            None => registry::remove_if_present(&self.docker, &self.cluster).await?,
        }
        Ok(())
    }

    async fn start(&self, machine: &str) -> DriverResult<()> {
        self.forget_seen(machine);
        let container = self.container_name(machine);
        match self.docker.start_container(&container, None).await {
            Ok(()) => {}
            // 304: already running.
            Err(e) if status_of(&e) == Some(304) => {}
            Err(e) => return Err(self.machine_error(machine, "start the node container", e)),
        }
        node::wait_ready(
            &self.docker,
            machine,
            &container,
            &self.socket_path(machine),
        )
        .await?;
        Ok(())
    }

    async fn destroy(&self, machine: &str) -> DriverResult<()> {
        self.forget_seen(machine);
        self.remove_volume(&self.ready_marker_name(machine)).await?;
        let had_container = remove_container(&self.docker, &self.container_name(machine)).await?;
        let had_volume = self.remove_volume(&self.volume_name(machine)).await?;
        self.remove_host_dir(&self.host_dir(machine))?;
        if had_container || had_volume {
            Ok(())
        } else {
            Err(DriverError::NoSuchMachine(machine.to_string()))
        }
    }

    async fn endpoint(&self, machine: &str) -> DriverResult<String> {
        let name = self.container_name(machine);
        self.docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.machine_error(machine, "inspect the node container", e))?;
        Ok(format!("unix://{}", self.socket_path(machine).display()))
    }

    /// The engine of the machine's node container: the one reached before when the container
    /// is the same (found by the last list, else asked of the host engine), else reached now.
    async fn engine(&self, machine: &str) -> DriverResult<Arc<dyn Swarm>> {
        let seen = lock_poisoned(&self.seen).get(machine).cloned();
        let node = match seen {
            Some(node) => node,
            None => self.node_container(machine).await?,
        };
        if let Some(engine) = lock_poisoned(&self.engines).get(&node.id) {
            return Ok(engine.clone());
        }
        let endpoint = format!("unix://{}", self.socket_path(machine).display());
        let engine = DockerEngine::connect(&endpoint, Some(node.address))
            .await
            .map_err(|e| DriverError::Other(format!("machine {machine}: {e}")))?;
        let engine = Arc::new(engine);
        lock_poisoned(&self.engines).insert(node.id, engine.clone());
        Ok(engine)
    }

    async fn lock(&self, holder: &LockHolder, now: u64, ttl_seconds: u64) -> DriverResult<()> {
        lock::lock(&self.docker, &self.cluster, holder, now, ttl_seconds).await
    }

    async fn unlock(&self, holder: &LockHolder) -> DriverResult<()> {
        lock::unlock(&self.docker, &self.cluster, &holder.id).await?;
        Ok(())
    }

    async fn force_unlock(&self, lock_id: &str) -> DriverResult<Option<HeldLock>> {
        lock::unlock(&self.docker, &self.cluster, lock_id).await
    }

    async fn leftovers(&self) -> DriverResult<Vec<String>> {
        let mut names: Vec<String> = (self.cluster_containers().await?.into_iter())
            .flat_map(|c| c.names.unwrap_or_default())
            .map(|name| format!("container {}", name.trim_start_matches('/')))
            .collect();
        let lock = lock::lock_name(&self.cluster);
        names.extend(
            (self.cluster_volumes().await?.into_iter())
                .filter(|v| v.name != lock)
                .map(|v| format!("volume {}", v.name)),
        );
        names.extend(
            (self.cluster_networks().await?.into_iter())
                .filter_map(|n| n.name)
                .map(|name| format!("network {name}")),
        );
        Ok(names)
    }

    async fn destroy_all(&self) -> DriverResult<()> {
        lock_poisoned(&self.seen).clear();
        for container in self.cluster_containers().await? {
            if let Some(id) = container.id {
                remove_container(&self.docker, &id).await?;
            }
        }
        for volume in self.cluster_volumes().await? {
            self.remove_volume(&volume.name).await?;
        }
        for network in self.cluster_networks().await? {
            if let Some(id) = network.id {
                match self.docker.remove_network(&id).await {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        return Err(DindError::docker(
                            format!(
                                "cannot remove network {}",
                                network.name.as_deref().unwrap_or(&id)
                            ),
                            e,
                        )
                        .into())
                    }
                }
            }
        }
        self.remove_host_dir(&self.cluster_dir())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
