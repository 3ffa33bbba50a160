//! Replacement of networks, secrets and configs whose settings changed (DESIGN §3): swarm
//! cannot update a network's driver, options, `attachable`, `internal`, IPAM or labels, nor a
//! secret's or config's labels through any action shoal has, so a stack object that exists
//! under its name with other settings than the compose file's is removed and created again
//! (`-/+`), before the services that use it. When a service uses it, swarm refuses to remove
//! it: the plan is refused, naming the object, what changed and the way out.
//!
//! Only what shoal sets is compared, with the engine's own additions left out: the driver
//! defaults to `overlay`, the overlay's VXLAN ID option is the engine's, subnets are compared
//! only when the file names some (otherwise swarm allocates them), and the content version
//! label of secrets and configs is shoal's bookkeeping, not a setting.

use super::stack_objects::ObjectSteps;
use super::{Ctx, Membership};
use crate::compose::convert::DEFAULT_NETWORK_DRIVER;
use crate::model::content_key::{LABEL_CONTENT_VERSION, LABEL_LEGACY_SHA256};
use crate::model::{NetworkSpec, ObjectSpec, Observed, ObservedObject, Stack};
use crate::plan::model::StepOp;
use crate::plan::planner::PlanError;
use crate::plan::reason::Reason;
use std::collections::{BTreeMap, BTreeSet};

/// The option the overlay driver adds to every network it creates.
const VXLAN_ID_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// The compose keys of `wanted` whose values differ from the network `found`; empty when its
/// settings were not observed.
pub fn network_changes(wanted: &NetworkSpec, found: &ObservedObject) -> Vec<&'static str> {
    let Some(settings) = &found.network else {
        return Vec::new();
    };
    let driver = |d: &str| {
        if d.is_empty() {
            DEFAULT_NETWORK_DRIVER.to_string()
        } else {
            d.to_string()
        }
    };
    let mut options = settings.options.clone();
    if !wanted.options.contains_key(VXLAN_ID_OPTION) {
        options.remove(VXLAN_ID_OPTION);
    }
    let subnets = |s: &[String]| s.iter().cloned().collect::<BTreeSet<_>>();
    let mut changes = Vec::new();
    if driver(&wanted.driver) != driver(&settings.driver) {
        changes.push("driver");
    }
    if wanted.attachable != settings.attachable {
        changes.push("attachable");
    }
    if wanted.internal != settings.internal {
        changes.push("internal");
    }
    if wanted.options != options {
        changes.push("driver_opts");
    }
    if !wanted.subnets.is_empty() && subnets(&wanted.subnets) != subnets(&settings.subnets) {
        changes.push("ipam");
    }
    if wanted.labels != found.labels {
        changes.push("labels");
    }
    changes
}

/// `["labels"]` when the labels of secret or config `wanted` differ from those of `found`,
/// the content version aside.
pub fn label_changes(wanted: &ObjectSpec, found: &ObservedObject) -> Vec<&'static str> {
    let settable = |labels: &BTreeMap<String, String>| {
        let mut labels = labels.clone();
        labels.remove(LABEL_CONTENT_VERSION);
        labels.remove(LABEL_LEGACY_SHA256);
        labels
    };
    if settable(&wanted.labels) == settable(&found.labels) {
        Vec::new()
    } else {
        vec!["labels"]
    }
}

