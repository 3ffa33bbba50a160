//! Stack objects (DESIGN §3.1): networks, secrets and configs a stack uses and the swarm lacks
//! are created after the membership changes and before the services that use them. External
//! objects that do not exist are warned about.

use super::Ctx;
use crate::plan::model::StepOp;
use crate::plan::reason::Reason;
use std::collections::BTreeSet;

/// Creates the stacks' missing networks, secrets and configs.
pub fn create_stack_objects(ctx: &mut Ctx) {
    let (desired, observed) = (ctx.desired, ctx.observed);
    for stack in desired.stacks.values() {
        for (name, network) in &stack.networks {
            if observed.networks.contains_key(name) {
                continue;
            }
            let op = StepOp::CreateNetwork {
                network: network.clone(),
            };
            let reason = Reason::NetworkMissing {
                stack: stack.name.clone(),
                network: name.clone(),
            };
            let deps = ctx.membership.clone();
            let id = ctx.push(op, name, deps, reason);
            ctx.object_steps.insert(format!("network:{name}"), id);
            ctx.stack_steps.push(id);
        }
        let secrets = stack.secrets.iter().map(|(n, o)| ("secret", n, o));
        let configs = stack.configs.iter().map(|(n, o)| ("config", n, o));
        for (kind, name, object) in secrets.chain(configs) {
            let existing = match kind {
                "secret" => &observed.secrets,
                _ => &observed.configs,
            };
            if existing.contains_key(name) {
                continue;
            }
            let op = match kind {
                "secret" => StepOp::CreateSecret {
                    object: object.clone(),
                },
                _ => StepOp::CreateConfig {
                    object: object.clone(),
                },
            };
            let reason = Reason::ObjectMissing {
                kind,
                source: object.source.clone(),
            };
            let deps = ctx.membership.clone();
            let id = ctx.push(op, name, deps, reason);
            ctx.object_steps.insert(format!("{kind}:{name}"), id);
            ctx.stack_steps.push(id);
        }
    }
}

/// Warns about external networks, secrets and configs that do not exist.
pub fn warn_missing_external(ctx: &mut Ctx) {
    let (desired, observed) = (ctx.desired, ctx.observed);
    let known: BTreeSet<&str> = observed
        .networks
        .keys()
        .chain(desired.stacks.values().flat_map(|s| s.networks.keys()))
        .map(String::as_str)
        .collect();
    for stack in desired.stacks.values() {
        for external in &stack.external_networks {
            if !known.contains(external.as_str()) {
                ctx.warnings.push(format!(
                    "stack {} uses external network {external}, which does not exist: create it (docker network create --driver overlay {external}) or its services will fail",
                    stack.name
                ));
            }
        }
    }
    for stack in desired.stacks.values() {
        let mut missing: BTreeSet<String> = BTreeSet::new();
        for spec in stack.services.values() {
            let container = &spec.task_template.container_spec;
            for name in container.secrets.iter().map(|s| &s.secret_name) {
                if !stack.secrets.contains_key(name) && !observed.secrets.contains_key(name) {
                    missing.insert(format!(
                        "secret {name} (create it with `docker secret create {name} FILE`)"
                    ));
                }
            }
            for name in container.configs.iter().map(|c| &c.config_name) {
                if !stack.configs.contains_key(name) && !observed.configs.contains_key(name) {
                    missing.insert(format!(
                        "config {name} (create it with `docker config create {name} FILE`)"
                    ));
                }
            }
        }
        for what in missing {
            ctx.warnings.push(format!(
                "stack {} uses external {what}, which does not exist: the services using it will fail to deploy",
                stack.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{NetworkSpec, Observed, Role};
    use crate::plan::testing::{desired_with, service, steps, with_stack};
    use crate::plan::{plan, PlanOptions};

    #[test]
    fn networks_are_created_before_the_services_that_use_them() {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let observed = Observed::with_members_of(&desired);
        with_stack(&mut desired, "app", vec![service("app", "web", "nginx", 1)]);
        let stack = desired.stacks.get_mut("app").unwrap();
        stack.networks.insert(
            "app_default".into(),
            NetworkSpec {
                name: "app_default".into(),
                ..NetworkSpec::default()
            },
        );
        stack.external_networks.push("shared".into());
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            steps(&plan),
            ["create_network app_default", "create_service app_web"]
        );
        assert!(plan.warnings[0].contains("external network shared"));
    }
}
