//! The Docker Engine backend: [`DockerEngine`] implements [`Swarm`] over bollard, for one engine.
//!
//! One `DockerEngine` talks to one daemon (one swarm node) through a unix socket, plain TCP or
//! ssh. Specs go to bollard's models and come back through `serde_json` (see [`convert`]), and
//! every failure becomes an [`EngineError`] kind in one function (see [`error`]).
//!
//! Things to know about bollard 0.21.1 and older daemons:
//! - bollard sends requests without an API version in the path (fussybeaver/bollard#736):
//!   [`DockerEngine::connect`] negotiates the version once and then sends it in every path
//!   (see [`version`]); the conversions tolerate missing and unknown fields.
//! - Services are read as plain JSON rather than through bollard, which would drop their
//!   health checks (see [`raw`]).
//! - bollard logs request bodies at `trace` level, join tokens and secret data included: keep
//!   the `bollard` log target at `debug` or below.
//! - Nothing here calls `/distribution`: images are sent as written and never digest-pinned.

mod convert;
mod error;
mod raw;
pub mod ssh;
pub mod tls;
mod version;

use crate::engine::{
    EngineError, EngineEvent, EngineInfo, EngineResult, EventQuery, EventStream, JoinTokens,
    NodeSpecUpdate, ObjectVersion, Swarm, SwarmObject,
};
use crate::model::engine_api::ApiVersion;
use crate::model::observed::{LocalSwarmState, ObservedNode, ObservedObject, ObservedService};
use crate::model::spec::{NetworkSpec, ObjectSpec, ServiceSpec};
use crate::model::LABEL_STACK_NAMESPACE;
use async_trait::async_trait;
use bollard::models::{SwarmInitRequest, SwarmJoinRequest};
use bollard::query_parameters::{
    DeleteNodeOptions, LeaveSwarmOptions, ListNetworksOptions, UpdateNodeOptions,
    UpdateServiceOptions, UpdateSwarmOptions,
};
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};
use error::from_bollard;
pub(crate) use error::is_not_found_answer;
use futures::StreamExt;
use raw::Endpoint;
use serde_json::Value;
use ssh::{SshTarget, SshTunnel};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tls::CertFolder;
pub(crate) use version::negotiated;

/// The address pool swarm carves overlay subnets from, unless configured otherwise.
///
/// Swarm's own default, 10.0.0.0/8, would overlap node networks in 10/8; this one is small and
/// clear of the usual bridge ranges.
pub const DEFAULT_ADDR_POOL: &str = "10.200.0.0/16";
/// The prefix length of each overlay subnet carved from the pool.
pub const DEFAULT_SUBNET_SIZE: u32 = 24;
/// Where swarm listens for other nodes (`--listen-addr`).
pub const SWARM_LISTEN_ADDR: &str = "0.0.0.0:2377";
/// Seconds any one request may take by default: longer than the daemon's 20 s join timeout,
/// short enough that a frozen engine is given up on within a pass.
const REQUEST_TIMEOUT_SECS: u64 = 60;
/// The environment variable that sets how many seconds one request may take (at least 25).
pub const REQUEST_TIMEOUT_VAR: &str = "SHOAL_REQUEST_TIMEOUT";
/// Seconds a remote engine has to answer the first request.
const CONNECT_TIMEOUT_SECS: u64 = 10;

/// An engine error of `machine`, with what to check when it is a transport failure.
fn in_machine(machine: &str, error: EngineError, check: &str) -> EngineError {
    match error {
        EngineError::Unreachable(message) => EngineError::Unreachable(format!(
            "machine {machine}: the engine does not answer ({message}); {check}"
        )),
        EngineError::Other(message) => {
            EngineError::Other(format!("machine {machine}: {message}; {check}"))
        }
        other => other,
    }
}

/// A client of the engine listening on the unix socket `path`, speaking the API version its
/// `GET /_ping` names (or, when it names none, the one `GET /version` agrees on), each request
/// bounded by `timeout_secs`: how the dind driver reaches the host engine.
///
/// # Errors
///
/// [`EngineError::Unreachable`] when the engine does not answer in [`CONNECT_TIMEOUT_SECS`].
pub(crate) async fn connect_unix(path: &str, timeout_secs: u64) -> Result<Docker, EngineError> {
    let endpoint = Endpoint::Unix(PathBuf::from(path));
    let first = Duration::from_secs(CONNECT_TIMEOUT_SECS);
    let agreed = version::agreed(
        raw::pinged_api_version(&endpoint, None, first)
            .await?
            .as_deref(),
    );
    let docker =
        Docker::connect_with_unix(path, timeout_secs, &agreed.unwrap_or(*API_DEFAULT_VERSION))
            .map_err(from_bollard)?;
    Ok(match agreed {
        Some(_) => version::pinned(docker),
        None => negotiated(docker.with_timeout(first))
            .await
            .map_err(from_bollard)?
            .with_timeout(Duration::from_secs(timeout_secs)),
    })
}

