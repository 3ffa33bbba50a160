//! Machine removal (DESIGN §3.1–3.3): a machine machines.yml no longer names, or a down node of
//! no machine of this cluster, leaves after every stack step: drain before remove (its tasks
//! move first), demote before remove (one at a time, unreachable managers first, the leader
//! last, never the last manager), remove the node, then destroy the machine. Tearing the whole
//! cluster down (allowed by the destroy guard) destroys the machines only, workers first.
//! Existing hosts (`generic`) are never destroyed: a dropped host is drained, demoted, leaves
//! and its node is removed once down, never forced while it is ready.

use super::prune::ObjectPrunes;
use super::services::ServiceSteps;
use super::stack_objects::ObjectSteps;
use super::{Ctx, Membership};
use crate::model::{Availability, MachineState, NodeState, Role};
use crate::plan::model::{StepId, StepOp};
use crate::plan::pairing::Leaving;
use crate::plan::planner::PlanError;
use crate::plan::quorum::{leaving_order, Quorum};
use crate::plan::reason::{LeaveStage, Reason};
use crate::plan::warning::Warning;

/// Takes out the machines and nodes that leave the cluster, after every membership, stack
/// object and service step; managers one at a time in `quorum`'s chain.
pub(crate) fn remove_machines(
    ctx: &mut Ctx,
    quorum: &mut Quorum,
    membership: &Membership,
    objects: &ObjectSteps,
    services: &ServiceSteps,
    object_prunes: &ObjectPrunes,
) -> Result<(), PlanError> {
    let mut leaving = ctx
        .pairing
        .leaving(ctx.desired, ctx.observed, &mut ctx.warnings);
    leaving.sort_by_key(|l| leaving_order(l.node, &l.target));
    let after_stacks: Vec<StepId> = (membership.steps.iter())
        .chain(&objects.steps)
        .chain(&object_prunes.steps)
        .chain(&services.steps)
        .copied()
        .collect();
    if ctx.desired.machines.is_empty() {
        if ctx.desired.driver.manages_machines() {
            tear_down(ctx, &leaving, &after_stacks);
        } else if !leaving.is_empty() {
            ctx.warnings.push(Warning::HostsNotDestroyed {
                driver: ctx.desired.driver,
            });
        }
        return Ok(());
    }
    for leave in &leaving {
        remove_one(ctx, quorum, leave, &after_stacks)?;
    }
    Ok(())
}

/// Destroys every machine, workers first and managers after them.
fn tear_down(ctx: &mut Ctx, leaving: &[Leaving], after_stacks: &[StepId]) {
    let mut destroyed_workers: Vec<StepId> = Vec::new();
    for leave in leaving {
        let Some(machine) = leave.machine else {
            continue;
        };
        let manager = leave
            .node
            .map_or(machine.created_role == Some(Role::Manager), |n| {
                n.role == Role::Manager
            });
        let mut deps = after_stacks.to_vec();
        if manager {
            deps.extend(&destroyed_workers);
        }
        let id = ctx.push(
            StepOp::DestroyMachine {},
            &leave.target,
            deps,
            Reason::TearDown,
        );
        if !manager {
            destroyed_workers.push(id);
        }
    }
}

