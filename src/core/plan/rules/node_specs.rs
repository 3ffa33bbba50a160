//! Node specs (DESIGN §3): each member's node labels are machines.yml's, and its
//! availability is active (a drained or paused node of a kept machine is made active again).

use super::create_machines::MachineSteps;
use super::init_swarm::SwarmEntry;
use super::Ctx;
use crate::model::{user_node_labels, Availability};
use crate::plan::model::{StepId, StepOp};
use crate::plan::reason::Reason;

/// Gives the machine that initialized the swarm its node labels, once it has; the step, if any.
pub(crate) fn label_init_machine(ctx: &mut Ctx, entry: &SwarmEntry) -> Option<StepId> {
    let init = entry.init?;
    let via = entry.via.as_str();
    let labels = ctx.pairing.machines[via].spec.labels.clone();
    if labels.is_empty() {
        return None;
    }
    let op = StepOp::UpdateNode {
        node_id: None,
        labels,
        availability: Availability::Active,
    };
    let reason = Reason::InitLabels {
        machine: via.to_string(),
    };
    Some(ctx.push(op, via, [init], reason))
}

/// Updates the members whose labels or availability differ from machines.yml; their steps.
pub(crate) fn update_node_specs(ctx: &mut Ctx, machines: &MachineSteps) -> Vec<StepId> {
    let members: Vec<_> = ctx
        .pairing
        .machines
        .values()
        .filter_map(|p| machines.member(p).map(|n| (p.spec, n)))
        .collect();
    let mut updates = Vec::new();
    for (spec, node) in members {
        let labels = user_node_labels(&node.labels) != spec.labels;
        let inactive = (node.availability != Availability::Active).then_some(node.availability);
        if !labels && inactive.is_none() {
            continue;
        }
        let op = StepOp::UpdateNode {
            node_id: Some(node.id.clone()),
            labels: spec.labels.clone(),
            availability: Availability::Active,
        };
        let reason = Reason::NodeSpecDrift { labels, inactive };
        updates.push(ctx.push(op, &spec.name, [], reason));
    }
    updates
}

#[cfg(test)]
mod tests {
    use crate::model::{Availability, Observed, Role};
    use crate::plan::testing::{desired_with, steps};
    use crate::plan::{plan, PlanOptions};

    #[test]
    fn a_drained_member_is_made_active_with_its_labels() {
        let mut desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let mut observed = Observed::with_members_of(&desired);
        let node = observed
            .nodes
            .values_mut()
            .find(|n| n.hostname == "w1")
            .unwrap();
        node.availability = Availability::Drain;
        let w1 = desired.machines.get_mut("w1").unwrap();
        w1.labels.insert("zone".into(), "a".into());
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(steps(&plan), ["update_node w1"]);
        assert_eq!(
            plan.steps[0].reason.to_string(),
            "node labels differ from machines.yml and the node is drained"
        );
    }
}
