//! Joins (DESIGN §3.1, §3.2): every desired machine not in the swarm joins through the
//! manager in use, managers one at a time (add managers before removing them), workers in
//! parallel. A machine in another swarm never gets here: the swarm-states rule refuses it.

use super::create_machines::MachineSteps;
use super::init_swarm::SwarmEntry;
use super::Ctx;
use crate::model::Role;
use crate::plan::model::{StepId, StepOp};
use crate::plan::quorum::Quorum;
use crate::plan::reason::Reason;

/// The joins this plan makes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Joins {
    /// Their steps, in plan order.
    pub(crate) steps: Vec<StepId>,
}

/// Joins the machines that are not members through `entry`'s manager, except those left
/// waiting; managers one at a time, counted in `quorum`.
pub(crate) fn join_machines(
    ctx: &mut Ctx,
    machines: &MachineSteps,
    entry: &SwarmEntry,
    quorum: &mut Quorum,
) -> Joins {
    let mut joins = Joins::default();
    let names: Vec<&str> = ctx.pairing.machines.keys().copied().collect();
    for name in names {
        let pair = &ctx.pairing.machines[name];
        let initializes = name == entry.via && entry.init.is_some();
        if machines.member(pair).is_some() || machines.waiting(name) || initializes {
            continue;
        }
        let role = pair.spec.role;
        let mut deps: Vec<_> = machines
            .created(name)
            .into_iter()
            .chain(entry.init)
            .collect();
        deps.extend(machines.before_join(name));
        if role == Role::Manager {
            deps.extend(quorum.chain());
            quorum.add(true);
        }
        let op = StepOp::JoinSwarm {
            role,
            via: entry.via.clone(),
            labels: pair.spec.labels.clone(),
        };
        let reason = Reason::NotInSwarm {
            machine: name.to_string(),
            role,
        };
        let id = ctx.push(op, name, deps, reason);
        if role == Role::Manager {
            quorum.chained(id);
        }
        joins.steps.push(id);
    }
    joins
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
