//! Pure conversions between shoal's specs and the Engine API's shapes.
//!
//! shoal's spec types ([`crate::model::spec`]) carry the Engine API's own JSON names, so they
//! are converted to and from bollard's models through `serde_json` rather than field by field:
//! the two shapes cannot drift apart without a test failing. Service specs are read leniently:
//! every field is optional, fields shoal does not model are kept (see [`crate::model::spec`]),
//! and a service whose spec still does not read is returned marked unreadable rather than
//! failing the observation of the whole cluster.
//!
//! Two places where bollard 0.21's models differ from what the daemon speaks are handled here:
//! - bollard names the service health check `HealthCheck` (as the swagger file does), while the
//!   daemon writes `Healthcheck` (moby `api/types/swarm/container.go`). The daemon reads either
//!   (Go's JSON decoding ignores case), so specs are sent with bollard's name; services are read
//!   from the daemon's raw JSON, which bollard would silently strip of their health checks.
//! - Go encodes a nil map or slice without `omitempty` as `null` (service `Labels`, for one);
//!   nulls are dropped before deserializing, so they read as absent.

use crate::compose::convert::sha256_hex;
use crate::engine::{EngineError, EngineInfo, ObjectVersion};
use crate::model::observed::{ObservedTask, TaskState, UpdateState, UpdateStatus};
use crate::model::spec::{
    content_sha256, ContainerSpec, NetworkSpec, ObjectSpec, ServiceSpec, TaskSpec,
};
use crate::model::{
    Availability, NetworkSettings, NodeState, ObservedNode, ObservedObject, ObservedService,
    Reachability, Role,
};
use base64::Engine as _;
use bollard::models;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The daemon's name for a service container's health check.
const HEALTHCHECK_WIRE: &str = "Healthcheck";
/// bollard's name for it.
const HEALTHCHECK_BOLLARD: &str = "HealthCheck";
/// The driver `docker stack deploy` uses when a network names none.
const DEFAULT_NETWORK_DRIVER: &str = "overlay";

/// Re-types a value through its JSON form.
pub(crate) fn reshape<T: Serialize, U: DeserializeOwned>(
    value: &T,
) -> Result<U, serde_json::Error> {
    serde_json::from_value(serde_json::to_value(value)?)
}

/// Removes `null` members from every object in `value`, so they read as absent.
pub(crate) fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn container_spec_mut(spec: &mut Value) -> Option<&mut Map<String, Value>> {
    spec.pointer_mut("/TaskTemplate/ContainerSpec")
        .and_then(Value::as_object_mut)
}

fn rename_key(map: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(value) = map.remove(from) {
        map.insert(to.to_string(), value);
    }
}

/// Fills in the secret and config IDs of `spec` from the name → ID maps of the swarm.
///
/// Every reference is resolved by its name, so an ID copied from an older object is replaced.
pub(crate) fn resolve_references(
    spec: &ServiceSpec,
    secrets: &BTreeMap<String, String>,
    configs: &BTreeMap<String, String>,
) -> Result<ServiceSpec, EngineError> {
    let mut spec = spec.clone();
    let container = &mut spec.task_template.container_spec;
    for reference in &mut container.secrets {
        reference.secret_id = secrets
            .get(&reference.secret_name)
            .cloned()
            .ok_or_else(|| {
                EngineError::NotFound(format!("secret not found: {}", reference.secret_name))
            })?;
    }
    for reference in &mut container.configs {
        reference.config_id = configs
            .get(&reference.config_name)
            .cloned()
            .ok_or_else(|| {
                EngineError::NotFound(format!("config not found: {}", reference.config_name))
            })?;
    }
    Ok(spec)
}

/// Converts a service spec to bollard's model, ready to send.
pub(crate) fn service_spec_to_bollard(
    spec: &ServiceSpec,
) -> Result<models::ServiceSpec, EngineError> {
    let refuse = |e: serde_json::Error| {
        EngineError::Refused(format!("service {}: invalid spec: {e}", spec.name))
    };
    let mut value = serde_json::to_value(spec).map_err(refuse)?;
    if let Some(container) = container_spec_mut(&mut value) {
        rename_key(container, HEALTHCHECK_WIRE, HEALTHCHECK_BOLLARD);
    }
    serde_json::from_value(value).map_err(refuse)
}

/// Reads a service spec from the JSON the daemon returns (the wire shape).
///
/// Config references without a file target (credential-spec runtime configs, which shoal does
/// not manage) are left out, since shoal's spec has no place for them.
pub(crate) fn service_spec_from_engine(mut spec: Value) -> Result<ServiceSpec, serde_json::Error> {
    strip_nulls(&mut spec);
    if let Some(Value::Array(configs)) =
        container_spec_mut(&mut spec).and_then(|c| c.get_mut("Configs"))
    {
        configs.retain(|c| c.get("File").is_some());
    }
    serde_json::from_value(spec)
}

/// The parts of a `GET /services` entry shoal reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EngineService {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    version: EngineVersion,
    #[serde(default)]
    spec: Value,
    #[serde(default)]
    service_status: EngineServiceStatus,
    #[serde(default)]
    update_status: Option<EngineUpdateStatus>,
}

/// The parts of a `GET /services` entry that tell whether it changed: its ID, version and
/// name (see [`crate::engine::Swarm::service_versions`]).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EngineServiceVersion {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    version: EngineVersion,
    #[serde(default)]
    spec: EngineServiceName,
}

/// A service spec's name.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EngineServiceName {
    #[serde(default)]
    name: String,
}

/// The services' versions by name, from the entries of `GET /services`.
pub(crate) fn service_versions(
    entries: Vec<EngineServiceVersion>,
) -> BTreeMap<String, ObjectVersion> {
    entries
        .into_iter()
        .map(|entry| {
            let version = ObjectVersion {
                id: entry.id,
                version: entry.version.index,
            };
            (entry.spec.name, version)
        })
        .collect()
}

/// `UpdateStatus` of a service that has been updated.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EngineUpdateStatus {
    #[serde(default)]
    state: Option<UpdateState>,
    #[serde(default)]
    message: String,
}

/// An object version.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EngineVersion {
    #[serde(default)]
    index: u64,
}

/// Task counts (`status=true`, API 1.41+).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EngineServiceStatus {
    #[serde(default)]
    running_tasks: u64,
    #[serde(default)]
    desired_tasks: u64,
}

