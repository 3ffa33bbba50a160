//! One node container: its settings, starting it (privileged, or the capability-list fallback),
//! waiting for its engine, and copying images into it.

use super::{is_not_found, lock_security, remove_container, DindError, NODE_HOST_DIR};
use crate::model::{Role, LABEL_MACHINE, LABEL_ROLE};
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig,
    HostConfigCgroupnsModeEnum, Mount, MountType, NetworkingConfig, RestartPolicy,
    RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, ImportImageOptions, InspectContainerOptions, LogsOptions,
    RemoveVolumeOptions,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a node's engine may take to answer after its container starts.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the node socket is polled meanwhile.
const READY_POLL: Duration = Duration::from_millis(100);
/// How many start attempts the capability fallback may take.
const START_ATTEMPTS: usize = 5;

/// Capability names by number, as the kernel numbers them (`CAP_` prefix left off).
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// How node containers are given the rights to run an engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Security {
    /// `--privileged`.
    Privileged,
    /// The fallback for daemons whose bounding set lacks capabilities (Docker < 23 fails to
    /// start privileged containers there): `--cap-add ALL --cap-drop <missing>`, seccomp,
    /// AppArmor and masked paths lifted, every device allowed in the device cgroup.
    Capabilities {
        /// The capabilities left out because the daemon does not have them.
        dropped: Vec<String>,
    },
}

impl std::fmt::Display for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Security::Privileged => f.write_str("privileged"),
            Security::Capabilities { dropped } if dropped.is_empty() => {
                f.write_str("all capabilities, unconfined (not privileged)")
            }
            Security::Capabilities { dropped } => write!(
                f,
                "all capabilities but {}, unconfined (not privileged)",
                dropped.join(", ")
            ),
        }
    }
}

/// Everything that describes one node container.
#[derive(Debug)]
pub(crate) struct NodeSpec<'a> {
    pub cluster: &'a str,
    pub machine: &'a str,
    pub role: Role,
    pub container: String,
    pub image: &'a str,
    pub network: &'a str,
    pub volume: String,
    pub host_dir: &'a Path,
    pub socket: PathBuf,
    pub socket_gid: Option<u32>,
    /// The node's fixed address on the cluster network, kept across restarts so that the
    /// swarm's advertised addresses stay valid after a host reboot.
    pub address: Option<std::net::Ipv4Addr>,
    /// How the node reaches the cluster's registry: the entrypoint's `SHOAL_REGISTRY_FORWARD`
    /// value and extra dockerd arguments (see [`super::registry`]).
    pub registry: Option<(String, Vec<String>)>,
}

/// The group of the host engine's unix socket, so that the node sockets are usable by the same
/// users (members of the `docker` group); `None` for root-only sockets or remote engines.
pub(crate) fn host_socket_gid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let path = match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => host.trim_start_matches("unix://").to_string(),
        Ok(host) if !host.is_empty() => return None,
        _ => "/var/run/docker.sock".to_string(),
    };
    let gid = std::fs::metadata(path).ok()?.gid();
    (gid != 0).then_some(gid)
}

