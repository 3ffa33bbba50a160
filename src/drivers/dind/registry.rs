//! The cluster's own registry (`driver_options.registry`): a container `<cluster>-registry`
//! running Debian's `docker-registry`, its image built offline from the host's binary the way
//! the node image is, on the cluster network at the subnet's `.2` and published on
//! `127.0.0.1:<port>` of the host.
//!
//! Every node forwards its own `127.0.0.1:<port>` to it (an iptables DNAT the node entrypoint
//! sets up from `SHOAL_REGISTRY_FORWARD`), so one image name, `localhost:<port>/app:1`, works
//! for `docker push` on the host, for shoal's digest lookups and for the nodes' pulls, and
//! loopback registries need no `--insecure-registry` anywhere. Without `htpasswd`, the nodes
//! also use it as their Docker Hub mirror, so `preload_images` named for Docker Hub
//! (`dataservice:1`) are pushed once and pulled by every node, nodes created later included.

use super::network::Subnet;
use super::nodeimage::{self, Rootfs};
use super::{is_not_found, node, remove_container, status_of, upload, DindError};
use crate::config::registry::RegistryOptions;
use crate::model::reference::{Reference, DOCKER_HUB};
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Mount, MountType,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListImagesOptions, PushImageOptions,
    RemoveImageOptions, TagImageOptions, UploadToContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Repository of the built registry images.
pub(crate) const REGISTRY_IMAGE_REPO: &str = "shoal-registry";
/// Label set on the built registry images.
pub(crate) const REGISTRY_IMAGE_LABEL: &str = "io.shoal.registry-image";
/// Label of the registry container: a hash of its settings, so a change recreates it.
pub(crate) const LABEL_REGISTRY: &str = "io.shoal.registry";
/// The port the registry serves on inside the cluster network.
const SERVE_PORT: u16 = 5000;
/// The registry's address on the cluster network: the subnet's `.2` (nodes start at `.10`).
const ADDRESS_OFFSET: u32 = 2;
/// Where the htpasswd file is put in the registry container.
const HTPASSWD_PATH: &str = "/etc/docker/registry/htpasswd";
/// How long the registry may take to answer after its container starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The registry's configuration (authentication, when asked for, comes through `REGISTRY_AUTH*`
/// variables, as the registry's documentation does it).
const CONFIG: &str = "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
";

/// What the dind driver derives from `driver_options.dind.registry`: which images the
/// cluster's registry names, serves as a mirror or holds pushed copies of, and what a node needs
/// to reach it.
pub trait ClusterRegistry {
    /// Whether `image` is named for this registry: `localhost:<port>/…` or `127.0.0.1:<port>/…`.
    fn names(&self, image: &str) -> bool;
    /// Whether nodes use the registry as their Docker Hub mirror.
    fn mirrors_docker_hub(&self) -> bool;
    /// The name a preloaded host image is pushed under so that nodes pull it from this
    /// registry, or `None` when nodes could not pull it from here.
    fn pushed_name(&self, image: &str) -> Option<String>;
    /// The `SHOAL_REGISTRY_FORWARD` value for a node's init and the extra dockerd arguments.
    fn node_settings(&self, address: Ipv4Addr) -> (String, Vec<String>);
}

impl ClusterRegistry for RegistryOptions {
    /// Whether `image` is named for this registry: `localhost:<port>/…` or `127.0.0.1:<port>/…`.
    fn names(&self, image: &str) -> bool {
        Reference::parse(image).is_ok_and(|r| {
            r.domain == format!("localhost:{}", self.port)
                || r.domain == format!("127.0.0.1:{}", self.port)
        })
    }

    /// Whether nodes use the registry as their Docker Hub mirror. Not with `htpasswd`: the
    /// engine sends a mirror the credentials of Docker Hub, which this registry would refuse.
    fn mirrors_docker_hub(&self) -> bool {
        self.htpasswd.is_none()
    }

