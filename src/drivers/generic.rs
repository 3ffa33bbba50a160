//! The `generic` driver: machines are existing hosts, one Docker endpoint each (`tcp://` with
//! TLS, `ssh://`, `unix://`). Nothing is created or destroyed: shoal checks that each host
//! answers and manages its swarm membership.
//!
//! A host dropped from machines.yml must still be reached to leave the swarm, so the driver
//! keeps a roster of the hosts that are members as swarm labels (`io.shoal.host.<machine>`,
//! the host and its access as JSON), next to the revision label apply records. Once apply or a
//! watcher pass has prepared the driver (under the apply lock), the roster is brought up to date
//! each time the machines are listed: a member missing from it is added, and a dropped host that
//! has left is taken off it. `plan` only reads it.
//!
//! The apply lock lives in the swarm's Raft store once a swarm exists ([`swarm_lock`]), so two
//! processes that reach different managers first still meet at one lock; before that, it is the
//! dind driver's lock volume (`<cluster>-lock`) on the first manager (by name) that answers.
//!
//! Relative paths in `tls:` and `ssh:` are relative to the repository folder; absolute paths are
//! used as they are (e.g. swarm secrets under `/run/secrets` for a watcher running in the
//! cluster).

use super::dind::lock;
use super::lock::{HeldLock, LockHolder};
use super::swarm_lock;
use super::{Driver, DriverError, DriverResult};
use crate::docker::{ssh, Access, DockerEngine, SshKeys};
use crate::engine::Swarm;
use crate::model::{
    observed::LocalSwarmState, Desired, MachineAccess, MachineSpec, MachineState, ObservedMachine,
    Role,
};
use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Prefix of the swarm labels holding the roster of member hosts.
pub const LABEL_HOST_PREFIX: &str = "io.shoal.host.";
/// Hosts probed at once.
const CONCURRENCY: usize = 16;

/// One host: its address and what reaching it needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// `tcp://…`, `ssh://…` or `unix://…`.
    pub host: String,
    /// Role machines.yml gives it (for listing; the swarm's own role wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// TLS folder and ssh files, as machines.yml writes them.
    #[serde(flatten)]
    pub access: MachineAccess,
}

