//! `shoal doctor` for the dind driver: what the local engine and kernel allow, found by starting
//! one throw-away node.

use super::nodeimage::{self, Engine};
use super::{connect_host, debian, node, registry, DindDriver, DindOptions, RegistryOptions};
use crate::drivers::Driver;
use crate::model::driver_options::DindSettings;
use crate::model::{MachineSpec, Role};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, SwarmInitRequest};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use bollard::Docker;
use futures::StreamExt;
use registry::ClusterRegistry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Fine.
    Ok,
    /// Works, with a limitation worth knowing.
    Warn,
    /// Does not work.
    Fail,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// How it came out.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
}

/// What `shoal doctor` found about the dind driver on this machine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DoctorReport {
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
    /// Whether nodes have IPVS (VIP services and the ingress routing mesh need it), when a node
    /// could be started to look.
    pub ipvs: Option<bool>,
    /// The advice in one sentence.
    pub verdict: String,
}

impl DoctorReport {
    /// Whether no check failed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Fail)
    }

    pub(crate) fn push(&mut self, name: &str, status: CheckStatus, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_string(),
            status,
            detail: detail.into(),
        });
    }
}

impl std::fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for check in &self.checks {
            let mark = match check.status {
                CheckStatus::Ok => "ok  ",
                CheckStatus::Warn => "warn",
                CheckStatus::Fail => "FAIL",
            };
            writeln!(f, "{mark}  {:<width$}  {}", check.name, check.detail)?;
        }
        write!(f, "\n{}", self.verdict)
    }
}

/// Runs a program (`command`: its path and arguments) in a container; returns its exit code
/// and output.
pub async fn exec(
    docker: &Docker,
    container: &str,
    command: &[&str],
) -> Result<(i64, String), String> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(command.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut output = String::new();
    if let StartExecResults::Attached {
        output: mut stream, ..
    } = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| e.to_string())?
    {
        while let Some(Ok(chunk)) = stream.next().await {
            output.push_str(&chunk.to_string());
        }
    }
    let inspect = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| e.to_string())?;
    Ok((inspect.exit_code.unwrap_or(-1), output))
}