    /// The name a preloaded host image is pushed under so that nodes pull it from this
    /// registry: its own name when it is named for the registry, `localhost:<port>/<path>:<tag>`
    /// for a Docker Hub name while the registry is the nodes' mirror; `None` when nodes could
    /// not pull it from here (it is then loaded into each node).
    fn pushed_name(&self, image: &str) -> Option<String> {
        let reference = Reference::parse(image).ok()?;
        if reference.digest.is_some() {
            return None;
        }
        if self.names(image) {
            Some(image.to_string())
        } else if reference.domain == DOCKER_HUB && self.mirrors_docker_hub() {
            Some(format!(
                "localhost:{}/{}:{}",
                self.port, reference.path, reference.tag
            ))
        } else {
            None
        }
    }

    /// What a node needs to reach the registry: the `SHOAL_REGISTRY_FORWARD` value for its
    /// entrypoint and the extra dockerd arguments.
    fn node_settings(&self, address: Ipv4Addr) -> (String, Vec<String>) {
        let forward = format!("{}:{address}:{SERVE_PORT}", self.port);
        let mut args = Vec::new();
        if self.mirrors_docker_hub() {
            args.push(format!("--registry-mirror=http://localhost:{}", self.port));
        }
        (forward, args)
    }
}

/// The registry container's name, `<cluster>-registry`.
pub(crate) fn container_name(cluster: &str) -> String {
    format!("{cluster}-registry")
}

/// The registry's storage volume, `<cluster>-registry-data`.
pub(crate) fn volume_name(cluster: &str) -> String {
    format!("{cluster}-registry-data")
}

/// The registry's fixed address on the cluster network.
pub(crate) fn address(subnet: Subnet) -> Ipv4Addr {
    subnet.address_at(ADDRESS_OFFSET)
}

