//! A compose file after validation: the typed, resolved data `docker stack deploy` converts
//! (names not yet scoped to the stack, references already checked, files already read).

use std::collections::BTreeMap;

/// A validated compose file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ComposeFile {
    /// Services by compose name.
    pub services: BTreeMap<String, Service>,
    /// Top-level networks by compose name.
    pub networks: BTreeMap<String, Network>,
    /// Top-level volumes by compose name.
    pub volumes: BTreeMap<String, Volume>,
    /// Top-level secrets by compose name.
    pub secrets: BTreeMap<String, FileObject>,
    /// Top-level configs by compose name.
    pub configs: BTreeMap<String, FileObject>,
}

/// A service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Service {
    /// Image as written.
    pub image: String,
    /// `command`, split like a shell would.
    pub command: Option<Vec<String>>,
    /// `entrypoint`, split like a shell would.
    pub entrypoint: Option<Vec<String>>,
    /// Environment after `env_file` and `environment` (None: a bare `KEY`).
    pub environment: BTreeMap<String, Option<String>>,
    /// Published ports (short syntax already expanded).
    pub ports: Vec<Port>,
    /// `deploy`.
    pub deploy: Deploy,
    /// `healthcheck`.
    pub healthcheck: Option<Healthcheck>,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// Networks by compose name (empty: the `default` network).
    pub networks: BTreeMap<String, ServiceNetwork>,
    /// Mounts.
    pub volumes: Vec<ServiceVolume>,
    /// Secrets used.
    pub secrets: Vec<FileRef>,
    /// Configs used.
    pub configs: Vec<FileRef>,
    /// `hostname`.
    pub hostname: String,
    /// `extra_hosts` as `host:ip`.
    pub extra_hosts: Vec<String>,
    /// `dns`.
    pub dns: Vec<String>,
    /// `dns_search`.
    pub dns_search: Vec<String>,
    /// `dns_opt`.
    pub dns_opt: Vec<String>,
    /// `user`.
    pub user: String,
    /// `working_dir`.
    pub working_dir: String,
    /// `stop_grace_period` in nanoseconds.
    pub stop_grace_period: Option<i64>,
    /// `stop_signal`.
    pub stop_signal: String,
    /// `tty`.
    pub tty: bool,
    /// `stdin_open`.
    pub stdin_open: bool,
    /// `read_only`.
    pub read_only: bool,
    /// `init`.
    pub init: Option<bool>,
    /// `sysctls`.
    pub sysctls: BTreeMap<String, String>,
    /// `cap_add`.
    pub cap_add: Vec<String>,
    /// `cap_drop`.
    pub cap_drop: Vec<String>,
    /// `ulimits`: name → (soft, hard).
    pub ulimits: BTreeMap<String, (i64, i64)>,
    /// `logging`.
    pub logging: Option<Logging>,
    /// `isolation`.
    pub isolation: String,
    /// `oom_score_adj`.
    pub oom_score_adj: i64,
    /// `restart`, the fallback restart policy.
    pub restart: Option<RestartSettings>,
}

/// A published port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Port {
    /// Container port.
    pub target: u32,
    /// Published port (0: chosen by swarm).
    pub published: u32,
    /// `tcp`, `udp`, `sctp` or empty.
    pub protocol: String,
    /// `ingress`, `host` or empty.
    pub mode: String,
    /// Port name (long syntax).
    pub name: String,
}

/// The scheduling mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeployMode {
    /// `replicated` (the default).
    #[default]
    Replicated,
    /// `global`.
    Global,
    /// `replicated-job`.
    ReplicatedJob,
    /// `global-job`.
    GlobalJob,
}

/// `deploy`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Deploy {
    /// `mode`.
    pub mode: DeployMode,
    /// `replicas`.
    pub replicas: Option<u64>,
    /// Service labels.
    pub labels: BTreeMap<String, String>,
    /// `update_config`.
    pub update_config: Option<UpdateSettings>,
    /// `rollback_config`.
    pub rollback_config: Option<UpdateSettings>,
    /// `resources.limits`.
    pub limits: Option<Limits>,
    /// `resources.reservations`.
    pub reservations: Option<Reservations>,
    /// `restart_policy`.
    pub restart_policy: Option<RestartSettings>,
    /// `placement.constraints`.
    pub constraints: Vec<String>,
    /// `placement.preferences[].spread`.
    pub preferences: Vec<String>,
    /// `placement.max_replicas_per_node` (0: unlimited).
    pub max_replicas_per_node: u64,
    /// `endpoint_mode`, lowercased.
    pub endpoint_mode: String,
}