/// The services (by name) whose observed specs use the `kind` object `name` (ID `id`).
fn users(observed: &Observed, kind: &str, name: &str, id: &str) -> Vec<String> {
    let is_it = |n: &str| n == name || n == id;
    observed
        .services
        .iter()
        .filter(|(_, service)| {
            let task = &service.spec.task_template;
            let container = &task.container_spec;
            match kind {
                "network" => task.networks.iter().any(|n| is_it(&n.target)),
                "secret" => container
                    .secrets
                    .iter()
                    .any(|s| is_it(&s.secret_name) || is_it(&s.secret_id)),
                _ => container
                    .configs
                    .iter()
                    .any(|c| is_it(&c.config_name) || is_it(&c.config_id)),
            }
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// A stack object as the file wants it: its kind, its step to create it, and what changed.
struct Changed<'a> {
    kind: &'static str,
    name: &'a str,
    found: &'a ObservedObject,
    changes: Vec<&'static str>,
    create: StepOp,
}

/// The objects of `stack` that exist with other settings than the file's.
fn changed_objects<'a>(stack: &'a Stack, observed: &'a Observed) -> Vec<Changed<'a>> {
    let mut changed = Vec::new();
    for (name, network) in &stack.networks {
        if let Some(found) = observed.networks.get(name) {
            changed.push(Changed {
                kind: "network",
                name,
                found,
                changes: network_changes(network, found),
                create: StepOp::CreateNetwork {
                    network: network.clone(),
                },
            });
        }
    }
    let secrets = stack.secrets.iter().map(|(n, o)| ("secret", n, o));
    let configs = stack.configs.iter().map(|(n, o)| ("config", n, o));
    for (kind, name, object) in secrets.chain(configs) {
        let existing = match kind {
            "secret" => &observed.secrets,
            _ => &observed.configs,
        };
        if let Some(found) = existing.get(name) {
            let create = match kind {
                "secret" => StepOp::CreateSecret {
                    object: object.clone(),
                },
                _ => StepOp::CreateConfig {
                    object: object.clone(),
                },
            };
            changed.push(Changed {
                kind,
                name,
                found,
                changes: label_changes(object, found),
                create,
            });
        }
    }
    changed.retain(|c| !c.changes.is_empty());
    changed
}

/// What to do when a changed object of `kind` is in use, for people.
pub(crate) fn way_out(kind: &str) -> &'static str {
    match kind {
        "network" => "remove the services using it first (take them out of the compose file and apply, then add them back), or give the network a new name in the compose file (its `name:` or its key) so that a new network is created and the services move to it",
        "secret" => "give the secret a new name in the compose file (its `name:` or its key) so that a new secret is created with these labels, the services move to it and the old one is pruned; or remove the services using it first",
        _ => "give the config a new name in the compose file (its `name:` or its key) so that a new config is created with these labels, the services move to it and the old one is pruned; or remove the services using it first",
    }
}

/// Removes and creates again each stack object whose settings changed and that no service
/// uses, after the `membership` steps; refuses the plan when a service uses one.
pub(crate) fn replace_changed_objects(
    ctx: &mut Ctx,
    membership: &Membership,
) -> Result<ObjectSteps, PlanError> {
    let (desired, observed) = (ctx.desired, ctx.observed);
    let mut replaced = ObjectSteps::default();
    for stack in desired.stacks.values() {
        for changed in changed_objects(stack, observed) {
            let Changed {
                kind,
                name,
                found,
                changes,
                create,
            } = changed;
            let services = users(observed, kind, name, &found.id);
            let changes: Vec<String> = changes.into_iter().map(String::from).collect();
            if !services.is_empty() {
                return Err(PlanError::ObjectInUse {
                    kind,
                    name: name.to_string(),
                    file: stack.file.clone(),
                    changes: changes.join(", "),
                    services: services.join(", "),
                });
            }
            let id = found.id.clone();
            let remove = match kind {
                "network" => StepOp::RemoveNetwork { id },
                "secret" => StepOp::RemoveSecret { id },
                _ => StepOp::RemoveConfig { id },
            };
            let reason = |removed: bool| Reason::ObjectChanged {
                kind,
                name: name.to_string(),
                changes: changes.clone(),
                removed,
            };
            let removed = ctx.push(remove, name, membership.steps.clone(), reason(true));
            replaced.steps.push(removed);
            let created = ctx.push(create, name, [removed], reason(false));
            replaced.record_creation(kind, name, created);
        }
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::NetworkAttachment;
    use crate::model::{NetworkSettings, Role, LABEL_STACK_NAMESPACE};
    use crate::plan::testing::{desired_with, running, service, steps, with_stack};
    use crate::plan::{plan, PlanOptions};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `app_front` as the file wants it: attachable, with the stack label.
    fn wanted() -> NetworkSpec {
        NetworkSpec {
            name: "app_front".into(),
            driver: "overlay".into(),
            labels: labels(&[(LABEL_STACK_NAMESPACE, "app")]),
            attachable: true,
            ..NetworkSpec::default()
        }
    }

    /// `app_front` as an engine reports it after creating [`wanted`] (VXLAN ID, subnet).
    fn found() -> ObservedObject {
        ObservedObject {
            id: "net1".into(),
            labels: labels(&[(LABEL_STACK_NAMESPACE, "app")]),
            content_sha256: None,
            network: Some(NetworkSettings {
                driver: "overlay".into(),
                attachable: true,
                internal: false,
                options: labels(&[(VXLAN_ID_OPTION, "4097")]),
                subnets: vec!["10.0.1.0/24".into()],
            }),
        }
    }

    #[test]
    fn engine_defaults_are_no_change() {
        assert!(network_changes(&wanted(), &found()).is_empty());
        let mut no_driver = wanted();
        no_driver.driver.clear();
        assert!(network_changes(&no_driver, &found()).is_empty());
        let unobserved = ObservedObject {
            network: None,
            ..found()
        };
        let mut other = wanted();
        other.internal = true;
        assert!(network_changes(&other, &unobserved).is_empty());
    }

    #[test]
    fn each_setting_is_compared() {
        let mut other = wanted();
        other.attachable = false;
        other.internal = true;
        other.options.insert("encrypted".into(), "".into());
        other.subnets = vec!["10.9.0.0/24".into()];
        other.labels.insert("purpose".into(), "front".into());
        other.driver = "weave".into();
        assert_eq!(
            network_changes(&other, &found()),
            [
                "driver",
                "attachable",
                "internal",
                "driver_opts",
                "ipam",
                "labels"
            ]
        );
        let mut same_subnet = wanted();
        same_subnet.subnets = vec!["10.0.1.0/24".into()];
        assert!(network_changes(&same_subnet, &found()).is_empty());
    }

    #[test]
    fn the_content_version_label_is_not_a_setting() {
        let mut object = ObjectSpec {
            name: "app_db".into(),
            labels: labels(&[
                (LABEL_STACK_NAMESPACE, "app"),
                (LABEL_CONTENT_VERSION, "ab"),
            ]),
            ..ObjectSpec::default()
        };
        let found = ObservedObject {
            id: "s1".into(),
            labels: labels(&[(LABEL_STACK_NAMESPACE, "app")]),
            network: None,
            content_sha256: None,
        };
        assert!(label_changes(&object, &found).is_empty());
        object.labels.insert("team".into(), "db".into());
        assert_eq!(label_changes(&object, &found), ["labels"]);
    }

    fn desired_and_observed() -> (crate::model::Desired, Observed) {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let mut observed = Observed::with_members_of(&desired);
        let mut web = service("app", "web", "nginx", 1);
        web.task_template.networks.push(NetworkAttachment {
            target: "app_front".into(),
            aliases: vec!["web".into()],
            ..Default::default()
        });
        with_stack(&mut desired, "app", vec![web]);
        let stack = desired.stacks.get_mut("app").unwrap();
        stack.file = "docker-compose.yml".into();
        stack.networks.insert("app_front".into(), wanted());
        observed.networks.insert("app_front".into(), found());
        (desired, observed)
    }

    #[test]
    fn an_unused_changed_network_is_replaced_before_its_services() {
        let (mut desired, observed) = desired_and_observed();
        let network = desired
            .stacks
            .get_mut("app")
            .unwrap()
            .networks
            .get_mut("app_front");
        network.unwrap().attachable = false;
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            steps(&plan),
            [
                "remove_network app_front",
                "create_network app_front",
                "create_service app_web"
            ]
        );
        assert!(plan.steps[..2].iter().all(|s| s.reason.replaces()));
        assert!(plan.steps[0].reason.to_string().contains("attachable"));
        assert!(plan.steps[2].depends_on.contains(&plan.steps[1].id));
    }

    #[test]
    fn a_changed_network_in_use_is_refused_with_the_way_out() {
        let (mut desired, mut observed) = desired_and_observed();
        let web = desired.stacks["app"].services["app_web"].clone();
        running(&mut observed, vec![web]);
        let network = desired
            .stacks
            .get_mut("app")
            .unwrap()
            .networks
            .get_mut("app_front");
        network
            .unwrap()
            .options
            .insert("encrypted".into(), "".into());
        let error = plan(&desired, &observed, &PlanOptions::default()).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("network app_front"), "{text}");
        assert!(text.contains("driver_opts"), "{text}");
        assert!(text.contains("app_web"), "{text}");
        assert!(text.contains("new name"), "{text}");
    }

    #[test]
    fn an_unchanged_network_in_use_plans_nothing() {
        let (desired, mut observed) = desired_and_observed();
        let web = desired.stacks["app"].services["app_web"].clone();
        running(&mut observed, vec![web]);
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(steps(&plan), Vec::<String>::new());
    }
}