/// Checks the engine, the cgroup setup, the node image, whether a node container starts (and
/// how), IPVS and the storage driver inside a node, then removes everything it made.
/// Relative paths in the options are taken from `base`, the repository folder.
pub async fn doctor(settings: &DindSettings, base: &Path) -> DoctorReport {
    let mut report = DoctorReport {
        checks: Vec::new(),
        ipvs: None,
        verdict: String::new(),
    };
    let mut options = match DindOptions::from_settings(settings, base) {
        Ok(options) => options,
        Err(e) => {
            report.push("driver options", CheckStatus::Fail, e.to_string());
            report.verdict = "fix driver_options in machines.yml".to_string();
            return report;
        }
    };
    let docker = match connect_host().await {
        Ok(docker) => docker,
        Err(e) => {
            report.push("engine", CheckStatus::Fail, e.to_string());
            report.verdict =
                "the dind driver needs a local Docker engine; start one, or use the sim driver"
                    .to_string();
            return report;
        }
    };
    match docker.version().await {
        Ok(version) => report.push(
            "engine",
            CheckStatus::Ok,
            format!(
                "Docker {} (API {}, client speaks {})",
                version.version.unwrap_or_default(),
                version.api_version.unwrap_or_default(),
                docker.client_version()
            ),
        ),
        Err(e) => report.push("engine", CheckStatus::Fail, e.to_string()),
    }
    match docker.info().await {
        Ok(info) => {
            let cgroup = info
                .cgroup_version
                .map(|v| v.to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "1".to_string());
            let driver = info
                .cgroup_driver
                .map(|d| d.to_string())
                .unwrap_or_default();
            let detail = if cgroup == "2" {
                format!("v2 ({driver}); nodes nest their cgroups")
            } else {
                format!("v1 ({driver}); nodes get a private cgroup namespace")
            };
            report.push("cgroups", CheckStatus::Ok, detail);
        }
        Err(e) => report.push(
            "cgroups",
            CheckStatus::Warn,
            format!("engine info failed: {e}"),
        ),
    }

    // The probe cluster runs no registry: the real one may hold the port.
    if let Some(registry) = options.registry.take() {
        check_registry(&docker, &registry, &mut report).await;
    }
    let cluster = format!("shoal-doctor-{}", std::process::id());
    let driver = DindDriver::with_docker(docker.clone(), &cluster, options);
    match driver.node_image().await {
        Ok(image) => report.push(
            "node image",
            CheckStatus::Ok,
            if image.built {
                format!(
                    "{} built in {:.1} s ({} MB)",
                    image.tag,
                    image.seconds,
                    image.bytes / 1_000_000
                )
            } else {
                format!("{} (present, checked in {:.1} s)", image.tag, image.seconds)
            },
        ),
        Err(e) => {
            report.push("node image", CheckStatus::Fail, e.to_string());
            report.verdict =
                "the node image cannot be built here; fix the above, or set driver_options.image"
                    .to_string();
            return report;
        }
    }

    check_engine_images(&docker, driver.options(), &mut report).await;

    let image_tag = driver.node_image().await.map(|i| i.tag).unwrap_or_default();
    match privileged_starts(&docker, &cluster, &image_tag).await {
        Ok(()) => report.push(
            "privileged",
            CheckStatus::Ok,
            "a --privileged container starts",
        ),
        Err(Some(message)) => report.push(
            "privileged",
            CheckStatus::Warn,
            format!("a --privileged container does not start ({message}); nodes use the capability fallback"),
        ),
        Err(None) => {}
    }

    let probe = MachineSpec {
        name: "probe".to_string(),
        role: Role::Manager,
        labels: BTreeMap::new(),
        host: None,
    };
    let started = Instant::now();
    let created = driver.create(&probe).await;
    let elapsed = started.elapsed().as_secs_f64();
    match created {
        Ok(()) => {
            let security = driver.security();
            let how = match &security {
                Some(node::Security::Privileged) | None => "runs --privileged".to_string(),
                Some(fallback) => format!("runs with {fallback}"),
            };
            report.push(
                "node container",
                CheckStatus::Ok,
                format!("{how}; its engine answered after {elapsed:.1} s"),
            );
            probe_node(&driver, &mut report).await;
        }
        Err(e) => {
            report.push("node container", CheckStatus::Fail, e.to_string());
        }
    }
    if let Err(e) = driver.destroy_all().await {
        report.push(
            "cleanup",
            CheckStatus::Warn,
            format!("could not remove the probe cluster {cluster}: {e}"),
        );
    }
    report.verdict = match (report.ok(), report.ipvs) {
        (false, _) => "the dind driver cannot run nodes here: fix the failures above, or use the sim driver or existing hosts (generic)".to_string(),
        (true, Some(true)) => "nodes work here, and so do the ingress routing mesh and VIP services".to_string(),
        (true, _) => "nodes work here, but the kernel has no IPVS: the ingress routing mesh and VIP load balancing do not work; publish ports with `mode: host` and use `endpoint_mode: dnsrr`".to_string(),
    };
    report
}

