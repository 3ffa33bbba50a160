//! Roles (DESIGN §3.2): promote before demote; demote one at a time, unreachable managers
//! first and the leader last; never below a majority of reachable managers.

use super::create_machines::MachineSteps;
use super::Ctx;
use crate::model::{MachineSpec, NodeState, ObservedNode, Role};
use crate::plan::model::{StepId, StepOp};
use crate::plan::planner::PlanError;
use crate::plan::quorum::{leaving_order, Quorum};
use crate::plan::reason::Reason;

/// Promotes members machines.yml makes managers, then demotes those it makes workers, one at a
/// time in `quorum`'s chain; their steps.
pub(crate) fn change_roles(
    ctx: &mut Ctx,
    machines: &MachineSteps,
    quorum: &mut Quorum,
) -> Result<Vec<StepId>, PlanError> {
    let members: Vec<(&MachineSpec, &ObservedNode)> = ctx
        .pairing
        .machines
        .values()
        .filter_map(|p| machines.member(p).map(|n| (p.spec, n)))
        .collect();
    let mut changes = Vec::new();
    for (spec, node) in members
        .iter()
        .filter(|(s, n)| s.role == Role::Manager && n.role == Role::Worker)
    {
        quorum.add(node.state == NodeState::Ready);
        let op = StepOp::PromoteNode {
            node_id: node.id.clone(),
        };
        let reason = Reason::RoleChange {
            machine: spec.name.clone(),
            role: Role::Manager,
        };
        let id = ctx.push(op, &spec.name, quorum.chain(), reason);
        changes.push(quorum.chained(id));
    }
    let mut demotions: Vec<(&MachineSpec, &ObservedNode)> = members
        .iter()
        .filter(|(s, n)| s.role == Role::Worker && n.role == Role::Manager)
        .copied()
        .collect();
    demotions.sort_by_key(|(s, n)| leaving_order(Some(n), &s.name));
    for (spec, node) in demotions {
        quorum.demote(node, &spec.name)?;
        let op = StepOp::DemoteNode {
            node_id: node.id.clone(),
        };
        let reason = Reason::RoleChange {
            machine: spec.name.clone(),
            role: Role::Worker,
        };
        let id = ctx.push(op, &spec.name, quorum.chain(), reason);
        changes.push(quorum.chained(id));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use crate::model::{Observed, Role};
    use crate::plan::testing::{desired_with, steps};
    use crate::plan::{plan, PlanOptions};

    #[test]
    fn promote_before_demote_and_the_leader_last() {
        let before = desired_with(&[
            ("a", Role::Manager),
            ("b", Role::Manager),
            ("c", Role::Manager),
            ("d", Role::Worker),
        ]);
        let observed = Observed::with_members_of(&before);
        let after = desired_with(&[
            ("a", Role::Worker),
            ("b", Role::Worker),
            ("c", Role::Manager),
            ("d", Role::Manager),
        ]);
        let plan = plan(&after, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            steps(&plan),
            ["promote_node d", "demote_node b", "demote_node a"]
        );
        assert!(plan.steps[2].depends_on.contains(&plan.steps[1].id));
    }
}
