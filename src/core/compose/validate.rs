//! Checks across services and stacks that the engine would make on the second write: a
//! published port given twice or to two services, two secrets or configs mounted at one path.
//!
//! The rules are swarmkit's (`controlapi/service.go`: `validateEndpointSpec`,
//! `checkPortConflicts`, `validateSecretRefsSpec`, `validateConfigRefsSpec`), written once here
//! as predicates over [`ServiceSpec`]s: [`check`] turns them into located diagnostics for
//! `validate`, the planner uses [`port_conflict`] against the observed services, and the sim
//! driver refuses the same specs with the engine's texts.

use crate::diag::Diagnostic;
use crate::model::spec::ServiceSpec;
use crate::model::Stack;
use crate::yaml::{self, Node, Pos, Value};
use std::collections::BTreeMap;

/// Most replicas one service may ask for: far beyond what a swarm runs, small enough that a
/// typo (`replicas: 10000000000`) is refused rather than scheduled.
pub const MAX_REPLICAS: u64 = 100_000;

/// A published port as swarm keys it: the port number and its protocol.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublishedPort {
    /// The published (outside) port.
    pub port: u32,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Whether it is published in `host` mode (not through the routing mesh).
    pub host_mode: bool,
}

impl std::fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// The ports `spec` publishes (published port set), in spec order.
pub fn published_ports(spec: &ServiceSpec) -> Vec<PublishedPort> {
    let Some(endpoint) = &spec.endpoint_spec else {
        return Vec::new();
    };
    endpoint
        .ports
        .iter()
        .filter_map(|p| {
            let port = p.published_port.filter(|&port| port > 0)?;
            let protocol = if p.protocol.is_empty() {
                "tcp".to_string()
            } else {
                p.protocol.clone()
            };
            Some(PublishedPort {
                port,
                protocol,
                host_mode: p.publish_mode == "host",
            })
        })
        .collect()
}

/// The first port `spec` publishes twice (same number and protocol), if any.
pub fn duplicate_port(spec: &ServiceSpec) -> Option<PublishedPort> {
    let ports = published_ports(spec);
    ports.iter().enumerate().find_map(|(i, p)| {
        ports[..i]
            .iter()
            .any(|q| q.port == p.port && q.protocol == p.protocol)
            .then(|| p.clone())
    })
}

/// The first port of `new` that the already existing service `existing` holds, as swarm
/// refuses it: any overlap but two `host`-mode ports (which the scheduler keeps apart).
/// Returns the port of `existing` (its mode decides the engine's wording).
pub fn port_conflict(new: &ServiceSpec, existing: &ServiceSpec) -> Option<PublishedPort> {
    let held = published_ports(existing);
    published_ports(new).into_iter().find_map(|p| {
        held.iter()
            .find(|q| q.port == p.port && q.protocol == p.protocol && !(p.host_mode && q.host_mode))
            .cloned()
    })
}

/// Two references of one service mounted at the same path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetClash {
    /// `secret` or `config`.
    pub kind: &'static str,
    /// The swarm name of the first reference.
    pub first: String,
    /// The swarm name of the second reference.
    pub second: String,
    /// The path both are mounted at.
    pub target: String,
}

/// The first secret, then config, of `spec` mounted where an earlier one of its kind is.
pub fn duplicate_target(spec: &ServiceSpec) -> Option<TargetClash> {
    let container = &spec.task_template.container_spec;
    let secrets = container
        .secrets
        .iter()
        .map(|s| (s.secret_name.as_str(), s.file.name.as_str()));
    let configs = container
        .configs
        .iter()
        .map(|c| (c.config_name.as_str(), c.file.name.as_str()));
    first_clash("secret", secrets).or_else(|| first_clash("config", configs))
}

fn first_clash<'a>(
    kind: &'static str,
    refs: impl Iterator<Item = (&'a str, &'a str)>,
) -> Option<TargetClash> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, target) in refs {
        if let Some(first) = seen.insert(target, name) {
            return Some(TargetClash {
                kind,
                first: first.to_string(),
                second: name.to_string(),
                target: target.to_string(),
            });
        }
    }
    None
}

/// The stacks' services checked within and across stacks. `stacks` holds each stack with
/// its compose file's bytes, which locate the problems (parsed again only when there is one).
pub fn check(stacks: &[(&Stack, &[u8])]) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut holders: Vec<(&Stack, &[u8], &ServiceSpec)> = Vec::new();
    for &(stack, bytes) in stacks {
        for spec in stack.services.values() {
            let key = service_key(stack, spec);
            if let Some(replicas) = spec.replicas().filter(|&r| r > MAX_REPLICAS) {
                let pos = locate(bytes, key, "deploy", "");
                diags.push(
                    error_at(
                        &stack.file,
                        pos,
                        format!("service `{key}` asks for {replicas} replicas; shoal allows at most {MAX_REPLICAS}"),
                    )
                    .with_help("lower `deploy.replicas`"),
                );
            }
            if let Some(port) = duplicate_port(spec) {
                let pos = locate(bytes, key, "ports", &port.port.to_string());
                diags.push(
                    error_at(
                        &stack.file,
                        pos,
                        format!("service `{key}` publishes port {port} twice"),
                    )
                    .with_help("remove one of the entries, or publish it on another port"),
                );
            }
            if let Some(clash) = duplicate_target(spec) {
                let section = format!("{}s", clash.kind);
                let pos = locate(bytes, key, &section, "");
                diags.push(
                    error_at(
                        &stack.file,
                        pos,
                        format!(
                            "service `{key}` mounts {kind}s `{}` and `{}` at the same path `{}`",
                            short(stack, &clash.first),
                            short(stack, &clash.second),
                            clash.target,
                            kind = clash.kind,
                        ),
                    )
                    .with_help(format!(
                        "give one of them a different `target:` under `{section}`"
                    )),
                );
            }
            for &(other_stack, _, other) in &holders {
                let Some(port) = port_conflict(spec, other) else {
                    continue;
                };
                let pos = locate(bytes, key, "ports", &port.port.to_string());
                let other_key = service_key(other_stack, other);
                let other_at = if other_stack.name == stack.name {
                    format!("service `{other_key}`")
                } else {
                    format!(
                        "service `{other_key}` of stack `{}` ({})",
                        other_stack.name, other_stack.file
                    )
                };
                diags.push(
                    error_at(
                        &stack.file,
                        pos,
                        format!("service `{key}` publishes port {port}, which {other_at} publishes too"),
                    )
                    .with_help("publish one of them on another port: swarm gives each published port to one service (two services may share it only both in `mode: host`)"),
                );
            }
            holders.push((stack, bytes, spec));
        }
    }
    diags
}