/// What reaching a remote engine needs besides its address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// For `tcp://`: the cert folder (`ca.pem`, `cert.pem`, `key.pem`). Required: plain TCP is
    /// refused.
    pub tls: Option<PathBuf>,
    /// For `ssh://`: the key and the known_hosts file.
    pub ssh: Option<SshKeys>,
}

/// The files an ssh login uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshKeys {
    /// The private key file.
    pub key: PathBuf,
    /// The known_hosts file that must hold the host's key.
    pub known_hosts: PathBuf,
}

/// One Docker Engine, reached through bollard.
#[derive(Clone, Debug)]
pub struct DockerEngine {
    docker: Docker,
    endpoint: Endpoint,
    endpoint_text: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    tunnel: Option<Arc<Mutex<SshTunnel>>>,
    advertise_addr: Option<String>,
    /// The pools overlay subnets are carved from when this engine initializes a swarm
    /// (`DefaultAddrPool`); empty leaves the daemon's default.
    pub default_addr_pool: Vec<String>,
    /// The prefix length of each subnet carved from the pools (`SubnetSize`).
    pub subnet_size: u32,
}

impl DockerEngine {
    /// Connects to the engine at `endpoint` (`unix:///path/docker.sock`, `tcp://host:port` or
    /// `ssh://[user@]host[:port]`) and negotiates the API version.
    ///
    /// `advertise_addr` is the address other nodes reach this one on (its IP on the cluster
    /// network); it is sent with `swarm init` and `swarm join`, and needed whenever the node has
    /// more than one address.
    ///
    /// # Errors
    ///
    /// [`EngineError::Other`] for an endpoint of another kind, [`EngineError::Unreachable`] when
    /// the engine does not answer.
    pub async fn connect(
        endpoint: &str,
        advertise_addr: Option<String>,
    ) -> Result<DockerEngine, EngineError> {
        Self::connect_within(endpoint, advertise_addr, Self::timeout(), None).await
    }

    /// [`DockerEngine::connect`] to an engine whose API version was negotiated before in this
    /// run (`known`): no new negotiation, the version goes straight into every path. `None`
    /// negotiates.
    ///
    /// # Errors
    ///
    /// As [`DockerEngine::connect`].
    pub async fn connect_known(
        endpoint: &str,
        advertise_addr: Option<String>,
        known: Option<ApiVersion>,
    ) -> Result<DockerEngine, EngineError> {
        Self::connect_within(endpoint, advertise_addr, Self::timeout(), known).await
    }

    /// [`DockerEngine::connect`], the first request (version negotiation) given `first`, or
    /// none when the version is `known`.
    async fn connect_within(
        endpoint: &str,
        advertise_addr: Option<String>,
        first: Duration,
        known: Option<ApiVersion>,
    ) -> Result<DockerEngine, EngineError> {
        let parsed = Endpoint::parse(endpoint)?;
        if let Endpoint::Ssh { .. } = parsed {
            // bollard's own ssh trusts host keys on first use and offers the user's default
            // keys: ssh engines go through shoal's forward ([`DockerEngine::connect_remote`]).
            return Err(EngineError::Other(format!(
                "{endpoint}: an ssh:// engine is reached through its machine's ssh key and known_hosts (shoal's own forward), never directly"
            )));
        }
        let agreed = match known {
            Some(v) => Some(ClientVersion {
                major_version: v.major as usize,
                minor_version: v.minor as usize,
            }),
            None => version::agreed(
                raw::pinged_api_version(&parsed, None, first)
                    .await?
                    .as_deref(),
            ),
        };
        let version = agreed.unwrap_or(*API_DEFAULT_VERSION);
        let docker = match &parsed {
            Endpoint::Unix(path) => Docker::connect_with_unix(
                &path.to_string_lossy(),
                Self::timeout().as_secs(),
                &version,
            ),
            Endpoint::Tcp(authority) => Docker::connect_with_http(
                &format!("tcp://{authority}"),
                Self::timeout().as_secs(),
                &version,
            ),
            Endpoint::Ssh { .. } => unreachable!("refused above"),
        }
        .map_err(from_bollard)?;
        let docker = match agreed {
            Some(_) => version::pinned(docker),
            None => negotiated(docker.with_timeout(first))
                .await
                .map_err(from_bollard)?,
        }
        .with_timeout(Self::timeout());
        tracing::debug!(
            endpoint,
            api_version = %docker.client_version(),
            "connected to the engine"
        );
        Ok(DockerEngine {
            docker,
            endpoint: parsed,
            endpoint_text: endpoint.to_string(),
            tls: None,
            tunnel: None,
            advertise_addr,
            default_addr_pool: vec![DEFAULT_ADDR_POOL.to_string()],
            subnet_size: DEFAULT_SUBNET_SIZE,
        })
    }

