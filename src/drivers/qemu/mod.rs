//! The `qemu` driver: local VMs with real kernels, so that what needs the kernel (the ingress
//! routing mesh's IPVS) works as on real machines. Nothing is downloaded but Debian's kernel
//! package, from the archive this machine's apt already uses; the rest of the VM is this
//! machine's own engine binaries (see [`image`]).
//!
//! A cluster's VMs live in `<state_dir>/<cluster>/` (`driver_options.qemu.state_dir`, default
//! `$XDG_STATE_HOME/shoal/qemu`, else `~/.local/state/shoal/qemu`):
//! - `network.json`: the cluster's subnet and bridge (see [`network`]);
//! - `certs/`: the cluster's CA and the client certificate (see [`certs`]);
//! - `machines/<machine>/`: `machine.json` (its address, MAC, tap, memory, CPUs, image),
//!   `disk.qcow2` (its overlay on the image's root disk), `initrd.img` (the image's first
//!   stage with the VM's settings and server certificate appended), `qemu.pid`, `console.log`,
//!   and `creating` while its create has not finished;
//! - `lock.json`: the apply lock before a swarm exists (then it is in the swarm, as for every
//!   driver that reaches remote engines).
//!
//! Machine states: a VM whose create has not finished (its engine never answered) is
//! `incomplete`; a VM whose disk is gone is not listed (`gone`: created again); a VM whose qemu
//! process does not run is `stopped` (started again with its disk, so its swarm membership is
//! intact); a running VM whose engine does not answer is `unreachable`. Only this cluster's
//! folder, its bridge and tap devices and its firewall rule are ever removed, and only qemu
//! processes whose command line names a disk in that folder are ever stopped.

pub mod certs;
pub mod cpio;
pub mod doctor;
pub mod image;
pub mod modules;
pub mod network;
mod tool;
pub mod vm;

use super::dind::{debian::DebianError, DindError};
use super::generic::{claim_nodes, connect_and_cache, EngineCache, Probed};
use super::lock::{HeldLock, LockHolder};
use super::{swarm_lock, Driver, DriverError, DriverResult};
use crate::docker::{Access, DockerEngine};
use crate::engine::Swarm;
use crate::model::driver_options::QemuSettings;
use crate::model::{
    observed::LocalSwarmState, Desired, MachineSpec, MachineState, ObservedMachine,
};
use async_trait::async_trait;
use cpio::CpioEntry;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shoal_core::model::vm_network::VmSubnet;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vm::{Accel, VmLaunch};

/// Memory of a VM when machines.yml gives none, in MiB.
pub const DEFAULT_MEMORY: u32 = 768;
/// Virtual CPUs of a VM when machines.yml gives none.
pub const DEFAULT_CPUS: u32 = 1;
/// Disk of a VM when machines.yml gives none.
pub const DEFAULT_DISK_BYTES: u64 = 4 << 30;
/// The port each VM's engine answers on, with TLS.
const ENGINE_PORT: u16 = 2376;
/// How long a started VM's engine has to answer (boots take 15 to 60 s under emulation).
const ENGINE_WAIT: Duration = Duration::from_secs(300);
/// VMs probed at once.
const CONCURRENCY: usize = 8;
/// How often the VMs' qemu processes are looked at for [`Driver::machine_events`].
const PROCESS_POLL: Duration = Duration::from_secs(1);
/// What to check when the lock file cannot be used.
const LOCK_ADVICE: &str = "check that driver_options.qemu.state_dir is writable";
/// Lines of a VM's console shown when it failed.
const CONSOLE_LINES: usize = 30;

/// Why the qemu driver failed.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The driver cannot work here: a missing program, no root, bad options.
    #[error("{0}")]
    Unavailable(String),
    /// A host file or folder could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Laying out the VM's files failed (the host's binaries).
    #[error(transparent)]
    Build(#[from] DindError),
    /// The kernel could not be had from Debian's archive.
    #[error(transparent)]
    Debian(#[from] DebianError),
    /// A VM started but its engine never answered.
    #[error("machine {machine}: {problem}\n--- last lines of its console ({console}) ---\n{tail}")]
    VmFailed {
        /// The machine.
        machine: String,
        /// What went wrong.
        problem: String,
        /// The console file.
        console: String,
        /// Its last lines.
        tail: String,
    },
}

impl QemuError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> QemuError {
        QemuError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<QemuError> for DriverError {
    fn from(e: QemuError) -> DriverError {
        match e {
            QemuError::Unavailable(text) => DriverError::Unavailable(text),
            other => DriverError::Other(other.to_string()),
        }
    }
}

/// How the accelerator is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM where it can boot a kernel, else emulation (with a warning).
    Auto,
    /// This one.
    Fixed(Accel),
}

/// `driver_options.qemu`, read, with defaults and paths made absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuOptions {
    /// Memory of each VM in MiB.
    pub memory: u32,
    /// Virtual CPUs of each VM.
    pub cpus: u32,
    /// The accelerator.
    pub accel: AccelChoice,
    /// Size of each VM's disk.
    pub disk_bytes: u64,
    /// A built image's folder instead of the one shoal builds.
    pub image: Option<PathBuf>,
    /// Host images copied into every VM.
    pub preload_images: Vec<String>,
    /// The VMs' network, when given.
    pub subnet: Option<VmSubnet>,
    /// The folder holding each cluster's VMs.
    pub state_dir: PathBuf,
    /// The Debian archive of the kernel, when given.
    pub debian_mirror: Option<String>,
}