/// The driver of a cluster of existing hosts.
pub struct GenericDriver {
    cluster: String,
    base: PathBuf,
    hosts: BTreeMap<String, Host>,
    engines: EngineCache,
    roster: tokio::sync::Mutex<BTreeMap<String, Host>>,
    /// Whether listing may write the roster: set by [`Driver::prepare`], so `plan` writes nothing.
    records_roster: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for GenericDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericDriver")
            .field("cluster", &self.cluster)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl GenericDriver {
    /// The driver for the hosts of `desired`; relative paths are taken from `base` (the
    /// repository folder).
    pub fn new(desired: &Desired, base: &Path) -> GenericDriver {
        let hosts = desired
            .machines
            .values()
            .filter_map(|m| {
                Some((
                    m.name.clone(),
                    Host {
                        host: m.host.clone()?,
                        role: Some(m.role),
                        access: desired.access.get(&m.name).cloned().unwrap_or_default(),
                    },
                ))
            })
            .collect();
        GenericDriver {
            cluster: desired.cluster.clone(),
            base: base.to_path_buf(),
            hosts,
            engines: tokio::sync::Mutex::new(HashMap::new()),
            roster: tokio::sync::Mutex::new(BTreeMap::new()),
            records_roster: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A path of machines.yml made absolute.
    fn path(&self, written: &str) -> PathBuf {
        let path = Path::new(written);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    /// What reaching `host` needs, with its paths made absolute.
    pub fn access(&self, host: &Host) -> Access {
        Access {
            tls: host.access.tls.as_deref().map(|d| self.path(d)),
            ssh: host.access.ssh.as_ref().map(|s| SshKeys {
                key: self.path(&s.key),
                known_hosts: self.path(&s.known_hosts),
            }),
        }
    }

    /// The host of `machine`: from machines.yml, else from the roster (a dropped host).
    async fn host(&self, machine: &str) -> DriverResult<Host> {
        if let Some(host) = self.hosts.get(machine) {
            return Ok(host.clone());
        }
        self.roster
            .lock()
            .await
            .get(machine)
            .cloned()
            .ok_or_else(|| DriverError::NoSuchMachine(machine.to_string()))
    }

    async fn connect(&self, machine: &str) -> DriverResult<Arc<DockerEngine>> {
        if let Some(engine) = self.engines.lock().await.get(machine) {
            if engine.transport_alive() {
                return Ok(engine.clone());
            }
        }
        let host = self.host(machine).await?;
        connect_and_cache(&self.engines, machine, &host.host, &self.access(&host)).await
    }

    /// The machine as observed: running with its membership, or unreachable.
    async fn probe(&self, machine: &str) -> (ObservedMachine, Option<Arc<DockerEngine>>) {
        let mut observed = ObservedMachine {
            name: machine.to_string(),
            state: MachineState::Unreachable,
            created_role: None,
            swarm_state: LocalSwarmState::Inactive,
            node_id: None,
            engine_id: None,
            problem: None,
            address: None,
        };
        let engine = match self.connect(machine).await {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!("{e}");
                observed.problem = Some(e.to_string());
                return (observed, None);
            }
        };
        match engine.info().await {
            Ok(info) => {
                observed.state = MachineState::Running;
                observed.swarm_state = info.swarm_state;
                observed.node_id = info.node_id;
                observed.engine_id = info.engine_id;
                (observed, Some(engine))
            }
            Err(e) => {
                tracing::warn!("machine {machine}: the engine does not answer: {e}");
                observed.problem = Some(format!("the engine does not answer: {e}"));
                self.engines.lock().await.remove(machine);
                (observed, None)
            }
        }
    }

    /// A manager engine among the probed, first by name.
    async fn manager_of(
        probed: &[(ObservedMachine, Option<Arc<DockerEngine>>)],
    ) -> Option<Arc<DockerEngine>> {
        for (_, engine) in probed {
            let Some(engine) = engine else { continue };
            if engine.info().await.is_ok_and(|i| i.control_available) {
                return Some(engine.clone());
            }
        }
        None
    }

    /// Reads the roster from the swarm labels.
    fn read_roster(labels: &BTreeMap<String, String>) -> BTreeMap<String, Host> {
        labels
            .iter()
            .filter_map(|(key, value)| {
                let machine = key.strip_prefix(LABEL_HOST_PREFIX)?;
                let host = serde_json::from_str(value).ok()?;
                Some((machine.to_string(), host))
            })
            .collect()
    }

    /// Brings the roster labels up to date: members of machines.yml in, dropped hosts that
    /// left out. Failures are only logged: the roster is retried at the next listing.
    async fn sync_roster(
        &self,
        manager: &DockerEngine,
        machines: &[ObservedMachine],
    ) -> Option<()> {
        let swarm = manager.inspect_swarm().await.ok()?;
        let mut labels = swarm.labels.clone();
        for machine in machines {
            let key = format!("{LABEL_HOST_PREFIX}{}", machine.name);
            match self.hosts.get(&machine.name) {
                Some(host) if machine.swarm_state == LocalSwarmState::Active => {
                    let mut recorded = host.clone();
                    recorded.role = None;
                    labels.insert(key, serde_json::to_string(&recorded).ok()?);
                }
                None if machine.state == MachineState::Running
                    && machine.swarm_state == LocalSwarmState::Inactive =>
                {
                    labels.remove(&key);
                }
                _ => {}
            }
        }
        if labels != swarm.labels {
            if let Err(e) = manager.update_swarm_labels(swarm.version, labels).await {
                tracing::warn!("cannot record the hosts of the cluster as swarm labels: {e}");
            }
        }
        Some(())
    }

    /// The private folder of `shoal env`'s forward to `machine`
    /// (`~/.cache/shoal/env/<cluster>-<machine>`, mode 0700).
    fn env_forward_dir(&self, machine: &str) -> DriverResult<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let home = std::env::var_os("HOME").ok_or_else(|| {
            DriverError::Unavailable("HOME is not set: no folder for the ssh forward".to_string())
        })?;
        let dir = PathBuf::from(home)
            .join(".cache/shoal/env")
            .join(format!("{}-{machine}", self.cluster));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                DriverError::Other(format!("cannot make the folder {}: {e}", dir.display()))
            })?;
        Ok(dir)
    }

