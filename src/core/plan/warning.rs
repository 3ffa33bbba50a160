//! Warnings for people: a closed enum, like [`super::Reason`], rendered to text by `Display`.
//!
//! In JSON a warning is `{"text": ..., "code": ..., FIELDS}`: a stable snake_case code per
//! variant, the fields it carries, and its text for people (`plan::wire`). A plan file written
//! before warnings were typed holds their text only: such a warning reads back as
//! [`Warning::Saved`], and is written again as that text; so does a warning whose code this
//! build does not know (from a later shoal).

use crate::model::spec::LABEL_ROTATE;
use crate::model::{DriverKind, NodeState};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A warning of the plan. In JSON its code is the variant's name in snake_case (`paused`,
/// `host_not_found`, ...), beside the fields it carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Warning {
    /// A warning about the files (machines.yml, the compose files), as reading them says it.
    Files {
        /// The loader's words (written once, as the warning's `text`).
        #[serde(skip_serializing)]
        text: String,
    },
    /// A warning from outside the planner: the driver's, or the registry's about an image.
    External {
        /// Its words (written once, as the warning's `text`).
        #[serde(skip_serializing)]
        text: String,
    },
    /// A service field the cluster's engines do not store is not sent.
    FieldNotSent {
        /// The compose key.
        field: String,
        /// The services that set it.
        services: Vec<String>,
        /// The API version the engines speak (empty when unknown).
        api: String,
        /// The API version that stores it.
        needs_api: String,
        /// The Docker release that stores it.
        docker: String,
    },
    /// A secret or config the CLI named exists and its content cannot be read back: it is
    /// used as it is.
    ObjectUnverified {
        /// `secret` or `config`.
        kind: String,
        /// Its swarm name.
        name: String,
        /// Its stack.
        stack: String,
        /// The file of its content.
        source: String,
        /// The compose file that defines it.
        file: String,
    },
    /// A secret carries a content version that is not keyed: it is kept.
    SecretUnkeyed {
        /// Its swarm name.
        name: String,
        /// Its stack.
        stack: String,
        /// The file of its content.
        source: String,
        /// The compose file that defines it.
        file: String,
    },
    /// The cluster is paused (`shoal pause`).
    Paused {
        /// Who paused it.
        by: String,
        /// Why (empty when not said).
        reason: String,
    },
    /// The swarm lost quorum while machines are stopped: the plan only starts machines.
    NoQuorumWhileStopped {
        /// The stopped machines.
        machines: Vec<String>,
    },
    /// No manager answers and machines cannot be read: the plan only brings machines back.
    NoManagerAnswers {
        /// The machines that cannot be read.
        machines: Vec<String>,
    },
    /// A host that does not answer is waited for: its driver never replaces hosts.
    HostWaited {
        /// The machine.
        machine: String,
        /// The driver.
        driver: DriverKind,
    },
    /// A machine is gone while self-heal is off.
    GoneWithoutSelfHeal {
        /// The machine.
        machine: String,
    },
    /// A machine's node is down though its engine answers: it is waited for.
    NodeDownEngineAnswers {
        /// The machine.
        machine: String,
        /// For how long its node has been down, in seconds.
        seconds: u64,
    },
    /// A machine is stopped while self-heal is off.
    StoppedWithoutSelfHeal {
        /// The machine.
        machine: String,
    },
    /// A machine's engine does not answer: it is waited for.
    Unreachable {
        /// The machine.
        machine: String,
    },
    /// A machine never fully set up is left as it is: self-heal is off.
    IncompleteWithoutSelfHeal {
        /// The machine.
        machine: String,
    },
    /// A machine with no record of a finished setup is kept: its node is ready.
    IncompleteNodeReady {
        /// The machine.
        machine: String,
    },
    /// A machine never fully set up whose node is down is waited for until the grace period
    /// ends.
    IncompleteWithinGrace {
        /// The machine.
        machine: String,
        /// For how long its node has been down, in seconds.
        seconds: u64,
        /// The grace period, in seconds.
        grace: u64,
    },
    /// A machine is not found and its driver does not create machines.
    HostNotFound {
        /// The machine.
        machine: String,
        /// The driver.
        driver: DriverKind,
    },
    /// A stack uses an external network that does not exist.
    ExternalNetworkMissing {
        /// The stack.
        stack: String,
        /// The network.
        network: String,
    },
    /// A stack uses an external secret or config that does not exist.
    ExternalObjectMissing {
        /// The stack.
        stack: String,
        /// `secret` or `config`.
        kind: String,
        /// The object.
        name: String,
    },
    /// A service publishes ports through the routing mesh where it cannot work.
    IngressWithoutMesh {
        /// The service.
        service: String,
        /// The published ports.
        ports: Vec<String>,
    },
    /// The spec of a service could not be read.
    UnreadableService {
        /// The service.
        service: String,
        /// Why.
        why: String,
        /// Whether a stack names it, so the file's spec replaces it (else it is left alone).
        replaced: bool,
    },
    /// Fields `docker stack deploy` drops are missing from a service: they wait for its next
    /// update.
    CliDroppedFields {
        /// The service.
        service: String,
        /// The compose keys and the file's values.
        fields: Vec<(String, String)>,
    },
    /// A stack dropped from machines.yml keeps its services: prune is off.
    StackKept {
        /// The stack.
        stack: String,
    },
    /// A ready node belongs to no machine of this cluster: it is left alone.
    NodeOfNoMachine {
        /// The node's hostname.
        hostname: String,
        /// The node's ID.
        id: String,
    },
    /// A node no machine claims may be the node of a machine that cannot be seen.
    NodeMayBeUnseen {
        /// The node's hostname.
        hostname: String,
        /// The node's ID.
        id: String,
        /// Its state.
        state: NodeState,
        /// The machines it may be, joined.
        machines: String,
    },
    /// machines.yml names no machine and the driver does not destroy hosts.
    HostsNotDestroyed {
        /// The driver.
        driver: DriverKind,
    },
    /// A warning read back from a plan file written before warnings were typed: its text
    /// only. Written as that text (a JSON string).
    #[serde(skip)]
    Saved {
        /// The text.
        text: String,
    },
}

