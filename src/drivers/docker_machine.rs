//! The `docker-machine` driver: machines are made, listed, started and removed by shelling out
//! to a `docker-machine` binary, so the tutorial's own tool does the provisioning (VirtualBox,
//! the clouds, or `none` for an engine that exists already).
//!
//! Machines are named `<cluster>-<machine>` there and found by that prefix with `ls -q`, which
//! contacts no engine. They are created with the engine label `io.shoal.cluster=<cluster>`, kept
//! in their configuration, and a machine is the cluster's only when that label names it: the
//! store is usually the user's own (`~/.docker/machine`), so `web-staging` made by hand (no
//! label), or `web-prod-m1` of cluster `web-prod`, is never listed as cluster `web`'s, so never
//! started, destroyed or created over. An unlabelled machine named like one of ours is named in a
//! warning; `driver_options.docker-machine.adopt` lists those the user gives to the cluster.
//! `inspect` gives each one's URL and TLS files (`machines/NAME/{ca,cert,key}.pem`, the folder
//! `docker-machine env` points `DOCKER_CERT_PATH` at). The engine is then
//! probed directly: docker-machine's `status` is only asked whether a machine that does not
//! answer is `Stopped` (it says `Running` for `none` hosts whatever they do). A listed machine
//! without its TLS files, or whose create by shoal did not finish (a marker in the store's
//! `shoal-creating/` says so until the engine answers), is `incomplete` and re-created; one not
//! listed is gone. A create that fails after registering its machine removes what it made. Every call sets
//! `MACHINE_BUGSNAG_API_TOKEN=no-report`, so a failed `create` sends no crash report, and
//! docker-machine's own errors are passed on as they are, with the machine named.
//!
//! `create --driver none` skips provisioning, so docker-machine never writes the machine's TLS
//! files: shoal copies the store's `certs/{ca,cert,key}.pem` (the engine's CA and a client
//! certificate it signed, put there beforehand) into the machine's folder, as one would by hand.
//!
//! The apply lock is a file in the docker-machine store (`shoal-locks/<cluster>.json`): the
//! store is where docker-machine keeps the machines, so whoever manages them shares it, and the
//! lock exists before the first machine does.

use super::generic::{advertise_addr, claim_nodes, connect_and_cache, EngineCache, Probed};
use super::lock::{HeldLock, LockHolder};
use super::swarm_lock;
use super::{Driver, DriverError, DriverResult};
use crate::docker::{Access, DockerEngine};
use crate::engine::Swarm;
use crate::model::driver_options::DockerMachineSettings;
use crate::model::{
    observed::LocalSwarmState, Desired, MachineSpec, MachineState, ObservedMachine, Role,
    LABEL_CLUSTER,
};
use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// The variable that turns docker-machine's crash reports off, and its value.
pub const NO_REPORT: (&str, &str) = ("MACHINE_BUGSNAG_API_TOKEN", "no-report");
/// The TLS files of a machine's folder, as `docker-machine env` uses them.
const TLS_FILES: [&str; 3] = ["ca.pem", "cert.pem", "key.pem"];
/// Machines inspected and probed at once.
const CONCURRENCY: usize = 8;
/// How long a created or started machine's engine has to answer.
const ENGINE_WAIT: Duration = Duration::from_secs(180);
/// How long a certificate problem may last before a new machine's engine is given up on.
const CERTIFICATE_WAIT: Duration = Duration::from_secs(20);
/// The folder of the store that holds the clusters' apply locks.
const LOCK_DIR: &str = "shoal-locks";
/// What to check when the lock file cannot be used.
const LOCK_ADVICE: &str = "check that the docker-machine store is writable";
/// The folder of the store that marks the machines shoal's create has not finished, by
/// docker-machine name.
const CREATING_DIR: &str = "shoal-creating";
/// The engine port every docker-machine driver provisions.
const ENGINE_PORT: u16 = 2376;

/// `driver_options.docker-machine`, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerMachineOptions {
    /// The `docker-machine` binary: a name looked up on PATH, or a path.
    pub binary: String,
    /// The store (`--storage-path`); `None` leaves docker-machine's own default.
    pub storage_path: Option<PathBuf>,
    /// The docker-machine driver machines are created with (`virtualbox`, `amazonec2`, `none`).
    pub driver: String,
    /// Flags passed to `create` for every machine.
    pub flags: Vec<String>,
    /// docker-machine names (`<cluster>-<machine>`) of machines made without shoal's
    /// `io.shoal.cluster` label that the user gives to this cluster.
    pub adopt: Vec<String>,
}