/// Starts a short-lived `--privileged` container from the node image: `Err(Some(why))` when the
/// engine refuses it for capabilities, `Err(None)` when the probe itself could not run.
async fn privileged_starts(
    docker: &Docker,
    cluster: &str,
    image: &str,
) -> Result<(), Option<String>> {
    let name = format!("{cluster}-privileged");
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec![
            "/usr/bin/docker-init".to_string(),
            "--version".to_string(),
        ]),
        labels: Some(super::labels_for(cluster, [])),
        host_config: Some(HostConfig {
            privileged: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await;
    if created.is_err() {
        return Err(None);
    }
    let started = docker.start_container(&name, None).await;
    let _ = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await;
    match started {
        Ok(()) => Ok(()),
        Err(e) if node::is_capability_error(&e.to_string()) => {
            let message = e.to_string();
            let short = message
                .find("unable to apply caps")
                .map_or(message.as_str(), |at| &message[at..]);
            Err(Some(short.trim_end_matches(": unknown").to_string()))
        }
        Err(_) => Err(None),
    }
}

async fn probe_node(driver: &DindDriver, report: &mut DoctorReport) {
    let container = driver.container_name("probe");
    match exec(
        driver.docker(),
        &container,
        &[
            "/usr/bin/shoal",
            super::node_init::NODE_PROBE_COMMAND,
            "ipvs",
        ],
    )
    .await
    {
        Ok((0, _)) => {
            report.ipvs = Some(true);
            report.push(
                "ipvs",
                CheckStatus::Ok,
                "present: VIPs and the ingress routing mesh work",
            );
        }
        Ok(_) => {
            report.ipvs = Some(false);
            report.push(
                "ipvs",
                CheckStatus::Warn,
                "absent (no /proc/net/ip_vs in a node): no VIP load balancing, no ingress routing mesh",
            );
        }
        Err(e) => report.push("ipvs", CheckStatus::Warn, format!("could not look: {e}")),
    }
    let node = match node::connect_node(&driver.socket_path("probe")).await {
        Ok(node) => node,
        Err(e) => {
            report.push("node engine", CheckStatus::Fail, e.to_string());
            return;
        }
    };
    match node.info().await {
        Ok(info) => {
            let storage = info.driver.unwrap_or_default();
            let status = if storage == "overlay2" {
                CheckStatus::Ok
            } else {
                CheckStatus::Warn
            };
            report.push(
                "node storage",
                status,
                if storage == "vfs" {
                    "vfs: every image layer is copied in full; /var/lib/docker is not on a volume that takes overlay mounts".to_string()
                } else {
                    storage
                },
            );
        }
        Err(e) => report.push("node storage", CheckStatus::Warn, e.to_string()),
    }
    let address = match driver.address("probe").await {
        Ok(address) => address,
        Err(e) => {
            report.push("node swarm", CheckStatus::Fail, e.to_string());
            return;
        }
    };
    let started = Instant::now();
    let init = node
        .init_swarm(SwarmInitRequest {
            listen_addr: Some("0.0.0.0:2377".to_string()),
            advertise_addr: Some(address.clone()),
            ..Default::default()
        })
        .await;
    match init {
        Ok(_) => report.push(
            "node swarm",
            CheckStatus::Ok,
            format!(
                "swarm init advertising {address} took {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        ),
        Err(e) => report.push(
            "node swarm",
            CheckStatus::Fail,
            format!("swarm init failed: {e}"),
        ),
    }
}

/// The node images of each engine on the host engine, and for each Debian-built engine that has
/// none, whether the archive it is built from answers.
async fn check_engine_images(docker: &Docker, options: &DindOptions, report: &mut DoctorReport) {
    let cached = nodeimage::cached_images(docker).await.unwrap_or_default();
    let archive = debian::archive_url(options.debian_mirror.as_deref());
    for engine in Engine::all() {
        let tags: Vec<&str> = (cached.iter())
            .filter(|(name, _)| name == engine.name())
            .map(|(_, tag)| tag.as_str())
            .collect();
        let name = format!("engine {}", engine.name());
        if !tags.is_empty() {
            report.push(
                &name,
                CheckStatus::Ok,
                format!("cached: {}", tags.join(", ")),
            );
            continue;
        }
        match engine {
            Engine::Host => report.push(
                &name,
                CheckStatus::Ok,
                "not built yet: made from the host's docker binaries at first use (seconds)",
            ),
            Engine::Debian(debian_engine) => match debian::probe(debian_engine, &archive).await {
                Ok(()) => report.push(
                    &name,
                    CheckStatus::Ok,
                    format!(
                        "not built yet: made at first use from Debian {} at {archive} (about 100 MB downloaded once, a minute or two)",
                        debian_engine.suite
                    ),
                ),
                Err(e) => report.push(
                    &name,
                    if engine == options.engine {
                        CheckStatus::Fail
                    } else {
                        CheckStatus::Warn
                    },
                    format!("not built, and cannot be here: {e}"),
                ),
            },
        }
    }
}

/// `driver_options.registry`: its image can be built from the host's docker-registry, and its
/// htpasswd file is usable.
async fn check_registry(docker: &Docker, options: &RegistryOptions, report: &mut DoctorReport) {
    if let Some(path) = &options.htpasswd {
        if let Err(e) = registry::read_htpasswd(path, options.repository.as_deref()) {
            report.push("registry", CheckStatus::Fail, e.to_string());
            return;
        }
    }
    match registry::ensure_image(docker).await {
        Ok(image) => report.push(
            "registry",
            CheckStatus::Ok,
            format!(
                "{image}; images named localhost:{}/… are served to every node{}",
                options.port,
                if options.mirrors_docker_hub() {
                    ", and it is the nodes' Docker Hub mirror"
                } else {
                    " (with basic authentication)"
                }
            ),
        ),
        Err(e) => report.push("registry", CheckStatus::Fail, e.to_string()),
    }
}
