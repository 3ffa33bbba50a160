//! Self-heal (DESIGN §3.5): a machine that is gone, stopped, or whose node is down past the
//! grace period is replaced: its manager seat is freed, its node removed, the old machine
//! destroyed and a new one created (it joins later, like any new machine). Existing hosts
//! (`generic`) are never replaced: a lost one is reported and waited for.

use super::Ctx;
use crate::model::{MachineState, NodeState, ObservedNode, Role};
use crate::plan::model::{StepId, StepOp};
use crate::plan::planner::PlanError;
use crate::plan::reason::{HealStage, Loss, Reason};

/// Replaces lost machines, or warns about those left alone (within grace, or self-heal off).
pub fn replace_lost_machines(ctx: &mut Ctx) -> Result<(), PlanError> {
    let policy = &ctx.desired.policy;
    let grace = policy.down_grace_seconds;
    let names: Vec<&str> = ctx.pairing.machines.keys().copied().collect();
    for name in names {
        let pair = &ctx.pairing.machines[name];
        let (spec, machine, node) = (pair.spec, pair.machine, pair.node);
        let node_lost = node.is_some_and(|n| n.state != NodeState::Ready);
        let down_for = node.and_then(|n| n.down_for_seconds).unwrap_or(0);
        let gone = machine.is_none();
        let stopped = machine.is_some_and(|m| m.state == MachineState::Stopped);
        let replaceable = ctx.desired.driver.manages_machines();
        let replace = replaceable
            && !gone
            && policy.self_heal
            && (stopped || node_lost)
            && (node.is_none() || down_for >= grace);
        if !gone && (stopped || node_lost) && !replace {
            ctx.warnings.push(match (policy.self_heal, node) {
                _ if !replaceable => format!(
                    "{name} is down or does not answer; the {} driver never replaces hosts: it waits for it",
                    ctx.desired.driver.as_str()
                ),
                (true, Some(_)) => format!(
                    "{name} has been down for {down_for}s; self-heal replaces it after {grace}s"
                ),
                _ => format!("{name} is down and self-heal is off: it is left as it is"),
            });
            let waiting = node.is_some() || !policy.self_heal;
            ctx.pairing.machines.get_mut(name).expect("paired").waiting = waiting;
        }
        if (replaceable && gone && node.is_some()) || replace {
            let loss = if gone {
                Loss::Gone
            } else {
                Loss::Down {
                    node: node.map(|n| (n.state, down_for)),
                }
            };
            let (created, before_join) = replace_machine(ctx, name, spec.role, node, loss)?;
            let pair = ctx.pairing.machines.get_mut(name).expect("paired");
            pair.created = Some(created);
            pair.before_join = before_join;
            pair.member = None;
            pair.leave_first = false;
        }
    }
    Ok(())
}

/// The steps of one replacement: demote (a manager), remove its node, destroy the machine
/// (when it still exists), create it. Returns the creation and what its join waits for.
fn replace_machine(
    ctx: &mut Ctx,
    name: &str,
    role: Role,
    node: Option<&ObservedNode>,
    loss: Loss,
) -> Result<(StepId, Vec<StepId>), PlanError> {
    let reason = |stage| Reason::SelfHeal {
        machine: name.to_string(),
        loss: loss.clone(),
        stage,
    };
    let mut before_join = Vec::new();
    if let Some(node) = node {
        let mut after = None;
        if node.role == Role::Manager {
            ctx.quorum.demote(node, name)?;
            let op = StepOp::DemoteNode {
                node_id: node.id.clone(),
            };
            let chain = ctx.quorum.chain();
            let id = ctx.push(op, name, chain, reason(HealStage::FreeManagerSeat));
            after = Some(ctx.quorum.chained(id));
        }
        let op = StepOp::RemoveNode {
            node_id: node.id.clone(),
            force: true,
        };
        before_join.push(ctx.push(op, name, after, reason(HealStage::RemoveNode)));
    }
    let mut before_create = None;
    if loss != Loss::Gone {
        let deps = before_join.clone();
        before_create = Some(ctx.push(
            StepOp::DestroyMachine,
            name,
            deps,
            reason(HealStage::DestroyMachine),
        ));
    }
    let spec = ctx.pairing.machines[name].spec;
    let op = StepOp::CreateMachine {
        role,
        labels: spec.labels.clone(),
    };
    let created = ctx.push(op, name, before_create, reason(HealStage::CreateMachine));
    Ok((created, before_join))
}

#[cfg(test)]
mod tests {
    use crate::model::{DriverKind, MachineState, NodeState, Observed, Role};
    use crate::plan::testing::{desired_with, steps};
    use crate::plan::{plan, PlanOptions};

    #[test]
    fn a_worker_down_past_grace_is_replaced() {
        let desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let mut observed = Observed::with_members_of(&desired);
        let node = observed
            .nodes
            .values_mut()
            .find(|n| n.hostname == "w1")
            .unwrap();
        node.state = NodeState::Down;
        node.down_for_seconds = Some(600);
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            steps(&plan),
            [
                "remove_node w1",
                "destroy_machine w1",
                "create_machine w1",
                "join_swarm w1"
            ]
        );
        assert!(plan.steps[1].reason.replaces());
    }

    #[test]
    fn a_worker_down_within_grace_waits_with_a_warning() {
        let desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let mut observed = Observed::with_members_of(&desired);
        let node = observed
            .nodes
            .values_mut()
            .find(|n| n.hostname == "w1")
            .unwrap();
        node.state = NodeState::Down;
        node.down_for_seconds = Some(5);
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert!(plan.steps.is_empty());
        assert!(plan.warnings[0].contains("replaces it after 60s"));
    }

    #[test]
    fn a_lost_generic_host_is_reported_not_replaced() {
        let mut desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        desired.driver = DriverKind::Generic;
        let mut observed = Observed::with_members_of(&desired);
        observed.machines.get_mut("w1").unwrap().state = MachineState::Unreachable;
        let node = observed
            .nodes
            .values_mut()
            .find(|n| n.hostname == "w1")
            .unwrap();
        node.state = NodeState::Down;
        node.down_for_seconds = Some(600);
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert!(plan.steps.is_empty(), "{:?}", steps(&plan));
        assert!(
            plan.warnings[0].contains("never replaces hosts"),
            "{:?}",
            plan.warnings
        );
    }
}