/// The htpasswd content, checked: inside `repository` when one is given (a relative path in
/// machines.yml), and one `user:hash` line each with a bcrypt hash (the only kind
/// docker-registry accepts).
pub(crate) fn read_htpasswd(path: &Path, repository: Option<&Path>) -> Result<Vec<u8>, DindError> {
    if let Some(repository) = repository {
        let inside = match (path.canonicalize(), repository.canonicalize()) {
            (Ok(file), Ok(root)) => file.starts_with(root),
            _ => !path
                .components()
                .any(|c| c == std::path::Component::ParentDir),
        };
        if !inside {
            return Err(DindError::Unavailable(format!(
                "driver_options.registry.htpasswd: {} leaves the repository; keep the file in it, or give an absolute path",
                path.display()
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        DindError::Unavailable(format!(
            "driver_options.registry.htpasswd: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let mut entries = 0;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bcrypt = line.split_once(':').is_some_and(|(user, hash)| {
            !user.is_empty() && hash.starts_with("$2") && !hash.contains(':')
        });
        if !bcrypt {
            return Err(DindError::Unavailable(format!(
                "{}:{}: not a `user:bcrypt-hash` line; docker-registry accepts only bcrypt (make the file with `htpasswd -B -c {} USER`)",
                path.display(),
                number + 1,
                path.display()
            )));
        }
        entries += 1;
    }
    if entries == 0 {
        return Err(DindError::Unavailable(format!(
            "{}: no users; add one with `htpasswd -B {} USER`",
            path.display(),
            path.display()
        )));
    }
    Ok(text.into_bytes())
}

/// The registry image's root filesystem: the host's docker-registry with its libraries and the
/// configuration.
fn registry_rootfs() -> Result<Rootfs, DindError> {
    let mut rootfs = Rootfs::default();
    nodeimage::add_top_links(&mut rootfs);
    let found = nodeimage::add_program(&mut rootfs, "docker-registry", &["docker-registry"])?;
    if found.is_none() {
        return Err(DindError::Unavailable(
            "driver_options.registry needs Debian's docker-registry on this machine (apt-get install docker-registry)".to_string(),
        ));
    }
    rootfs.data("etc/docker/registry/config.yml", CONFIG, 0o644);
    rootfs.data("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644);
    rootfs.data("etc/group", "root:x:0:\n", 0o644);
    rootfs.dir("tmp", 0o1777);
    rootfs.dir("var/lib/registry", 0o755);
    Ok(rootfs)
}

/// Held while a registry image is looked up and built.
static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes sure `shoal-registry:<hash of the host's inputs>` exists on the engine. Where this
/// process has no docker-registry binary (a watcher in a container), a registry image already
/// on the engine is used.
pub(crate) async fn ensure_image(docker: &Docker) -> Result<String, DindError> {
    // The scan and the hash read host files: off the async threads.
    let scanned = tokio::task::spawn_blocking(|| {
        let rootfs = registry_rootfs()?;
        let hash = rootfs
            .fingerprint()
            .map_err(|e| DindError::io("cannot read the registry image's host files", e))?;
        Ok::<_, DindError>((rootfs, hash))
    })
    .await
    .map_err(|e| DindError::Other(format!("the registry image scan panicked: {e}")))?;
    let (rootfs, hash) = match scanned {
        Ok(scanned) => scanned,
        Err(missing) => return existing_image(docker).await.ok_or(missing),
    };
    let tag = format!("{REGISTRY_IMAGE_REPO}:{hash}");
    let _one_build_at_a_time = BUILDING.lock().await;
    match docker.inspect_image(&tag).await {
        Ok(_) => return Ok(tag),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(DindError::docker(format!("cannot inspect image {tag}"), e)),
    }
    let changes = vec![
        r#"ENTRYPOINT ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]"#
            .to_string(),
        "VOLUME /var/lib/registry".to_string(),
        format!("EXPOSE {SERVE_PORT}/tcp"),
        format!("LABEL {REGISTRY_IMAGE_LABEL}=1"),
    ];
    let started = Instant::now();
    let (bytes, _) = upload::import(docker, REGISTRY_IMAGE_REPO, &hash, changes, move |out| {
        rootfs.write_tar(out)
    })
    .await?;
    tracing::info!(image = %tag, bytes, seconds = started.elapsed().as_secs_f64(), "built the registry image");
    nodeimage::remove_older_images(
        docker,
        REGISTRY_IMAGE_REPO,
        &format!("{REGISTRY_IMAGE_LABEL}=1"),
        &tag,
    )
    .await;
    Ok(tag)
}

/// A registry image an earlier build left on the engine (the newest), if any.
async fn existing_image(docker: &Docker) -> Option<String> {
    let options = ListImagesOptions {
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![format!("{REGISTRY_IMAGE_LABEL}=1")],
        )])),
        ..Default::default()
    };
    let mut images = docker.list_images(Some(options)).await.ok()?;
    images.sort_by_key(|image| std::cmp::Reverse(image.created));
    let prefix = format!("{REGISTRY_IMAGE_REPO}:");
    images
        .into_iter()
        .flat_map(|image| image.repo_tags)
        .find(|tag| tag.starts_with(&prefix))
}

/// The digest of a registry container's settings its [`LABEL_REGISTRY`] label records: a
/// container with another one is replaced.
fn settings_of(image: &str, port: u16, address: &str, htpasswd: Option<&[u8]>) -> String {
    let mut hash = Sha256::new();
    hash.update(format!("{image}\0{port}\0{address}\0"));
    hash.update(htpasswd.unwrap_or_default());
    hex::encode(hash.finalize())[..16].to_string()
}

/// The cluster's registry container as it runs, read back for [`pending_change`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunningRegistry {
    /// Its image, as it was created with.
    pub image: String,
    /// The host port it publishes.
    pub port: Option<u16>,
    /// Its address on the cluster network.
    pub address: Option<String>,
    /// Whether it asks for basic authentication.
    pub auth: bool,
    /// Its [`LABEL_REGISTRY`] label.
    pub settings: Option<String>,
}