/// Converts one entry of `GET /services?status=true`, as the daemon wrote it, to an
/// [`ObservedService`]; network targets (IDs on the wire) become names through
/// `network_names` (ID → name) when known.
///
/// Every field of the spec is optional, as the Engine API defines it. A spec that still cannot
/// be read (a field of an unexpected type) does not fail the whole observation: the service is
/// returned with its name and labels, the rest kept as it is, and the reason in
/// [`ServiceSpec::unreadable`], for the planner to warn about. Only an entry without an ID,
/// which no request could address, is an error.
pub(crate) fn service_from_engine(
    mut raw: Value,
    network_names: &BTreeMap<String, String>,
) -> Result<ObservedService, EngineError> {
    strip_nulls(&mut raw);
    let service: EngineService = serde_json::from_value(raw).map_err(|e| {
        EngineError::Other(format!(
            "the engine listed a service shoal cannot address ({e}): check `docker service ls` on a manager"
        ))
    })?;
    let template_key = service.spec.get("TaskTemplate").map(rollout_key);
    let mut spec = match service_spec_from_engine(service.spec.clone()) {
        Ok(spec) => spec,
        Err(error) => unreadable_spec(service.spec, &service.id, &error),
    };
    for attachment in &mut spec.task_template.networks {
        if let Some(name) = network_names.get(&attachment.target) {
            attachment.target = name.clone();
        }
    }
    Ok(ObservedService {
        id: service.id,
        version: service.version.index,
        spec,
        running: service.service_status.running_tasks,
        desired: service.service_status.desired_tasks,
        update_status: service.update_status.and_then(|u| {
            u.state.map(|state| UpdateStatus {
                state,
                message: u.message,
            })
        }),
        template_key,
    })
}

/// What tells versions of a task spec apart, equal for a service's `TaskTemplate` and the
/// `Spec` of its tasks made from it: a digest of the container spec, placement, resources,
/// networks and force-update counter with empty members dropped (the daemon writes the two
/// with different empty fields, and adds `Runtime` to the service's only).
pub(crate) fn rollout_key(task_spec: &Value) -> String {
    fn clean(value: &Value) -> Option<Value> {
        match value {
            Value::Null => None,
            Value::Object(map) => {
                let kept: Map<String, Value> = map
                    .iter()
                    .filter_map(|(k, v)| clean(v).map(|v| (k.clone(), v)))
                    .collect();
                (!kept.is_empty()).then_some(Value::Object(kept))
            }
            Value::Array(items) => {
                (!items.is_empty()).then(|| Value::Array(items.iter().filter_map(clean).collect()))
            }
            other => Some(other.clone()),
        }
    }
    let parts: Map<String, Value> = [
        "ContainerSpec",
        "Placement",
        "Resources",
        "Networks",
        "ForceUpdate",
    ]
    .iter()
    .filter_map(|key| {
        let value = task_spec.get(*key).and_then(clean)?;
        Some(((*key).to_string(), value))
    })
    .collect();
    // serde_json's Map is ordered by key, so the text is canonical.
    sha256_hex(Value::Object(parts).to_string().as_bytes())[..16].to_string()
}

/// The parts of a `GET /tasks` entry shoal reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EngineTask {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(default)]
    slot: Option<u64>,
    #[serde(rename = "NodeID", default)]
    node_id: Option<String>,
    #[serde(default)]
    desired_state: Option<TaskState>,
    #[serde(default)]
    status: EngineTaskStatus,
    #[serde(default)]
    spec: Option<Value>,
}

/// A task's `Status`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EngineTaskStatus {
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    state: Option<TaskState>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    err: Option<String>,
    #[serde(default)]
    container_status: Option<EngineContainerStatus>,
}

/// A task's `Status.ContainerStatus`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EngineContainerStatus {
    #[serde(default)]
    exit_code: Option<i64>,
}

/// Converts one entry of `GET /tasks`, as the daemon wrote it, to an [`ObservedTask`]; an entry
/// that does not read (no ID) is an error naming what to check.
pub(crate) fn task_from_engine(mut raw: Value) -> Result<ObservedTask, EngineError> {
    strip_nulls(&mut raw);
    let task: EngineTask = serde_json::from_value(raw).map_err(|e| {
        EngineError::Other(format!(
            "the engine listed a task shoal cannot read ({e}): check `docker service ps` on a manager"
        ))
    })?;
    let state = task.status.state.unwrap_or(TaskState::Unknown);
    Ok(ObservedTask {
        id: task.id,
        service_id: task.service_id,
        slot: task.slot.filter(|s| *s > 0),
        node_id: task.node_id.filter(|n| !n.is_empty()),
        desired_state: task.desired_state.unwrap_or(TaskState::Unknown),
        state,
        message: task.status.message,
        error: task.status.err.filter(|e| !e.is_empty()),
        exit_code: task
            .status
            .container_status
            .and_then(|c| c.exit_code)
            .filter(|_| state >= TaskState::Complete),
        timestamp: task
            .status
            .timestamp
            .as_deref()
            .and_then(parse_rfc3339)
            .unwrap_or(0),
        spec_key: task.spec.as_ref().map(rollout_key),
        health_checked: task
            .spec
            .as_ref()
            .and_then(|s| s.pointer("/ContainerSpec/Healthcheck/Test"))
            .and_then(Value::as_array)
            .and_then(|test| test.first())
            .and_then(Value::as_str)
            .is_some_and(|first| first != "NONE"),
    })
}

