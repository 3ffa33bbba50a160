//! The engine's refusals of a service spec, modelled on swarmkit's control API with the sim's own
//! code (never the validator's: the planner's refusals in `compose::validate` are checked against
//! these, so the two must not share a line): duplicate published ports in one spec, a port
//! another service holds, and two secrets or configs mounted at one path.

use crate::model::spec::ServiceSpec;
use std::collections::HashMap;

/// Most replicas the sim holds per service.
pub(super) const MAX_REPLICAS: u64 = 100_000;

/// How one published port is keyed by the engine: number and protocol (tcp when unset).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PortKey {
    port: u32,
    protocol: String,
}

/// A published port of a spec: its key and whether it bypasses the routing mesh.
#[derive(Clone, Debug)]
struct Published {
    key: PortKey,
    host_mode: bool,
}

/// The published ports of `spec`: ports without a published number publish nothing.
fn published(spec: &ServiceSpec) -> Vec<Published> {
    let ports = spec.endpoint_spec.iter().flat_map(|e| &e.ports);
    ports
        .filter_map(|p| {
            let port = p.published_port.filter(|&n| n != 0)?;
            let protocol = match p.protocol.as_str() {
                "" => "tcp".to_string(),
                other => other.to_string(),
            };
            Some(Published {
                key: PortKey { port, protocol },
                host_mode: p.publish_mode == "host",
            })
        })
        .collect()
}

/// Whether `spec` publishes one port number and protocol twice (the engine's
/// `EndpointSpec: duplicate published ports provided`).
pub(super) fn has_duplicate_published_port(spec: &ServiceSpec) -> bool {
    let mut seen = std::collections::HashSet::new();
    published(spec).into_iter().any(|p| !seen.insert(p.key))
}

/// A port of another service that `spec` would take: its number and whether the other service
/// publishes it in host mode (which decides the engine's wording).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HeldPort {
    /// The published port number.
    pub port: u32,
    /// Whether the holder publishes it in host mode.
    pub host_mode: bool,
}

/// The first port of `other` that `spec` cannot have: host mode may share with host mode
/// (the scheduler keeps such tasks on different nodes); every other pairing conflicts.
pub(super) fn port_held_by(spec: &ServiceSpec, other: &ServiceSpec) -> Option<HeldPort> {
    let wanted: HashMap<PortKey, bool> = published(spec)
        .into_iter()
        .map(|p| (p.key, p.host_mode))
        .collect();
    published(other).into_iter().find_map(|held| {
        let wanted_host_mode = *wanted.get(&held.key)?;
        (!(wanted_host_mode && held.host_mode)).then_some(HeldPort {
            port: held.key.port,
            host_mode: held.host_mode,
        })
    })
}

/// Two references of one kind mounted at one path: the engine's
/// `<kind> references '<a>' and '<b>' have a conflicting target: '<path>'`.
pub(super) fn conflicting_target(spec: &ServiceSpec) -> Option<String> {
    let container = &spec.task_template.container_spec;
    let secrets = container
        .secrets
        .iter()
        .map(|s| (s.secret_name.as_str(), s.file.name.as_str()));
    let configs = container
        .configs
        .iter()
        .map(|c| (c.config_name.as_str(), c.file.name.as_str()));
    same_target("secret", secrets).or_else(|| same_target("config", configs))
}

fn same_target<'a>(
    kind: &str,
    references: impl Iterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let mut by_target: HashMap<&str, &str> = HashMap::new();
    for (name, target) in references {
        if let Some(earlier) = by_target.get(target) {
            return Some(format!(
                "{kind} references '{earlier}' and '{name}' have a conflicting target: '{target}'"
            ));
        }
        by_target.insert(target, name);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::{EndpointSpec, PortConfig};

    fn publishing(ports: &[(u32, &str, &str)]) -> ServiceSpec {
        ServiceSpec {
            endpoint_spec: Some(EndpointSpec {
                ports: ports
                    .iter()
                    .map(|&(port, protocol, mode)| PortConfig {
                        published_port: Some(port),
                        protocol: protocol.into(),
                        publish_mode: mode.into(),
                        ..PortConfig::default()
                    })
                    .collect(),
                ..EndpointSpec::default()
            }),
            ..ServiceSpec::default()
        }
    }

    #[test]
    fn a_port_published_twice_with_one_protocol_is_a_duplicate() {
        assert!(has_duplicate_published_port(&publishing(&[
            (80, "", "ingress"),
            (80, "tcp", "host")
        ])));
        assert!(!has_duplicate_published_port(&publishing(&[
            (80, "tcp", ""),
            (80, "udp", "")
        ])));
        assert!(!has_duplicate_published_port(&publishing(&[
            (0, "tcp", ""),
            (0, "tcp", "")
        ])));
    }

    #[test]
    fn host_mode_ports_may_be_shared_and_every_other_pairing_conflicts() {
        let host = publishing(&[(80, "tcp", "host")]);
        let ingress = publishing(&[(80, "tcp", "ingress")]);
        assert_eq!(port_held_by(&host, &host), None);
        assert_eq!(
            port_held_by(&ingress, &host),
            Some(HeldPort {
                port: 80,
                host_mode: true
            })
        );
        assert_eq!(
            port_held_by(&host, &ingress),
            Some(HeldPort {
                port: 80,
                host_mode: false
            })
        );
        assert_eq!(
            port_held_by(&publishing(&[(80, "udp", "")]), &ingress),
            None
        );
    }

    #[test]
    fn two_secrets_at_one_path_conflict() {
        use crate::model::spec::{FileTarget, SecretReference};
        let mut spec = ServiceSpec::default();
        for name in ["a", "b"] {
            spec.task_template
                .container_spec
                .secrets
                .push(SecretReference {
                    secret_name: name.into(),
                    file: FileTarget {
                        name: "token".into(),
                        ..FileTarget::default()
                    },
                    ..SecretReference::default()
                });
        }
        assert_eq!(
            conflicting_target(&spec).as_deref(),
            Some("secret references 'a' and 'b' have a conflicting target: 'token'")
        );
    }
}
