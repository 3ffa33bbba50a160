//! The `Swarm` trait: the Docker Engine API of one machine, as much of it as shoal uses.
//!
//! The sim driver implements it in memory; the engine backend implements it over bollard.
//! Both return the same [`EngineError`] kinds for the same refusals, so apply and the
//! scenario tests cannot tell them apart.

use crate::model::observed::{
    LocalSwarmState, ObservedNode, ObservedObject, ObservedService, ObservedTask,
};
use crate::model::spec::{NetworkSpec, ObjectSpec, ServiceSpec};
use crate::model::{Availability, Role};
use async_trait::async_trait;
use std::collections::BTreeMap;

/// What the Engine API refused or failed with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The object does not exist (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// An object with that name exists already (HTTP 409).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The version sent is not the stored one ("update out of sequence"); re-inspect and retry.
    #[error("update out of sequence: {0}")]
    OutOfSequence(String),
    /// The request is refused as invalid or unsafe (HTTP 400), e.g. demoting the last manager.
    #[error("refused: {0}")]
    Refused(String),
    /// A demotion or removal refused because the Raft group would lose quorum (HTTP 400/500,
    /// "this would result in a loss of quorum"); transient while a demoted manager leaves.
    #[error("refused: {0}")]
    QuorumLoss(String),
    /// This engine is not a swarm manager, or not in a swarm (HTTP 503).
    #[error("not a swarm manager: {0}")]
    NotManager(String),
    /// The managers have no leader: quorum is lost.
    #[error("the swarm has no leader (quorum lost): {0}")]
    NoLeader(String),
    /// The engine does not answer.
    #[error("engine unreachable: {0}")]
    Unreachable(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Result of an engine call.
pub type EngineResult<T> = Result<T, EngineError>;

/// `/info` of one engine, as far as swarm membership goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineInfo {
    /// Swarm membership of this engine.
    pub swarm_state: LocalSwarmState,
    /// Its node ID when it is a member.
    pub node_id: Option<String>,
    /// Whether it is a manager that can serve the control API.
    pub control_available: bool,
    /// The address other nodes reach it on.
    pub node_addr: String,
    /// The engine's own ID (`/info` → `ID`): what tells two endpoints of one engine apart
    /// from two engines; `None` when the engine does not say.
    pub engine_id: Option<String>,
    /// The API version agreed with this engine (negotiated once when it was connected);
    /// `None` for engines that have none (the sim).
    pub api_version: Option<crate::model::engine_api::ApiVersion>,
}

/// The swarm object and its version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwarmObject {
    /// Cluster ID.
    pub id: String,
    /// Object version.
    pub version: u64,
    /// Swarm labels.
    pub labels: BTreeMap<String, String>,
}

/// The ID and version of a swarm object: what moves when it changes (its `Version.Index`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectVersion {
    /// Object ID.
    pub id: String,
    /// Object version.
    pub version: u64,
}

/// The join tokens (secrets: never print them).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinTokens {
    /// Token that joins a worker.
    pub worker: String,
    /// Token that joins a manager.
    pub manager: String,
}

impl std::fmt::Debug for JoinTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinTokens { <redacted> }")
    }
}

/// A node spec update: the whole spec, as the API replaces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpecUpdate {
    /// Role.
    pub role: Role,
    /// Availability.
    pub availability: Availability,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// One event of an engine's event stream (`GET /events`), as far as the watcher reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineEvent {
    /// Its type: `service`, `node`, `container`, ...
    pub kind: String,
    /// What happened: `update`, `die`, ...
    pub action: String,
    /// When, in nanoseconds since the epoch.
    pub time_nano: Option<i64>,
}

/// An engine's events as they come; an item that is an error ends it.
pub type EventStream = futures::stream::BoxStream<'static, EngineResult<EngineEvent>>;

/// Which events to follow, from when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// The engine's event filters (`type`, `label`, `event`), each key with its values.
    pub filters: BTreeMap<String, Vec<String>>,
    /// Only events after this time (nanoseconds since the epoch), when given.
    pub since_nano: Option<i64>,
}