/// `update_config` or `rollback_config`; durations in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateSettings {
    /// `parallelism`.
    pub parallelism: Option<u64>,
    /// `delay`.
    pub delay: i64,
    /// `failure_action`.
    pub failure_action: String,
    /// `monitor`.
    pub monitor: i64,
    /// `max_failure_ratio`.
    pub max_failure_ratio: f64,
    /// `order`.
    pub order: String,
}

/// `resources.limits`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPUs in units of 1e-9.
    pub nano_cpus: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Process count.
    pub pids: i64,
}

/// `resources.reservations`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reservations {
    /// CPUs in units of 1e-9.
    pub nano_cpus: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Discrete generic resources (kind, value); `None` for an entry without a spec.
    pub generic_resources: Vec<Option<(String, i64)>>,
}

/// A restart policy; durations in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartSettings {
    /// `none`, `on-failure` or `any`.
    pub condition: String,
    /// `delay`.
    pub delay: Option<i64>,
    /// `max_attempts`.
    pub max_attempts: Option<u64>,
    /// `window`.
    pub window: Option<i64>,
}

/// `healthcheck`; durations in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Healthcheck {
    /// The test command.
    pub test: Vec<String>,
    /// `interval`.
    pub interval: Option<i64>,
    /// `timeout`.
    pub timeout: Option<i64>,
    /// `retries`.
    pub retries: Option<u64>,
    /// `start_period`.
    pub start_period: Option<i64>,
    /// `start_interval`.
    pub start_interval: Option<i64>,
    /// `disable`.
    pub disable: bool,
}

/// `logging`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Logging {
    /// Driver name.
    pub driver: String,
    /// Driver options.
    pub options: BTreeMap<String, String>,
}

/// A service's attachment to a network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceNetwork {
    /// Extra DNS aliases.
    pub aliases: Vec<String>,
    /// `driver_opts`: options of the network driver for this service's endpoint.
    pub driver_opts: BTreeMap<String, String>,
}

/// A mount of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceVolume {
    /// `volume`, `bind`, `tmpfs` or `npipe`.
    pub kind: String,
    /// Volume name (compose name) or host path; empty for anonymous volumes and tmpfs.
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
    /// `consistency`.
    pub consistency: String,
    /// `volume.nocopy`.
    pub nocopy: bool,
    /// `volume.subpath`: the path inside the volume to mount (engines with API 1.45+).
    pub subpath: String,
    /// `bind.propagation`, when a bind block is given.
    pub bind_propagation: Option<String>,
    /// `tmpfs` size and mode, when a tmpfs block is given.
    pub tmpfs: Option<(Option<i64>, Option<u32>)>,
}

/// A service's use of a secret or config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileRef {
    /// The top-level secret or config (compose name).
    pub source: String,
    /// File name in the container (empty: the source name).
    pub target: String,
    /// Owner uid (empty: `0`).
    pub uid: String,
    /// Owner gid (empty: `0`).
    pub gid: String,
    /// Permission bits (None: `0444`).
    pub mode: Option<u32>,
}

/// A top-level network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Network {
    /// Explicit swarm name.
    pub name: Option<String>,
    /// Driver (empty: overlay).
    pub driver: String,
    /// Driver options.
    pub driver_opts: BTreeMap<String, String>,
    /// Standalone containers may attach.
    pub attachable: bool,
    /// No external connectivity.
    pub internal: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// IPAM subnets.
    pub subnets: Vec<String>,
    /// Created outside the stack.
    pub external: bool,
}

/// A top-level volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Volume {
    /// Explicit name.
    pub name: Option<String>,
    /// Driver.
    pub driver: String,
    /// Driver options (None when not written).
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// Created outside the stack.
    pub external: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A top-level secret or config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileObject {
    /// Explicit name.
    pub name: Option<String>,
    /// Created outside the stack (then it has no data).
    pub external: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The file it was read from, relative to the repository.
    pub file: String,
    /// The content.
    pub data: Vec<u8>,
    /// `template_driver` (configs only).
    pub template_driver: Option<String>,
}