/// The spec of a service whose engine spec does not read: its name and labels, every other
/// field kept in `extra`, and why in `unreadable` (naming the field).
fn unreadable_spec(raw: Value, id: &str, error: &serde_json::Error) -> ServiceSpec {
    let mut fields = match raw {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    let field = failing_field(&fields);
    let name = match fields.remove("Name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        _ => id.to_string(),
    };
    let labels = fields
        .remove("Labels")
        .and_then(|labels| serde_json::from_value(labels).ok())
        .unwrap_or_default();
    ServiceSpec {
        unreadable: Some(format!("field Spec.{field}: {error}")),
        name,
        labels,
        extra: fields.into_iter().collect(),
        ..ServiceSpec::default()
    }
}

/// The path of the first member of a service spec that does not read (e.g.
/// `TaskTemplate.ContainerSpec.Mounts`), found by reading the members one at a time.
fn failing_field(fields: &Map<String, Value>) -> String {
    fn first_bad<T: DeserializeOwned>(fields: &Map<String, Value>) -> Option<(&String, &Value)> {
        fields.iter().find(|(key, value)| {
            let alone = Value::Object(Map::from_iter([((*key).clone(), (*value).clone())]));
            serde_json::from_value::<T>(alone).is_err()
        })
    }
    let Some((key, value)) = first_bad::<ServiceSpec>(fields) else {
        return "?".to_string();
    };
    let mut path = key.clone();
    if key == "TaskTemplate" {
        if let Some((inner, value)) = value.as_object().and_then(first_bad::<TaskSpec>) {
            path = format!("{path}.{inner}");
            if inner == "ContainerSpec" {
                if let Some((leaf, _)) = value.as_object().and_then(first_bad::<ContainerSpec>) {
                    path = format!("{path}.{leaf}");
                }
            }
        }
    }
    path
}

/// This engine's ID and swarm membership from `/info` (its `ID` and `Swarm` members).
pub(crate) fn engine_info(info: &models::SystemInfo) -> EngineInfo {
    let engine_id = info.id.clone().filter(|id| !id.is_empty());
    let Some(swarm) = info.swarm.as_ref() else {
        return EngineInfo {
            engine_id,
            ..EngineInfo::default()
        };
    };
    EngineInfo {
        api_version: None,
        swarm_state: same_name(swarm.local_node_state.as_ref()).unwrap_or_default(),
        node_id: swarm.node_id.clone().filter(|id| !id.is_empty()),
        control_available: swarm.control_available.unwrap_or(false),
        node_addr: swarm.node_addr.clone().unwrap_or_default(),
        engine_id,
    }
}

/// Converts an engine enum to shoal's by their common lower-case name.
fn same_name<T: Serialize, U: DeserializeOwned>(value: Option<&T>) -> Option<U> {
    value.and_then(|v| reshape(v).ok())
}

fn sorted(labels: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    labels
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Converts a node; `now` (seconds since the epoch) dates how long a node that is not ready
/// has been so, from the time its object last changed.
pub(crate) fn node_from_bollard(
    node: &models::Node,
    now: i64,
) -> Result<ObservedNode, EngineError> {
    let id = node
        .id
        .clone()
        .ok_or_else(|| EngineError::Other("the engine listed a node without an ID".into()))?;
    let spec = node.spec.clone().unwrap_or_default();
    let role: Role = same_name(spec.role.as_ref()).unwrap_or(if node.manager_status.is_some() {
        Role::Manager
    } else {
        Role::Worker
    });
    let state: NodeState = same_name(node.status.as_ref().and_then(|s| s.state.as_ref()))
        .unwrap_or(NodeState::Unknown);
    let down_for_seconds = if state == NodeState::Ready {
        None
    } else {
        node.updated_at
            .as_deref()
            .and_then(parse_rfc3339)
            .map(|since| u64::try_from(now.saturating_sub(since)).unwrap_or(0))
    };
    let manager = node.manager_status.as_ref();
    Ok(ObservedNode {
        id,
        machine: None,
        hostname: node
            .description
            .as_ref()
            .and_then(|d| d.hostname.clone())
            .unwrap_or_default(),
        role,
        availability: same_name(spec.availability.as_ref()).unwrap_or(Availability::Active),
        labels: sorted(spec.labels.as_ref()),
        state,
        leader: manager.and_then(|m| m.leader).unwrap_or(false),
        reachability: manager.and_then(|m| same_name::<_, Reachability>(m.reachability.as_ref())),
        version: node.version.as_ref().and_then(|v| v.index).unwrap_or(0),
        down_for_seconds,
    })
}

/// The full node spec to send: the node's current name, with the wanted role, availability and
/// labels (the API replaces the whole spec).
pub(crate) fn node_spec_to_bollard(
    name: Option<&str>,
    role: Role,
    availability: Availability,
    labels: &BTreeMap<String, String>,
) -> Result<models::NodeSpec, EngineError> {
    let value = json!({
        "Name": name,
        "Labels": labels,
        "Role": role,
        "Availability": availability,
    });
    serde_json::from_value(value).map_err(|e| EngineError::Other(format!("invalid node spec: {e}")))
}

/// The network create request for `spec`: its fields as they are, the subnets as IPAM
/// configs, and `overlay` when no driver is named (as `docker stack deploy` does).
pub(crate) fn network_request(
    spec: &NetworkSpec,
) -> Result<models::NetworkCreateRequest, EngineError> {
    let refuse = |e: serde_json::Error| {
        EngineError::Refused(format!("network {}: invalid spec: {e}", spec.name))
    };
    let mut value = serde_json::to_value(spec).map_err(refuse)?;
    if let Some(fields) = value.as_object_mut() {
        if fields.get("Driver").and_then(Value::as_str) == Some("") {
            fields.insert("Driver".into(), DEFAULT_NETWORK_DRIVER.into());
        }
        if let Some(Value::Array(subnets)) = fields.remove("Subnets") {
            let config: Vec<Value> = subnets
                .into_iter()
                .map(|s| json!({ "Subnet": s }))
                .collect();
            fields.insert("IPAM".into(), json!({ "Config": config }));
        }
    }
    serde_json::from_value(value).map_err(refuse)
}

/// A network as shoal observes it, when it is swarm-scoped: its name and the object.
pub(crate) fn swarm_network(network: &models::Network) -> Option<(String, ObservedObject)> {
    if network.scope.as_deref() != Some("swarm") {
        return None;
    }
    Some((
        network.name.clone()?,
        ObservedObject {
            id: network.id.clone()?,
            labels: sorted(network.labels.as_ref()),
            network: Some(network_settings(network)),
            content_sha256: None,
        },
    ))
}

/// The settings a network was created with, as the engine reports them.
fn network_settings(network: &models::Network) -> NetworkSettings {
    let subnets = network
        .ipam
        .as_ref()
        .and_then(|ipam| ipam.config.as_ref())
        .map(|configs| configs.iter().filter_map(|c| c.subnet.clone()).collect())
        .unwrap_or_default();
    NetworkSettings {
        driver: network.driver.clone().unwrap_or_default(),
        attachable: network.attachable.unwrap_or(false),
        internal: network.internal.unwrap_or(false),
        options: sorted(network.options.as_ref()),
        subnets,
    }
}

/// The ID → name map of networks, for reading service network targets.
pub(crate) fn network_names(networks: &[models::Network]) -> BTreeMap<String, String> {
    networks
        .iter()
        .filter_map(|n| Some((n.id.clone()?, n.name.clone()?)))
        .collect()
}

/// The network targets of the services (raw engine entries) that `names` does not name: the
/// IDs of networks the network list leaves out, such as the swarm's predefined `bridge` and
/// `host` networks.
pub(crate) fn unnamed_network_targets(
    entries: &[Value],
    names: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    entries
        .iter()
        .filter_map(|entry| entry.pointer("/Spec/TaskTemplate/Networks")?.as_array())
        .flatten()
        .filter_map(|n| n.get("Target")?.as_str())
        .filter(|target| !names.contains_key(*target) && !names.values().any(|n| n == target))
        .map(str::to_string)
        .collect()
}

/// A secret's spec: name, labels, and the data in base64.
pub(crate) fn secret_spec(object: &ObjectSpec) -> models::SecretSpec {
    models::SecretSpec {
        name: Some(object.name.clone()),
        labels: Some(object.labels.clone().into_iter().collect()),
        data: Some(base64::engine::general_purpose::STANDARD.encode(&object.data)),
        ..Default::default()
    }
}

/// A config's spec: name, labels, the data in base64, and its template driver (`Templating`).
pub(crate) fn config_spec(object: &ObjectSpec) -> models::ConfigSpec {
    models::ConfigSpec {
        name: Some(object.name.clone()),
        labels: Some(object.labels.clone().into_iter().collect()),
        data: Some(base64::engine::general_purpose::STANDARD.encode(&object.data)),
        templating: object.template_driver.as_ref().map(|name| models::Driver {
            name: name.clone(),
            options: None,
        }),
    }
}

fn named(
    id: Option<&String>,
    name: Option<&String>,
    labels: Option<&HashMap<String, String>>,
) -> Option<(String, ObservedObject)> {
    Some((
        name?.clone(),
        ObservedObject {
            id: id?.clone(),
            labels: sorted(labels),
            network: None,
            content_sha256: None,
        },
    ))
}

/// Secrets by name.
pub(crate) fn secrets_by_name(secrets: &[models::Secret]) -> BTreeMap<String, ObservedObject> {
    secrets
        .iter()
        .filter_map(|s| {
            let spec = s.spec.as_ref()?;
            named(s.id.as_ref(), spec.name.as_ref(), spec.labels.as_ref())
        })
        .collect()
}

/// Configs by name, each with the sha256 of its data (which the engine returns for configs),
/// so the planner can tell whether a config that `docker stack deploy` created holds the file's
/// content.
pub(crate) fn configs_by_name(configs: &[models::Config]) -> BTreeMap<String, ObservedObject> {
    configs
        .iter()
        .filter_map(|c| {
            let spec = c.spec.as_ref()?;
            let (name, mut object) =
                named(c.id.as_ref(), spec.name.as_ref(), spec.labels.as_ref())?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(spec.data.as_deref().unwrap_or_default());
            let template = spec.templating.as_ref().map(|t| t.name.as_str());
            object.content_sha256 = data.ok().map(|data| content_sha256(&data, template));
            Some((name, object))
        })
        .collect()
}

/// Parses an RFC 3339 timestamp as the daemon writes it (`2024-05-01T10:00:00.123456789Z`,
/// or with a `+hh:mm` offset) to seconds since the epoch; the fraction is dropped.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|timestamp| timestamp.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::observed::LocalSwarmState;
    use crate::model::spec::{
        ConfigReference, ContainerSpec, DnsConfig, Empty, EndpointSpec, FileTarget, HealthConfig,
        Limit, LogDriver, Mount, NetworkAttachment, Placement, PlacementPreference, PortConfig,
        ReplicatedJob, ReplicatedService, Reservation, Resources, RestartPolicy, SecretReference,
        ServiceMode, SpreadOver, TaskSpec, Ulimit, UpdateConfig, VolumeOptions,
    };

    /// A spec with every part shoal fills in, as the compose conversion makes it.
    fn realistic_spec() -> ServiceSpec {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        ServiceSpec {
            name: "dataapp_web".into(),
            labels: labels(&[
                ("com.docker.stack.image", "web:1"),
                ("com.docker.stack.namespace", "dataapp"),
                ("tier", "front"),
            ]),
            task_template: TaskSpec {
                container_spec: ContainerSpec {
                    image: "web:1".into(),
                    labels: labels(&[("com.docker.stack.namespace", "dataapp")]),
                    command: Some(vec!["/bin/web".into()]),
                    args: Some(vec!["--port".into(), "8080".into()]),
                    hostname: "web".into(),
                    env: vec!["A=1".into(), "B".into()],
                    dir: "/srv".into(),
                    user: "1000:1000".into(),
                    groups: vec!["audio".into()],
                    tty: true,
                    open_stdin: true,
                    read_only: true,
                    mounts: vec![
                        Mount {
                            kind: "volume".into(),
                            source: "dataapp_data".into(),
                            target: "/data".into(),
                            volume_options: Some(VolumeOptions {
                                labels: labels(&[("com.docker.stack.namespace", "dataapp")]),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        Mount {
                            kind: "tmpfs".into(),
                            target: "/tmp".into(),
                            ..Default::default()
                        },
                    ],
                    stop_signal: "SIGINT".into(),
                    stop_grace_period: Some(20_000_000_000),
                    healthcheck: Some(HealthConfig {
                        test: vec!["CMD-SHELL".into(), "wget -q -O- localhost:8080".into()],
                        interval: Some(10_000_000_000),
                        timeout: Some(3_000_000_000),
                        retries: Some(3),
                        start_period: Some(5_000_000_000),
                        start_interval: None,
                        ..Default::default()
                    }),
                    hosts: vec!["10.0.0.1 db".into()],
                    dns_config: Some(DnsConfig {
                        nameservers: vec!["1.1.1.1".into()],
                        ..Default::default()
                    }),
                    secrets: vec![SecretReference {
                        file: FileTarget {
                            name: "db_password".into(),
                            uid: "0".into(),
                            gid: "0".into(),
                            mode: 0o444,
                            ..Default::default()
                        },
                        secret_id: String::new(),
                        secret_name: "dataapp_db_password-0123abcd".into(),
                        ..Default::default()
                    }],
                    configs: vec![ConfigReference {
                        file: FileTarget {
                            name: "/etc/web.conf".into(),
                            uid: "0".into(),
                            gid: "0".into(),
                            mode: 0o444,
                            ..Default::default()
                        },
                        config_id: String::new(),
                        config_name: "dataapp_web_conf-89abcdef".into(),
                        ..Default::default()
                    }],
                    init: Some(true),
                    sysctls: labels(&[("net.core.somaxconn", "1024")]),
                    capability_add: vec!["NET_ADMIN".into()],
                    capability_drop: vec!["MKNOD".into()],
                    ulimits: vec![Ulimit {
                        name: "nofile".into(),
                        soft: 1024,
                        hard: 2048,
                        ..Default::default()
                    }],
                    oom_score_adj: -100,
                    ..Default::default()
                },
                resources: Some(Resources {
                    limits: Some(Limit {
                        nano_cpus: Some(500_000_000),
                        memory_bytes: Some(104_857_600),
                        pids: Some(100),
                        ..Default::default()
                    }),
                    reservations: Some(Reservation {
                        nano_cpus: Some(250_000_000),
                        memory_bytes: Some(52_428_800),
                        generic_resources: vec![json!({
                            "DiscreteResourceSpec": {"Kind": "gpu", "Value": 1}
                        })],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                restart_policy: Some(RestartPolicy {
                    condition: "on-failure".into(),
                    delay: Some(5_000_000_000),
                    max_attempts: Some(3),
                    window: Some(60_000_000_000),
                    ..Default::default()
                }),
                placement: Some(Placement {
                    constraints: vec!["node.role==worker".into()],
                    preferences: vec![PlacementPreference {
                        spread: SpreadOver {
                            spread_descriptor: "node.labels.zone".into(),
                            ..Default::default()
                        },
                        ..Default::default()
                    }],
                    max_replicas: Some(2),
                    ..Default::default()
                }),
                networks: vec![NetworkAttachment {
                    target: "dataapp_default".into(),
                    aliases: vec!["web".into()],
                    ..Default::default()
                }],
                log_driver: Some(LogDriver {
                    name: "json-file".into(),
                    options: labels(&[("max-size", "10m")]),
                    ..Default::default()
                }),
                force_update: 2,
                extra: Default::default(),
            },
            mode: Some(ServiceMode {
                replicated: Some(ReplicatedService {
                    replicas: Some(3),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_config: Some(UpdateConfig {
                parallelism: 1,
                delay: Some(10_000_000_000),
                failure_action: "rollback".into(),
                monitor: Some(5_000_000_000),
                max_failure_ratio: Some(0.5),
                order: "start-first".into(),
                ..Default::default()
            }),
            rollback_config: Some(UpdateConfig {
                parallelism: 2,
                failure_action: "pause".into(),
                order: "stop-first".into(),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: "vip".into(),
                ports: vec![PortConfig {
                    name: String::new(),
                    protocol: "tcp".into(),
                    target_port: 8080,
                    published_port: Some(80),
                    publish_mode: "ingress".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// bollard → JSON as bollard writes it → the daemon's spelling → shoal's spec.
    fn back_from_bollard(spec: &models::ServiceSpec) -> ServiceSpec {
        let mut value = serde_json::to_value(spec).unwrap();
        if let Some(container) = container_spec_mut(&mut value) {
            rename_key(container, HEALTHCHECK_BOLLARD, HEALTHCHECK_WIRE);
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_realistic_spec_survives_bollard() {
        let spec = realistic_spec();
        let sent = service_spec_to_bollard(&spec).unwrap();
        let container = sent
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .unwrap();
        assert!(
            container.health_check.is_some(),
            "the health check was dropped"
        );
        assert_eq!(back_from_bollard(&sent), spec);
    }

    #[test]
    fn global_and_job_modes_survive_bollard() {
        let modes = [
            (
                ServiceMode {
                    global: Some(Empty::default()),
                    ..Default::default()
                },
                json!({"Global": {}}),
            ),
            (
                ServiceMode {
                    replicated_job: Some(ReplicatedJob {
                        max_concurrent: Some(2),
                        total_completions: Some(4),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                json!({"ReplicatedJob": {"MaxConcurrent": 2, "TotalCompletions": 4}}),
            ),
            (
                ServiceMode {
                    global_job: Some(Empty::default()),
                    ..Default::default()
                },
                json!({"GlobalJob": {}}),
            ),
        ];
        for (mode, wire) in modes {
            let mut spec = realistic_spec();
            spec.mode = Some(mode);
            let sent = service_spec_to_bollard(&spec).unwrap();
            assert_eq!(serde_json::to_value(&sent).unwrap()["Mode"], wire);
            assert_eq!(back_from_bollard(&sent), spec);
        }
    }

    #[test]
    fn a_value_the_api_does_not_know_is_refused() {
        let mut spec = realistic_spec();
        spec.task_template
            .restart_policy
            .as_mut()
            .unwrap()
            .condition = "sometimes".into();
        assert!(matches!(
            service_spec_to_bollard(&spec),
            Err(EngineError::Refused(m)) if m.contains("dataapp_web")
        ));
    }

    #[test]
    fn references_are_resolved_by_name() {
        let mut spec = realistic_spec();
        spec.task_template.container_spec.secrets[0].secret_id = "stale".into();
        let secrets = BTreeMap::from([(
            "dataapp_db_password-0123abcd".to_string(),
            "sec1".to_string(),
        )]);
        let configs =
            BTreeMap::from([("dataapp_web_conf-89abcdef".to_string(), "cfg1".to_string())]);
        let resolved = resolve_references(&spec, &secrets, &configs).unwrap();
        let container = &resolved.task_template.container_spec;
        assert_eq!(container.secrets[0].secret_id, "sec1");
        assert_eq!(container.configs[0].config_id, "cfg1");
        let sent = serde_json::to_value(service_spec_to_bollard(&resolved).unwrap()).unwrap();
        assert_eq!(
            sent["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"],
            "sec1"
        );
        assert!(matches!(
            resolve_references(&spec, &BTreeMap::new(), &configs),
            Err(EngineError::NotFound(m)) if m.contains("dataapp_db_password-0123abcd")
        ));
    }

    /// `GET /services?status=true` on a 20.10 daemon (API 1.41) for a service made by
    /// `docker stack deploy`: defaults filled in, network IDs, `null` labels, extra fields.
    const SERVICE_FROM_20_10: &str = r#"{
      "ID": "q8m1c0y3k7tj2w9vx4bn5hd6e",
      "Version": {"Index": 1207},
      "CreatedAt": "2026-11-20T09:14:02.511270389Z",
      "UpdatedAt": "2026-11-20T09:20:45.030442613Z",
      "Spec": {
        "Name": "dataapp_web",
        "Labels": {"com.docker.stack.image": "web:1", "com.docker.stack.namespace": "dataapp"},
        "TaskTemplate": {
          "ContainerSpec": {
            "Image": "web:1",
            "Labels": {"com.docker.stack.namespace": "dataapp"},
            "Args": ["--port", "8080"],
            "Env": ["A=1", "B"],
            "Privileges": {"CredentialSpec": null, "SELinuxContext": null},
            "Mounts": [{"Type": "volume", "Source": "dataapp_data", "Target": "/data",
                        "VolumeOptions": {"Labels": {"com.docker.stack.namespace": "dataapp"}}}],
            "StopGracePeriod": 10000000000,
            "Healthcheck": {"Test": ["CMD-SHELL", "wget -q -O- localhost:8080"],
                            "Interval": 10000000000, "Timeout": 3000000000, "Retries": 3},
            "DNSConfig": {},
            "Secrets": [{"File": {"Name": "db_password", "UID": "0", "GID": "0", "Mode": 292},
                         "SecretID": "sec1", "SecretName": "dataapp_db_password-0123abcd"}],
            "Configs": [{"File": {"Name": "/etc/web.conf", "UID": "0", "GID": "0", "Mode": 292},
                         "ConfigID": "cfg1", "ConfigName": "dataapp_web_conf-89abcdef"},
                        {"Runtime": {}, "ConfigID": "cfg2", "ConfigName": "credspec"}],
            "Isolation": "default"
          },
          "Resources": {"Limits": {"MemoryBytes": 104857600}, "Reservations": {}},
          "RestartPolicy": {"Condition": "any", "Delay": 5000000000, "MaxAttempts": 0},
          "Placement": {"Constraints": ["node.role==worker"],
                        "Platforms": [{"Architecture": "amd64", "OS": "linux"}]},
          "Networks": [{"Target": "k2v9x0w7ap3r5m1q8z6c4n2b0", "Aliases": ["web"]},
                       {"Target": "unknownnetworkid"}],
          "LogDriver": {"Name": "json-file", "Options": null},
          "ForceUpdate": 0,
          "Runtime": "container"
        },
        "Mode": {"Replicated": {"Replicas": 3}},
        "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5000000000,
                         "MaxFailureRatio": 0, "Order": "stop-first"},
        "RollbackConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5000000000,
                           "MaxFailureRatio": 0, "Order": "stop-first"},
        "EndpointSpec": {"Mode": "vip",
                         "Ports": [{"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 80,
                                    "PublishMode": "ingress"}]}
      },
      "PreviousSpec": {"Name": "dataapp_web", "Labels": null,
                       "TaskTemplate": {"ContainerSpec": {"Image": "web:0"}}},
      "Endpoint": {
        "Spec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 8080,
                                           "PublishedPort": 80, "PublishMode": "ingress"}]},
        "Ports": [{"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 80,
                   "PublishMode": "ingress"}],
        "VirtualIPs": [{"NetworkID": "ingressid", "Addr": "10.200.0.5/24"},
                       {"NetworkID": "k2v9x0w7ap3r5m1q8z6c4n2b0", "Addr": "10.200.1.2/24"}]
      },
      "UpdateStatus": {"State": "completed", "StartedAt": "2026-11-20T09:20:10.1Z",
                       "CompletedAt": "2026-11-20T09:20:45.0Z",
                       "Message": "update completed"},
      "ServiceStatus": {"RunningTasks": 2, "DesiredTasks": 3, "CompletedTasks": 0}
    }"#;

    #[test]
    fn a_service_as_the_20_10_daemon_returns_it() {
        let names = BTreeMap::from([(
            "k2v9x0w7ap3r5m1q8z6c4n2b0".to_string(),
            "dataapp_default".to_string(),
        )]);
        let raw: Value = serde_json::from_str(SERVICE_FROM_20_10).unwrap();
        let observed = service_from_engine(raw, &names).unwrap();
        assert_eq!(observed.id, "q8m1c0y3k7tj2w9vx4bn5hd6e");
        assert_eq!(observed.version, 1207);
        assert_eq!((observed.running, observed.desired), (2, 3));
        let spec = &observed.spec;
        assert_eq!(spec.name, "dataapp_web");
        assert_eq!(spec.replicas(), Some(3));
        let task = &spec.task_template;
        assert_eq!(
            task.networks
                .iter()
                .map(|n| n.target.as_str())
                .collect::<Vec<_>>(),
            ["dataapp_default", "unknownnetworkid"]
        );
        let container = &task.container_spec;
        assert_eq!(
            container.healthcheck.as_ref().map(|h| h.retries),
            Some(Some(3))
        );
        assert_eq!(container.secrets[0].secret_id, "sec1");
        assert_eq!(container.configs.len(), 1);
        assert_eq!(
            container.configs[0].config_name,
            "dataapp_web_conf-89abcdef"
        );
        assert_eq!(container.isolation, "default");
        assert_eq!(container.stop_grace_period, Some(10_000_000_000));
        assert_eq!(
            task.log_driver.as_ref().map(|l| l.name.as_str()),
            Some("json-file")
        );
        assert_eq!(
            task.placement.as_ref().map(|p| p.constraints.clone()),
            Some(vec!["node.role==worker".to_string()])
        );
        let update = spec.update_config.as_ref().unwrap();
        assert_eq!(
            (update.parallelism, update.order.as_str()),
            (1, "stop-first")
        );
        let ports = &spec.endpoint_spec.as_ref().unwrap().ports;
        assert_eq!(
            (ports[0].target_port, ports[0].published_port),
            (8080, Some(80))
        );

        let resent = service_spec_to_bollard(spec).unwrap();
        assert_eq!(back_from_bollard(&resent), *spec);
    }

    #[test]
    fn null_labels_read_as_empty() {
        let raw = json!({
            "ID": "s1",
            "Version": {"Index": 5},
            "Spec": {"Name": "x_y", "Labels": null, "TaskTemplate": {"ContainerSpec": {"Image": "y"}}}
        });
        let observed = service_from_engine(raw, &BTreeMap::new()).unwrap();
        assert!(observed.spec.labels.is_empty());
        assert_eq!((observed.running, observed.desired), (0, 0));
    }

    #[test]
    fn swarm_membership_from_info() {
        let info = |json: Value| -> models::SystemInfo { serde_json::from_value(json).unwrap() };
        let inactive = info(
            json!({"Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                                             "ControlAvailable": false, "Error": "", "RemoteManagers": null}}),
        );
        assert_eq!(engine_info(&inactive), EngineInfo::default());
        let manager = info(json!({"Swarm": {
            "NodeID": "n1", "NodeAddr": "172.30.0.2", "LocalNodeState": "active",
            "ControlAvailable": true, "Error": "",
            "RemoteManagers": [{"NodeID": "n1", "Addr": "172.30.0.2:2377"}],
            "Nodes": 3, "Managers": 1,
            "Cluster": {"ID": "c1", "Version": {"Index": 10},
                        "CreatedAt": "2026-11-20T09:00:00Z", "UpdatedAt": "2026-11-20T09:00:01Z",
                        "Spec": {"Name": "default", "Labels": {},
                                 "Orchestration": {"TaskHistoryRetentionLimit": 5},
                                 "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0,
                                          "LogEntriesForSlowFollowers": 500, "ElectionTick": 10,
                                          "HeartbeatTick": 1},
                                 "Dispatcher": {"HeartbeatPeriod": 5_000_000_000_i64},
                                 "CAConfig": {"NodeCertExpiry": 7_776_000_000_000_000_i64},
                                 "TaskDefaults": {}, "EncryptionConfig": {"AutoLockManagers": false}},
                        "TLSInfo": {"TrustRoot": "-----BEGIN CERTIFICATE-----", "CertIssuerSubject": "MBMx",
                                    "CertIssuerPublicKey": "MFkw"},
                        "RootRotationInProgress": false, "DefaultAddrPool": ["10.200.0.0/16"],
                        "SubnetSize": 24, "DataPathPort": 4789}}}));
        assert_eq!(
            engine_info(&manager),
            EngineInfo {
                swarm_state: LocalSwarmState::Active,
                node_id: Some("n1".into()),
                control_available: true,
                node_addr: "172.30.0.2".into(),
                engine_id: None,
                api_version: None,
            }
        );
        let pending = info(json!({"Swarm": {"NodeID": "", "LocalNodeState": "pending"}}));
        assert_eq!(engine_info(&pending).swarm_state, LocalSwarmState::Pending);
        let odd = info(json!({"Swarm": {"LocalNodeState": ""}}));
        assert_eq!(engine_info(&odd).swarm_state, LocalSwarmState::Inactive);
        assert_eq!(engine_info(&info(json!({}))), EngineInfo::default());
        let identified = info(json!({"ID": "ABCD:EFGH", "Swarm": {"LocalNodeState": "inactive"}}));
        assert_eq!(
            engine_info(&identified).engine_id.as_deref(),
            Some("ABCD:EFGH")
        );
    }

    fn node(json: Value) -> models::Node {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn nodes_map_to_observed_nodes() {
        let manager = node(json!({
            "ID": "n1", "Version": {"Index": 40},
            "CreatedAt": "2026-11-20T09:00:00.000000001Z", "UpdatedAt": "2026-11-20T09:00:05Z",
            "Spec": {"Labels": {"zone": "a"}, "Role": "manager", "Availability": "active"},
            "Description": {"Hostname": "node-1", "Platform": {"Architecture": "x86_64", "OS": "linux"},
                            "Engine": {"EngineVersion": "20.10.24+dfsg1"}},
            "Status": {"State": "ready", "Addr": "172.30.0.2"},
            "ManagerStatus": {"Leader": true, "Reachability": "reachable", "Addr": "172.30.0.2:2377"}
        }));
        let now = parse_rfc3339("2026-11-20T10:00:05Z").unwrap();
        let observed = node_from_bollard(&manager, now).unwrap();
        assert_eq!(
            observed,
            ObservedNode {
                id: "n1".into(),
                machine: None,
                hostname: "node-1".into(),
                role: Role::Manager,
                availability: Availability::Active,
                labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
                state: NodeState::Ready,
                leader: true,
                reachability: Some(Reachability::Reachable),
                version: 40,
                down_for_seconds: None,
            }
        );

        let worker = node(json!({
            "ID": "n2", "Version": {"Index": 77},
            "UpdatedAt": "2026-11-20T09:58:35.5Z",
            "Spec": {"Role": "worker", "Availability": "drain"},
            "Description": {"Hostname": "node-2"},
            "Status": {"State": "down", "Message": "heartbeat failure"}
        }));
        let observed = node_from_bollard(&worker, now).unwrap();
        assert_eq!(observed.role, Role::Worker);
        assert_eq!(observed.availability, Availability::Drain);
        assert_eq!(observed.state, NodeState::Down);
        assert_eq!(observed.reachability, None);
        assert!(!observed.leader);
        assert_eq!(observed.down_for_seconds, Some(90));
    }

    #[test]
    fn node_updates_send_the_whole_spec() {
        let spec = node_spec_to_bollard(
            Some("kept"),
            Role::Worker,
            Availability::Drain,
            &BTreeMap::from([("zone".to_string(), "b".to_string())]),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"Name": "kept", "Labels": {"zone": "b"}, "Role": "worker", "Availability": "drain"})
        );
        let unnamed =
            node_spec_to_bollard(None, Role::Manager, Availability::Active, &BTreeMap::new())
                .unwrap();
        assert_eq!(
            serde_json::to_value(&unnamed).unwrap(),
            json!({"Labels": {}, "Role": "manager", "Availability": "active"})
        );
    }

    #[test]
    fn network_requests_carry_ipam_subnets() {
        let spec = NetworkSpec {
            name: "dataapp_back".into(),
            driver: "overlay".into(),
            labels: BTreeMap::from([(
                "com.docker.stack.namespace".to_string(),
                "dataapp".to_string(),
            )]),
            attachable: true,
            internal: true,
            options: BTreeMap::from([(
                "com.docker.network.driver.mtu".to_string(),
                "1400".to_string(),
            )]),
            subnets: vec!["10.201.0.0/24".into()],
        };
        let request = network_request(&spec).unwrap();
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "Name": "dataapp_back", "Driver": "overlay",
                "Labels": {"com.docker.stack.namespace": "dataapp"},
                "Attachable": true, "Internal": true,
                "Options": {"com.docker.network.driver.mtu": "1400"},
                "IPAM": {"Config": [{"Subnet": "10.201.0.0/24"}]}
            })
        );
        let plain = network_request(&NetworkSpec {
            name: "dataapp_default".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            json!({"Name": "dataapp_default", "Driver": "overlay"})
        );
    }

    #[test]
    fn only_swarm_networks_are_observed() {
        let networks: Vec<models::Network> = serde_json::from_value(json!([
            {"Name": "bridge", "Id": "b1", "Scope": "local", "Driver": "bridge", "Labels": {}},
            {"Name": "ingress", "Id": "i1", "Scope": "swarm", "Driver": "overlay", "Ingress": true,
             "Labels": null, "IPAM": {"Driver": "default", "Options": null,
             "Config": [{"Subnet": "10.200.0.0/24", "Gateway": "10.200.0.1"}]}},
            {"Name": "dataapp_default", "Id": "d1", "Scope": "swarm", "Driver": "overlay",
             "Labels": {"com.docker.stack.namespace": "dataapp"}, "Containers": null, "Peers": null}
        ]))
        .unwrap();
        let swarm: BTreeMap<_, _> = networks.iter().filter_map(swarm_network).collect();
        assert_eq!(
            swarm.keys().collect::<Vec<_>>(),
            ["dataapp_default", "ingress"]
        );
        assert_eq!(swarm["dataapp_default"].id, "d1");
        assert_eq!(
            swarm["dataapp_default"]
                .labels
                .get("com.docker.stack.namespace"),
            Some(&"dataapp".to_string())
        );
        assert_eq!(network_names(&networks)["d1"], "dataapp_default");
    }

    #[test]
    fn secret_data_is_base64() {
        let object = ObjectSpec {
            name: "dataapp_pw-0123abcd".into(),
            labels: BTreeMap::from([(
                "com.docker.stack.namespace".to_string(),
                "dataapp".to_string(),
            )]),
            sha256: "00".into(),
            version: "0123abcd".into(),
            source: "pw.txt".into(),
            data: b"hunter2\n".to_vec(),
            template_driver: None,
        };
        let spec = secret_spec(&object);
        assert_eq!(spec.data.as_deref(), Some("aHVudGVyMgo="));
        assert_eq!(spec.name.as_deref(), Some("dataapp_pw-0123abcd"));
        assert_eq!(config_spec(&object).data, spec.data);
        assert_eq!(config_spec(&object).templating, None);
    }

    #[test]
    fn a_templated_config_is_sent_with_its_driver_and_read_back_as_the_same_content() {
        let object = ObjectSpec {
            name: "dataapp_settings".into(),
            data: b"{{ .Service.Name }}".to_vec(),
            template_driver: Some("golang".into()),
            ..Default::default()
        };
        let sent = config_spec(&object);
        assert_eq!(
            serde_json::to_value(&sent.templating).unwrap(),
            json!({"Name": "golang"})
        );
        let stored = models::Config {
            id: Some("c1".into()),
            spec: Some(sent),
            ..Default::default()
        };
        let read = configs_by_name(&[stored]);
        assert_eq!(
            read["dataapp_settings"].content_sha256,
            Some(content_sha256(b"{{ .Service.Name }}", Some("golang"))),
            "the template driver is part of the content"
        );
    }

    #[test]
    fn objects_are_keyed_by_name() {
        let secrets: Vec<models::Secret> = serde_json::from_value(json!([
            {"ID": "s1", "Version": {"Index": 3}, "Spec": {"Name": "a", "Labels": {"k": "v"}}},
            {"ID": "s2", "Spec": {"Name": "b", "Labels": null}},
            {"ID": "s3"}
        ]))
        .unwrap();
        let by_name = secrets_by_name(&secrets);
        assert_eq!(by_name.len(), 2);
        assert_eq!(by_name["a"].id, "s1");
        assert_eq!(by_name["a"].labels["k"], "v");
        assert!(by_name["b"].labels.is_empty());
        let configs: Vec<models::Config> = serde_json::from_value(json!([
            {"ID": "c1", "Spec": {"Name": "conf", "Labels": {}, "Data": "eA=="}}
        ]))
        .unwrap();
        let conf = &configs_by_name(&configs)["conf"];
        assert_eq!(conf.id, "c1");
        assert_eq!(conf.content_sha256, Some(sha256_hex(b"x")));
        assert!(conf.labels.is_empty(), "no label is made up");
    }

    #[test]
    fn targets_the_network_list_does_not_name_are_asked_for() {
        let entries = vec![json!({"Spec": {"TaskTemplate": {"Networks": [
            {"Target": "ov1"}, {"Target": "0ayc1gj5ds6gpv4kz01hvbbyz"}, {"Target": "front"}
        ]}}})];
        let names = BTreeMap::from([
            ("ov1".to_string(), "app_default".to_string()),
            ("ov2".to_string(), "front".to_string()),
        ]);
        assert_eq!(
            unnamed_network_targets(&entries, &names),
            BTreeSet::from(["0ayc1gj5ds6gpv4kz01hvbbyz".to_string()])
        );
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            parse_rfc3339("2026-11-20T09:14:02.511270389Z"),
            Some(1_795_166_042)
        );
        assert_eq!(
            parse_rfc3339("2026-11-20T10:14:02+01:00"),
            parse_rfc3339("2026-11-20T09:14:02Z")
        );
        assert_eq!(
            parse_rfc3339("2026-11-20T08:44:02.5-00:30"),
            parse_rfc3339("2026-11-20T09:14:02Z")
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
    }
}