/// What `prepare` (at the next apply or watcher pass) will change about the cluster's registry,
/// for the plan's warnings: `wanted` is `driver_options.registry` with its htpasswd content.
/// `None` when nothing changes, or when no registry runs yet (it is started then).
pub(crate) fn pending_change(
    cluster: &str,
    running: Option<&RunningRegistry>,
    wanted: Option<(&RegistryOptions, Option<&[u8]>)>,
) -> Option<String> {
    let running = running?;
    let name = container_name(cluster);
    let Some((options, htpasswd)) = wanted else {
        return Some(format!(
            "driver_options.registry is no longer set: apply removes the cluster's registry container {name} (its images stay on volume {})",
            volume_name(cluster)
        ));
    };
    let mut changes = Vec::new();
    if running.port.is_some_and(|port| port != options.port) {
        changes.push(format!(
            "port {} → {}",
            running.port.unwrap_or_default(),
            options.port
        ));
    }
    match (running.auth, options.htpasswd.is_some()) {
        (false, true) => changes.push("htpasswd authentication added".to_string()),
        (true, false) => changes.push("htpasswd authentication removed".to_string()),
        _ => {}
    }
    if changes.is_empty() {
        let address = running.address.as_deref()?;
        let now = settings_of(&running.image, options.port, address, htpasswd);
        if running.settings.as_deref() == Some(now.as_str()) {
            return None;
        }
        changes.push("htpasswd file content".to_string());
    }
    Some(format!(
        "driver_options.registry changed ({}): apply replaces the cluster's registry container {name} (its images are kept); nodes created before it may have to be re-created to use it",
        changes.join(", ")
    ))
}

/// The cluster's registry container as it runs, `None` when there is none or it cannot be read.
pub(crate) async fn running(docker: &Docker, cluster: &str) -> Option<RunningRegistry> {
    let found = docker
        .inspect_container(&container_name(cluster), None::<InspectContainerOptions>)
        .await
        .ok()?;
    let config = found.config.unwrap_or_default();
    let served = format!("{SERVE_PORT}/tcp");
    let port = (found.host_config.as_ref())
        .and_then(|h| h.port_bindings.as_ref())
        .and_then(|bindings| bindings.get(&served).cloned().flatten())
        .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port))
        .and_then(|port| port.parse().ok());
    let address = (found.network_settings.as_ref())
        .and_then(|n| n.networks.as_ref())
        .and_then(|networks| networks.values().find_map(|e| e.ip_address.clone()))
        .filter(|ip| !ip.is_empty());
    Some(RunningRegistry {
        image: config.image.unwrap_or_default(),
        port,
        address,
        auth: (config.env.unwrap_or_default())
            .iter()
            .any(|e| e == "REGISTRY_AUTH=htpasswd"),
        settings: config.labels.unwrap_or_default().remove(LABEL_REGISTRY),
    })
}

/// Where the registry runs: the cluster, its network and the registry's address there.
pub(crate) struct Placement<'a> {
    /// The cluster's name.
    pub cluster: &'a str,
    /// The cluster network.
    pub network: &'a str,
    /// The registry's fixed address on it.
    pub address: Ipv4Addr,
}