/// Drain before remove, demote before remove, remove the node, destroy the machine.
fn remove_one(
    ctx: &mut Ctx,
    quorum: &mut Quorum,
    leave: &Leaving,
    after_stacks: &[StepId],
) -> Result<(), PlanError> {
    let name = leave.target.as_str();
    let reason = |stage| Reason::Leaving {
        target: name.to_string(),
        orphan: leave.machine.is_none(),
        stage,
    };
    let after = |last: Option<StepId>| after_stacks.iter().copied().chain(last);
    let mut last = None;
    if let Some(node) = leave.node {
        let up = node.state == NodeState::Ready
            && leave
                .machine
                .is_some_and(|m| m.state == MachineState::Running);
        if up && node.availability != Availability::Drain {
            let op = StepOp::DrainNode {
                node_id: node.id.clone(),
            };
            last = Some(ctx.push(op, name, after(None), reason(LeaveStage::Drain)));
        }
        if node.role == Role::Manager {
            quorum.remove(node, name)?;
            let op = StepOp::DemoteNode {
                node_id: node.id.clone(),
            };
            let deps: Vec<StepId> = after(last).chain(quorum.chain()).collect();
            let id = ctx.push(op, name, deps, reason(LeaveStage::Demote));
            last = Some(quorum.chained(id));
        }
        // An existing host's node that is still ready leaves first; it is never forced out.
        let ready_host = !ctx.desired.driver.manages_machines() && node.state == NodeState::Ready;
        let op = StepOp::RemoveNode {
            node_id: node.id.clone(),
            force: !(up || ready_host),
        };
        last = Some(ctx.push(op, name, after(last), reason(LeaveStage::Remove)));
    }
    if leave.machine.is_some() && ctx.desired.driver.manages_machines() {
        ctx.push(
            StepOp::DestroyMachine {},
            name,
            after(last),
            reason(LeaveStage::Remove),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::model::{DriverKind, Observed, Role};
    use crate::plan::testing::{desired_with, steps};
    use crate::plan::{plan, PlanOptions};

    #[test]
    fn drain_before_remove_and_destroy_after() {
        let before = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let observed = Observed::with_members_of(&before);
        let after = desired_with(&[("m1", Role::Manager)]);
        let plan = plan(&after, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            steps(&plan),
            ["drain_node w1", "remove_node w1", "destroy_machine w1"]
        );
        assert_eq!(plan.steps[1].depends_on, [plan.steps[0].id]);
        assert_eq!(plan.steps[2].depends_on, [plan.steps[1].id]);
    }

    #[test]
    fn a_manager_is_demoted_before_it_is_removed() {
        let before = desired_with(&[
            ("m1", Role::Manager),
            ("m2", Role::Manager),
            ("m3", Role::Manager),
        ]);
        let observed = Observed::with_members_of(&before);
        let after = desired_with(&[("m1", Role::Manager), ("m2", Role::Manager)]);
        let plan = plan(&after, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            steps(&plan),
            [
                "drain_node m3",
                "demote_node m3",
                "remove_node m3",
                "destroy_machine m3"
            ]
        );
    }

    #[test]
    fn tearing_down_destroys_workers_before_managers() {
        let before = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let observed = Observed::with_members_of(&before);
        let allowed = PlanOptions {
            allow_destroy_all: true,
            ..PlanOptions::default()
        };
        let plan = plan(&desired_with(&[]), &observed, &allowed).unwrap();
        assert_eq!(steps(&plan), ["destroy_machine w1", "destroy_machine m1"]);
        assert_eq!(plan.steps[1].depends_on, [plan.steps[0].id]);
    }

    #[test]
    fn a_dropped_generic_host_leaves_and_is_not_destroyed() {
        let mut before = desired_with(&[
            ("m1", Role::Manager),
            ("m2", Role::Manager),
            ("w1", Role::Worker),
        ]);
        before.driver = DriverKind::Generic;
        let observed = Observed::with_members_of(&before);
        let mut after = desired_with(&[("m1", Role::Manager)]);
        after.driver = DriverKind::Generic;
        let plan = plan(&after, &observed, &PlanOptions::default()).unwrap();
        let steps = steps(&plan);
        assert!(
            steps.iter().all(|s| !s.starts_with("destroy_machine")),
            "{steps:?}"
        );
        for (i, step) in plan.steps.iter().enumerate() {
            if let crate::plan::model::StepOp::RemoveNode { force, .. } = step.op {
                assert!(!force, "step {i} forces a ready node out: {steps:?}");
            }
        }
        assert!(steps.contains(&"demote_node m2".to_string()), "{steps:?}");
        assert!(steps.contains(&"drain_node w1".to_string()), "{steps:?}");
        assert!(steps.contains(&"remove_node w1".to_string()), "{steps:?}");
    }
}
