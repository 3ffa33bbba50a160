//! Swarm object specs in the Docker Engine API's own JSON shape (PascalCase), as shoal sends them.
//!
//! These types are plain data: the compose conversion produces them, the planner compares them,
//! the sim stores them and the engine backend sends them as they are. Every optional field is
//! skipped when empty, so a spec serializes to exactly what `docker stack deploy` would send.
//!
//! Reading is lenient, as the Engine API defines these shapes: every field may be absent (it
//! reads as its default), and the fields of a service, task or container spec that shoal does not
//! model are kept in `extra`, so a service deployed by other tools reads whole and an update
//! carries them over.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Label that, set to `true` on a secret or config in the compose file, makes shoal replace an
/// object it would otherwise keep as it is with one holding the file's content under a keyed
/// version: one of the same name it cannot verify (a secret created by `docker stack deploy`),
/// or one versioned before versions were keyed (see [`crate::model::content_key`]).
pub const LABEL_ROTATE: &str = "io.shoal.rotate";

/// Fields of an engine object that shoal does not model, kept as the engine wrote them.
pub type Extra = BTreeMap<String, Value>;

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_zero_i64(value: &i64) -> bool {
    *value == 0
}

/// A swarm service spec (`ServiceSpec` in the Engine API).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ServiceSpec {
    /// Full swarm name, `<stack>_<service>`.
    pub name: String,
    /// Service labels: `deploy.labels` plus the stack labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// What each task runs.
    #[serde(default)]
    pub task_template: TaskSpec,
    /// Replicated (with a count) or global.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ServiceMode>,
    /// Rolling update settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    /// Rollback settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    /// Published ports and the endpoint mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_spec: Option<EndpointSpec>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
    /// Why the engine's spec of this service could not be read (then only its name and labels
    /// are known, and the rest is in `extra`); `None` for every service read whole.
    #[serde(skip)]
    pub unreadable: Option<String>,
}

impl ServiceSpec {
    /// The replica count of a replicated service (the daemon's default of 1 when unset);
    /// `None` for global and job services.
    pub fn replicas(&self) -> Option<u64> {
        match &self.mode {
            None => Some(1),
            Some(ServiceMode {
                replicated: Some(replicated),
                ..
            }) => Some(replicated.replicas.unwrap_or(1)),
            Some(_) => None,
        }
    }

    /// Sets the replica count of a replicated service; does nothing for other modes.
    pub fn set_replicas(&mut self, replicas: u64) {
        match &mut self.mode {
            None => {
                self.mode = Some(ServiceMode {
                    replicated: Some(ReplicatedService {
                        replicas: Some(replicas),
                        ..Default::default()
                    }),
                    ..ServiceMode::default()
                })
            }
            Some(ServiceMode {
                replicated: Some(replicated),
                ..
            }) => replicated.replicas = Some(replicas),
            Some(_) => {}
        }
    }

    /// Whether one task runs on every eligible node (`mode: global`).
    pub fn is_global(&self) -> bool {
        self.mode.as_ref().is_some_and(|m| m.global.is_some())
    }

    /// Whether its tasks run to completion (`replicated-job`, `global-job`).
    pub fn is_job(&self) -> bool {
        (self.mode.as_ref()).is_some_and(|m| m.replicated_job.is_some() || m.global_job.is_some())
    }

    /// The mode's name as `docker service ls` shows it.
    pub fn mode_name(&self) -> &'static str {
        match &self.mode {
            None => "replicated",
            Some(mode) if mode.replicated.is_some() => "replicated",
            Some(mode) if mode.global.is_some() => "global",
            Some(mode) if mode.replicated_job.is_some() => "replicated-job",
            Some(mode) if mode.global_job.is_some() => "global-job",
            Some(_) => "replicated",
        }
    }
}