    /// Connects to the engine of `machine` at `endpoint` the way a remote host is reached:
    /// `tcp://` only with TLS (`access.tls`), `ssh://user@host[:port]` through one forwarding
    /// ssh process (strict host-key checking against `access.ssh.known_hosts`), or `unix://`.
    ///
    /// # Errors
    ///
    /// [`EngineError::Unreachable`] naming the machine and what to check (address, certificate,
    /// host key, permission); [`EngineError::Other`] for an endpoint that lacks what it needs.
    pub async fn connect_remote(
        machine: &str,
        endpoint: &str,
        access: &Access,
        advertise_addr: Option<String>,
    ) -> Result<DockerEngine, EngineError> {
        let parsed = Endpoint::parse(endpoint)
            .map_err(|e| EngineError::Other(format!("machine {machine}: {e}")))?;
        match &parsed {
            Endpoint::Unix(_) => DockerEngine::connect(endpoint, advertise_addr)
                .await
                .map_err(|e| {
                    in_machine(
                        machine,
                        e,
                        "check that the socket exists and that this user may use it",
                    )
                }),
            Endpoint::Tcp(authority) => {
                let Some(dir) = &access.tls else {
                    return Err(EngineError::Other(format!(
                        "machine {machine}: {endpoint} without TLS is refused: give it a `tls:` folder with ca.pem, cert.pem and key.pem"
                    )));
                };
                let folder = CertFolder { dir: dir.clone() };
                let config = tls::client_config(&folder)
                    .map_err(|e| EngineError::Other(format!("machine {machine}: {e}")))?;
                let check = format!(
                    "check the address, and that {} holds a client certificate the engine's CA signed and a ca.pem that signed the engine's certificate",
                    dir.display()
                );
                let first = Duration::from_secs(CONNECT_TIMEOUT_SECS);
                let agreed = version::agreed(
                    raw::pinged_api_version(&parsed, Some(&config), first)
                        .await
                        .map_err(|e| in_machine(machine, e, &check))?
                        .as_deref(),
                );
                let docker = Docker::connect_with_ssl(
                    &format!("tcp://{authority}"),
                    &folder.key(),
                    &folder.cert(),
                    &folder.ca(),
                    Self::timeout().as_secs(),
                    &agreed.unwrap_or(*API_DEFAULT_VERSION),
                )
                .map_err(|e| EngineError::Other(format!("machine {machine}: {e}")))?;
                let docker = match agreed {
                    Some(_) => version::pinned(docker),
                    None => negotiated(docker.with_timeout(first))
                        .await
                        .map_err(|e| in_machine(machine, from_bollard(e), &check))?,
                }
                .with_timeout(Self::timeout());
                Ok(DockerEngine {
                    docker,
                    endpoint: parsed.clone(),
                    endpoint_text: endpoint.to_string(),
                    tls: Some(config),
                    tunnel: None,
                    advertise_addr,
                    default_addr_pool: vec![DEFAULT_ADDR_POOL.to_string()],
                    subnet_size: DEFAULT_SUBNET_SIZE,
                })
            }
            Endpoint::Ssh { destination, .. } => {
                let target = ssh_target(machine, endpoint, access)?
                    .expect("an ssh endpoint has an ssh target");
                let tunnel = SshTunnel::open(machine, &target).await?;
                let socket = tunnel.socket().to_path_buf();
                let local = format!("unix://{}", socket.display());
                let first = Duration::from_secs(CONNECT_TIMEOUT_SECS);
                let mut engine = DockerEngine::connect_within(&local, advertise_addr, first, None)
                    .await
                    .map_err(|e| {
                        in_machine(
                            machine,
                            e,
                            &format!("ssh logged in, but {} on the host does not answer: is dockerd running, and may {destination} use its socket?", ssh::REMOTE_SOCKET),
                        )
                    })?;
                engine.endpoint_text = endpoint.to_string();
                engine.tunnel = Some(Arc::new(Mutex::new(tunnel)));
                Ok(engine)
            }
        }
    }

    /// Whether the engine's transport is still up: false once an ssh forward has ended.
    #[must_use]
    pub fn transport_alive(&self) -> bool {
        self.tunnel.as_ref().is_none_or(|t| {
            t.lock()
                .map_or_else(|mut poisoned| poisoned.get_mut().alive(), |mut t| t.alive())
        })
    }

