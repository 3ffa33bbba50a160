//! Prune of labelled objects (DESIGN §3.4): with policy.prune on, services, networks, secrets
//! and configs carrying the label of a stack shoal manages, which the files no longer name, are
//! removed. Services go before new services are created (a renamed service can take over its
//! predecessor's ports); networks, secrets and configs go after every service step.

use super::destroy_guard::guard_stack_services;
use super::services::ServiceSteps;
use super::{Ctx, Membership};
use crate::model::{Desired, ObservedService};
use crate::plan::model::{StepId, StepOp};
use crate::plan::planner::PlanError;
use crate::plan::reason::Reason;
use crate::plan::warning::Warning;
use std::collections::BTreeSet;

/// The stacks shoal records as managed after an apply (the `io.shoal.stacks` swarm label): the
/// desired ones and, while prune is off, those `recorded` before that the files dropped, so
/// turning prune on later still removes their services.
pub fn stacks_to_remember(desired: &Desired, recorded: Option<&str>) -> String {
    let mut stacks: BTreeSet<&str> = desired.stacks.keys().map(String::as_str).collect();
    if !desired.policy.prune {
        stacks.extend(recorded.into_iter().flat_map(|list| list.split(',')));
    }
    stacks.remove("");
    stacks.into_iter().collect::<Vec<_>>().join(",")
}

/// The removals of services their stack no longer defines: new services wait for them (a
/// renamed service can take over its predecessor's ports).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ServicePrunes {
    /// Their steps, in plan order.
    pub(crate) steps: Vec<StepId>,
}

/// The removals of networks, secrets and configs no stack names any more.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ObjectPrunes {
    /// Their steps, in plan order.
    pub(crate) steps: Vec<StepId>,
}

/// Removes managed services that their stack no longer defines, after the `membership` steps;
/// with prune off, names the dropped stacks whose services are kept.
pub(crate) fn prune_services(
    ctx: &mut Ctx,
    membership: &Membership,
) -> Result<ServicePrunes, PlanError> {
    let mut prunes = ServicePrunes::default();
    if !ctx.desired.policy.prune {
        let kept: BTreeSet<String> = ctx
            .observed
            .services
            .values()
            .filter_map(|service| ctx.pairing.managed_stack(&service.spec.labels))
            .filter(|stack| !ctx.desired.stacks.contains_key(stack))
            .collect();
        for stack in kept {
            ctx.warnings.push(Warning::StackKept { stack });
        }
        return Ok(prunes);
    }
    let desired = ctx.desired;
    let dropped: Vec<(&String, &ObservedService, String)> = ctx
        .observed
        .services
        .iter()
        .filter_map(|(name, service)| {
            let stack = ctx.pairing.managed_stack(&service.spec.labels)?;
            let wanted = desired
                .stacks
                .get(&stack)
                .is_some_and(|s| s.services.contains_key(name));
            (!wanted).then_some((name, service, stack))
        })
        .collect();
    let stacks: Vec<&str> = dropped.iter().map(|(_, _, s)| s.as_str()).collect();
    guard_stack_services(ctx, &stacks)?;
    for (name, service, stack) in dropped {
        let op = StepOp::RemoveService {
            id: service.id.clone(),
        };
        let reason = Reason::ServiceDropped {
            stack,
            service: name.clone(),
        };
        let id = ctx.push(op, name, membership.steps.clone(), reason);
        prunes.steps.push(id);
    }
    Ok(prunes)
}

/// Removes managed networks, secrets and configs that no stack names any more, after every
/// service step.
pub(crate) fn prune_objects(ctx: &mut Ctx, services: &ServiceSteps) -> ObjectPrunes {
    let mut prunes = ObjectPrunes::default();
    if !ctx.desired.policy.prune {
        return prunes;
    }
    let (desired, observed) = (ctx.desired, ctx.observed);
    let stacks = || desired.stacks.values();
    let kinds = [
        (
            "network",
            &observed.networks,
            stacks()
                .flat_map(|s| s.networks.keys())
                .collect::<BTreeSet<_>>(),
        ),
        (
            "secret",
            &observed.secrets,
            stacks().flat_map(|s| s.secrets.keys()).collect(),
        ),
        (
            "config",
            &observed.configs,
            stacks().flat_map(|s| s.configs.keys()).collect(),
        ),
    ];
    for (kind, objects, wanted) in kinds {
        for (name, object) in objects {
            let Some(stack) = ctx.pairing.managed_stack(&object.labels) else {
                continue;
            };
            if wanted.contains(name) {
                continue;
            }
            let id = object.id.clone();
            let op = match kind {
                "network" => StepOp::RemoveNetwork { id },
                "secret" => StepOp::RemoveSecret { id },
                _ => StepOp::RemoveConfig { id },
            };
            let reason = Reason::ObjectDropped {
                stack,
                kind,
                name: name.clone(),
            };
            let id = ctx.push(op, name, services.steps.clone(), reason);
            prunes.steps.push(id);
        }
    }
    prunes
}

#[cfg(test)]
mod tests {
    use crate::model::{Observed, Role};
    use crate::plan::testing::{desired_with, running, service, steps, with_stack};
    use crate::plan::{plan, PlanOptions};

    #[test]
    fn a_dropped_service_is_removed_before_new_ones_are_created() {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let mut observed = Observed::with_members_of(&desired);
        running(&mut observed, vec![service("app", "old", "nginx", 1)]);
        with_stack(&mut desired, "app", vec![service("app", "new", "nginx", 1)]);
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            steps(&plan),
            ["remove_service app_old", "create_service app_new"]
        );
        assert!(plan.steps[1].depends_on.contains(&plan.steps[0].id));
    }

    #[test]
    fn prune_off_keeps_dropped_services() {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        desired.policy.prune = false;
        let mut observed = Observed::with_members_of(&desired);
        running(&mut observed, vec![service("app", "old", "nginx", 1)]);
        with_stack(&mut desired, "app", vec![service("app", "new", "nginx", 1)]);
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(steps(&plan), ["create_service app_new"]);
    }
}