/// The Docker Engine API of one machine.
#[async_trait]
pub trait Swarm: Send + Sync {
    /// `GET /info`: swarm membership of this engine.
    async fn info(&self) -> EngineResult<EngineInfo>;
    /// `POST /swarm/init` on this engine; returns the node ID.
    async fn init_swarm(&self) -> EngineResult<String>;
    /// `POST /swarm/join` through the manager at `remote_addr`.
    async fn join_swarm(&self, remote_addr: &str, token: &str) -> EngineResult<()>;
    /// `POST /swarm/leave`.
    async fn leave_swarm(&self, force: bool) -> EngineResult<()>;
    /// `GET /swarm` (managers only).
    async fn inspect_swarm(&self) -> EngineResult<SwarmObject>;
    /// The join tokens (managers only).
    async fn join_tokens(&self) -> EngineResult<JoinTokens>;
    /// `POST /swarm/update` with new labels.
    async fn update_swarm_labels(
        &self,
        version: u64,
        labels: BTreeMap<String, String>,
    ) -> EngineResult<()>;
    /// `GET /nodes` (the `machine` field is left empty: observe matches it).
    async fn list_nodes(&self) -> EngineResult<Vec<ObservedNode>>;
    /// `POST /nodes/{id}/update?version=`.
    async fn update_node(&self, id: &str, version: u64, spec: NodeSpecUpdate) -> EngineResult<()>;
    /// `DELETE /nodes/{id}`.
    async fn remove_node(&self, id: &str, force: bool) -> EngineResult<()>;
    /// `GET /services?status=true`, only those carrying the stack namespace label.
    async fn list_services(&self) -> EngineResult<Vec<ObservedService>>;
    /// The ID and version of each service [`Swarm::list_services`] lists, by name, without
    /// their specs and task counts: cheap to read again, to tell whether any changed since an
    /// observation (see [`crate::observe::confirm`]).
    async fn service_versions(&self) -> EngineResult<BTreeMap<String, ObjectVersion>> {
        Ok(self
            .list_services()
            .await?
            .into_iter()
            .map(|s| {
                let version = ObjectVersion {
                    id: s.id,
                    version: s.version,
                };
                (s.spec.name, version)
            })
            .collect())
    }
    /// `POST /services/create`; returns the ID.
    async fn create_service(&self, spec: &ServiceSpec) -> EngineResult<String>;
    /// `POST /services/{id}/update?version=`.
    async fn update_service(&self, id: &str, version: u64, spec: &ServiceSpec) -> EngineResult<()>;
    /// `DELETE /services/{id}`.
    async fn remove_service(&self, id: &str) -> EngineResult<()>;
    /// Swarm-scoped networks, by name.
    async fn list_networks(&self) -> EngineResult<BTreeMap<String, ObservedObject>>;
    /// `POST /networks/create`; returns the ID.
    async fn create_network(&self, spec: &NetworkSpec) -> EngineResult<String>;
    /// `DELETE /networks/{id}`.
    async fn remove_network(&self, id: &str) -> EngineResult<()>;
    /// Secrets by name.
    async fn list_secrets(&self) -> EngineResult<BTreeMap<String, ObservedObject>>;
    /// `POST /secrets/create`; returns the ID.
    async fn create_secret(&self, spec: &ObjectSpec) -> EngineResult<String>;
    /// `DELETE /secrets/{id}`.
    async fn remove_secret(&self, id: &str) -> EngineResult<()>;
    /// Configs by name.
    async fn list_configs(&self) -> EngineResult<BTreeMap<String, ObservedObject>>;
    /// `POST /configs/create`; returns the ID.
    async fn create_config(&self, spec: &ObjectSpec) -> EngineResult<String>;
    /// `DELETE /configs/{id}`.
    async fn remove_config(&self, id: &str) -> EngineResult<()>;
    /// `GET /tasks`: every task of the swarm, with the history it keeps, in one request
    /// (managers only). Health reads it ([`crate::health`]).
    async fn list_tasks(&self) -> EngineResult<Vec<ObservedTask>>;
    /// `GET /events`, through the same connection as every other request (the TLS
    /// certificates or ssh forward the machine is reached with). `None` when the engine has no
    /// event stream (the sim).
    fn events(&self, _query: EventQuery) -> Option<EventStream> {
        None
    }
}