/// The default folder of the VMs: `$XDG_STATE_HOME/shoal/qemu`, else
/// `~/.local/state/shoal/qemu`.
pub fn default_state_dir() -> PathBuf {
    crate::source::remote::xdg_dir("XDG_STATE_HOME", ".local/state").join("shoal/qemu")
}

impl QemuOptions {
    /// The options machines.yml gives, relative paths taken from `base` (the repository).
    pub fn from_settings(settings: &QemuSettings, base: &Path) -> QemuOptions {
        let path = |written: &str| {
            let path = Path::new(written);
            if path.is_absolute() {
                path.to_path_buf()
            } else {
                base.join(path)
            }
        };
        QemuOptions {
            memory: settings.memory.unwrap_or(DEFAULT_MEMORY),
            cpus: settings.cpus.unwrap_or(DEFAULT_CPUS),
            accel: settings
                .accel
                .as_deref()
                .and_then(Accel::named)
                .map_or(AccelChoice::Auto, AccelChoice::Fixed),
            disk_bytes: settings.disk_bytes.unwrap_or(DEFAULT_DISK_BYTES),
            image: settings.image.as_deref().map(path),
            preload_images: settings.preload_images.clone(),
            subnet: settings
                .subnet
                .as_deref()
                .and_then(|s| VmSubnet::parse(s).ok()),
            state_dir: settings
                .state_dir
                .as_deref()
                .map_or_else(default_state_dir, path),
            debian_mirror: settings.debian_mirror.clone(),
        }
    }
}

/// The cluster's network, as recorded when it was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct NetworkRecord {
    /// The cluster.
    cluster: String,
    /// The bridge device.
    bridge: String,
    /// The subnet, `a.b.c.d/p`.
    subnet: String,
}

/// One VM, as recorded when it was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct VmRecord {
    /// The machine.
    machine: String,
    /// Its address on the cluster's subnet.
    address: Ipv4Addr,
    /// Its network card's MAC address.
    mac: String,
    /// Its tap device.
    tap: String,
    /// Memory in MiB.
    memory: u32,
    /// Virtual CPUs.
    cpus: u32,
    /// The image folder its disk is an overlay on.
    image: PathBuf,
}

/// The first 8 hex digits of the SHA-256 of `text`.
fn short_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))[..8].to_string()
}

/// The driver of a cluster of local qemu VMs.
pub struct QemuDriver {
    cluster: String,
    options: QemuOptions,
    /// Per-machine memory and CPUs given in machines.yml.
    sizes: BTreeMap<String, (Option<u32>, Option<u32>)>,
    engines: EngineCache,
    /// The accelerator chosen for this process, once probed.
    accel: tokio::sync::OnceCell<Accel>,
    /// Held while the network is made, so that VMs created at once make it once.
    network: tokio::sync::Mutex<()>,
    /// The image new VMs are made on, once ensured by this process.
    image: tokio::sync::OnceCell<image::VmImage>,
}