    /// The hosts of machines.yml and of the roster, by name.
    async fn machine_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.hosts.keys().cloned().collect();
        names.extend(self.roster.lock().await.keys().cloned());
        names
    }

    async fn manager(&self) -> DriverResult<Arc<DockerEngine>> {
        let managers: Vec<&String> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.role == Some(Role::Manager))
            .map(|(name, _)| name)
            .collect();
        let mut problems = Vec::new();
        for name in managers {
            match self.connect(name).await {
                Ok(engine) if engine.info().await.is_ok() => return Ok(engine),
                Ok(_) => problems.push(format!("machine {name}: the engine does not answer")),
                Err(e) => problems.push(e.to_string()),
            }
        }
        Err(DriverError::Unavailable(format!(
            "no manager host answers, so the apply lock cannot be taken: {}",
            problems.join("; ")
        )))
    }
}

/// The connected engines of a driver's machines, by machine name.
pub(super) type EngineCache = tokio::sync::Mutex<HashMap<String, Arc<DockerEngine>>>;

/// Connects to `machine`'s engine at `url` (`tcp://` or `ssh://`) with `access`, advertising
/// the endpoint's address, and caches the engine in `engines`.
pub(super) async fn connect_and_cache(
    engines: &EngineCache,
    machine: &str,
    url: &str,
    access: &Access,
) -> DriverResult<Arc<DockerEngine>> {
    let advertise = advertise_addr(url).await;
    let engine = DockerEngine::connect_remote(machine, url, access, advertise)
        .await
        .map_err(|e| DriverError::Other(e.to_string()))?;
    let engine = Arc::new(engine);
    engines
        .lock()
        .await
        .insert(machine.to_string(), engine.clone());
    Ok(engine)
}

/// A machine as listed, the engine that answered for it, and its address.
pub(super) type Probed = (ObservedMachine, Option<Arc<DockerEngine>>, Option<String>);

/// Gives the machines whose engine does not answer their swarm node, found by address on
/// an answering manager: their nodes' hostnames may be the provider's names (or the
/// engine's own), so they are not matched by name.
pub(super) async fn claim_nodes(probed: &mut [Probed]) {
    let mut manager = None;
    for (_, engine, _) in probed.iter() {
        let Some(engine) = engine else { continue };
        if engine.info().await.is_ok_and(|i| i.control_available) {
            manager = Some(engine.clone());
            break;
        }
    }
    let Some(manager) = manager else { return };
    if probed
        .iter()
        .all(|(m, _, _)| m.node_id.is_some() || m.state == MachineState::Running)
    {
        return;
    }
    let Ok(nodes) = manager.client().list_nodes(None).await else {
        return;
    };
    for (machine, _, address) in probed.iter_mut() {
        let Some(address) = address.as_deref() else {
            continue;
        };
        if machine.state == MachineState::Running || machine.node_id.is_some() {
            continue;
        }
        machine.node_id = nodes
            .iter()
            .find(|n| n.status.as_ref().and_then(|s| s.addr.as_deref()) == Some(address))
            .and_then(|n| n.id.clone());
    }
}

/// The address a host advertises to the swarm: the IP of its endpoint (a name is resolved).
pub(super) async fn advertise_addr(host: &str) -> Option<String> {
    let rest = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("ssh://"))?
        .trim_end_matches('/');
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let name = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']')?.0,
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Some(name.to_string());
    }
    let mut addresses = tokio::net::lookup_host((name, 0)).await.ok()?;
    addresses.next().map(|a| a.ip().to_string())
}

