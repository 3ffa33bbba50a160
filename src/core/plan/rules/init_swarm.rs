//! Init the swarm (DESIGN §3.1, §3.6): when no manager of the cluster is in a swarm, the first
//! manager (one that exists before one being created, then by name) initializes it.

use super::create_machines::MachineSteps;
use super::Ctx;
use crate::model::{MachineState, ObservedNode, Role};
use crate::plan::model::{StepId, StepOp};
use crate::plan::quorum::Quorum;
use crate::plan::reason::Reason;

/// How this plan reaches the swarm: through which manager, and whether it initializes it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SwarmEntry {
    /// The manager machine the swarm is reached through (empty when there is none).
    pub(crate) via: String,
    /// The step that initializes the swarm on `via`, if this plan does.
    pub(crate) init: Option<StepId>,
}

/// Picks the manager to work through, and initializes the swarm on one when there is none
/// (it becomes the one manager of `quorum`).
pub(crate) fn init_swarm(
    ctx: &mut Ctx,
    machines: &MachineSteps,
    quorum: &mut Quorum,
) -> SwarmEntry {
    if let Some(leader) = current_manager(ctx) {
        return SwarmEntry {
            via: leader,
            init: None,
        };
    }
    let first = ctx
        .desired
        .machines_with_role(Role::Manager)
        .map(|m| m.name.as_str())
        .min_by_key(|name| (machines.created(name).is_some(), *name));
    let Some(name) = first else {
        return SwarmEntry::default();
    };
    let op = StepOp::InitSwarm {
        via: name.to_string(),
    };
    let reason = Reason::NoSwarm {
        machine: name.to_string(),
    };
    let id = ctx.push(op, "swarm", machines.created(name), reason);
    quorum.init(id);
    SwarmEntry {
        via: name.to_string(),
        init: Some(id),
    }
}

/// The machine of a reachable manager to work through: the leader when it is kept.
fn current_manager(ctx: &Ctx) -> Option<String> {
    let observed = ctx.observed;
    observed.swarm.as_ref()?;
    let running = |m: &str| {
        observed
            .machines
            .get(m)
            .is_some_and(|o| o.state == MachineState::Running)
    };
    let mut candidates: Vec<&ObservedNode> = observed
        .nodes
        .values()
        .filter(|n| n.is_reachable_manager())
        .filter(|n| n.machine.as_deref().is_some_and(running))
        .collect();
    candidates.sort_by_key(|n| {
        let kept = n
            .machine
            .as_deref()
            .is_some_and(|m| ctx.pairing.machines.contains_key(m));
        (!kept, !n.leader, n.machine.clone())
    });
    candidates.first().and_then(|n| n.machine.clone())
}

#[cfg(test)]
mod tests {
    use crate::model::{Observed, Role};
    use crate::plan::testing::{desired_with, steps};
    use crate::plan::{plan, PlanOptions, StepOp};

    #[test]
    fn an_empty_cluster_is_initialized_on_the_first_manager() {
        let desired = desired_with(&[("m2", Role::Manager), ("m1", Role::Manager)]);
        let plan = plan(&desired, &Observed::default(), &PlanOptions::default()).unwrap();
        assert_eq!(
            steps(&plan),
            [
                "create_machine m1",
                "create_machine m2",
                "init_swarm swarm",
                "join_swarm m2"
            ]
        );
        assert!(matches!(&plan.steps[2].op, StepOp::InitSwarm { via, .. } if via == "m1"));
    }
}