/// Makes sure the cluster's registry runs with these settings and answers on
/// `127.0.0.1:<port>`: reuses a container with the same settings (starting it if stopped), and
/// replaces one with others (its storage volume is kept).
pub(crate) async fn ensure(
    docker: &Docker,
    placement: &Placement<'_>,
    options: &RegistryOptions,
    image: &str,
) -> Result<(), DindError> {
    let htpasswd = (options.htpasswd.as_deref())
        .map(|path| read_htpasswd(path, options.repository.as_deref()))
        .transpose()?;
    let settings = settings_of(
        image,
        options.port,
        &placement.address.to_string(),
        htpasswd.as_deref(),
    );
    let name = container_name(placement.cluster);
    match docker
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await
    {
        Ok(found) => {
            let labels = found.config.and_then(|c| c.labels).unwrap_or_default();
            if labels.get(LABEL_REGISTRY) == Some(&settings) {
                let running = found.state.and_then(|s| s.running).unwrap_or(false);
                if !running {
                    start(docker, &name, options.port).await?;
                }
                return wait_ready(docker, &name, options.port).await;
            }
            tracing::info!(container = %name, "the registry's settings changed; replacing its container (its images are kept)");
            remove_container(docker, &name).await?;
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(DindError::docker(format!("cannot inspect {name}"), e)),
    }
    create_volume(docker, placement.cluster).await?;
    let body = container_body(placement, options, image, &settings);
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(|e| DindError::docker(format!("cannot create container {name}"), e))?;
    // A container left half set up would be taken as ready next time: it goes on any failure.
    let started = provision(docker, &name, htpasswd.as_deref(), options.port).await;
    if started.is_err() {
        let _ = remove_container(docker, &name).await;
    }
    started?;
    tracing::info!(container = %name, port = options.port, "started the cluster's registry");
    wait_ready(docker, &name, options.port).await
}

/// Copies the htpasswd file (if any) into the created registry container and starts it.
async fn provision(
    docker: &Docker,
    name: &str,
    htpasswd: Option<&[u8]>,
    port: u16,
) -> Result<(), DindError> {
    if let Some(content) = htpasswd {
        let tar = single_file_tar(HTPASSWD_PATH, content)
            .map_err(|e| DindError::io("cannot pack the htpasswd file", e))?;
        docker
            .upload_to_container(
                name,
                Some(UploadToContainerOptions {
                    path: "/".to_string(),
                    ..Default::default()
                }),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|e| {
                DindError::docker(format!("cannot copy the htpasswd file into {name}"), e)
            })?;
    }
    start(docker, name, port).await
}

/// Removes the registry's container when `driver_options.registry` was taken away; its volume
/// stays, so the images are back when the option is.
pub(crate) async fn remove_if_present(docker: &Docker, cluster: &str) -> Result<(), DindError> {
    if remove_container(docker, &container_name(cluster)).await? {
        tracing::info!(
            "driver_options.registry is gone: removed the registry's container (its images stay on volume {})",
            volume_name(cluster)
        );
    }
    Ok(())
}

fn container_body(
    placement: &Placement<'_>,
    options: &RegistryOptions,
    image: &str,
    settings: &str,
) -> ContainerCreateBody {
    let served = format!("{SERVE_PORT}/tcp");
    let mut env = Vec::new();
    if options.htpasswd.is_some() {
        env.extend([
            "REGISTRY_AUTH=htpasswd".to_string(),
            format!(
                "REGISTRY_AUTH_HTPASSWD_REALM={} registry",
                placement.cluster
            ),
            format!("REGISTRY_AUTH_HTPASSWD_PATH={HTPASSWD_PATH}"),
        ]);
    }
    ContainerCreateBody {
        image: Some(image.to_string()),
        env: Some(env),
        labels: Some(super::labels_for(
            placement.cluster,
            [(LABEL_REGISTRY, settings.to_string())],
        )),
        exposed_ports: Some(vec![served.clone()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                served,
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".to_string()),
                    host_port: Some(options.port.to_string()),
                }]),
            )])),
            mounts: Some(vec![Mount {
                target: Some("/var/lib/registry".to_string()),
                source: Some(volume_name(placement.cluster)),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]),
            network_mode: Some(placement.network.to_string()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                placement.network.to_string(),
                EndpointSettings {
                    aliases: Some(vec!["registry".to_string()]),
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(placement.address.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// A tar archive holding one file at `path`.
fn single_file_tar(path: &str, content: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path.trim_start_matches('/'), content)?;
    builder.into_inner()
}

async fn create_volume(docker: &Docker, cluster: &str) -> Result<(), DindError> {
    let name = volume_name(cluster);
    let request = VolumeCreateRequest {
        name: Some(name.clone()),
        driver: Some("local".to_string()),
        labels: Some(super::labels_for(cluster, [])),
        ..Default::default()
    };
    docker
        .create_volume(request)
        .await
        .map_err(|e| DindError::docker(format!("cannot create volume {name}"), e))?;
    Ok(())
}

async fn start(docker: &Docker, name: &str, port: u16) -> Result<(), DindError> {
    match docker.start_container(name, None).await {
        Ok(()) => Ok(()),
        Err(e) if status_of(&e) == Some(304) => Ok(()),
        Err(e) => {
            let text = e.to_string();
            if text.contains("already allocated") || text.contains("address already in use") {
                Err(DindError::Unavailable(format!(
                    "the cluster's registry cannot listen on 127.0.0.1:{port}: something else holds that port; set driver_options.registry.port to a free one"
                )))
            } else {
                Err(DindError::docker(format!("cannot start {name}"), e))
            }
        }
    }
}

/// Waits until the registry answers `GET /v2/` on the host's `127.0.0.1:<port>`.
async fn wait_ready(docker: &Docker, name: &str, port: u16) -> Result<(), DindError> {
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        let answer = crate::registry::client::ping(&base).await;
        if matches!(answer, Ok(200 | 401)) {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(DindError::NodeFailed {
                machine: name.to_string(),
                problem: format!(
                    "the registry did not answer on {base}/v2/ within {} s ({})",
                    READY_TIMEOUT.as_secs(),
                    match answer {
                        Ok(status) => format!("status {status}"),
                        Err(e) => e.to_string(),
                    }
                ),
                log: node::log_tail(docker, name).await,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pushes the preloaded host images the registry can serve (see
/// [`RegistryOptions::pushed_name`]) with the credentials of the user's docker config; an
/// image whose host ID is in `pushed` already went up from this process and is skipped.
/// Returns the images it pushed.
pub(crate) async fn push_preloaded(
    docker: &Docker,
    options: &RegistryOptions,
    images: &[String],
    pushed: &mut HashMap<String, String>,
) -> Result<Vec<String>, DindError> {
    let mut sent = Vec::new();
    for image in images {
        let Some(name) = options.pushed_name(image) else {
            continue;
        };
        let id = match docker.inspect_image(image).await {
            Ok(found) => found.id.unwrap_or_default(),
            // Nodes pull what the registry holds already; without it their tasks say
            // "No such image", and health shows it.
            Err(e) if is_not_found(&e) => {
                tracing::warn!("preload image {image} is not on the host engine, so it is not pushed: nodes get what the cluster's registry holds of {name}");
                continue;
            }
            Err(e) => {
                return Err(DindError::docker(
                    format!("cannot inspect image {image}"),
                    e,
                ))
            }
        };
        if pushed.get(image) == Some(&id) {
            continue;
        }
        push_one(docker, image, &name).await?;
        pushed.insert(image.clone(), id);
        sent.push(name);
    }
    Ok(sent)
}

async fn push_one(docker: &Docker, image: &str, name: &str) -> Result<(), DindError> {
    let (repo, tag) = name
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .unwrap_or((name, "latest"));
    // A host tag of that name that is the user's own is put back afterwards.
    let previous = docker.inspect_image(name).await.ok().and_then(|i| i.id);
    let tagged = name != image;
    if tagged {
        docker
            .tag_image(
                image,
                Some(TagImageOptions {
                    repo: Some(repo.to_string()),
                    tag: Some(tag.to_string()),
                }),
            )
            .await
            .map_err(|e| DindError::docker(format!("cannot tag {image} as {name}"), e))?;
    }
    let credentials = crate::registry::registry_auth(name);
    let sent_credentials = credentials.is_some();
    let mut progress = docker.push_image(
        repo,
        Some(PushImageOptions {
            tag: Some(tag.to_string()),
            ..Default::default()
        }),
        credentials,
    );
    let mut failure = None;
    while let Some(item) = progress.next().await {
        if let Err(e) = item {
            failure = Some(e);
            break;
        }
    }
    drop(progress);
    if tagged {
        match &previous {
            None => {
                let _ = docker
                    .remove_image(name, None::<RemoveImageOptions>, None)
                    .await;
            }
            Some(previous) => {
                let _ = docker
                    .tag_image(
                        previous,
                        Some(TagImageOptions {
                            repo: Some(repo.to_string()),
                            tag: Some(tag.to_string()),
                        }),
                    )
                    .await;
            }
        }
    }
    match failure {
        None => Ok(()),
        Some(e) => Err(DindError::Other(format!(
            "cannot push {image} to the cluster's registry as {name}: {e}{}",
            push_hint(&e.to_string(), sent_credentials, name)
        ))),
    }
}

/// What to do about a push the registry refused with `error`: log in when no credentials were
/// sent; when some were, the registry refused them (a wrong user or password), so logging in
/// anew with the right ones is the fix.
fn push_hint(error: &str, sent_credentials: bool, name: &str) -> String {
    let host = name.split('/').next().unwrap_or_default();
    let refused = ["auth", "401", "denied"]
        .iter()
        .any(|word| error.to_lowercase().contains(word));
    match (refused, sent_credentials) {
        (false, _) => String::new(),
        (true, false) => format!(" (log in first: docker login {host})"),
        (true, true) => format!(
            " (the registry refused the credentials for {host} in the docker config of the user running shoal: check the user and password, then docker login {host} again)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refused_credentials_are_told_apart_from_missing_ones() {
        let error = "unauthorized: authentication required";
        let name = "localhost:5001/app:1";
        assert_eq!(
            push_hint(error, false, name),
            " (log in first: docker login localhost:5001)"
        );
        let refused = push_hint(error, true, name);
        assert!(
            refused.contains("refused the credentials for localhost:5001"),
            "{refused}"
        );
        assert!(!refused.contains("log in first"), "{refused}");
        assert_eq!(push_hint("connection reset", true, name), "");
    }
    use std::path::PathBuf;

    fn options(value: serde_json::Value) -> Option<RegistryOptions> {
        RegistryOptions::from_json(&value, Path::new("/repo")).unwrap()
    }

    fn options_in(value: serde_json::Value, repository: &Path) -> RegistryOptions {
        RegistryOptions::from_json(&value, repository)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn preloaded_images_are_pushed_under_names_the_nodes_pull() {
        let open = options(json!(5001)).unwrap();
        assert!(open.names("localhost:5001/app:1"));
        assert!(open.names("127.0.0.1:5001/app"));
        assert!(!open.names("localhost:5002/app:1"));
        assert_eq!(
            open.pushed_name("localhost:5001/app:1").as_deref(),
            Some("localhost:5001/app:1")
        );
        assert_eq!(
            open.pushed_name("dataservice:1").as_deref(),
            Some("localhost:5001/library/dataservice:1")
        );
        assert_eq!(
            open.pushed_name("team/api").as_deref(),
            Some("localhost:5001/team/api:latest")
        );
        for written in ["docker.io/dataservice:1", "index.docker.io/dataservice:1"] {
            assert_eq!(
                open.pushed_name(written).as_deref(),
                Some("localhost:5001/library/dataservice:1"),
                "{written}"
            );
        }
        assert_eq!(open.pushed_name("ghcr.io/team/api:1"), None);
        assert_eq!(open.pushed_name("app@sha256:abc"), None);

        let guarded = RegistryOptions {
            port: 5001,
            htpasswd: Some(PathBuf::from("/repo/htpasswd")),
            repository: None,
        };
        assert!(!guarded.mirrors_docker_hub());
        assert_eq!(guarded.pushed_name("dataservice:1"), None);
        assert_eq!(
            guarded.pushed_name("localhost:5001/app:1").as_deref(),
            Some("localhost:5001/app:1")
        );
    }

    #[test]
    fn nodes_forward_their_loopback_port_and_mirror_only_without_auth() {
        let open = options(json!(5001)).unwrap();
        let address = address(Subnet::parse("172.30.4.0/24").unwrap());
        assert_eq!(address, Ipv4Addr::new(172, 30, 4, 2));
        let (forward, args) = open.node_settings(address);
        assert_eq!(forward, "5001:172.30.4.2:5000");
        assert_eq!(args, ["--registry-mirror=http://localhost:5001"]);
        let guarded = RegistryOptions {
            htpasswd: Some(PathBuf::from("h")),
            ..open
        };
        assert!(guarded.node_settings(address).1.is_empty());
    }

    #[test]
    fn htpasswd_files_must_hold_bcrypt_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, "ann:$2y$05$abcdefghijklmnopqrstuv\n\n").unwrap();
        assert!(read_htpasswd(&path, Some(dir.path())).is_ok());
        std::fs::write(&path, "ann:{SHA}abc=\n").unwrap();
        let error = read_htpasswd(&path, None).unwrap_err().to_string();
        assert!(
            error.contains(":1:") && error.contains("htpasswd -B"),
            "{error}"
        );
        assert!(
            !error.contains("{SHA}"),
            "the content is never shown: {error}"
        );
        // A shadow file's lines have more fields: refused.
        std::fs::write(
            &path,
            "root:$2b$05$abcdefghijklmnopqrstuv:19000:0:99999:7:::\n",
        )
        .unwrap();
        assert!(read_htpasswd(&path, None).is_err());
        std::fs::write(&path, "\n").unwrap();
        assert!(read_htpasswd(&path, None).is_err());
        assert!(read_htpasswd(&dir.path().join("missing"), None).is_err());
    }

    #[test]
    fn a_relative_htpasswd_must_stay_in_the_repository() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("htpasswd");
        std::fs::write(&secret, "ann:$2y$05$abcdefghijklmnopqrstuv\n").unwrap();
        let repository = outside.path().join("repo");
        std::fs::create_dir(&repository).unwrap();
        std::os::unix::fs::symlink(&secret, repository.join("link")).unwrap();
        for written in ["link", "../htpasswd"] {
            let options = options_in(json!({ "htpasswd": written }), &repository);
            let error = read_htpasswd(
                options.htpasswd.as_deref().unwrap(),
                options.repository.as_deref(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("leaves the repository"),
                "{written}: {error}"
            );
        }
        let absolute = options_in(json!({ "htpasswd": secret.to_str().unwrap() }), &repository);
        assert!(read_htpasswd(
            absolute.htpasswd.as_deref().unwrap(),
            absolute.repository.as_deref()
        )
        .is_ok());
    }

    #[test]
    fn the_registry_image_holds_the_binary_its_libraries_and_the_config() {
        if !Path::new("/usr/bin/docker-registry").exists() {
            return;
        }
        let rootfs = registry_rootfs().unwrap();
        assert!(rootfs.entries.contains_key("usr/bin/docker-registry"));
        assert!(rootfs
            .entries
            .contains_key("etc/docker/registry/config.yml"));
        assert!(rootfs.entries.keys().any(|p| p.contains("libc.so")));
    }

    /// Issue 18: a registry option change is named in the plan (apply replaces the registry).
    #[test]
    fn a_changed_registry_option_is_a_pending_change() {
        let options = RegistryOptions::on_port(5001);
        let running = RunningRegistry {
            image: "shoal-registry:1".into(),
            port: Some(5001),
            address: Some("10.9.0.2".into()),
            auth: false,
            settings: Some(settings_of("shoal-registry:1", 5001, "10.9.0.2", None)),
        };
        assert_eq!(
            pending_change("c", Some(&running), Some((&options, None))),
            None
        );
        assert_eq!(pending_change("c", None, Some((&options, None))), None);
        let mut with_auth = options.clone();
        with_auth.htpasswd = Some("auth/htpasswd".into());
        let line = b"u:$2y$05$abc\n".as_slice();
        let change = pending_change("c", Some(&running), Some((&with_auth, Some(line)))).unwrap();
        assert!(change.contains("htpasswd authentication added"), "{change}");
        assert!(change.contains("c-registry"), "{change}");
        let moved = RegistryOptions::on_port(5002);
        let change = pending_change("c", Some(&running), Some((&moved, None))).unwrap();
        assert!(change.contains("port 5001 → 5002"), "{change}");
        let authed = RunningRegistry {
            auth: true,
            settings: Some(settings_of(
                "shoal-registry:1",
                5001,
                "10.9.0.2",
                Some(line),
            )),
            ..running.clone()
        };
        let other = b"v:$2y$05$def\n".as_slice();
        assert_eq!(
            pending_change("c", Some(&authed), Some((&with_auth, Some(line)))),
            None
        );
        let change = pending_change("c", Some(&authed), Some((&with_auth, Some(other)))).unwrap();
        assert!(change.contains("htpasswd file content"), "{change}");
        let gone = pending_change("c", Some(&running), None).unwrap();
        assert!(gone.contains("removes"), "{gone}");
    }
}