    /// The endpoint this engine was reached on, as given.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint_text
    }

    /// The API version agreed with the daemon (`1.41` for Docker 20.10).
    #[must_use]
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// `path_and_query` under the agreed API version, for the plain reads of [`raw`].
    fn path(&self, path_and_query: &str) -> String {
        version::versioned_path(&self.api_version(), path_and_query)
    }

    /// The address sent as `AdvertiseAddr`, if any.
    #[must_use]
    pub fn advertise_addr(&self) -> Option<&str> {
        self.advertise_addr.as_deref()
    }

    /// `GET /events` of `docker`, from `query`; each event read into an [`EngineEvent`].
    #[must_use]
    pub fn event_stream(docker: &Docker, query: EventQuery) -> EventStream {
        let options = bollard::query_parameters::EventsOptions {
            since: query.since_nano.map(|nanos| {
                format!(
                    "{}.{:09}",
                    nanos.div_euclid(1_000_000_000),
                    nanos.rem_euclid(1_000_000_000)
                )
            }),
            filters: Some(query.filters.into_iter().collect()),
            ..Default::default()
        };
        docker
            .events(Some(options))
            .map(|event| {
                event.map_err(from_bollard).map(|event| EngineEvent {
                    kind: event
                        .typ
                        .map(|t| t.as_ref().to_string())
                        .unwrap_or_default(),
                    action: event.action.unwrap_or_default(),
                    time_nano: event.time_nano,
                })
            })
            .boxed()
    }

    /// The bollard client, for calls the [`Swarm`] trait does not cover.
    #[must_use]
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// How long one request may take: `SHOAL_REQUEST_TIMEOUT` seconds (at least 25, so a
    /// swarm join can finish), else [`REQUEST_TIMEOUT_SECS`].
    fn timeout() -> Duration {
        static SECONDS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        Duration::from_secs(*SECONDS.get_or_init(|| {
            request_timeout_secs(std::env::var(REQUEST_TIMEOUT_VAR).ok().as_deref())
        }))
    }

    /// `GET /services` of the services carrying the stack namespace label, with their task
    /// counts when `status`.
    fn services_path(status: bool) -> String {
        let filters = serde_json::json!({ "label": { LABEL_STACK_NAMESPACE: true } }).to_string();
        let status = if status { "status=true&" } else { "" };
        format!("/services?{status}filters={}", raw::query_escape(&filters))
    }

    /// Name → ID of the secrets and configs `spec` refers to, then `spec` with their IDs.
    async fn with_reference_ids(&self, spec: &ServiceSpec) -> EngineResult<ServiceSpec> {
        let container = &spec.task_template.container_spec;
        let ids = |objects: BTreeMap<String, ObservedObject>| -> BTreeMap<String, String> {
            objects.into_iter().map(|(name, o)| (name, o.id)).collect()
        };
        let secrets = if container.secrets.is_empty() {
            BTreeMap::new()
        } else {
            ids(self.list_secrets().await?)
        };
        let configs = if container.configs.is_empty() {
            BTreeMap::new()
        } else {
            ids(self.list_configs().await?)
        };
        convert::resolve_references(spec, &secrets, &configs)
    }

    /// Whether a failed join may still be under way: the daemon gives up waiting after 20 s
    /// and says the attempt continues in the background.
    fn join_may_continue(error: &EngineError) -> bool {
        match error {
            EngineError::Unreachable(_) => true,
            EngineError::Other(message) | EngineError::NotManager(message) => {
                message.contains("continue in the background")
                    || message.contains("Timeout was reached")
            }
            _ => false,
        }
    }
}

fn log_warnings(what: &str, warnings: Option<Vec<String>>) {
    for warning in warnings.unwrap_or_default() {
        tracing::warn!("{what}: the engine warns: {warning}");
    }
}

fn version_i64(version: u64) -> EngineResult<i64> {
    i64::try_from(version)
        .map_err(|_| EngineError::Other(format!("object version {version} is out of range")))
}

/// Where and how an `ssh://` endpoint is logged in to, with `access`'s key and known_hosts;
/// `None` for other endpoints.
///
/// # Errors
///
/// An unreadable endpoint, or an ssh endpoint without `ssh:` access.
pub fn ssh_target(
    machine: &str,
    endpoint: &str,
    access: &Access,
) -> Result<Option<SshTarget>, EngineError> {
    let Endpoint::Ssh { destination, port } = Endpoint::parse(endpoint)
        .map_err(|e| EngineError::Other(format!("machine {machine}: {e}")))?
    else {
        return Ok(None);
    };
    let Some(keys) = &access.ssh else {
        return Err(EngineError::Other(format!(
            "machine {machine}: {endpoint} needs `ssh: {{key: ..., known_hosts: ...}}`"
        )));
    };
    Ok(Some(SshTarget {
        destination,
        port,
        key: keys.key.clone(),
        known_hosts: keys.known_hosts.clone(),
    }))
}

/// The request timeout `written` in `SHOAL_REQUEST_TIMEOUT` asks for: whole seconds, at least
/// 25; the default when unset or unreadable (with a warning).
fn request_timeout_secs(written: Option<&str>) -> u64 {
    match written.map(|w| w.trim().parse::<u64>()) {
        None => REQUEST_TIMEOUT_SECS,
        Some(Ok(seconds)) => seconds.max(25),
        Some(Err(_)) => {
            tracing::warn!(
                "{REQUEST_TIMEOUT_VAR} is not a whole number of seconds; using {REQUEST_TIMEOUT_SECS}"
            );
            REQUEST_TIMEOUT_SECS
        }
    }
}