impl Warning {
    /// A warning about the files, from the words reading them gave.
    pub fn files(text: impl Into<String>) -> Warning {
        Warning::Files { text: text.into() }
    }

    /// A warning from outside the planner (a driver, the registry), from its words.
    pub fn external(text: impl Into<String>) -> Warning {
        Warning::External { text: text.into() }
    }
}

/// A node state in words.
fn node_state_word(state: NodeState) -> &'static str {
    match state {
        NodeState::Ready => "ready",
        NodeState::Down => "down",
        NodeState::Disconnected => "disconnected",
        NodeState::Unknown => "in an unknown state",
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each variant is written by exactly one of these (the test below says so for all).
        cluster_text(self, f)
            .or_else(|| machine_text(self, f))
            .or_else(|| stack_text(self, f))
            .unwrap_or(Ok(()))
    }
}

/// The text of a warning about the files, the cluster as a whole, or from outside the planner;
/// `None` for the other warnings.
fn cluster_text(warning: &Warning, f: &mut fmt::Formatter<'_>) -> Option<fmt::Result> {
    Some(match warning {
            Warning::Files { text } | Warning::External { text } | Warning::Saved { text } => {
                f.write_str(text)
            }
            Warning::FieldNotSent {
                field,
                services,
                api,
                needs_api,
                docker,
            } => write!(
                f,
                "{field} of service(s) {} is not sent: the engines of this cluster (API {api}) do not store it (it needs API {needs_api}, Docker {docker} or later), so shoal leaves it out rather than update the service at every apply; upgrade the engines to use it",
                services.join(", ")
            ),
            Warning::ObjectUnverified {
                kind,
                name,
                stack,
                source,
                file,
            } => write!(
                f,
                "{kind} {name} of stack {stack} exists and was not created by shoal (docker stack deploy names it so): its content cannot be read back, so shoal uses it as it is, without checking that it matches {source}. To replace it with the file's content, add the label {LABEL_ROTATE}: \"true\" to the {kind} in {file}"
            ),
            Warning::SecretUnkeyed {
                name,
                stack,
                source,
                file,
            } => write!(
                f,
                "secret {name} of stack {stack} carries a content version that is not keyed (shoal wrote it before versions were keyed per cluster): whoever can list the swarm's secrets can test guesses of {source} against it. It is kept as it is, so no service restarts; its next content gets a keyed version. To re-version it now (its services restart), add the label {LABEL_ROTATE}: \"true\" to the secret in {file}"
            ),
            Warning::Paused { by, reason } => {
                let reason = if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                };
                write!(
                    f,
                    "the cluster is paused by {by}{reason}: apply writes nothing and the watcher only observes until `shoal resume` (or `shoal apply --ignore-pause`)"
                )
            }
            Warning::NoQuorumWhileStopped { machines } => write!(
                f,
                "the swarm has no quorum while {} {} stopped: this plan only starts machines; plan again once they answer",
                machines.join(", "),
                if machines.len() == 1 { "is" } else { "are" }
            ),
            Warning::NoManagerAnswers { machines } => write!(
                f,
                "no swarm manager answers and {} cannot be read: the swarm may live on them, so this plan only brings machines back; plan again once they answer",
                machines.join(", ")
            ),
            _ => return None,
    })
}