/// The container's settings under the given security mode.
pub(crate) fn container_body(spec: &NodeSpec<'_>, security: &Security) -> ContainerCreateBody {
    let labels = super::labels_for(
        spec.cluster,
        [
            (LABEL_MACHINE, spec.machine.to_string()),
            (LABEL_ROLE, spec.role.as_str().to_string()),
        ],
    );
    let mut env = Vec::new();
    let mut dockerd_args = Vec::new();
    match &spec.registry {
        // Nodes pull from the cluster's registry.
        Some((forward, args)) => {
            env.push(format!("SHOAL_REGISTRY_FORWARD={forward}"));
            dockerd_args.clone_from(args);
        }
        // No registry to pull from: tasks use the images copied in, and never try a pull.
        None => env.push("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1".to_string()),
    }
    if let Some(gid) = spec.socket_gid {
        env.push(format!("SHOAL_SOCKET_GID={gid}"));
    }
    let mut binds = vec![format!("{}:{NODE_HOST_DIR}", spec.host_dir.display())];
    if Path::new("/lib/modules").is_dir() {
        binds.push("/lib/modules:/lib/modules:ro".to_string());
    }
    let mut host_config = HostConfig {
        binds: Some(binds),
        mounts: Some(vec![Mount {
            target: Some("/var/lib/docker".to_string()),
            source: Some(spec.volume.clone()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        }]),
        tmpfs: Some(HashMap::from([
            (
                "/run".to_string(),
                "rw,exec,nosuid,nodev,mode=755".to_string(),
            ),
            (
                "/tmp".to_string(),
                "rw,exec,nosuid,nodev,mode=1777".to_string(),
            ),
        ])),
        cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
        network_mode: Some(spec.network.to_string()),
        // A host reboot or an engine restart brings the node back; `docker stop` keeps it down.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        init: Some(false),
        ..Default::default()
    };
    match security {
        Security::Privileged => host_config.privileged = Some(true),
        Security::Capabilities { dropped } => {
            host_config.cap_add = Some(vec!["ALL".to_string()]);
            host_config.cap_drop = Some(dropped.iter().map(|c| format!("CAP_{c}")).collect());
            host_config.security_opt = Some(vec![
                "seccomp=unconfined".to_string(),
                "apparmor=unconfined".to_string(),
            ]);
            // `--security-opt systempaths=unconfined` is the CLI's spelling of empty lists here.
            host_config.masked_paths = Some(Vec::new());
            host_config.readonly_paths = Some(Vec::new());
            host_config.device_cgroup_rules = Some(vec!["a *:* rwm".to_string()]);
        }
    }
    ContainerCreateBody {
        hostname: Some(spec.machine.to_string()),
        image: Some(spec.image.to_string()),
        env: Some(env),
        cmd: (!dockerd_args.is_empty()).then_some(dockerd_args),
        labels: Some(labels),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.to_string(),
                EndpointSettings {
                    aliases: Some(vec![spec.machine.to_string()]),
                    ipam_config: spec.address.map(|ip| EndpointIpamConfig {
                        ipv4_address: Some(ip.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// Whether a start failure is the kernel refusing capabilities the container asked for.
pub(crate) fn is_capability_error(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("apply caps")
        || lower.contains("capabilit")
        || (lower.contains("operation not permitted") && lower.contains("cap"))
}

/// Capability names (without `CAP_`) that an error message mentions.
pub(crate) fn capabilities_named(message: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = message.as_bytes();
    let mut at = 0;
    while let Some(offset) = message[at..].find("CAP_") {
        let start = at + offset + 4;
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_uppercase() || *b == b'_'))
            .map_or(bytes.len(), |p| start + p);
        let name = &message[start..end];
        if CAPABILITIES.contains(&name) && !found.iter().any(|f: &String| f == name) {
            found.push(name.to_string());
        }
        at = end;
    }
    found
}

/// Capabilities the kernel knows that a `CapBnd:` mask lacks.
pub(crate) fn missing_from_mask(mask: u64, last_cap: usize) -> Vec<String> {
    CAPABILITIES
        .iter()
        .enumerate()
        .take(last_cap.saturating_add(1))
        .filter(|(bit, _)| mask & (1u64 << bit) == 0)
        .map(|(_, name)| (*name).to_string())
        .collect()
}

fn cap_bound_of(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// The capability bounding set of the local dockerd, found through `/proc/*/comm`; `None` when
/// it cannot be seen (another pid namespace, a remote engine).
fn dockerd_bounding_set() -> Option<u64> {
    // The engines inside node containers are dockerd processes too, visible from here but in
    // pid namespaces of their own, with narrower bounding sets: only the host's one counts.
    let own_namespace = std::fs::read_link("/proc/self/ns/pid").ok();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            if comm.trim() != "dockerd" {
                return None;
            }
            let namespace = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
            if own_namespace.is_some() && namespace != own_namespace {
                return None;
            }
            cap_bound_of(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
        })
}

fn last_cap() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(CAPABILITIES.len() - 1)
}

/// What the fallback drops: the capabilities the daemon lacks (this process's bounding set
/// stands in when dockerd cannot be seen), or `SYS_RESOURCE`, the one found missing on the
/// machines measured, when neither can be read.
fn fallback_drops() -> Vec<String> {
    let own = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| cap_bound_of(&s))
    };
    match dockerd_bounding_set().or_else(own) {
        Some(mask) => missing_from_mask(mask, last_cap()),
        None => vec!["SYS_RESOURCE".to_string()],
    }
}

/// The mode to try first: the fallback straight away when the local dockerd is older than 23.0
/// and its bounding set lacks capabilities (it would refuse `--privileged`), else privileged.
async fn first_guess(docker: &Docker) -> Security {
    let Some(mask) = dockerd_bounding_set() else {
        return Security::Privileged;
    };
    let missing = missing_from_mask(mask, last_cap());
    if missing.is_empty() {
        return Security::Privileged;
    }
    let major = docker
        .version()
        .await
        .ok()
        .and_then(|v| v.version)
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    match major {
        Some(major) if major < 23 => Security::Capabilities { dropped: missing },
        _ => Security::Privileged,
    }
}

/// The next security mode to try after `current` failed to start with `message`, or `None`
/// when there is nothing left to try.
pub(crate) fn next_security(
    current: &Security,
    message: &str,
    drops: impl FnOnce() -> Vec<String>,
) -> Option<Security> {
    if !is_capability_error(message) && !message.contains("CAP_") {
        return None;
    }
    match current {
        Security::Privileged => Some(Security::Capabilities { dropped: drops() }),
        Security::Capabilities { dropped } => {
            let named = capabilities_named(message);
            let mut next = dropped.clone();
            if message.to_ascii_lowercase().contains("unknown capability") {
                next.retain(|c| !named.contains(c));
            } else {
                for name in named {
                    if !next.contains(&name) {
                        next.push(name);
                    }
                }
            }
            (next != *dropped).then_some(Security::Capabilities { dropped: next })
        }
    }
}

/// A fresh, labelled data volume for the node (a leftover of an earlier machine of the same
/// name would bring back its old swarm state, so it is removed first).
async fn fresh_volume(docker: &Docker, spec: &NodeSpec<'_>) -> Result<(), DindError> {
    match docker
        .remove_volume(&spec.volume, Some(RemoveVolumeOptions { force: true }))
        .await
    {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            return Err(DindError::docker(
                format!("cannot remove the leftover volume {}", spec.volume),
                e,
            ))
        }
    }
    let request = VolumeCreateRequest {
        name: Some(spec.volume.clone()),
        driver: Some("local".to_string()),
        labels: Some(super::labels_for(
            spec.cluster,
            [(LABEL_MACHINE, spec.machine.to_string())],
        )),
        ..Default::default()
    };
    docker
        .create_volume(request)
        .await
        .map_err(|e| DindError::docker(format!("cannot create volume {}", spec.volume), e))?;
    Ok(())
}

/// Creates and starts the node container, then waits until its engine answers on the host
/// socket. Starts privileged unless an earlier node needed the fallback; on a capability error
/// it recreates the container with the fallback and remembers what worked in `known`.
pub(crate) async fn create(
    docker: &Docker,
    spec: &NodeSpec<'_>,
    known: &Mutex<Option<Security>>,
) -> Result<Security, DindError> {
    fresh_volume(docker, spec).await?;
    let _ = std::fs::remove_file(&spec.socket);
    let remembered = lock_security(known).clone();
    let mut security = match remembered {
        Some(security) => security,
        None => first_guess(docker).await,
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        remove_container(docker, &spec.container).await?;
        // Capability problems show up at create (a capability the engine does not know) or at
        // start (one it cannot grant); both are answered by the next security mode.
        let started = match docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(spec.container.clone()),
                    ..Default::default()
                }),
                container_body(spec, &security),
            )
            .await
        {
            Ok(_) => docker.start_container(&spec.container, None).await,
            Err(error) => Err(error),
        };
        match started {
            Ok(()) => break,
            Err(error) => {
                let message = error.to_string();
                let next = if attempts < START_ATTEMPTS {
                    next_security(&security, &message, fallback_drops)
                } else {
                    None
                };
                match next {
                    Some(next) => {
                        tracing::info!(
                            machine = spec.machine,
                            failed = %security,
                            trying = %next,
                            error = %message,
                            "node container did not start; trying the capability fallback"
                        );
                        security = next;
                    }
                    None => {
                        return Err(DindError::docker(
                            format!(
                                "cannot create or start container {} ({security})",
                                spec.container
                            ),
                            error,
                        ))
                    }
                }
            }
        }
    }
    *lock_security(known) = Some(security.clone());
    wait_ready(docker, spec.machine, &spec.container, &spec.socket).await?;
    Ok(security)
}