impl std::fmt::Debug for QemuDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuDriver")
            .field("cluster", &self.cluster)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl QemuDriver {
    /// The driver for `desired` with its `options`.
    pub fn new(desired: &Desired, options: QemuOptions) -> QemuDriver {
        let sizes = desired
            .access
            .iter()
            .map(|(name, access)| (name.clone(), (access.memory, access.cpus)))
            .collect();
        QemuDriver {
            cluster: desired.cluster.clone(),
            options,
            sizes,
            engines: tokio::sync::Mutex::new(HashMap::new()),
            accel: tokio::sync::OnceCell::new(),
            network: tokio::sync::Mutex::new(()),
            image: tokio::sync::OnceCell::new(),
        }
    }

    /// The cluster's folder.
    pub fn cluster_dir(&self) -> PathBuf {
        self.options.state_dir.join(&self.cluster)
    }

    /// The folder of the cluster's certificates (`DOCKER_CERT_PATH`).
    pub fn certs_dir(&self) -> PathBuf {
        self.cluster_dir().join("certs")
    }

    /// The apply lock's file, used before a swarm exists.
    fn lock_file(&self) -> PathBuf {
        self.cluster_dir().join("lock.json")
    }

    fn machines_dir(&self) -> PathBuf {
        self.cluster_dir().join("machines")
    }

    fn machine_dir(&self, machine: &str) -> PathBuf {
        self.machines_dir().join(machine)
    }

    fn disk(&self, machine: &str) -> PathBuf {
        self.machine_dir(machine).join("disk.qcow2")
    }

    fn pidfile(&self, machine: &str) -> PathBuf {
        self.machine_dir(machine).join("qemu.pid")
    }

    fn console(&self, machine: &str) -> PathBuf {
        self.machine_dir(machine).join("console.log")
    }

    fn creating_marker(&self, machine: &str) -> PathBuf {
        self.machine_dir(machine).join("creating")
    }

    /// The bridge device of the cluster: named from its folder, so two clusters never share it.
    fn bridge_name(&self) -> String {
        format!(
            "shq{}",
            short_hash(&self.cluster_dir().display().to_string())
        )
    }

    /// The tap device of `machine`.
    fn tap_name(&self, machine: &str) -> String {
        let dir = self.machine_dir(machine).display().to_string();
        format!("sqt{}", short_hash(&dir))
    }

    fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), QemuError> {
        let text = serde_json::to_vec_pretty(value).unwrap_or_default();
        std::fs::write(path, text)
            .map_err(|e| QemuError::io(format!("cannot write {}", path.display()), e))
    }

    fn record(&self, machine: &str) -> Option<VmRecord> {
        Self::read_json(&self.machine_dir(machine).join("machine.json"))
    }

    fn network_record(&self) -> Option<NetworkRecord> {
        Self::read_json(&self.cluster_dir().join("network.json"))
    }

    /// The machines with a folder, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.machines_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The cluster's network: as recorded, else a new one (the subnet given, or a free one),
    /// recorded; then its bridge made where missing (after a host reboot, say).
    async fn ensure_network(&self) -> Result<(NetworkRecord, VmSubnet), QemuError> {
        let _only_one = self.network.lock().await;
        let record = match self.network_record() {
            Some(record) => record,
            None => {
                let subnet = match self.options.subnet {
                    Some(subnet) => {
                        let routes = network::host_routes()?;
                        if let Some(route) = network::overlapping_route(&subnet, &routes) {
                            return Err(QemuError::Unavailable(format!(
                                "driver_options.qemu.subnet {subnet} overlaps the network {}/{} this host reaches already; pick another subnet, or remove the key to let shoal pick a free one",
                                route.network, route.prefix
                            )));
                        }
                        subnet
                    }
                    None => {
                        let seed = Sha256::digest(self.cluster_dir().display().to_string())[0];
                        network::choose_subnet(seed, &network::host_routes()?).ok_or_else(|| {
                            QemuError::Unavailable(
                                "no free /24 under 10.213.0.0/16 for the VMs; set driver_options.qemu.subnet".to_string(),
                            )
                        })?
                    }
                };
                let record = NetworkRecord {
                    cluster: self.cluster.clone(),
                    bridge: self.bridge_name(),
                    subnet: subnet.to_string(),
                };
                std::fs::create_dir_all(self.cluster_dir()).map_err(|e| {
                    QemuError::io(format!("cannot create {}", self.cluster_dir().display()), e)
                })?;
                Self::write_json(&self.cluster_dir().join("network.json"), &record)?;
                record
            }
        };
        let subnet = VmSubnet::parse(&record.subnet).map_err(|problem| {
            QemuError::Unavailable(format!(
                "{}: {problem}; run `shoal destroy` and apply again",
                self.cluster_dir().join("network.json").display()
            ))
        })?;
        network::ensure_bridge(&record.bridge, &subnet)?;
        Ok((record, subnet))
    }

    /// The lowest free address of `subnet` (those of the other VMs' records are taken).
    fn free_address(&self, subnet: &VmSubnet, machine: &str) -> Result<Ipv4Addr, QemuError> {
        let taken: Vec<Ipv4Addr> = self
            .names()
            .iter()
            .filter(|name| name.as_str() != machine)
            .filter_map(|name| self.record(name))
            .map(|r| r.address)
            .collect();
        (0..)
            .map_while(|index| subnet.vm_address(index))
            .find(|address| !taken.contains(address))
            .ok_or_else(|| {
                QemuError::Unavailable(format!(
                    "the subnet {subnet} has no free address for machine {machine}; set a larger driver_options.qemu.subnet"
                ))
            })
    }

    /// The accelerator: the one asked for, else KVM when it boots a kernel, else emulation.
    async fn accel(&self, kernel: &Path) -> Accel {
        *self
            .accel
            .get_or_init(|| async {
                match self.options.accel {
                    AccelChoice::Fixed(accel) => accel,
                    AccelChoice::Auto => doctor::chosen_accel(kernel).await,
                }
            })
            .await
    }

    /// The image new VMs are made on: ensured (resolved, and built when missing) once per
    /// process, however many VMs it creates.
    async fn image(&self) -> Result<&image::VmImage, QemuError> {
        self.image
            .get_or_try_init(|| async {
                let ensured = image::ensure_image(
                    self.options.image.as_deref(),
                    self.options.disk_bytes,
                    self.options.debian_mirror.as_deref(),
                )
                .await?;
                if ensured.built {
                    tracing::info!(
                        seconds = ensured.seconds,
                        downloaded = ensured.downloaded,
                        "built the VM image"
                    );
                }
                Ok(ensured.image)
            })
            .await
    }

    /// What `shoal status` and `env` reach: the VM's engine URL.
    fn url(address: Ipv4Addr) -> String {
        format!("tcp://{address}:{ENGINE_PORT}")
    }

    /// The engine of `machine`, connected anew unless a live one is cached.
    async fn connect(&self, machine: &str) -> DriverResult<Arc<DockerEngine>> {
        if let Some(engine) = self.engines.lock().await.get(machine) {
            return Ok(engine.clone());
        }
        let record = self
            .record(machine)
            .ok_or_else(|| DriverError::NoSuchMachine(machine.to_string()))?;
        let access = Access {
            tls: Some(self.certs_dir()),
            ssh: None,
        };
        connect_and_cache(&self.engines, machine, &Self::url(record.address), &access).await
    }

    /// One VM as observed (see the module's states), with the engine that answered and its
    /// address; `None` when its disk is gone.
    async fn probe(&self, machine: &str) -> Option<Probed> {
        let mut observed = ObservedMachine {
            name: machine.to_string(),
            state: MachineState::Incomplete,
            created_role: None,
            swarm_state: LocalSwarmState::Inactive,
            node_id: None,
            engine_id: None,
            problem: None,
            address: None,
        };
        if self.creating_marker(machine).exists() {
            return Some((observed, None, None));
        }
        let Some(record) = self.record(machine) else {
            return Some((observed, None, None));
        };
        if !self.disk(machine).is_file() {
            tracing::warn!(
                "machine {machine}: its disk {} is gone: it is created again",
                self.disk(machine).display()
            );
            return None;
        }
        let address = Some(record.address.to_string());
        observed.address.clone_from(&address);
        if vm::running_pid(&self.pidfile(machine), &self.disk(machine)).is_none() {
            observed.state = MachineState::Stopped;
            return Some((observed, None, address));
        }
        self.engines.lock().await.remove(machine);
        let answered = match self.connect(machine).await {
            Ok(engine) => engine
                .info()
                .await
                .map(|info| (engine, info))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match answered {
            Ok((engine, info)) => {
                observed.state = MachineState::Running;
                observed.swarm_state = info.swarm_state;
                observed.node_id = info.node_id;
                Some((observed, Some(engine), address))
            }
            Err(problem) => {
                self.engines.lock().await.remove(machine);
                observed.state = MachineState::Unreachable;
                observed.problem = Some(problem);
                Some((observed, None, address))
            }
        }
    }

    /// Waits until the VM's engine answers; the console's last lines when it does not, or when
    /// its qemu process ends.
    async fn wait_engine(&self, machine: &str) -> Result<(), QemuError> {
        let deadline = tokio::time::Instant::now() + ENGINE_WAIT;
        let mut problem;
        loop {
            if vm::running_pid(&self.pidfile(machine), &self.disk(machine)).is_none() {
                return Err(self.failed(machine, "its qemu process ended".to_string()));
            }
            self.engines.lock().await.remove(machine);
            match self.connect(machine).await {
                Ok(engine) => match engine.info().await {
                    Ok(_) => return Ok(()),
                    Err(e) => problem = e.to_string(),
                },
                Err(e) => problem = e.to_string(),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.failed(
                    machine,
                    format!(
                        "its engine did not answer within {} s: {problem}",
                        ENGINE_WAIT.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// A failed VM, with the tail of its console.
    fn failed(&self, machine: &str, problem: String) -> QemuError {
        let console = self.console(machine);
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(CONSOLE_LINES)..].join("\n");
        QemuError::VmFailed {
            machine: machine.to_string(),
            problem,
            console: console.display().to_string(),
            tail,
        }
    }

    /// The VM's own initramfs: the image's first stage, then an archive with its settings and
    /// its server certificate (the kernel unpacks both, the second over the first).
    fn write_initrd(
        &self,
        record: &VmRecord,
        image: &image::VmImage,
        subnet: &VmSubnet,
    ) -> Result<(), QemuError> {
        let certs = self.certs_dir();
        let server = certs::server_cert(&certs, &self.cluster, &record.machine, record.address)?;
        let ca_path = certs.join(certs::CA_CERT);
        let ca = std::fs::read(&ca_path)
            .map_err(|e| QemuError::io(format!("cannot read {}", ca_path.display()), e))?;
        let settings = format!(
            "SHOAL_HOSTNAME={}\nSHOAL_ADDRESS={}/{}\nSHOAL_CLUSTER={}\n",
            record.machine, record.address, subnet.prefix, self.cluster
        );
        let file = |path: &str, mode: u32, data: Vec<u8>| CpioEntry::File {
            path: path.to_string(),
            mode,
            data,
        };
        let entries = vec![
            image::dir_entry("shoal"),
            file("shoal/vm.env", 0o644, settings.into_bytes()),
            image::dir_entry("shoal/tls"),
            file("shoal/tls/ca.pem", 0o644, ca),
            file("shoal/tls/cert.pem", 0o644, server.cert.into_bytes()),
            file("shoal/tls/key.pem", 0o600, server.key.into_bytes()),
        ];
        let mut bytes = std::fs::read(image.initrd())
            .map_err(|e| QemuError::io(format!("cannot read {}", image.initrd().display()), e))?;
        cpio::write_archive(&entries, &mut bytes)
            .map_err(|e| QemuError::io("cannot write the VM's settings", e))?;
        let path = self.machine_dir(&record.machine).join("initrd.img");
        std::fs::write(&path, bytes)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            })
            .map_err(|e| QemuError::io(format!("cannot write {}", path.display()), e))
    }

    /// Boots the recorded VM on its disk, plugged into the cluster's `network`, and waits for
    /// its engine.
    async fn boot(&self, record: &VmRecord, network: &NetworkRecord) -> Result<(), QemuError> {
        let machine = &record.machine;
        network::ensure_tap(&record.tap, &network.bridge)?;
        let image = image::VmImage::given(&record.image)?;
        let launch = VmLaunch {
            name: format!("{}-{machine}", self.cluster),
            accel: self.accel(&image.kernel()).await,
            memory: record.memory,
            cpus: record.cpus,
            kernel: image.kernel(),
            initrd: self.machine_dir(machine).join("initrd.img"),
            disk: self.disk(machine),
            tap: record.tap.clone(),
            mac: record.mac.clone(),
            console: self.console(machine),
            pidfile: self.pidfile(machine),
        };
        if vm::running_pid(&launch.pidfile, &launch.disk).is_none() {
            vm::launch(&launch).await?;
        }
        self.wait_engine(machine).await
    }

    /// The machines whose qemu process runs on their disk, under the cluster's folder.
    fn running_machines(machines_dir: &Path) -> std::collections::BTreeSet<String> {
        std::fs::read_dir(machines_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| {
                        let dir = e.path();
                        vm::running_pid(&dir.join("qemu.pid"), &dir.join("disk.qcow2")).is_some()
                    })
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Copies the preloaded images from the host engine into the VM.
    async fn preload(&self, machine: &str) -> Result<(), QemuError> {
        if self.options.preload_images.is_empty() {
            return Ok(());
        }
        let host = super::dind::connect_host().await?;
        let engine = self
            .connect(machine)
            .await
            .map_err(|e| QemuError::Unavailable(e.to_string()))?;
        super::dind::node::preload_into(
            &host,
            engine.client(),
            machine,
            &self.options.preload_images,
        )
        .await?;
        Ok(())
    }

    /// Stops `machine`'s qemu process, removes its tap and its folder: what a create that did not
    /// finish, or a VM whose disk is gone, left.
    async fn remove_leftovers(&self, machine: &str) -> Result<(), QemuError> {
        self.engines.lock().await.remove(machine);
        vm::kill(&self.pidfile(machine), &self.disk(machine)).await?;
        let tap = self
            .record(machine)
            .map_or_else(|| self.tap_name(machine), |r| r.tap);
        network::remove_tap(&tap)?;
        let dir = self.machine_dir(machine);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(QemuError::io(format!("cannot remove {}", dir.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Creates the VM: its record, disk, initramfs and tap, then boots it and copies the
    /// preloaded images in; `creating` marks it until all that finished.
    async fn create_vm(&self, spec: &MachineSpec) -> Result<(), QemuError> {
        let machine = &spec.name;
        let image = self.image().await?;
        let (network, subnet) = self.ensure_network().await?;
        certs::ensure_cluster_certs(&self.certs_dir(), &self.cluster)?;
        let dir = self.machine_dir(machine);
        std::fs::create_dir_all(&dir)
            .map_err(|e| QemuError::io(format!("cannot create {}", dir.display()), e))?;
        std::fs::write(self.creating_marker(machine), &self.cluster)
            .map_err(|e| QemuError::io(format!("cannot write in {}", dir.display()), e))?;
        // One address per VM: allocated and recorded under the lock.
        let allocating = self.network.lock().await;
        let address = self.free_address(&subnet, machine)?;
        let octets = address.octets();
        let (memory, cpus) = self.sizes.get(machine).copied().unwrap_or_default();
        let record = VmRecord {
            machine: machine.clone(),
            address,
            mac: format!(
                "52:54:00:{:02x}:{:02x}:{:02x}",
                octets[1], octets[2], octets[3]
            ),
            tap: self.tap_name(machine),
            memory: memory.unwrap_or(self.options.memory),
            cpus: cpus.unwrap_or(self.options.cpus),
            image: image.dir.clone(),
        };
        Self::write_json(&dir.join("machine.json"), &record)?;
        drop(allocating);
        self.write_initrd(&record, image, &subnet)?;
        make_overlay(&image.root(), &self.disk(machine)).await?;
        if let Err(e) = self.boot(&record, &network).await {
            // A VM that never answered is stopped (it would only use CPU) and stays
            // `incomplete`: the next apply creates it again.
            let _ = vm::kill(&self.pidfile(machine), &self.disk(machine)).await;
            return Err(e);
        }
        self.preload(machine).await?;
        std::fs::remove_file(self.creating_marker(machine))
            .map_err(|e| QemuError::io(format!("cannot write in {}", dir.display()), e))
    }
}

/// A qcow2 overlay at `disk` on the raw root disk `base`.
async fn make_overlay(base: &Path, disk: &Path) -> Result<(), QemuError> {
    let (base, disk) = (base.display().to_string(), disk.display().to_string());
    let args = [
        "create", "-q", "-f", "qcow2", "-F", "raw", "-b", &base, &disk,
    ];
    tool::run_async("qemu-img", &args, "apt-get install qemu-utils").await?;
    Ok(())
}

#[async_trait]
impl Driver for QemuDriver {
    async fn list(&self) -> DriverResult<Vec<ObservedMachine>> {
        let names = self.names();
        let mut probed: Vec<Probed> = stream::iter(names)
            .map(|name| async move { self.probe(&name).await })
            .buffered(CONCURRENCY)
            .filter_map(|p| async move { p })
            .collect()
            .await;
        claim_nodes(&mut probed).await;
        Ok(probed.into_iter().map(|(m, _, _)| m).collect())
    }

    async fn create(&self, machine: &MachineSpec) -> DriverResult<()> {
        let name = &machine.name;
        if self.disk(name).is_file() && !self.creating_marker(name).exists() {
            return Err(DriverError::MachineExists(name.clone()));
        }
        self.remove_leftovers(name).await?;
        Ok(self.create_vm(machine).await?)
    }

    async fn start(&self, machine: &str) -> DriverResult<()> {
        let record = self
            .record(machine)
            .filter(|_| self.disk(machine).is_file())
            .ok_or_else(|| DriverError::NoSuchMachine(machine.to_string()))?;
        self.engines.lock().await.remove(machine);
        let (network, _) = self.ensure_network().await?;
        Ok(self.boot(&record, &network).await?)
    }

    async fn destroy(&self, machine: &str) -> DriverResult<()> {
        if !self.machine_dir(machine).exists() {
            return Err(DriverError::NoSuchMachine(machine.to_string()));
        }
        Ok(self.remove_leftovers(machine).await?)
    }

    async fn endpoint(&self, machine: &str) -> DriverResult<String> {
        let record = self
            .record(machine)
            .ok_or_else(|| DriverError::NoSuchMachine(machine.to_string()))?;
        Ok(Self::url(record.address))
    }

    /// The exports of `docker-machine env`: the VM's URL and the cluster's certificates.
    async fn env(&self, machine: &str) -> DriverResult<Vec<(String, String)>> {
        let url = self.endpoint(machine).await?;
        Ok(vec![
            ("DOCKER_TLS_VERIFY".to_string(), "1".to_string()),
            ("DOCKER_HOST".to_string(), url),
            (
                "DOCKER_CERT_PATH".to_string(),
                self.certs_dir().display().to_string(),
            ),
        ])
    }

    async fn engine(&self, machine: &str) -> DriverResult<Arc<dyn Swarm>> {
        Ok(self.connect(machine).await?)
    }

    /// In the swarm's Raft store once a swarm exists; before that, `lock.json` in the
    /// cluster's folder.
    async fn lock(&self, holder: &LockHolder, now: u64, ttl_seconds: u64) -> DriverResult<()> {
        let manager = swarm_lock::swarm_manager(self, &self.names()).await;
        if swarm_lock::lock_in_swarm(manager.as_deref(), holder, now, ttl_seconds).await? {
            return Ok(());
        }
        super::lock::take_lock_file(&self.lock_file(), LOCK_ADVICE, holder, now, ttl_seconds)
    }

    async fn unlock(&self, holder: &LockHolder) -> DriverResult<()> {
        self.force_unlock(&holder.id).await.map(|_| ())
    }

    async fn force_unlock(&self, lock_id: &str) -> DriverResult<Option<HeldLock>> {
        let manager = swarm_lock::swarm_manager(self, &self.names()).await;
        let in_swarm = swarm_lock::unlock_in_swarm(manager.as_deref(), lock_id).await?;
        if !self.lock_file().exists() {
            return Ok(in_swarm);
        }
        let in_file = super::lock::release_lock_file(&self.lock_file(), LOCK_ADVICE, lock_id)?;
        Ok(in_swarm.or(in_file))
    }

    /// Every VM, then the network, the certificates and the cluster's folder.
    async fn destroy_all(&self) -> DriverResult<()> {
        let mut problems = Vec::new();
        for name in self.names() {
            if let Err(e) = self.remove_leftovers(&name).await {
                problems.push(e.to_string());
            }
        }
        if !problems.is_empty() {
            return Err(DriverError::Other(problems.join("; ")));
        }
        if let Some(record) = self.network_record() {
            network::remove_bridge(&record.bridge)?;
        }
        let dir = self.cluster_dir();
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DriverError::Other(format!(
                "cannot remove {}: {e}",
                dir.display()
            ))),
            _ => Ok(()),
        }
    }

    async fn leftovers(&self) -> DriverResult<Vec<String>> {
        let mut left = Vec::new();
        if let Some(record) = self.network_record() {
            left.push(format!("network {} ({})", record.bridge, record.subnet));
        }
        if self.certs_dir().exists() {
            left.push(format!("certificates {}", self.certs_dir().display()));
        }
        if left.is_empty() && self.cluster_dir().exists() {
            // What an apply that made no VM left: its lock file, a VM's unfinished folder.
            left.push(format!("folder {}", self.cluster_dir().display()));
        }
        Ok(left)
    }

    fn routing_mesh(&self) -> Option<bool> {
        Some(true)
    }

    /// A `die` event whenever a VM's qemu process that ran is gone (killed, crashed, powered
    /// off), found by looking at the processes every second: the watcher wakes at once rather
    /// than when swarm marks the node down.
    async fn machine_events(
        &self,
        _since_nano: Option<i64>,
    ) -> Option<DriverResult<crate::engine::EventStream>> {
        let dir = self.machines_dir();
        let running = Self::running_machines(&dir);
        let events = stream::unfold((dir, running), |(dir, mut before)| async move {
            loop {
                tokio::time::sleep(PROCESS_POLL).await;
                let now = Self::running_machines(&dir);
                let died = before.difference(&now).next().cloned();
                before = now;
                if let Some(machine) = died {
                    tracing::debug!("machine {machine}: its qemu process is gone");
                    let event = crate::engine::EngineEvent {
                        kind: "container".to_string(),
                        action: "die".to_string(),
                        time_nano: Some(crate::clock::unix_now_nanos()),
                    };
                    return Some((Ok(event), (dir, before)));
                }
            }
        });
        Some(Ok(events.boxed()))
    }

    fn side_loaded_images(&self) -> Vec<String> {
        self.options.preload_images.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_take_their_defaults_and_absolute_paths() {
        let options = QemuOptions::from_settings(&QemuSettings::default(), Path::new("/repo"));
        assert_eq!(options.memory, 768);
        assert_eq!(options.cpus, 1);
        assert_eq!(options.accel, AccelChoice::Auto);
        assert_eq!(options.disk_bytes, 4 << 30);
        assert_eq!(options.image, None);
        let settings = QemuSettings {
            memory: Some(1024),
            accel: Some("tcg".into()),
            image: Some("vm-image".into()),
            state_dir: Some("/var/lib/vms".into()),
            subnet: Some("10.213.9.0/24".into()),
            ..QemuSettings::default()
        };
        let options = QemuOptions::from_settings(&settings, Path::new("/repo"));
        assert_eq!(options.memory, 1024);
        assert_eq!(options.accel, AccelChoice::Fixed(Accel::Tcg));
        assert_eq!(options.image.as_deref(), Some(Path::new("/repo/vm-image")));
        assert_eq!(options.state_dir, PathBuf::from("/var/lib/vms"));
        assert_eq!(
            options.subnet.map(|s| s.to_string()).as_deref(),
            Some("10.213.9.0/24")
        );
    }

    /// A driver on the state folder `dir` for cluster `web`.
    fn driver_in(dir: &Path) -> QemuDriver {
        let desired = Desired {
            cluster: "web".into(),
            ..Desired::default()
        };
        let settings = QemuSettings {
            state_dir: Some(dir.display().to_string()),
            ..QemuSettings::default()
        };
        QemuDriver::new(
            &desired,
            QemuOptions::from_settings(&settings, Path::new("/")),
        )
    }

    #[tokio::test]
    async fn a_vm_is_incomplete_until_created_gone_without_its_disk_and_stopped_without_qemu() {
        let state = tempfile::tempdir().unwrap();
        let driver = driver_in(state.path());
        let record = VmRecord {
            machine: "m1".into(),
            address: Ipv4Addr::new(10, 213, 7, 10),
            mac: "52:54:00:d5:07:0a".into(),
            tap: driver.tap_name("m1"),
            memory: 768,
            cpus: 1,
            image: state.path().join("image"),
        };
        std::fs::create_dir_all(driver.machine_dir("m1")).unwrap();
        QemuDriver::write_json(&driver.machine_dir("m1").join("machine.json"), &record).unwrap();
        std::fs::write(driver.creating_marker("m1"), "web").unwrap();
        std::fs::write(driver.disk("m1"), "qcow2").unwrap();
        let listed = driver.list().await.unwrap();
        assert_eq!(listed[0].state, MachineState::Incomplete);
        std::fs::remove_file(driver.creating_marker("m1")).unwrap();
        // No qemu runs this disk (a pid file naming another process does not count).
        std::fs::write(driver.pidfile("m1"), std::process::id().to_string()).unwrap();
        let listed = driver.list().await.unwrap();
        assert_eq!(listed[0].state, MachineState::Stopped);
        assert_eq!(listed[0].address.as_deref(), Some("10.213.7.10"));
        std::fs::remove_file(driver.disk("m1")).unwrap();
        assert!(
            driver.list().await.unwrap().is_empty(),
            "a VM without its disk is gone"
        );
        assert_eq!(
            driver.endpoint("m1").await.unwrap(),
            "tcp://10.213.7.10:2376"
        );
        assert!(matches!(
            driver.start("m1").await,
            Err(DriverError::NoSuchMachine(_))
        ));
    }

    #[tokio::test]
    async fn a_folder_left_without_vms_is_a_leftover_that_destroy_removes() {
        let state = tempfile::tempdir().unwrap();
        let driver = driver_in(state.path());
        assert!(driver.leftovers().await.unwrap().is_empty());
        std::fs::create_dir_all(driver.cluster_dir()).unwrap();
        std::fs::write(driver.lock_file(), "").unwrap();
        let left = driver.leftovers().await.unwrap();
        assert_eq!(left, [format!("folder {}", driver.cluster_dir().display())]);
        driver.destroy_all().await.unwrap();
        assert!(!driver.cluster_dir().exists());
        assert!(state.path().exists(), "only the cluster's own folder goes");
        assert!(driver.leftovers().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_vm_whose_qemu_process_ends_is_told_as_an_event() {
        use futures::StreamExt;
        let state = tempfile::tempdir().unwrap();
        let driver = driver_in(state.path());
        std::fs::create_dir_all(driver.machine_dir("m1")).unwrap();
        // A stand-in for qemu: a process named like it whose command line names the VM's disk.
        let mut process = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "exec -a qemu-system-x86_64 bash -c 'sleep 60; true' 'file={},if=virtio'",
                driver.disk("m1").display()
            ))
            .spawn()
            .unwrap();
        std::fs::write(driver.pidfile("m1"), process.id().to_string()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while vm::running_pid(&driver.pidfile("m1"), &driver.disk("m1")).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the stand-in never ran"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut events = driver.machine_events(None).await.unwrap().unwrap();
        process.kill().unwrap();
        process.wait().unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(
            (event.kind.as_str(), event.action.as_str()),
            ("container", "die")
        );
        assert!(event.time_nano.is_some());
    }

    #[test]
    fn device_names_fit_the_kernels_limit_and_differ_per_cluster_folder() {
        let driver = |dir: &str, cluster: &str| {
            let desired = Desired {
                cluster: cluster.into(),
                ..Desired::default()
            };
            let settings = QemuSettings {
                state_dir: Some(dir.into()),
                ..QemuSettings::default()
            };
            QemuDriver::new(
                &desired,
                QemuOptions::from_settings(&settings, Path::new("/")),
            )
        };
        let a = driver("/s", "web");
        let b = driver("/t", "web");
        assert!(a.bridge_name().len() <= 15 && a.tap_name("vm-worker12").len() <= 15);
        assert_ne!(a.bridge_name(), b.bridge_name());
        assert_ne!(a.tap_name("m1"), a.tap_name("m2"));
        assert_eq!(a.cluster_dir(), PathBuf::from("/s/web"));
    }
}
