//! Quorum bookkeeping: the one place that counts managers as the plan adds and removes them,
//! chains manager changes one at a time, and orders demotions and removals.

use super::model::StepId;
use super::planner::PlanError;
use crate::model::observed::LocalSwarmState;
use crate::model::{MachineState, Observed, ObservedMachine, ObservedNode, Role};

/// The majority of `managers`.
pub(super) fn majority(managers: usize) -> usize {
    managers / 2 + 1
}

/// Managers and reachable managers as the plan's steps are taken in order, and the last
/// manager change (each one waits for the one before: one at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Quorum {
    managers: usize,
    reachable: usize,
    chain: Option<StepId>,
}

impl Quorum {
    /// The managers of the observed swarm.
    pub(super) fn observed(observed: &Observed) -> Quorum {
        let managers = observed.nodes.values().filter(|n| n.role == Role::Manager);
        Quorum {
            managers: managers.clone().count(),
            reachable: managers.filter(|n| n.is_reachable_manager()).count(),
            chain: None,
        }
    }

    /// The last manager change planned so far.
    pub(super) fn chain(&self) -> Option<StepId> {
        self.chain
    }

    /// Records `step` as the latest manager change and returns it.
    pub(super) fn chained(&mut self, step: StepId) -> StepId {
        self.chain = Some(step);
        step
    }

    /// A new swarm with its one manager, initialized by `step`.
    pub(super) fn init(&mut self, step: StepId) {
        *self = Quorum {
            managers: 1,
            reachable: 1,
            chain: Some(step),
        };
    }

    /// A manager is added (join or promotion); `reachable` when its node answers.
    pub(super) fn add(&mut self, reachable: bool) {
        self.managers += 1;
        if reachable {
            self.reachable += 1;
        }
    }

    /// A manager is demoted (or removed); refused when the reachable managers would fall below
    /// a majority.
    pub(super) fn demote(&mut self, node: &ObservedNode, name: &str) -> Result<(), PlanError> {
        self.managers -= 1;
        if node.is_reachable_manager() {
            self.reachable -= 1;
        }
        if self.managers > 0 && self.reachable < majority(self.managers) {
            return Err(PlanError::Unsafe(format!(
                "after demoting {name}, {} of {} managers would be reachable, below the majority of {}",
                self.reachable,
                self.managers,
                majority(self.managers)
            )));
        }
        Ok(())
    }

    /// A manager leaves the cluster for good: never the last one, and never below a majority.
    pub(super) fn remove(&mut self, node: &ObservedNode, name: &str) -> Result<(), PlanError> {
        if self.managers == 1 {
            return Err(PlanError::Unsafe(format!(
                "removing {name} would leave the swarm without a manager"
            )));
        }
        self.demote(node, name)
    }

    /// Refuses to plan when the observed swarm has lost quorum: any change would make it worse.
    pub(super) fn check_observed(observed: &Observed) -> Result<(), PlanError> {
        let Some(swarm) = &observed.swarm else {
            return Ok(());
        };
        let managers: Vec<&ObservedNode> = observed
            .nodes
            .values()
            .filter(|n| n.role == Role::Manager)
            .collect();
        let reachable: Vec<&&ObservedNode> = managers
            .iter()
            .filter(|n| n.is_reachable_manager())
            .collect();
        let lost = swarm.quorum_error.is_some()
            || (!managers.is_empty() && reachable.len() < majority(managers.len()));
        if !lost {
            return Ok(());
        }
        let survivor = reachable
            .first()
            .and_then(|n| n.machine.clone())
            .or_else(|| {
                manager_machines(observed)
                    .find(|m| answers(m))
                    .map(|m| m.name.clone())
            })
            .unwrap_or_else(|| "<manager>".to_string());
        let detail = match &swarm.quorum_error {
            // No node list without a leader: count the machines created as managers instead.
            Some(message) => format!(
                "{} of {} manager machines answer and their swarm has no leader ({message})",
                manager_machines(observed).filter(|m| answers(m)).count(),
                manager_machines(observed).count()
            ),
            None => format!(
                "{} of {} managers are reachable, and {} are needed",
                reachable.len(),
                managers.len(),
                majority(managers.len())
            ),
        };
        Err(PlanError::QuorumLost { detail, survivor })
    }
}

fn manager_machines(observed: &Observed) -> impl Iterator<Item = &ObservedMachine> {
    observed
        .machines
        .values()
        .filter(|m| m.created_role == Some(Role::Manager))
}

fn answers(machine: &ObservedMachine) -> bool {
    machine.state == MachineState::Running && machine.swarm_state == LocalSwarmState::Active
}

/// The order demotions and removals go in: unreachable managers first (removing them only
/// helps quorum), then the others, the leader last; by name within each group.
pub(super) fn leaving_order(node: Option<&ObservedNode>, name: &str) -> (bool, bool, String) {
    (
        node.is_some_and(|n| n.is_reachable_manager()),
        node.is_some_and(|n| n.leader),
        name.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testing::{manager, observed_with};

    #[test]
    fn demoting_below_a_majority_is_refused() {
        let observed = observed_with(vec![
            manager("m1", true),
            manager("m2", true),
            manager("m3", false),
        ]);
        let mut quorum = Quorum::observed(&observed);
        let err = quorum.demote(&observed.nodes["m1"], "m1").unwrap_err();
        assert!(err.to_string().contains("1 of 2 managers"), "{err}");
    }

    #[test]
    fn the_last_manager_is_never_removed() {
        let observed = observed_with(vec![manager("m1", true)]);
        let mut quorum = Quorum::observed(&observed);
        let err = quorum.remove(&observed.nodes["m1"], "m1").unwrap_err();
        assert!(err.to_string().contains("without a manager"), "{err}");
    }

    #[test]
    fn unreachable_first_and_the_leader_last() {
        let mut leader = manager("a", true);
        leader.leader = true;
        let down = manager("z", false);
        let up = manager("b", true);
        let mut order = [
            leaving_order(Some(&leader), "a"),
            leaving_order(Some(&up), "b"),
            leaving_order(Some(&down), "z"),
        ];
        order.sort();
        let names: Vec<&str> = order.iter().map(|k| k.2.as_str()).collect();
        assert_eq!(names, ["z", "b", "a"]);
    }

    #[test]
    fn a_swarm_without_majority_is_refused_before_planning() {
        let observed = observed_with(vec![
            manager("m1", true),
            manager("m2", false),
            manager("m3", false),
        ]);
        assert!(matches!(
            Quorum::check_observed(&observed),
            Err(PlanError::QuorumLost { .. })
        ));
    }
}
