//! Create machines (DESIGN §3.1): each machine machines.yml names that does not exist and is
//! not already being replaced is created, all in parallel, right after the replacements.
//! Drivers of existing hosts (`generic`) create nothing: a missing host is reported.

use super::Ctx;
use crate::plan::model::StepOp;
use crate::plan::reason::Reason;

/// Creates the desired machines that never existed.
pub fn create_missing_machines(ctx: &mut Ctx) {
    let (desired, observed) = (ctx.desired, ctx.observed);
    let missing: Vec<&str> = ctx
        .pairing
        .machines
        .iter()
        .filter(|(name, p)| p.created.is_none() && !observed.machines.contains_key(**name))
        .map(|(name, _)| *name)
        .collect();
    if !desired.driver.manages_machines() {
        for name in missing {
            ctx.warnings.push(format!(
                "{name} is not found: the {} driver does not create machines, so it is left out",
                desired.driver.as_str()
            ));
        }
        return;
    }
    // A machine self-heal leaves alone (gone with self-heal off) is not created either.
    let missing = missing
        .into_iter()
        .filter(|name| !ctx.pairing.machines[name].waiting);
    for name in missing.collect::<Vec<_>>() {
        let spec = ctx.pairing.machines[name].spec;
        let role = spec.role;
        let wanted = desired.machines_with_role(role).count();
        let existing = desired
            .machines_with_role(role)
            .filter(|m| observed.machines.contains_key(&m.name))
            .count();
        let op = StepOp::CreateMachine {
            role,
            labels: spec.labels.clone(),
        };
        let reason = Reason::MissingMachines {
            role,
            wanted,
            existing,
        };
        let id = ctx.push(op, name, [], reason);
        ctx.pairing.machines.get_mut(name).expect("paired").created = Some(id);
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{DriverKind, Observed, Role};
    use crate::plan::testing::{desired_with, steps};
    use crate::plan::{plan, PlanOptions};

    #[test]
    fn missing_workers_are_created_and_joined() {
        let desired = desired_with(&[("m1", Role::Manager)]);
        let observed = Observed::with_members_of(&desired);
        let desired = {
            let mut more = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
            more.policy = desired.policy.clone();
            more
        };
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(steps(&plan), ["create_machine w1", "join_swarm w1"]);
        assert_eq!(
            plan.steps[0].reason.to_string(),
            "machines.yml wants 1 worker(s), 0 exist"
        );
    }

    #[test]
    fn generic_hosts_are_never_created() {
        let mut desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        desired.driver = DriverKind::Generic;
        let observed = Observed::with_members_of(&desired_with(&[("m1", Role::Manager)]));
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert!(
            steps(&plan)
                .iter()
                .all(|s| !s.starts_with("create_machine")),
            "{:?}",
            steps(&plan)
        );
        assert!(plan.warnings.iter().any(|w| w.contains("w1 is not found")));
    }
}