#[async_trait]
impl Swarm for DockerEngine {
    /// Bounded like a first request: a frozen engine is reported as not answering in
    /// [`CONNECT_TIMEOUT_SECS`], whatever its transport, so it never holds up a pass.
    async fn info(&self) -> EngineResult<EngineInfo> {
        let info = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(CONNECT_TIMEOUT_SECS))
            .info()
            .await
            .map_err(from_bollard)?;
        Ok(EngineInfo {
            api_version: ApiVersion::parse(&self.api_version()),
            ..convert::engine_info(&info)
        })
    }

    async fn init_swarm(&self) -> EngineResult<String> {
        let request = SwarmInitRequest {
            listen_addr: Some(SWARM_LISTEN_ADDR.to_string()),
            advertise_addr: self.advertise_addr.clone(),
            default_addr_pool: (!self.default_addr_pool.is_empty())
                .then(|| self.default_addr_pool.clone()),
            subnet_size: (!self.default_addr_pool.is_empty()).then_some(self.subnet_size),
            ..Default::default()
        };
        tracing::info!(
            endpoint = %self.endpoint_text,
            advertise_addr = ?self.advertise_addr,
            "initializing a swarm"
        );
        self.docker.init_swarm(request).await.map_err(from_bollard)
    }

    async fn join_swarm(&self, remote_addr: &str, token: &str) -> EngineResult<()> {
        let request = SwarmJoinRequest {
            listen_addr: Some(SWARM_LISTEN_ADDR.to_string()),
            advertise_addr: self.advertise_addr.clone(),
            remote_addrs: Some(vec![remote_addr.to_string()]),
            join_token: Some(token.to_string()),
            ..Default::default()
        };
        tracing::info!(endpoint = %self.endpoint_text, remote_addr, "joining the swarm");
        let error = match self.docker.join_swarm(request).await {
            Ok(()) => return Ok(()),
            Err(e) => from_bollard(e),
        };
        if Self::join_may_continue(&error) {
            if let Ok(info) = self.info().await {
                if matches!(
                    info.swarm_state,
                    LocalSwarmState::Pending | LocalSwarmState::Active
                ) {
                    tracing::info!(
                        endpoint = %self.endpoint_text,
                        state = ?info.swarm_state,
                        "the join continues in the background"
                    );
                    return Ok(());
                }
            }
        }
        Err(error)
    }

    async fn leave_swarm(&self, force: bool) -> EngineResult<()> {
        tracing::info!(endpoint = %self.endpoint_text, force, "leaving the swarm");
        self.docker
            .leave_swarm(Some(LeaveSwarmOptions { force }))
            .await
            .map_err(from_bollard)
    }

    async fn inspect_swarm(&self) -> EngineResult<SwarmObject> {
        let swarm = self.docker.inspect_swarm().await.map_err(from_bollard)?;
        Ok(SwarmObject {
            id: swarm.id.unwrap_or_default(),
            version: swarm.version.and_then(|v| v.index).unwrap_or(0),
            labels: swarm
                .spec
                .and_then(|s| s.labels)
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }

    async fn join_tokens(&self) -> EngineResult<JoinTokens> {
        let swarm = self.docker.inspect_swarm().await.map_err(from_bollard)?;
        let tokens = swarm.join_tokens.unwrap_or_default();
        match (tokens.worker, tokens.manager) {
            (Some(worker), Some(manager)) => Ok(JoinTokens { worker, manager }),
            _ => Err(EngineError::Other(
                "the engine returned no join tokens".to_string(),
            )),
        }
    }

    async fn update_swarm_labels(
        &self,
        version: u64,
        labels: BTreeMap<String, String>,
    ) -> EngineResult<()> {
        let swarm = self.docker.inspect_swarm().await.map_err(from_bollard)?;
        let mut spec = swarm.spec.unwrap_or_default();
        spec.labels = Some(labels.into_iter().collect::<HashMap<_, _>>());
        let options = UpdateSwarmOptions {
            version: version_i64(version)?,
            ..Default::default()
        };
        tracing::debug!(endpoint = %self.endpoint_text, version, "updating the swarm labels");
        self.docker
            .update_swarm(spec, options)
            .await
            .map_err(from_bollard)
    }

    async fn list_nodes(&self) -> EngineResult<Vec<ObservedNode>> {
        let nodes = self.docker.list_nodes(None).await.map_err(from_bollard)?;
        let now = i64::try_from(crate::clock::unix_now()).unwrap_or(i64::MAX);
        nodes
            .iter()
            .map(|node| convert::node_from_bollard(node, now))
            .collect()
    }

    async fn update_node(&self, id: &str, version: u64, spec: NodeSpecUpdate) -> EngineResult<()> {
        let current = self.docker.inspect_node(id).await.map_err(from_bollard)?;
        let name = current.spec.and_then(|s| s.name);
        let body = convert::node_spec_to_bollard(
            name.as_deref(),
            spec.role,
            spec.availability,
            &spec.labels,
        )?;
        tracing::debug!(
            node = id,
            version,
            role = spec.role.as_str(),
            availability = spec.availability.as_str(),
            "updating a node"
        );
        self.docker
            .update_node(
                id,
                body,
                UpdateNodeOptions {
                    version: version_i64(version)?,
                },
            )
            .await
            .map_err(from_bollard)
    }

    async fn remove_node(&self, id: &str, force: bool) -> EngineResult<()> {
        tracing::debug!(node = id, force, "removing a node");
        self.docker
            .delete_node(id, Some(DeleteNodeOptions { force }))
            .await
            .map_err(from_bollard)
    }

    async fn list_services(&self) -> EngineResult<Vec<ObservedService>> {
        let path = Self::services_path(true);
        // The networks (for the names of the services' attachments, which the engine gives
        // by ID) are read beside the services, not after them: one round trip, not two.
        let versioned_path = self.path(&path);
        let (services, networks) = tokio::join!(
            raw::get_json(
                &self.endpoint,
                self.tls.as_ref(),
                &versioned_path,
                Self::timeout()
            ),
            self.docker.list_networks(None::<ListNetworksOptions>)
        );
        let Value::Array(entries) = services? else {
            return Err(EngineError::Other(
                "unexpected answer from the engine: the service list is not a list".to_string(),
            ));
        };
        let attached = entries.iter().any(|entry| {
            entry
                .pointer("/Spec/TaskTemplate/Networks")
                .and_then(Value::as_array)
                .is_some_and(|n| !n.is_empty())
        });
        let mut network_names = if attached {
            convert::network_names(&networks.map_err(from_bollard)?)
        } else {
            BTreeMap::new()
        };
        // The swarm's own `bridge` and `host` networks (what a service attached to a node-local
        // network names) are left out of the list: asked for by ID.
        for id in convert::unnamed_network_targets(&entries, &network_names) {
            match self.docker.inspect_network(&id, None).await {
                Ok(network) => {
                    if let Some(name) = network.name {
                        network_names.insert(id, name);
                    }
                }
                Err(e) => tracing::debug!("cannot inspect network {id}: {e}"),
            }
        }
        entries
            .into_iter()
            .map(|entry| convert::service_from_engine(entry, &network_names))
            .collect()
    }

    /// `GET /services` without `status=true` (no task counts to gather), each entry read only
    /// for its ID, version and name.
    async fn service_versions(&self) -> EngineResult<BTreeMap<String, ObjectVersion>> {
        let entries: Vec<convert::EngineServiceVersion> = raw::get_as(
            &self.endpoint,
            self.tls.as_ref(),
            &self.path(&Self::services_path(false)),
            Self::timeout(),
        )
        .await?;
        Ok(convert::service_versions(entries))
    }

    async fn create_service(&self, spec: &ServiceSpec) -> EngineResult<String> {
        let body = convert::service_spec_to_bollard(&self.with_reference_ids(spec).await?)?;
        tracing::debug!(service = %spec.name, "creating a service");
        let auth = crate::registry::registry_auth(&spec.task_template.container_spec.image);
        let response = self
            .docker
            .create_service(body, auth)
            .await
            .map_err(from_bollard)?;
        log_warnings(&spec.name, response.warnings);
        response.id.ok_or_else(|| {
            EngineError::Other(format!("the engine created {} without an ID", spec.name))
        })
    }

    async fn update_service(&self, id: &str, version: u64, spec: &ServiceSpec) -> EngineResult<()> {
        let body = convert::service_spec_to_bollard(&self.with_reference_ids(spec).await?)?;
        let version = i32::try_from(version).map_err(|_| {
            EngineError::Other(format!(
                "service {}: version {version} exceeds what bollard can send (i32)",
                spec.name
            ))
        })?;
        let options = UpdateServiceOptions {
            version,
            ..Default::default()
        };
        tracing::debug!(service = %spec.name, version, "updating a service");
        let auth = crate::registry::registry_auth(&spec.task_template.container_spec.image);
        let response = self
            .docker
            .update_service(id, body, options, auth)
            .await
            .map_err(from_bollard)?;
        log_warnings(&spec.name, response.warnings);
        Ok(())
    }

    async fn remove_service(&self, id: &str) -> EngineResult<()> {
        tracing::debug!(service = id, "removing a service");
        self.docker.delete_service(id).await.map_err(from_bollard)
    }

    async fn list_networks(&self) -> EngineResult<BTreeMap<String, ObservedObject>> {
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([(
                "scope".to_string(),
                vec!["swarm".to_string()],
            )])),
        };
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(from_bollard)?;
        Ok(networks.iter().filter_map(convert::swarm_network).collect())
    }

    async fn create_network(&self, spec: &NetworkSpec) -> EngineResult<String> {
        let request = convert::network_request(spec)?;
        tracing::debug!(network = %spec.name, "creating a network");
        let response = self
            .docker
            .create_network(request)
            .await
            .map_err(from_bollard)?;
        if !response.warning.is_empty() {
            tracing::warn!("{}: the engine warns: {}", spec.name, response.warning);
        }
        Ok(response.id)
    }

    async fn remove_network(&self, id: &str) -> EngineResult<()> {
        tracing::debug!(network = id, "removing a network");
        self.docker.remove_network(id).await.map_err(from_bollard)
    }

    async fn list_secrets(&self) -> EngineResult<BTreeMap<String, ObservedObject>> {
        let secrets = self.docker.list_secrets(None).await.map_err(from_bollard)?;
        Ok(convert::secrets_by_name(&secrets))
    }

    async fn create_secret(&self, spec: &ObjectSpec) -> EngineResult<String> {
        tracing::debug!(secret = %spec.name, "creating a secret");
        let response = self
            .docker
            .create_secret(convert::secret_spec(spec))
            .await
            .map_err(from_bollard)?;
        Ok(response.id)
    }

    async fn remove_secret(&self, id: &str) -> EngineResult<()> {
        tracing::debug!(secret = id, "removing a secret");
        self.docker.delete_secret(id).await.map_err(from_bollard)
    }

    async fn list_configs(&self) -> EngineResult<BTreeMap<String, ObservedObject>> {
        let configs = self.docker.list_configs(None).await.map_err(from_bollard)?;
        Ok(convert::configs_by_name(&configs))
    }

    async fn create_config(&self, spec: &ObjectSpec) -> EngineResult<String> {
        tracing::debug!(config = %spec.name, "creating a config");
        let response = self
            .docker
            .create_config(convert::config_spec(spec))
            .await
            .map_err(from_bollard)?;
        Ok(response.id)
    }

    async fn remove_config(&self, id: &str) -> EngineResult<()> {
        tracing::debug!(config = id, "removing a config");
        self.docker.delete_config(id).await.map_err(from_bollard)
    }

    async fn list_tasks(&self) -> EngineResult<Vec<crate::model::observed::ObservedTask>> {
        let Value::Array(entries) = raw::get_json(
            &self.endpoint,
            self.tls.as_ref(),
            &self.path("/tasks"),
            Self::timeout(),
        )
        .await?
        else {
            return Err(EngineError::Other(
                "unexpected answer from the engine: the task list is not a list".to_string(),
            ));
        };
        tasks_from_engine(entries)
    }

    fn events(&self, query: EventQuery) -> Option<EventStream> {
        // The stream holds the ssh forward it runs through, should the engine be dropped.
        let tunnel = self.tunnel.clone();
        let events = Self::event_stream(&self.docker, query);
        Some(
            events
                .map(move |event| {
                    let _forward = &tunnel;
                    event
                })
                .boxed(),
        )
    }
}