/// The service's scheduling mode; exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ServiceMode {
    /// A fixed number of tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated: Option<ReplicatedService>,
    /// One task per eligible node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<Empty>,
    /// A job running a number of completions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated_job: Option<ReplicatedJob>,
    /// A job running once per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_job: Option<Empty>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// An empty JSON object, `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Replicated mode settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ReplicatedService {
    /// Number of tasks; the daemon uses 1 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u64>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// Replicated job settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ReplicatedJob {
    /// Tasks running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    /// Completions wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_completions: Option<u64>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// What each task of a service runs and where.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TaskSpec {
    /// The container.
    #[serde(default)]
    pub container_spec: ContainerSpec,
    /// CPU, memory and pid limits and reservations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// When a task's container is restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// Placement constraints and preferences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Networks the tasks attach to, sorted by target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
    /// Logging driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<LogDriver>,
    /// Counter that forces a redeploy when incremented (rebalance).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub force_update: u64,
    /// Engine fields shoal does not model (e.g. `Runtime`): not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// The container of a task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ContainerSpec {
    /// Image reference as written in the compose file.
    #[serde(default)]
    pub image: String,
    /// Container labels (the compose service's `labels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Command arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Hostname inside the container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// `K=V` environment, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dir: String,
    /// User (name or uid[:gid]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Additional groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Allocate a TTY.
    #[serde(default, rename = "TTY", skip_serializing_if = "is_false")]
    pub tty: bool,
    /// Keep stdin open.
    #[serde(default, skip_serializing_if = "is_false")]
    pub open_stdin: bool,
    /// Read-only root filesystem.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// Volumes, binds and tmpfs mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Signal that stops the container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    /// Time to wait before killing, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<i64>,
    /// Health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `/etc/hosts` entries as `IP host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// DNS settings.
    #[serde(default, rename = "DNSConfig", skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig>,
    /// Secrets mounted as files, sorted by secret name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretReference>,
    /// Configs mounted as files, sorted by config name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ConfigReference>,
    /// Run an init process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// Kernel parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Capabilities added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_add: Vec<String>,
    /// Capabilities dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capability_drop: Vec<String>,
    /// Resource limits (`ulimit`), sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// Windows isolation technology.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub isolation: String,
    /// OOM killer score adjustment (`oom_score_adj`).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub oom_score_adj: i64,
    /// Security options. The docker CLI (20.10 and later) always sends
    /// `{"NoNewPrivileges": false}`, so shoal does too: a re-deploy by either restarts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Privileges>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

impl ContainerSpec {
    /// Sorts the secret and config references by name, the order these fields keep (after a
    /// rename, or as the engine returned them).
    pub(crate) fn sort_references(&mut self) {
        self.secrets
            .sort_by(|a, b| a.secret_name.cmp(&b.secret_name));
        self.configs
            .sort_by(|a, b| a.config_name.cmp(&b.config_name));
    }
}

/// A container's security options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Privileges {
    /// Windows credential spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_spec: Option<serde_json::Value>,
    /// SELinux labels.
    #[serde(
        default,
        rename = "SELinuxContext",
        skip_serializing_if = "Option::is_none"
    )]
    pub selinux_context: Option<serde_json::Value>,
    /// Forbid gaining privileges (e.g. through setuid binaries).
    #[serde(default)]
    pub no_new_privileges: bool,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// A mount into a service's containers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Mount {
    /// `volume`, `bind`, `tmpfs` or `npipe`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Volume name or host path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Mounted read-only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// Consistency requirement (`default`, `consistent`, `cached`, `delegated`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub consistency: String,
    /// Bind mount options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    /// Volume options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    /// Tmpfs options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// Bind mount options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct BindOptions {
    /// Propagation mode.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub propagation: String,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// Volume mount options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct VolumeOptions {
    /// Do not copy the image's data into a new volume.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_copy: bool,
    /// The path inside the volume to mount instead of its root (`volume.subpath`; engines
    /// with API 1.45 and later store it, older ones drop it unseen).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subpath: String,
    /// Volume labels (with the stack label).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Volume driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_config: Option<Driver>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// Tmpfs mount options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TmpfsOptions {
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// Permission bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// A driver with options (volume drivers, log drivers, network drivers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Driver {
    /// Driver name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Driver options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// A container health check; durations in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HealthConfig {
    /// The test command (`["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Time between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Time a check may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Failures before unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    /// Grace period after start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Interval during the start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// DNS settings of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct DnsConfig {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// Where a secret or config appears in the container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct FileTarget {
    /// File name (relative to `/run/secrets` for secrets) or absolute path.
    pub name: String,
    /// Owner uid.
    #[serde(rename = "UID")]
    pub uid: String,
    /// Owner gid.
    #[serde(rename = "GID")]
    pub gid: String,
    /// Permission bits.
    pub mode: u32,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// A service's use of a secret. The ID is resolved by the backend when it sends the spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SecretReference {
    /// Where the secret appears.
    pub file: FileTarget,
    /// Swarm secret ID (filled in by the backend, ignored in comparisons).
    #[serde(default, rename = "SecretID", skip_serializing_if = "String::is_empty")]
    pub secret_id: String,
    /// Swarm secret name.
    pub secret_name: String,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// A service's use of a config. The ID is resolved by the backend when it sends the spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ConfigReference {
    /// Where the config appears.
    pub file: FileTarget,
    /// Swarm config ID (filled in by the backend, ignored in comparisons).
    #[serde(default, rename = "ConfigID", skip_serializing_if = "String::is_empty")]
    pub config_id: String,
    /// Swarm config name.
    pub config_name: String,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// A ulimit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Ulimit {
    /// Limit name (`nofile`, `nproc`, ...).
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// Resource limits and reservations of a task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Resources {
    /// Upper bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limit>,
    /// What the scheduler reserves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Reservation>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// Resource limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Limit {
    /// CPU in units of 1e-9 CPUs.
    #[serde(default, rename = "NanoCPUs", skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// Memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// Maximum number of processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// Resource reservations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Reservation {
    /// CPU in units of 1e-9 CPUs.
    #[serde(default, rename = "NanoCPUs", skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// Memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// Generic resources (`{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 2}}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<serde_json::Value>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// When tasks are restarted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// `none`, `on-failure` or `any`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
    /// Delay between restarts in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<i64>,
    /// Maximum attempts (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    /// Window used to judge whether a restart succeeded, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// Placement rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Placement {
    /// Constraints such as `node.role==manager`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Spread preferences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    /// At most this many tasks per node (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<u64>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// A placement preference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PlacementPreference {
    /// Spread over the values of a label.
    pub spread: SpreadOver,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// The label a spread preference spreads over.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SpreadOver {
    /// e.g. `node.labels.zone`.
    pub spread_descriptor: String,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// A network attachment of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkAttachment {
    /// Network name (resolved to an ID by the engine).
    pub target: String,
    /// DNS aliases on that network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Options of the network driver for this endpoint (the service's `networks.X.driver_opts`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// A log driver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LogDriver {
    /// Driver name; empty when the compose file sets only `options` (the docker CLI then sends
    /// no `Name`, and the engine uses its default driver with those options).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Driver options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// Rolling update or rollback settings; durations in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct UpdateConfig {
    /// Tasks updated at once (0 = all).
    pub parallelism: u64,
    /// Delay between batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<i64>,
    /// `continue`, `pause` or `rollback`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_action: String,
    /// Time to watch each task for failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<i64>,
    /// Failure ratio tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
    /// `stop-first` or `start-first`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub order: String,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// Endpoint mode and published ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct EndpointSpec {
    /// `vip` or `dnsrr`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Published ports, sorted by published port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// A published port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PortConfig {
    /// Port name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `tcp`, `udp` or `sctp`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Port inside the container.
    pub target_port: u32,
    /// Port on the nodes (0 = assigned by swarm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_port: Option<u32>,
    /// `ingress` (routing mesh) or `host`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub publish_mode: String,
    /// Engine fields shoal does not model: not compared, carried over by updates.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: Extra,
}

