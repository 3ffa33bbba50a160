//! Joins (DESIGN §3.1, §3.2): every desired machine not in the swarm joins through the
//! manager in use, managers one at a time (add managers before removing them), workers in
//! parallel. A machine in another swarm never gets here: the swarm-states rule refuses it.

use super::Ctx;
use crate::model::Role;
use crate::plan::model::StepOp;
use crate::plan::reason::Reason;

/// Joins the machines that are not members, except those left waiting.
pub fn join_machines(ctx: &mut Ctx) {
    let names: Vec<&str> = ctx.pairing.machines.keys().copied().collect();
    for name in names {
        let pair = &ctx.pairing.machines[name];
        if pair.member.is_some() || pair.waiting || (name == ctx.via && ctx.init.is_some()) {
            continue;
        }
        let role = pair.spec.role;
        let mut deps: Vec<_> = pair.created.into_iter().chain(ctx.init).collect();
        deps.extend(&pair.before_join);
        if role == Role::Manager {
            deps.extend(ctx.quorum.chain());
            ctx.quorum.add(true);
        }
        let op = StepOp::JoinSwarm {
            role,
            via: ctx.via.clone(),
            labels: pair.spec.labels.clone(),
        };
        let reason = Reason::NotInSwarm {
            machine: name.to_string(),
            role,
        };
        let id = ctx.push(op, name, deps, reason);
        if role == Role::Manager {
            ctx.quorum.chained(id);
        }
        ctx.membership.push(id);
        ctx.joined_any = true;
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Observed, Role};
    use crate::plan::testing::{desired_with, steps};
    use crate::plan::{plan, PlanOptions, StepId};

    #[test]
    fn managers_join_one_at_a_time_and_workers_in_parallel() {
        let desired = desired_with(&[
            ("m1", Role::Manager),
            ("m2", Role::Manager),
            ("m3", Role::Manager),
            ("w1", Role::Worker),
        ]);
        let observed = Observed::with_members_of(&desired_with(&[("m1", Role::Manager)]));
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        let joins: Vec<_> = plan
            .steps
            .iter()
            .filter(|s| s.action().as_str() == "join_swarm")
            .collect();
        assert_eq!(joins.len(), 3, "{:?}", steps(&plan));
        let m3 = joins.iter().find(|s| s.target == "m3").unwrap();
        let m2 = joins.iter().find(|s| s.target == "m2").unwrap();
        let w1 = joins.iter().find(|s| s.target == "w1").unwrap();
        assert!(m3.depends_on.contains(&m2.id));
        assert!(!w1.depends_on.iter().any(|d| *d == m2.id || *d == m3.id));
        assert!(w1.depends_on.iter().all(|d| *d < StepId(w1.id.0)));
    }
}