/// Polls `/_ping` on the node socket until it answers; fails early when the container stops.
pub(crate) async fn wait_ready(
    docker: &Docker,
    machine: &str,
    container: &str,
    socket: &Path,
) -> Result<(), DindError> {
    let started = Instant::now();
    let socket_text = socket.to_string_lossy().to_string();
    let mut polls: u64 = 0;
    loop {
        if socket.exists() {
            if let Ok(node) = Docker::connect_with_unix(&socket_text, 5, API_DEFAULT_VERSION) {
                if node.ping().await.is_ok() {
                    return Ok(());
                }
            }
        }
        polls += 1;
        if polls % 10 == 0 {
            let state = docker
                .inspect_container(container, None::<InspectContainerOptions>)
                .await
                .ok()
                .and_then(|i| i.state);
            if let Some(state) = state {
                if state.running == Some(false) {
                    return Err(DindError::NodeFailed {
                        machine: machine.to_string(),
                        problem: format!(
                            "the container stopped (exit code {}) before its engine answered",
                            state.exit_code.unwrap_or_default()
                        ),
                        log: log_tail(docker, container).await,
                    });
                }
            }
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(DindError::NodeFailed {
                machine: machine.to_string(),
                problem: format!(
                    "its engine did not answer on {} within {} s",
                    socket.display(),
                    READY_TIMEOUT.as_secs()
                ),
                log: log_tail(docker, container).await,
            });
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// The last lines of a container's log, for error messages.
pub(crate) async fn log_tail(docker: &Docker, container: &str) -> String {
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: "30".to_string(),
        ..Default::default()
    };
    let mut stream = docker.logs(container, Some(options));
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => text.push_str(&chunk.to_string()),
            Err(e) => {
                text.push_str(&format!("(log unavailable: {e})"));
                break;
            }
        }
    }
    text
}