/// Reads the entries of `GET /tasks` as the daemon wrote them (pure: the health fixtures use it
/// on captured engine output).
///
/// # Errors
///
/// [`EngineError::Other`] for an entry without an ID.
pub fn tasks_from_engine(
    entries: Vec<Value>,
) -> EngineResult<Vec<crate::model::observed::ObservedTask>> {
    entries.into_iter().map(convert::task_from_engine).collect()
}

/// The stack objects of a swarm as the engine's own JSON describes them (`GET /services?status=true`,
/// `GET /networks`, `GET /secrets`, `GET /configs`, each an array), read the way
/// [`DockerEngine`] reads them. Pure: the no-drift fixtures use it on captured engine output.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct EngineDump {
    /// The API version the engine spoke (`GET /version` → `ApiVersion`); `None` in dumps
    /// captured before it was recorded (those came from Docker 20.10, API 1.41).
    #[serde(default)]
    pub api_version: Option<ApiVersion>,
    /// `GET /services?status=true`.
    #[serde(default)]
    pub services: Vec<Value>,
    /// `GET /networks`.
    #[serde(default)]
    pub networks: Vec<Value>,
    /// `GET /secrets`.
    #[serde(default)]
    pub secrets: Vec<Value>,
    /// `GET /configs`.
    #[serde(default)]
    pub configs: Vec<Value>,
}