/// The text of a warning about a machine; `None` for the other warnings.
fn machine_text(warning: &Warning, f: &mut fmt::Formatter<'_>) -> Option<fmt::Result> {
    Some(match warning {
        Warning::HostWaited { machine, driver } => write!(
            f,
            "{machine} is down or does not answer; the {} driver never replaces hosts: it waits for it",
            driver.as_str()
        ),
        Warning::GoneWithoutSelfHeal { machine } => write!(
            f,
            "{machine} is gone (its node is still in the swarm) and self-heal is off: nothing is done for it; set policy.self_heal: true to create it again, or drop it from machines.yml"
        ),
        Warning::NodeDownEngineAnswers { machine, seconds } => write!(
            f,
            "the node of {machine} has been down for {seconds}s though its engine answers: shoal waits for it (a machine that runs is never replaced)"
        ),
        Warning::StoppedWithoutSelfHeal { machine } => write!(
            f,
            "{machine} is stopped and self-heal is off: it is left as it is"
        ),
        Warning::Unreachable { machine } => write!(
            f,
            "{machine} is unreachable (its engine does not answer): shoal waits for it and never replaces a machine that may still run; check the machine and its network"
        ),
        Warning::IncompleteWithoutSelfHeal { machine } => write!(
            f,
            "{machine} was never fully set up and self-heal is off: it is left as it is"
        ),
        Warning::IncompleteNodeReady { machine } => write!(
            f,
            "{machine} has no record of a finished setup but its node is ready: it is kept"
        ),
        Warning::IncompleteWithinGrace {
            machine,
            seconds,
            grace,
        } => write!(
            f,
            "{machine} was never fully set up and its node has been down for {seconds}s; self-heal replaces it after {grace}s"
        ),
        Warning::HostNotFound { machine, driver } => write!(
            f,
            "{machine} is not found: the {} driver does not create machines, so it is left out",
            driver.as_str()
        ),
        Warning::HostsNotDestroyed { driver } => write!(
            f,
            "machines.yml names no machine: the {} driver does not destroy hosts; `shoal destroy` makes them leave the swarm",
            driver.as_str()
        ),
        _ => return None,
    })
}

