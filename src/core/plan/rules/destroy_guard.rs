//! Destroy-all guard (DESIGN §3.4): a plan that would remove every service of a stack, or
//! every machine, is refused unless --allow-destroy-all is given: an empty or broken file must
//! not wipe a cluster.

use super::Ctx;
use crate::plan::planner::PlanError;

/// Refuses to prune every service of a stack (`stacks`: the stack of each pruned service).
pub fn guard_stack_services(ctx: &Ctx, stacks: &[&str]) -> Result<(), PlanError> {
    if ctx.options.allow_destroy_all {
        return Ok(());
    }
    for stack in stacks {
        let emptied = ctx
            .desired
            .stacks
            .get(*stack)
            .is_none_or(|s| s.services.is_empty());
        if emptied {
            let total = stacks.iter().filter(|s| *s == stack).count();
            return Err(PlanError::DestroyAll {
                what: format!(
                    "remove all {total} service(s) of stack {stack}, which the files no longer define"
                ),
            });
        }
    }
    Ok(())
}

/// Refuses to destroy every machine when machines.yml names none.
pub fn guard_machines(ctx: &Ctx) -> Result<(), PlanError> {
    let removed = ctx
        .observed
        .machines
        .keys()
        .filter(|name| !ctx.desired.machines.contains_key(*name))
        .count();
    if removed > 0 && ctx.desired.machines.is_empty() && !ctx.options.allow_destroy_all {
        return Err(PlanError::DestroyAll {
            what: format!("destroy all {removed} machine(s)"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::model::{Desired, Observed, Role};
    use crate::plan::testing::{desired_with, running, service, with_stack};
    use crate::plan::{plan, PlanError, PlanOptions};

    #[test]
    fn emptying_a_stack_is_refused_unless_allowed() {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let mut observed = Observed::with_members_of(&desired);
        running(&mut observed, vec![service("app", "web", "nginx", 1)]);
        with_stack(&mut desired, "app", vec![]);
        let refused = plan(&desired, &observed, &PlanOptions::default());
        assert!(matches!(refused, Err(PlanError::DestroyAll { .. })));
        let allowed = PlanOptions {
            allow_destroy_all: true,
            ..PlanOptions::default()
        };
        assert_eq!(plan(&desired, &observed, &allowed).unwrap().steps.len(), 1);
    }

    #[test]
    fn destroying_every_machine_is_refused() {
        let observed = Observed::with_members_of(&desired_with(&[("m1", Role::Manager)]));
        let refused = plan(&Desired::default(), &observed, &PlanOptions::default());
        assert!(matches!(refused, Err(PlanError::DestroyAll { .. })));
    }
}