#[async_trait]
impl Driver for GenericDriver {
    async fn list(&self) -> DriverResult<Vec<ObservedMachine>> {
        let names: Vec<String> = self.hosts.keys().cloned().collect();
        let mut probed: Vec<(ObservedMachine, Option<Arc<DockerEngine>>)> = stream::iter(names)
            .map(|name| async move { self.probe(&name).await })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        if let Some(manager) = Self::manager_of(&probed).await {
            if let Ok(swarm) = manager.inspect_swarm().await {
                let dropped: BTreeMap<String, Host> = Self::read_roster(&swarm.labels)
                    .into_iter()
                    .filter(|(name, _)| !self.hosts.contains_key(name))
                    .collect();
                *self.roster.lock().await = dropped.clone();
                for name in dropped.keys() {
                    probed.push(self.probe(name).await);
                }
            }
            if self
                .records_roster
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                let machines: Vec<ObservedMachine> =
                    probed.iter().map(|(m, _)| m.clone()).collect();
                self.sync_roster(&manager, &machines).await;
            }
        }
        let mut machines: Vec<ObservedMachine> = probed
            .into_iter()
            .map(|(m, _)| m)
            .filter(|m| {
                self.hosts.contains_key(&m.name)
                    || m.state != MachineState::Running
                    || m.swarm_state != LocalSwarmState::Inactive
            })
            .collect();
        machines.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(machines)
    }

    async fn create(&self, machine: &MachineSpec) -> DriverResult<()> {
        Err(DriverError::Unavailable(format!(
            "the generic driver does not create machines: machine {} must be an existing host that answers at its `host:` address",
            machine.name
        )))
    }

    /// From now on, listing the machines keeps the roster of member hosts up to date.
    async fn prepare(&self) -> DriverResult<()> {
        self.records_roster
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn start(&self, machine: &str) -> DriverResult<()> {
        let host = self.host(machine).await?;
        match self.probe(machine).await {
            (_, Some(_)) => Ok(()),
            _ => Err(DriverError::Unavailable(format!(
                "machine {machine} ({}) does not answer, and the generic driver cannot start hosts: start it or its dockerd",
                host.host
            ))),
        }
    }

    async fn destroy(&self, machine: &str) -> DriverResult<()> {
        Err(DriverError::Unavailable(format!(
            "the generic driver does not destroy machines: {machine} is an existing host"
        )))
    }

    async fn endpoint(&self, machine: &str) -> DriverResult<String> {
        Ok(self.host(machine).await?.host)
    }

    /// TLS hosts: the TLS exports. SSH hosts: the docker CLI's own ssh transport can take
    /// neither the key nor the known_hosts file machines.yml names, so shoal leaves a forward
    /// running (strict host keys, that key only) and exports its local socket; `shoal env
    /// --unset MACHINE` ends it.
    async fn env(&self, machine: &str) -> DriverResult<Vec<(String, String)>> {
        let host = self.host(machine).await?;
        let access = self.access(&host);
        let target = crate::docker::ssh_target(machine, &host.host, &access)
            .map_err(|e| DriverError::Other(e.to_string()))?;
        if let Some(target) = target {
            let dir = self.env_forward_dir(machine)?;
            let socket = ssh::open_lasting_forward(machine, &target, &dir)
                .await
                .map_err(|e| DriverError::Other(e.to_string()))?;
            return Ok(vec![(
                "DOCKER_HOST".to_string(),
                format!("unix://{}", socket.display()),
            )]);
        }
        let mut exports = Vec::new();
        if let Some(dir) = access.tls {
            exports.push(("DOCKER_TLS_VERIFY".to_string(), "1".to_string()));
            exports.push(("DOCKER_HOST".to_string(), host.host.clone()));
            // The docker CLI runs wherever the user is: a folder named relative to the
            // repository is made absolute.
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            exports.push(("DOCKER_CERT_PATH".to_string(), dir.display().to_string()));
        } else {
            exports.push(("DOCKER_HOST".to_string(), host.host.clone()));
        }
        Ok(exports)
    }

    async fn unset_env(&self, machine: &str) -> DriverResult<()> {
        let host = self.host(machine).await?;
        let target = crate::docker::ssh_target(machine, &host.host, &self.access(&host))
            .map_err(|e| DriverError::Other(e.to_string()))?;
        if let Some(target) = target {
            ssh::stop_lasting_forward(&target, &self.env_forward_dir(machine)?);
        }
        Ok(())
    }

    async fn engine(&self, machine: &str) -> DriverResult<Arc<dyn Swarm>> {
        Ok(self.connect(machine).await?)
    }

    /// In the swarm's Raft store when any host is a manager of a swarm (every process meets
    /// there, whichever manager it reaches first); before a swarm exists, the lock volume on
    /// the first manager host by name.
    async fn lock(&self, holder: &LockHolder, now: u64, ttl_seconds: u64) -> DriverResult<()> {
        let manager = swarm_lock::swarm_manager(self, &self.machine_names().await).await;
        if swarm_lock::lock_in_swarm(manager.as_deref(), holder, now, ttl_seconds).await? {
            return Ok(());
        }
        let manager = self.manager().await?;
        lock::lock(manager.client(), &self.cluster, holder, now, ttl_seconds).await
    }

    /// Releases the lock wherever this holder has it: the swarm's, and the volume taken before
    /// the swarm existed.
    async fn unlock(&self, holder: &LockHolder) -> DriverResult<()> {
        self.force_unlock(&holder.id).await.map(|_| ())
    }

    async fn force_unlock(&self, lock_id: &str) -> DriverResult<Option<HeldLock>> {
        let manager = swarm_lock::swarm_manager(self, &self.machine_names().await).await;
        let mut released = swarm_lock::unlock_in_swarm(manager.as_deref(), lock_id).await?;
        if let Ok(manager) = self.manager().await {
            if let Some(lock) = lock::unlock(manager.client(), &self.cluster, lock_id).await? {
                released.get_or_insert(lock);
            }
        }
        Ok(released)
    }

    /// Hosts are not destroyed: each leaves the swarm, and shoal's forwarders end.
    async fn destroy_all(&self) -> DriverResult<()> {
        let _ = self.list().await;
        let mut names: Vec<String> = self.hosts.keys().cloned().collect();
        names.extend(self.roster.lock().await.keys().cloned());
        let mut problems = Vec::new();
        for name in names {
            let Ok(engine) = self.connect(&name).await else {
                problems.push(format!("{name} does not answer"));
                continue;
            };
            match engine.info().await {
                Ok(info) if info.swarm_state != LocalSwarmState::Inactive => {
                    if let Err(e) = engine.leave_swarm(true).await {
                        problems.push(format!("{name} cannot leave the swarm: {e}"));
                    }
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        self.engines.lock().await.clear();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DriverError::Other(format!(
                "some hosts could not leave the swarm: {}",
                problems.join("; ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advertise_addresses_come_from_the_endpoint() {
        assert_eq!(
            advertise_addr("tcp://172.30.0.2:2376").await.as_deref(),
            Some("172.30.0.2")
        );
        assert_eq!(
            advertise_addr("ssh://root@172.30.0.3:2222")
                .await
                .as_deref(),
            Some("172.30.0.3")
        );
        assert_eq!(
            advertise_addr("ssh://[fd00::1]:22").await.as_deref(),
            Some("fd00::1")
        );
        assert_eq!(advertise_addr("unix:///var/run/docker.sock").await, None);
    }

    #[tokio::test]
    async fn env_names_the_certificates_by_an_absolute_path() {
        let mut desired = Desired {
            cluster: "c".into(),
            ..Desired::default()
        };
        desired.machines.insert(
            "m".into(),
            MachineSpec {
                name: "m".into(),
                role: Role::Manager,
                labels: BTreeMap::new(),
                host: Some("tcp://10.1.0.2:2376".into()),
            },
        );
        desired.access.insert(
            "m".into(),
            MachineAccess {
                tls: Some("certs/m".into()),
                ..MachineAccess::default()
            },
        );
        let driver = GenericDriver::new(&desired, Path::new("repo"));
        let exports = driver.env("m").await.unwrap();
        let expected = std::env::current_dir().unwrap().join("repo/certs/m");
        assert_eq!(
            exports,
            [
                ("DOCKER_TLS_VERIFY".to_string(), "1".to_string()),
                ("DOCKER_HOST".to_string(), "tcp://10.1.0.2:2376".to_string()),
                (
                    "DOCKER_CERT_PATH".to_string(),
                    expected.display().to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_roster_is_read_from_swarm_labels() {
        let host = Host {
            host: "tcp://10.1.0.2:2376".into(),
            role: None,
            access: MachineAccess {
                tls: Some("certs/w".into()),
                ..MachineAccess::default()
            },
        };
        let labels = BTreeMap::from([
            ("io.shoal.revision".to_string(), "abc".to_string()),
            (
                format!("{LABEL_HOST_PREFIX}w"),
                serde_json::to_string(&host).unwrap(),
            ),
        ]);
        assert_eq!(
            GenericDriver::read_roster(&labels),
            BTreeMap::from([("w".to_string(), host)])
        );
    }
}