/// A swarm network spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkSpec {
    /// Full swarm name, `<stack>_<network>` unless the file names it.
    pub name: String,
    /// Driver, `overlay` by default.
    pub driver: String,
    /// Labels, with the stack label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Standalone containers may attach.
    #[serde(default, skip_serializing_if = "is_false")]
    pub attachable: bool,
    /// No external connectivity.
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal: bool,
    /// Driver options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// IPAM subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
}

/// A secret or config: immutable, named after its content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectSpec {
    /// Full swarm name. The compose conversion gives the name `docker stack deploy` gives it
    /// (`<stack>_<name>`, or the file's explicit `name`); the planner versions it
    /// (`<name>-<8 hex>`, see [`crate::model::content_key`]) or keeps that name (adoption).
    pub name: String,
    /// Labels, with the stack label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// sha256 of the content, hex. Never serialized: the digest of a secret's plaintext would
    /// let anyone holding a plan test guesses of the secret offline. Only compared with what
    /// the cluster holds (a config's data, versions written before they were keyed).
    #[serde(skip)]
    pub sha256: String,
    /// The content's version under the cluster's key, set by the planner; empty before.
    /// Never serialized (the name and the version label carry it where it is shown).
    #[serde(skip)]
    pub version: String,
    /// Where the content comes from, relative to the repository (for people and for saved plans).
    pub source: String,
    /// The content. Never serialized: secret data must not appear in any output.
    #[serde(skip)]
    pub data: Vec<u8>,
    /// The driver that renders a config's content as a template on each node (`template_driver`,
    /// sent as `Templating`; `golang` is the one the engine has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_driver: Option<String>,
}

/// The sha256 (hex) of what identifies a secret's or config's content: its data, and the
/// template driver that renders it when one is set (a config whose `template_driver` changes is
/// a new config, as one whose data changes).
pub fn content_sha256(data: &[u8], template_driver: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(data);
    if let Some(driver) = template_driver {
        hasher.update(b"\0templating:");
        hasher.update(driver.as_bytes());
    }
    hex::encode(hasher.finalize())
}

impl ObjectSpec {
    /// The name `docker stack deploy` gives this object (`<stack>_<name>`, or the compose
    /// file's explicit `name`): [`ObjectSpec::name`] without its `-<version>` suffix.
    pub fn cli_name(&self) -> &str {
        let suffix = (!self.version.is_empty()).then(|| format!("-{}", self.version));
        suffix
            .and_then(|suffix| self.name.strip_suffix(suffix.as_str()))
            .unwrap_or(&self.name)
    }
}