/// Connects to a node's engine over its host socket, with the API version it speaks.
pub(crate) async fn connect_node(socket: &Path) -> Result<Docker, DindError> {
    let path = socket.to_string_lossy();
    let docker = Docker::connect_with_unix(&path, 600, API_DEFAULT_VERSION)
        .map_err(|e| DindError::docker(format!("cannot connect to {path}"), e))?;
    crate::docker::negotiated(docker)
        .await
        .map_err(|e| DindError::docker(format!("the engine at {path} does not answer"), e))
}

/// Copies images from the host engine into the node (`GET /images/get` on the host streamed
/// into `POST /images/load` on the node).
pub(crate) async fn preload(
    docker: &Docker,
    socket: &Path,
    machine: &str,
    images: &[String],
) -> Result<(), DindError> {
    let node = connect_node(socket).await?;
    preload_into(docker, &node, machine, images).await
}

/// Copies `images` from the host engine `docker` into the engine `node` of `machine` (`docker
/// save | docker load`, streamed); an image missing on the host is named.
pub(crate) async fn preload_into(
    docker: &Docker,
    node: &Docker,
    machine: &str,
    images: &[String],
) -> Result<(), DindError> {
    for image in images {
        docker.inspect_image(image).await.map_err(|e| {
            if is_not_found(&e) {
                DindError::Unavailable(format!(
                    "preload image {image} is not on the host engine: build or pull it there first"
                ))
            } else {
                DindError::docker(format!("cannot inspect image {image}"), e)
            }
        })?;
    }
    let names: Vec<&str> = images.iter().map(String::as_str).collect();
    let export = docker.export_images(&names);
    let mut load = node.import_image_stream(
        ImportImageOptions {
            quiet: true,
            ..Default::default()
        },
        export,
        None,
    );
    while let Some(item) = load.next().await {
        item.map_err(|e| {
            DindError::docker(
                format!("cannot load {} into machine {machine}", images.join(", ")),
                e,
            )
        })?;
    }
    Ok(())
}