/// The text of a warning about a stack, a service or a node; `None` for the other warnings.
fn stack_text(warning: &Warning, f: &mut fmt::Formatter<'_>) -> Option<fmt::Result> {
    Some(match warning {
        Warning::ExternalNetworkMissing { stack, network } => write!(
            f,
            "stack {stack} uses external network {network}, which does not exist: create it (docker network create --driver overlay {network}) or its services will fail"
        ),
        Warning::ExternalObjectMissing { stack, kind, name } => write!(
            f,
            "stack {stack} uses external {kind} {name} (create it with `docker {kind} create {name} FILE`), which does not exist: the services using it will fail to deploy"
        ),
        Warning::IngressWithoutMesh { service, ports } => write!(
            f,
            "{service} publishes port {} through the ingress routing mesh, which cannot work on these machines (their kernel has no IPVS): the service runs but the port does not answer. Publish in host mode instead (ports: - {{target: ..., published: ..., mode: host}}) with deploy.endpoint_mode: dnsrr; `shoal doctor` tells more",
            ports.join(", ")
        ),
        Warning::UnreadableService {
            service,
            why,
            replaced: true,
        } => write!(
            f,
            "cannot read the spec of service {service} ({why}): shoal replaces it with the spec of the compose file, as docker stack deploy would"
        ),
        Warning::UnreadableService {
            service,
            why,
            replaced: false,
        } => write!(
            f,
            "cannot read the spec of service {service} ({why}); no stack of this repository names it, so shoal leaves it as it is"
        ),
        Warning::CliDroppedFields { service, fields } => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(key, value)| format!("{key}: {value}"))
                .collect();
            write!(
                f,
                "service {service} runs without {} (docker stack deploy drops these keys): shoal does not restart it for that alone; it is sent with the service's next update (see docs/compose.md)",
                fields.join(", ")
            )
        }
        Warning::StackKept { stack } => write!(
            f,
            "stack {stack} is no longer in machines.yml, and policy.prune is off: its services are kept, and remembered, so setting prune: true removes them"
        ),
        Warning::NodeOfNoMachine { hostname, id } => write!(
            f,
            "node {hostname} ({id}) belongs to no machine of this cluster; it is left alone"
        ),
        Warning::NodeMayBeUnseen {
            hostname,
            id,
            state,
            machines,
        } => write!(
            f,
            "node {hostname} ({id}) is {} and no machine claims it, but {machines} cannot be seen and may be it: it is left alone until every machine answers",
            node_state_word(*state)
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One warning of each kind.
    fn one_of_each() -> Vec<Warning> {
        let machine = || "w1".to_string();
        vec![
            Warning::files("warning: machines.yml:3: unknown key"),
            Warning::external("the image app:1 could not be resolved"),
            Warning::FieldNotSent {
                field: "oom_score_adj".into(),
                services: vec!["app_web".into()],
                api: "1.41".into(),
                needs_api: "1.46".into(),
                docker: "27.0".into(),
            },
            Warning::ObjectUnverified {
                kind: "secret".into(),
                name: "app_key".into(),
                stack: "app".into(),
                source: "key.txt".into(),
                file: "app.yml".into(),
            },
            Warning::SecretUnkeyed {
                name: "app_key-1".into(),
                stack: "app".into(),
                source: "key.txt".into(),
                file: "app.yml".into(),
            },
            Warning::Paused {
                by: "ana".into(),
                reason: String::new(),
            },
            Warning::NoQuorumWhileStopped {
                machines: vec![machine()],
            },
            Warning::NoManagerAnswers {
                machines: vec![machine()],
            },
            Warning::HostWaited {
                machine: machine(),
                driver: DriverKind::Generic,
            },
            Warning::GoneWithoutSelfHeal { machine: machine() },
            Warning::NodeDownEngineAnswers {
                machine: machine(),
                seconds: 5,
            },
            Warning::StoppedWithoutSelfHeal { machine: machine() },
            Warning::Unreachable { machine: machine() },
            Warning::IncompleteWithoutSelfHeal { machine: machine() },
            Warning::IncompleteNodeReady { machine: machine() },
            Warning::IncompleteWithinGrace {
                machine: machine(),
                seconds: 5,
                grace: 60,
            },
            Warning::HostNotFound {
                machine: machine(),
                driver: DriverKind::Generic,
            },
            Warning::ExternalNetworkMissing {
                stack: "app".into(),
                network: "shared".into(),
            },
            Warning::ExternalObjectMissing {
                stack: "app".into(),
                kind: "config".into(),
                name: "conf".into(),
            },
            Warning::IngressWithoutMesh {
                service: "app_web".into(),
                ports: vec!["80".into(), "443".into()],
            },
            Warning::UnreadableService {
                service: "app_web".into(),
                why: "bad".into(),
                replaced: true,
            },
            Warning::CliDroppedFields {
                service: "app_web".into(),
                fields: vec![("oom_score_adj".into(), "-500".into())],
            },
            Warning::StackKept {
                stack: "old".into(),
            },
            Warning::NodeOfNoMachine {
                hostname: "h".into(),
                id: "N1".into(),
            },
            Warning::NodeMayBeUnseen {
                hostname: "h".into(),
                id: "N1".into(),
                state: NodeState::Down,
                machines: "m3".into(),
            },
            Warning::HostsNotDestroyed {
                driver: DriverKind::Generic,
            },
            Warning::Saved {
                text: "an old warning".into(),
            },
        ]
    }

    /// The place of each variant in [`one_of_each`]: a variant added without a place fails to
    /// compile here, and one left out of the list fails the test below.
    fn place(warning: &Warning) -> usize {
        match warning {
            Warning::Files { .. } => 0,
            Warning::External { .. } => 1,
            Warning::FieldNotSent { .. } => 2,
            Warning::ObjectUnverified { .. } => 3,
            Warning::SecretUnkeyed { .. } => 4,
            Warning::Paused { .. } => 5,
            Warning::NoQuorumWhileStopped { .. } => 6,
            Warning::NoManagerAnswers { .. } => 7,
            Warning::HostWaited { .. } => 8,
            Warning::GoneWithoutSelfHeal { .. } => 9,
            Warning::NodeDownEngineAnswers { .. } => 10,
            Warning::StoppedWithoutSelfHeal { .. } => 11,
            Warning::Unreachable { .. } => 12,
            Warning::IncompleteWithoutSelfHeal { .. } => 13,
            Warning::IncompleteNodeReady { .. } => 14,
            Warning::IncompleteWithinGrace { .. } => 15,
            Warning::HostNotFound { .. } => 16,
            Warning::ExternalNetworkMissing { .. } => 17,
            Warning::ExternalObjectMissing { .. } => 18,
            Warning::IngressWithoutMesh { .. } => 19,
            Warning::UnreadableService { .. } => 20,
            Warning::CliDroppedFields { .. } => 21,
            Warning::StackKept { .. } => 22,
            Warning::NodeOfNoMachine { .. } => 23,
            Warning::NodeMayBeUnseen { .. } => 24,
            Warning::HostsNotDestroyed { .. } => 25,
            Warning::Saved { .. } => 26,
        }
    }

    #[test]
    fn every_warning_has_a_text() {
        let all = one_of_each();
        let places: Vec<usize> = all.iter().map(place).collect();
        assert_eq!(places, (0..all.len()).collect::<Vec<_>>());
        assert_eq!(all.len(), 27, "one warning of each kind");
        for warning in all {
            assert!(!warning.to_string().is_empty(), "{warning:?}");
        }
    }

    #[test]
    fn texts_read_as_before() {
        let texts: Vec<String> = one_of_each().iter().map(ToString::to_string).collect();
        assert_eq!(
            texts[5],
            "the cluster is paused by ana: apply writes nothing and the watcher only observes until `shoal resume` (or `shoal apply --ignore-pause`)"
        );
        assert_eq!(
            texts[6],
            "the swarm has no quorum while w1 is stopped: this plan only starts machines; plan again once they answer"
        );
        assert_eq!(
            texts[18],
            "stack app uses external config conf (create it with `docker config create conf FILE`), which does not exist: the services using it will fail to deploy"
        );
        assert_eq!(
            texts[24],
            "node h (N1) is down and no machine claims it, but m3 cannot be seen and may be it: it is left alone until every machine answers"
        );
    }

    #[test]
    fn a_warning_is_its_code_and_fields_and_a_text_variant_its_text() {
        let paused = serde_json::to_value(&one_of_each()[5]).unwrap();
        assert_eq!(
            paused,
            serde_json::json!({"code": "paused", "by": "ana", "reason": ""})
        );
        let files = serde_json::to_value(&one_of_each()[0]).unwrap();
        assert_eq!(files, serde_json::json!({"code": "files"}));
    }
}