impl Default for DockerMachineOptions {
    fn default() -> Self {
        DockerMachineOptions {
            binary: "docker-machine".to_string(),
            storage_path: None,
            driver: "virtualbox".to_string(),
            flags: Vec::new(),
            adopt: Vec::new(),
        }
    }
}

impl DockerMachineOptions {
    /// The options machines.yml gives (read and checked by [`crate::config`]), defaults filled
    /// in; a relative `storage_path` is taken from `base` (the repository folder).
    pub fn from_settings(settings: &DockerMachineSettings, base: &Path) -> Self {
        let defaults = DockerMachineOptions::default();
        DockerMachineOptions {
            binary: settings.binary.clone().unwrap_or(defaults.binary),
            storage_path: settings.storage_path.as_ref().map(|path| base.join(path)),
            driver: settings.driver.clone().unwrap_or(defaults.driver),
            flags: settings.flags.clone(),
            adopt: settings.adopt.clone(),
        }
    }
}

/// What `docker-machine inspect` says of a machine, as far as shoal needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspected {
    /// Its docker-machine driver (`none`, `virtualbox`, ...).
    pub driver_name: String,
    /// `tcp://HOST:2376`.
    pub url: Option<String>,
    /// Its folder: `config.json` and, once provisioned, the TLS files.
    pub machine_dir: Option<PathBuf>,
    /// The store's CA certificate, client certificate and key.
    pub store_certs: Option<[PathBuf; 3]>,
    /// The cluster its `io.shoal.cluster` engine label names, if it has one.
    pub cluster: Option<String>,
}

impl Inspected {
    /// Reads `inspect NAME`'s JSON. The URL is `.Driver.URL` (the `none` driver), else
    /// `tcp://<.Driver.IPAddress>:2376`, which is what every provisioning driver serves.
    pub fn parse(text: &str) -> Option<Inspected> {
        let json: serde_json::Value = serde_json::from_str(text).ok()?;
        let string = |value: &serde_json::Value| {
            value.as_str().filter(|s| !s.is_empty()).map(str::to_string)
        };
        let driver = &json["Driver"];
        let auth = &json["HostOptions"]["AuthOptions"];
        let url = string(&driver["URL"]).or_else(|| {
            string(&driver["IPAddress"]).map(|ip| {
                if ip.contains(':') && !ip.starts_with('[') {
                    format!("tcp://[{ip}]:{ENGINE_PORT}")
                } else {
                    format!("tcp://{ip}:{ENGINE_PORT}")
                }
            })
        });
        let path = |key: &str| string(&auth[key]).map(PathBuf::from);
        let store_certs = match (
            path("CaCertPath"),
            path("ClientCertPath"),
            path("ClientKeyPath"),
        ) {
            (Some(ca), Some(cert), Some(key)) => Some([ca, cert, key]),
            _ => None,
        };
        let cluster = json["HostOptions"]["EngineOptions"]["Labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|label| {
                label
                    .as_str()?
                    .strip_prefix(LABEL_CLUSTER)?
                    .strip_prefix('=')
            })
            .map(str::to_string)
            .next();
        Some(Inspected {
            driver_name: string(&json["DriverName"]).unwrap_or_default(),
            url,
            machine_dir: path("StorePath"),
            store_certs,
            cluster,
        })
    }

    /// Whether the machine's folder holds the three TLS files.
    fn has_tls_files(&self) -> bool {
        self.machine_dir
            .as_ref()
            .is_some_and(|dir| TLS_FILES.iter().all(|f| dir.join(f).is_file()))
    }
}

/// Whose a machine of the store named `<cluster>-<machine>` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ownership {
    /// This cluster's: its label names the cluster, shoal's create of it did not finish, or the
    /// user adopted it.
    Ours,
    /// Made without shoal's label and not adopted: left alone, with a warning.
    Unlabelled,
    /// Another cluster's, by its label (`web-prod-m1` seen from cluster `web`).
    Theirs,
}

/// Whose the machine `full_name` is for `cluster`, from the cluster its label names (`label`),
/// whether shoal's own create of it is unfinished (`creating`), and the adopted names.
fn ownership(
    cluster: &str,
    full_name: &str,
    label: Option<&str>,
    creating: bool,
    adopt: &[String],
) -> Ownership {
    match label {
        Some(owner) if owner == cluster => Ownership::Ours,
        Some(_) => Ownership::Theirs,
        None if creating || adopt.iter().any(|a| a == full_name) => Ownership::Ours,
        None => Ownership::Unlabelled,
    }
}