/// What shoal observes of a swarm's stack objects, from an [`EngineDump`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StackObjects {
    /// Services carrying the stack namespace label.
    pub services: Vec<ObservedService>,
    /// Swarm-scoped networks by name.
    pub networks: BTreeMap<String, ObservedObject>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, ObservedObject>,
    /// Configs by name.
    pub configs: BTreeMap<String, ObservedObject>,
}

impl EngineDump {
    /// Reads the dump as [`DockerEngine`] reads the live engine.
    pub fn stack_objects(&self) -> Result<StackObjects, EngineError> {
        fn parse<T: serde::de::DeserializeOwned>(
            what: &str,
            values: &[Value],
        ) -> Result<Vec<T>, EngineError> {
            values
                .iter()
                .map(|v| {
                    serde_json::from_value(v.clone())
                        .map_err(|e| EngineError::Other(format!("unexpected {what}: {e}")))
                })
                .collect()
        }
        let networks: Vec<bollard::models::Network> = parse("network", &self.networks)?;
        let secrets: Vec<bollard::models::Secret> = parse("secret", &self.secrets)?;
        let configs: Vec<bollard::models::Config> = parse("config", &self.configs)?;
        let names = convert::network_names(&networks);
        let services = self
            .services
            .iter()
            .filter(|raw| {
                raw.pointer("/Spec/Labels")
                    .and_then(|labels| labels.get(LABEL_STACK_NAMESPACE))
                    .is_some()
            })
            .map(|raw| convert::service_from_engine(raw.clone(), &names))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StackObjects {
            services,
            networks: networks.iter().filter_map(convert::swarm_network).collect(),
            secrets: convert::secrets_by_name(&secrets),
            configs: convert::configs_by_name(&configs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_timeout_is_configurable_but_never_below_a_join() {
        assert_eq!(request_timeout_secs(None), 60);
        assert_eq!(request_timeout_secs(Some("90")), 90);
        assert_eq!(request_timeout_secs(Some("5")), 25);
        assert_eq!(request_timeout_secs(Some("soon")), 60);
    }

    #[test]
    fn interrupted_joins_are_recognised() {
        let timeout = crate::docker::error::classify(
            503,
            "Timeout was reached before node joined. The attempt to join the swarm will continue in the background. Use the \"docker info\" command to see the current swarm status of your node.",
        );
        assert!(DockerEngine::join_may_continue(&timeout));
        assert!(DockerEngine::join_may_continue(&EngineError::Unreachable(
            "the engine did not answer in time".into()
        )));
        let bad_token = crate::docker::error::classify(
            400,
            "rpc error: code = InvalidArgument desc = A valid join token is necessary to join this cluster",
        );
        assert!(!DockerEngine::join_may_continue(&bad_token));
    }

    /// A fake engine of API `version` on a unix socket: it answers `/version`, `/info` and
    /// `/tasks` at any path, and records each request line.
    fn fake_engine(version: &'static str) -> (tempfile::TempDir, String, Arc<Mutex<Vec<String>>>) {
        fake_engine_pinging(version, false)
    }

    /// A fake engine; with `ping_header`, its `/_ping` answers carry `Api-Version` (as every
    /// engine since API 1.25 does).
    fn fake_engine_pinging(
        version: &'static str,
        ping_header: bool,
    ) -> (tempfile::TempDir, String, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let line = head.lines().next().unwrap_or_default().to_string();
                        let body = if line.contains("/version") {
                            format!(r#"{{"ApiVersion":"{version}","Version":"x"}}"#)
                        } else if line.contains("/tasks") {
                            "[]".to_string()
                        } else {
                            r#"{"ID":"E1"}"#.to_string()
                        };
                        let header = if ping_header && line.contains("/_ping") {
                            format!("Api-Version: {version}\r\n")
                        } else {
                            String::new()
                        };
                        log.lock().unwrap().push(line);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{header}Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let endpoint = format!("unix://{}", path.display());
        (dir, endpoint, seen)
    }

    #[tokio::test]
    async fn requests_carry_the_version_negotiated_once() {
        // Before: `GET /info`, `GET /tasks` (bollard drops its version prefix). The version
        // comes from `/_ping`'s `Api-Version` header, or from `/version` where it has none.
        for (version, engine) in [("1.41", "20.10"), ("1.51", "28.5")] {
            for ping_header in [true, false] {
                let (_dir, endpoint, seen) = fake_engine_pinging(version, ping_header);
                let docker = DockerEngine::connect(&endpoint, None).await.unwrap();
                assert_eq!(docker.api_version(), version, "Docker {engine}");
                let info = docker.info().await.unwrap();
                assert_eq!(info.api_version, ApiVersion::parse(version));
                docker.list_tasks().await.unwrap();
                let lines = seen.lock().unwrap().clone();
                let mut expected = vec!["GET /_ping HTTP/1.1".to_string()];
                if !ping_header {
                    expected.push("GET /version HTTP/1.1".to_string());
                }
                expected.push(format!("GET /v{version}/info HTTP/1.1"));
                expected.push(format!("GET /v{version}/tasks HTTP/1.1"));
                assert_eq!(
                    lines, expected,
                    "Docker {engine}, Api-Version on /_ping: {ping_header}"
                );
            }
        }
    }

    #[tokio::test]
    async fn an_engine_negotiated_before_is_not_asked_again() {
        let (_dir, endpoint, seen) = fake_engine("1.41");
        let known = ApiVersion::parse("1.41");
        let docker = DockerEngine::connect_known(&endpoint, None, known)
            .await
            .unwrap();
        assert_eq!(docker.info().await.unwrap().api_version, known);
        assert_eq!(*seen.lock().unwrap(), ["GET /v1.41/info HTTP/1.1"]);
    }

    #[tokio::test]
    async fn connecting_to_a_missing_socket_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("unix://{}", dir.path().join("none.sock").display());
        assert!(matches!(
            DockerEngine::connect(&endpoint, None).await,
            Err(EngineError::Unreachable(_))
        ));
        assert!(matches!(
            DockerEngine::connect("npipe:////./pipe/docker_engine", None).await,
            Err(EngineError::Other(_))
        ));
    }
}