/// Services that publish `port` over tcp, the port of the dind cluster's own registry: inside
/// every node that port is forwarded to the registry, and a service published there would
/// take the nodes' pulls (the routing mesh's rules come first).
pub fn registry_port_taken(stacks: &[(&Stack, &[u8])], port: u16) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for &(stack, bytes) in stacks {
        for spec in stack.services.values() {
            let clash = published_ports(spec)
                .into_iter()
                .any(|p| p.port == u32::from(port) && p.protocol == "tcp");
            if !clash {
                continue;
            }
            let key = service_key(stack, spec);
            diags.push(
                error_at(
                    &stack.file,
                    locate(bytes, key, "ports", &port.to_string()),
                    format!("service `{key}` publishes port {port}, the port of the cluster's own registry (driver_options.registry): nodes pull their images through it"),
                )
                .with_help("publish the service on another port, or give the registry another one (`registry: {port: 5001}`)"),
            );
        }
    }
    diags
}

fn error_at(file: &str, pos: Pos, message: String) -> Diagnostic {
    Diagnostic::error(file, pos.line, pos.column, message)
}

/// The compose key of a service (`web` of `app_web`).
fn service_key<'a>(stack: &Stack, spec: &'a ServiceSpec) -> &'a str {
    spec.name
        .strip_prefix(&format!("{}_", stack.name))
        .unwrap_or(&spec.name)
}

/// An object's name without the stack prefix (`db_password-1a2b3c4d` of `app_db_password-…`).
fn short<'a>(stack: &Stack, name: &'a str) -> &'a str {
    name.strip_prefix(&format!("{}_", stack.name))
        .unwrap_or(name)
}

/// Where `services.<service>.<section>` is in the compose file: the first item that mentions
/// `needle` (or the section itself when none does, or `needle` is empty), else the service.
fn locate(bytes: &[u8], service: &str, section: &str, needle: &str) -> Pos {
    let start = Pos { line: 1, column: 1 };
    let Ok(parsed) = yaml::parse(bytes) else {
        return start;
    };
    let Some(services) = parsed.root.as_ref().and_then(|r| r.get("services")) else {
        return start;
    };
    let Some(entry) = services
        .entries()
        .and_then(|entries| entries.iter().find(|e| e.key == service))
    else {
        return services.pos;
    };
    let Some(list) = entry.value.get(section) else {
        return entry.key_pos;
    };
    if let (Value::Seq(items), false) = (&list.value, needle.is_empty()) {
        if let Some(item) = items.iter().find(|item| mentions(item, needle)) {
            return item.pos;
        }
    }
    list.pos
}

fn mentions(node: &Node, needle: &str) -> bool {
    match &node.value {
        Value::Scalar(s) => s
            .text
            .split(|c: char| !c.is_ascii_digit())
            .any(|part| part == needle),
        Value::Map(entries) => entries.iter().any(|e| mentions(&e.value, needle)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::{EndpointSpec, PortConfig};

    fn publishing(name: &str, ports: &[(u32, &str)]) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            endpoint_spec: Some(EndpointSpec {
                mode: String::new(),
                ports: ports
                    .iter()
                    .map(|&(port, mode)| PortConfig {
                        protocol: "tcp".into(),
                        target_port: 80,
                        published_port: Some(port),
                        publish_mode: mode.into(),
                        ..PortConfig::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..ServiceSpec::default()
        }
    }

    #[test]
    fn ports_conflict_as_swarm_says() {
        let a = publishing("a", &[(8080, "ingress")]);
        let b = publishing("b", &[(8080, "host")]);
        let c = publishing("c", &[(8080, "host")]);
        assert!(port_conflict(&a, &b).is_some());
        assert!(port_conflict(&b, &a).is_some());
        assert!(port_conflict(&b, &c).is_none());
        assert!(duplicate_port(&publishing("d", &[(1, ""), (2, ""), (1, "")])).is_some());
        assert!(duplicate_port(&a).is_none());
    }

    #[test]
    fn problems_are_located_at_the_item() {
        let text = b"services:\n  web:\n    image: x\n    ports:\n      - \"80:80\"\n      - target: 81\n        published: 8080\n";
        let pos = locate(text, "web", "ports", "8080");
        assert_eq!(pos.line, 6);
        let pos = locate(text, "web", "ports", "80");
        assert_eq!(pos.line, 5);
    }
}