/// A machine as probed: what is observed, its engine when it answered, its address.
/// A failed `docker-machine` call of `who` (`machine w1`).
fn failure(who: &str, verb: &str, code: Option<i32>, stderr: &str, stdout: &str) -> String {
    let said = if stderr.trim().is_empty() {
        stdout.trim()
    } else {
        stderr.trim()
    };
    let code = code.map_or_else(|| "killed".to_string(), |c| format!("exit {c}"));
    format!("{who}: `docker-machine {verb}` failed ({code}): {said}")
}

/// The driver that shells out to `docker-machine`.
pub struct DockerMachineDriver {
    cluster: String,
    options: DockerMachineOptions,
    /// Per-machine `flags`, by machine name.
    flags: BTreeMap<String, Vec<String>>,
    /// The role machines.yml gives each machine (the role it is created for).
    roles: BTreeMap<String, Role>,
    engines: EngineCache,
    /// Held by a `create` while the store has no certificate authority yet: docker-machine
    /// makes `certs/ca.pem` on its first create, and two first creates at once would each make
    /// one, leaving machines signed by a CA that is no longer the store's.
    first_create: tokio::sync::Mutex<()>,
    /// The unlabelled machines already named in a warning (each is named once per run).
    warned: std::sync::Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for DockerMachineDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerMachineDriver")
            .field("cluster", &self.cluster)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl DockerMachineDriver {
    /// The driver for `desired` with its `options`.
    pub fn new(desired: &Desired, options: DockerMachineOptions) -> DockerMachineDriver {
        let flags = desired
            .access
            .iter()
            .filter(|(_, a)| !a.flags.is_empty())
            .map(|(name, a)| (name.clone(), a.flags.clone()))
            .collect();
        let roles = desired
            .machines
            .values()
            .map(|m| (m.name.clone(), m.role))
            .collect();
        DockerMachineDriver {
            cluster: desired.cluster.clone(),
            options,
            flags,
            roles,
            engines: tokio::sync::Mutex::new(HashMap::new()),
            first_create: tokio::sync::Mutex::new(()),
            warned: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The docker-machine name of `machine`.
    fn full_name(&self, machine: &str) -> String {
        format!("{}-{machine}", self.cluster)
    }

    /// Runs `docker-machine [--storage-path P] ARGS` for `machine` (`None`: the whole
    /// cluster); standard output on success, else docker-machine's own words with the machine
    /// named.
    async fn call(&self, machine: Option<&str>, args: &[&str]) -> DriverResult<String> {
        let who = machine.map_or_else(
            || format!("cluster {}", self.cluster),
            |m| format!("machine {m}"),
        );
        let mut command = tokio::process::Command::new(&self.options.binary);
        if let Some(store) = &self.options.storage_path {
            command.arg("--storage-path").arg(store);
        }
        command
            .args(args)
            .env(NO_REPORT.0, NO_REPORT.1)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        tracing::debug!(who, ?args, "docker-machine");
        let out = command.output().await.map_err(|e| {
            DriverError::Unavailable(format!(
                "{who}: cannot run `{}`: {e}; install docker-machine, or set driver_options.docker-machine.binary",
                self.options.binary
            ))
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = failure(&who, args[0], out.status.code(), &stderr, &stdout);
        if let (Some(machine), true) = (machine, stderr.contains("does not exist")) {
            tracing::debug!("{message}");
            return Err(DriverError::NoSuchMachine(machine.to_string()));
        }
        Err(DriverError::Other(message))
    }

    /// The docker-machine names of every machine in the store (`ls -q`).
    async fn listed(&self) -> DriverResult<Vec<String>> {
        let listed = self.call(None, &["ls", "-q"]).await?;
        Ok(listed
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// The machines of this cluster docker-machine knows: named `<cluster>-<machine>` in `ls -q`
    /// and [`Ownership::Ours`] by their label. An unlabelled one is named in a warning with the
    /// way to adopt it.
    async fn names(&self) -> DriverResult<Vec<String>> {
        let prefix = format!("{}-", self.cluster);
        let candidates: Vec<String> = self
            .listed()
            .await?
            .iter()
            .filter_map(|full| full.strip_prefix(&prefix))
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        let owned: Vec<DriverResult<(String, Ownership)>> = stream::iter(candidates)
            .map(|name| async move {
                let ownership = self.ownership(&name).await?;
                Ok((name, ownership))
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut names = Vec::new();
        for owned in owned {
            let (name, ownership) = owned?;
            match ownership {
                Ownership::Ours => names.push(name),
                Ownership::Unlabelled => self.warn_unlabelled(&name),
                Ownership::Theirs => {}
            }
        }
        names.sort();
        Ok(names)
    }

    /// Whose the store's `<cluster>-<machine>` is. A machine that cannot be inspected fails
    /// the listing unless shoal's own create of it is unfinished: counting it as ours could
    /// destroy another's machine, leaving it out could hide one of ours.
    async fn ownership(&self, machine: &str) -> DriverResult<Ownership> {
        let full = self.full_name(machine);
        let creating = self.creating(&full);
        let label = match self.inspect(machine).await {
            Ok(inspected) => inspected.cluster,
            Err(_) if creating => None,
            Err(e) => {
                return Err(DriverError::Other(format!(
                    "cannot tell which cluster docker-machine's {full} belongs to: {e}"
                )))
            }
        };
        Ok(self.owned(machine, label.as_deref()))
    }

    /// Whose `machine` is, its label naming `label`.
    fn owned(&self, machine: &str, label: Option<&str>) -> Ownership {
        let full = self.full_name(machine);
        let creating = self.creating(&full);
        ownership(&self.cluster, &full, label, creating, &self.options.adopt)
    }

    /// Refuses to act on `machine` unless it is this cluster's (a saved plan, or a machine
    /// replaced by hand since it was listed, must not reach another's machine).
    async fn ensure_ours(&self, machine: &str, verb: &str) -> DriverResult<()> {
        let owned = self.ownership(machine).await?;
        self.refuse_unless_ours(machine, owned, verb)
    }

    /// An error saying why shoal does not `verb` `machine`, unless it is [`Ownership::Ours`].
    fn refuse_unless_ours(&self, machine: &str, owned: Ownership, verb: &str) -> DriverResult<()> {
        match owned {
            Ownership::Ours => Ok(()),
            Ownership::Unlabelled => Err(DriverError::Other(format!(
                "machine {machine}: docker-machine's {} has no {LABEL_CLUSTER}={} engine label, so shoal does not {verb} it; {}",
                self.full_name(machine),
                self.cluster,
                self.adopt_hint(machine)
            ))),
            Ownership::Theirs => Err(DriverError::Other(format!(
                "machine {machine}: docker-machine's {} belongs to another cluster (its {LABEL_CLUSTER} label), so shoal does not {verb} it; rename this machine in machines.yml",
                self.full_name(machine)
            ))),
        }
    }

    /// How the user gives an unlabelled machine to this cluster.
    fn adopt_hint(&self, machine: &str) -> String {
        format!(
            "if it is this cluster's machine `{machine}`, add it to machines.yml as `driver_options: {{docker-machine: {{adopt: [{}]}}}}`",
            self.full_name(machine)
        )
    }

    /// Names an unlabelled machine named like one of ours, once per run, in the log and in
    /// the plan's warnings ([`Driver::warnings`]).
    fn warn_unlabelled(&self, machine: &str) {
        let full = self.full_name(machine);
        let warning = format!(
            "docker-machine's {full} is named like machine `{machine}` of cluster {} but has no {LABEL_CLUSTER}={} engine label: shoal leaves it alone (never starts, replaces or removes it); {}",
            self.cluster,
            self.cluster,
            self.adopt_hint(machine)
        );
        let first = self.warned.lock().map_or(true, |mut warned| {
            warned.insert(full.clone(), warning.clone()).is_none()
        });
        if first {
            tracing::warn!("{warning}");
        }
    }

    /// The marker of an unfinished create of `full_name` by shoal.
    fn creating_marker(&self, full_name: &str) -> PathBuf {
        self.store().join(CREATING_DIR).join(full_name)
    }

    /// Whether shoal's create of `full_name` has not finished.
    fn creating(&self, full_name: &str) -> bool {
        self.creating_marker(full_name).is_file()
    }

    /// Marks (`true`) or unmarks the create of `full_name` as unfinished.
    fn mark_creating(&self, full_name: &str, unfinished: bool) -> DriverResult<()> {
        let marker = self.creating_marker(full_name);
        let done = if unfinished {
            marker
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&marker, &self.cluster))
        } else {
            match std::fs::remove_file(&marker) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        };
        done.map_err(|e| {
            DriverError::Unavailable(format!(
                "{}: cannot write {}: {e}; check that the docker-machine store is writable",
                full_name,
                marker.display()
            ))
        })
    }

    /// Removes what a failed create of `machine` left in the store (shoal's create made it):
    /// `rm -f -y`, which drops the store's entry even when the driver cannot remove the rest.
    /// When that fails too, the marker stays and the machine is listed `incomplete`.
    async fn roll_back(&self, machine: &str) {
        let full = self.full_name(machine);
        match self.listed().await {
            Ok(listed) if !listed.contains(&full) => {}
            Ok(_) => match self.call(Some(machine), &["rm", "-f", "-y", &full]).await {
                Ok(_) | Err(DriverError::NoSuchMachine(_)) => {}
                Err(e) => {
                    tracing::warn!("{e}; the failed create's {full} is left, listed as incomplete: the next apply re-creates it");
                    return;
                }
            },
            Err(e) => {
                tracing::warn!(
                    "{e}; the failed create's {full} may be left: the next apply re-creates it"
                );
                return;
            }
        }
        if let Err(e) = self.mark_creating(&full, false) {
            tracing::warn!("{e}");
        }
    }

    async fn inspect(&self, machine: &str) -> DriverResult<Inspected> {
        let text = self
            .call(Some(machine), &["inspect", &self.full_name(machine)])
            .await?;
        Inspected::parse(&text).ok_or_else(|| {
            DriverError::Other(format!(
                "machine {machine}: `docker-machine inspect` printed no machine configuration"
            ))
        })
    }

    /// The engine of a provisioned machine, connected anew unless a live one is cached.
    async fn connect(&self, machine: &str) -> DriverResult<Arc<DockerEngine>> {
        if let Some(engine) = self.engines.lock().await.get(machine) {
            return Ok(engine.clone());
        }
        let inspected = self.inspect(machine).await?;
        let owned = self.owned(machine, inspected.cluster.as_deref());
        self.refuse_unless_ours(machine, owned, "connect to")?;
        self.connect_inspected(machine, &inspected).await
    }

    async fn connect_inspected(
        &self,
        machine: &str,
        inspected: &Inspected,
    ) -> DriverResult<Arc<DockerEngine>> {
        let (Some(url), Some(dir)) = (&inspected.url, &inspected.machine_dir) else {
            return Err(DriverError::Other(format!(
                "machine {machine}: docker-machine has no URL or folder for it; remove it with `docker-machine rm -y {}`",
                self.full_name(machine)
            )));
        };
        let access = Access {
            tls: Some(dir.clone()),
            ssh: None,
        };
        connect_and_cache(&self.engines, machine, url, &access).await
    }

    /// One machine as observed: incomplete without its TLS files, running when its engine
    /// answers, else stopped (docker-machine says so) or unreachable. Also the engine that
    /// answered, and the machine's address.
    async fn probe(&self, machine: &str) -> Probed {
        let mut observed = ObservedMachine {
            name: machine.to_string(),
            state: MachineState::Incomplete,
            created_role: self.roles.get(machine).copied(),
            swarm_state: LocalSwarmState::Inactive,
            node_id: None,
            engine_id: None,
            problem: None,
            address: None,
        };
        if self.creating(&self.full_name(machine)) {
            tracing::warn!(
                "machine {machine}: shoal's create of it did not finish: it is re-created"
            );
            return (observed, None, None);
        }
        let inspected = match self.inspect(machine).await {
            Ok(inspected) if inspected.has_tls_files() => inspected,
            Ok(_) => {
                tracing::warn!("machine {machine}: its TLS files (ca.pem, cert.pem, key.pem) are missing: it was never fully set up");
                return (observed, None, None);
            }
            Err(e) => {
                tracing::warn!("{e}");
                return (observed, None, None);
            }
        };
        let address = match &inspected.url {
            Some(url) => advertise_addr(url).await,
            None => None,
        };
        self.engines.lock().await.remove(machine);
        let answered = match self.connect_inspected(machine, &inspected).await {
            Ok(engine) => match engine.info().await {
                Ok(info) => Ok((engine, info)),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        match answered {
            Ok((engine, info)) => {
                observed.state = MachineState::Running;
                observed.swarm_state = info.swarm_state;
                observed.node_id = info.node_id;
                (observed, Some(engine), address)
            }
            Err(e) => {
                self.engines.lock().await.remove(machine);
                let status = self
                    .call(Some(machine), &["status", &self.full_name(machine)])
                    .await
                    .unwrap_or_default();
                observed.state = match status.trim() {
                    "Stopped" | "Saved" => MachineState::Stopped,
                    _ => {
                        tracing::warn!("{e}");
                        MachineState::Unreachable
                    }
                };
                (observed, None, address)
            }
        }
    }

    /// Waits until the machine's engine answers.
    async fn wait_engine(&self, machine: &str) -> DriverResult<()> {
        let deadline = tokio::time::Instant::now() + ENGINE_WAIT;
        loop {
            self.engines.lock().await.remove(machine);
            let problem = match self.connect(machine).await {
                Ok(engine) => match engine.info().await {
                    Ok(_) => return Ok(()),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            // A certificate the engine refuses (or that does not match it) does not heal.
            let refused = problem.contains("certificate")
                && tokio::time::Instant::now() + ENGINE_WAIT - CERTIFICATE_WAIT >= deadline;
            if refused || tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Other(format!(
                    "machine {machine}: its engine does not answer: {problem}; for `--driver none`, the store's certs/ must hold the engine's CA (ca.pem) and a client certificate it signed (cert.pem, key.pem)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `create --driver none` skips provisioning: copies the store's CA, client certificate
    /// and key into the machine's folder where they are missing.
    async fn finish_unprovisioned(&self, machine: &str) -> DriverResult<()> {
        let inspected = self.inspect(machine).await?;
        if inspected.driver_name != "none" || inspected.has_tls_files() {
            return Ok(());
        }
        let (Some(dir), Some(sources)) = (&inspected.machine_dir, &inspected.store_certs) else {
            return Ok(());
        };
        for (source, file) in sources.iter().zip(TLS_FILES) {
            let target = dir.join(file);
            if target.exists() {
                continue;
            }
            tokio::fs::copy(source, &target).await.map_err(|e| {
                DriverError::Other(format!(
                    "machine {machine}: cannot copy {} to {}: {e}; put the engine's CA and a client certificate it signed into the docker-machine store's certs/ folder",
                    source.display(),
                    target.display()
                ))
            })?;
        }
        Ok(())
    }

    /// The docker-machine store: `storage_path`, else `MACHINE_STORAGE_PATH`, else
    /// `~/.docker/machine`, as docker-machine itself picks it.
    fn store(&self) -> PathBuf {
        if let Some(path) = &self.options.storage_path {
            return path.clone();
        }
        if let Some(path) = std::env::var_os("MACHINE_STORAGE_PATH").filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        let home = std::env::var_os("HOME").unwrap_or_default();
        PathBuf::from(home).join(".docker/machine")
    }

    /// The cluster's lock file in the store.
    fn lock_file(&self) -> PathBuf {
        self.store()
            .join(LOCK_DIR)
            .join(format!("{}.json", self.cluster))
    }
}

#[async_trait]
impl Driver for DockerMachineDriver {
    async fn list(&self) -> DriverResult<Vec<ObservedMachine>> {
        let names = self.names().await?;
        let mut probed: Vec<Probed> = stream::iter(names)
            .map(|name| async move { self.probe(&name).await })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        claim_nodes(&mut probed).await;
        let mut machines: Vec<ObservedMachine> = probed.into_iter().map(|(m, _, _)| m).collect();
        machines.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(machines)
    }

    async fn create(&self, machine: &MachineSpec) -> DriverResult<()> {
        let name = &machine.name;
        let full = self.full_name(name);
        let label = format!("{LABEL_CLUSTER}={}", self.cluster);
        let mut args: Vec<&str> = vec![
            "create",
            "--driver",
            &self.options.driver,
            "--engine-label",
            &label,
        ];
        args.extend(self.options.flags.iter().map(String::as_str));
        if let Some(flags) = self.flags.get(name) {
            args.extend(flags.iter().map(String::as_str));
        }
        args.push(&full);
        if self.listed().await?.contains(&full) {
            self.ensure_ours(name, "create over").await?;
            return Err(DriverError::MachineExists(name.clone()));
        }
        self.mark_creating(&full, true)?;
        let first = if self.store().join("certs").join("ca.pem").exists() {
            None
        } else {
            Some(self.first_create.lock().await)
        };
        let created = self.call(Some(name), &args).await;
        drop(first);
        if let Err(e) = created {
            if let DriverError::Other(text) = &e {
                if text.contains("already exists") {
                    // Made by someone else since it was listed: not ours to remove.
                    self.mark_creating(&full, false)?;
                    self.ensure_ours(name, "create over").await?;
                    return Err(DriverError::MachineExists(name.clone()));
                }
            }
            self.roll_back(name).await;
            return Err(e);
        }
        // Until its engine answers, the marker keeps the machine `incomplete`.
        self.finish_unprovisioned(name).await?;
        self.wait_engine(name).await?;
        self.mark_creating(&full, false)
    }

    async fn start(&self, machine: &str) -> DriverResult<()> {
        self.ensure_ours(machine, "start").await?;
        self.engines.lock().await.remove(machine);
        self.call(Some(machine), &["start", &self.full_name(machine)])
            .await?;
        self.wait_engine(machine).await
    }

    /// `rm -y` of a machine of this cluster; `rm -f -y` of one whose create did not finish.
    async fn destroy(&self, machine: &str) -> DriverResult<()> {
        self.ensure_ours(machine, "remove").await?;
        self.engines.lock().await.remove(machine);
        let full = self.full_name(machine);
        let unfinished = self.creating(&full);
        let args: &[&str] = if unfinished {
            &["rm", "-f", "-y", &full][..]
        } else {
            &["rm", "-y", &full][..]
        };
        match self.call(Some(machine), args).await {
            Ok(_) => self.mark_creating(&full, false),
            Err(DriverError::NoSuchMachine(_)) => {
                self.mark_creating(&full, false)?;
                Err(DriverError::NoSuchMachine(machine.into()))
            }
            Err(e) => Err(e),
        }
    }

    async fn endpoint(&self, machine: &str) -> DriverResult<String> {
        self.inspect(machine).await?.url.ok_or_else(|| {
            DriverError::Other(format!(
                "machine {machine}: docker-machine has no URL for it"
            ))
        })
    }

    /// The four exports of `docker-machine env`.
    async fn env(&self, machine: &str) -> DriverResult<Vec<(String, String)>> {
        let inspected = self.inspect(machine).await?;
        let (Some(url), Some(dir)) = (inspected.url, inspected.machine_dir) else {
            return Err(DriverError::Other(format!(
                "machine {machine}: docker-machine has no URL or folder for it"
            )));
        };
        Ok(vec![
            ("DOCKER_TLS_VERIFY".to_string(), "1".to_string()),
            ("DOCKER_HOST".to_string(), url),
            ("DOCKER_CERT_PATH".to_string(), dir.display().to_string()),
            ("DOCKER_MACHINE_NAME".to_string(), self.full_name(machine)),
        ])
    }

    async fn engine(&self, machine: &str) -> DriverResult<Arc<dyn Swarm>> {
        Ok(self.connect(machine).await?)
    }

    /// In the swarm's Raft store once a swarm exists (operators with their own stores meet
    /// there); before that, the lock file in the docker-machine store.
    async fn lock(&self, holder: &LockHolder, now: u64, ttl_seconds: u64) -> DriverResult<()> {
        let manager = swarm_lock::swarm_manager(self, &self.names().await?).await;
        if swarm_lock::lock_in_swarm(manager.as_deref(), holder, now, ttl_seconds).await? {
            return Ok(());
        }
        super::lock::take_lock_file(&self.lock_file(), LOCK_ADVICE, holder, now, ttl_seconds)
    }

    async fn unlock(&self, holder: &LockHolder) -> DriverResult<()> {
        self.force_unlock(&holder.id).await.map(|_| ())
    }

    async fn force_unlock(&self, lock_id: &str) -> DriverResult<Option<HeldLock>> {
        let names = self.names().await.unwrap_or_default();
        let manager = swarm_lock::swarm_manager(self, &names).await;
        let in_swarm = swarm_lock::unlock_in_swarm(manager.as_deref(), lock_id).await?;
        let in_store = super::lock::release_lock_file(&self.lock_file(), LOCK_ADVICE, lock_id)?;
        Ok(in_swarm.or(in_store))
    }

    fn warnings(&self) -> Vec<String> {
        self.warned
            .lock()
            .map(|warned| warned.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every machine leaves its swarm where its engine answers (an engine registered with
    /// `--driver none` outlives its machine), then is removed with `rm -y`.
    async fn destroy_all(&self) -> DriverResult<()> {
        let names = self.names().await?;
        let mut problems = Vec::new();
        for name in &names {
            if let Ok(engine) = self.connect(name).await {
                if engine
                    .info()
                    .await
                    .is_ok_and(|i| i.swarm_state != LocalSwarmState::Inactive)
                {
                    if let Err(e) = engine.leave_swarm(true).await {
                        tracing::warn!("machine {name} cannot leave the swarm: {e}");
                    }
                }
            }
        }
        self.engines.lock().await.clear();
        for name in &names {
            if let Err(e) = self.destroy(name).await {
                problems.push(e.to_string());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DriverError::Other(problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_with_their_defaults() {
        let base = Path::new("/repo");
        let settings = DockerMachineSettings {
            driver: Some("none".into()),
            flags: vec!["--a=1".into()],
            storage_path: Some("store".into()),
            ..DockerMachineSettings::default()
        };
        let options = DockerMachineOptions::from_settings(&settings, base);
        assert_eq!(options.driver, "none");
        assert_eq!(options.flags, ["--a=1"]);
        assert_eq!(
            options.storage_path.as_deref(),
            Some(Path::new("/repo/store"))
        );
        assert_eq!(options.binary, "docker-machine");
        let absolute = DockerMachineSettings {
            storage_path: Some("/store".into()),
            ..DockerMachineSettings::default()
        };
        let options = DockerMachineOptions::from_settings(&absolute, base);
        assert_eq!(options.storage_path.as_deref(), Some(Path::new("/store")));
        assert_eq!(options.driver, "virtualbox");
    }

    #[test]
    fn inspect_gives_the_url_and_the_tls_folder() {
        let none = r#"{"ConfigVersion":3,"Driver":{"IPAddress":"10.0.0.2:2376","MachineName":"c-m","StorePath":"/s","URL":"tcp://10.0.0.2:2376"},"DriverName":"none","HostOptions":{"AuthOptions":{"CertDir":"/s/certs","CaCertPath":"/s/certs/ca.pem","ClientCertPath":"/s/certs/cert.pem","ClientKeyPath":"/s/certs/key.pem","StorePath":"/s/machines/c-m"}},"Name":"c-m"}"#;
        let inspected = Inspected::parse(none).unwrap();
        assert_eq!(inspected.url.as_deref(), Some("tcp://10.0.0.2:2376"));
        assert_eq!(inspected.driver_name, "none");
        assert_eq!(
            inspected.machine_dir.as_deref(),
            Some(Path::new("/s/machines/c-m"))
        );
        assert!(!inspected.has_tls_files());
        let vm = r#"{"Driver":{"IPAddress":"192.168.99.100"},"DriverName":"virtualbox","HostOptions":{"AuthOptions":{}}}"#;
        let inspected = Inspected::parse(vm).unwrap();
        assert_eq!(inspected.url.as_deref(), Some("tcp://192.168.99.100:2376"));
        assert_eq!(inspected.store_certs, None);
        assert_eq!(inspected.cluster, None);
        assert_eq!(Inspected::parse("Error"), None);
        let labelled = r#"{"DriverName":"none","HostOptions":{"EngineOptions":{"Labels":["zone=a","io.shoal.cluster=web-prod"]},"AuthOptions":{}}}"#;
        assert_eq!(
            Inspected::parse(labelled).unwrap().cluster.as_deref(),
            Some("web-prod")
        );
    }

    #[test]
    fn a_machine_is_the_clusters_only_by_its_label_or_adoption() {
        let adopt = ["web-old".to_string()];
        let own = |full: &str, label: Option<&str>, creating: bool| {
            ownership("web", full, label, creating, &adopt)
        };
        assert_eq!(own("web-m1", Some("web"), false), Ownership::Ours);
        assert_eq!(own("web-staging", None, false), Ownership::Unlabelled);
        assert_eq!(
            own("web-prod-m1", Some("web-prod"), false),
            Ownership::Theirs
        );
        assert_eq!(own("web-m1", Some("webx"), false), Ownership::Theirs);
        assert_eq!(own("web-m1", Some(""), false), Ownership::Theirs);
        assert_eq!(own("web-m2", None, true), Ownership::Ours);
        assert_eq!(own("web-old", None, false), Ownership::Ours);
        assert_eq!(own("web-old", Some("db"), false), Ownership::Theirs);
        let settings = DockerMachineSettings {
            adopt: vec!["web-old".into()],
            ..DockerMachineSettings::default()
        };
        let options = DockerMachineOptions::from_settings(&settings, Path::new("/repo"));
        assert_eq!(options.adopt, ["web-old"]);
    }

    #[test]
    fn failures_keep_docker_machines_words() {
        let text = failure(
            "machine w1",
            "create",
            Some(3),
            "Error with pre-create check: \"VBoxManage not found. Make sure VirtualBox is installed and VBoxManage is in the path\"\n",
            "Running pre-create checks...\n",
        );
        assert_eq!(
            text,
            "machine w1: `docker-machine create` failed (exit 3): Error with pre-create check: \"VBoxManage not found. Make sure VirtualBox is installed and VBoxManage is in the path\""
        );
    }
}
