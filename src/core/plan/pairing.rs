//! Pairing, the first step of planning: each desired machine with its machine and node, the
//! machines and nodes no desired machine claims, and each desired service with the observed one
//! of its name (gitops-engine's `(Some, None)`, `(None, Some)`, `(Some, Some)`).

use super::planner::LABEL_STACKS;
use super::warning::Warning;
use crate::model::observed::LocalSwarmState;
use crate::model::{
    Desired, MachineSpec, NodeState, Observed, ObservedMachine, ObservedNode, ObservedService,
    ServiceSpec, LABEL_MACHINE, LABEL_STACK_NAMESPACE,
};
use std::collections::{BTreeMap, BTreeSet};

/// A desired machine and what exists of it.
pub(super) struct MachinePair<'a> {
    /// What machines.yml says.
    pub spec: &'a MachineSpec,
    /// The machine, when it exists.
    pub machine: Option<&'a ObservedMachine>,
    /// Its node, when the swarm has one for it.
    pub node: Option<&'a ObservedNode>,
    /// Its node in the current swarm, when it is a member (self-heal may still replace it:
    /// see [`super::rules::create_machines::MachineSteps::member`]).
    pub member: Option<&'a ObservedNode>,
}

/// A machine or node on its way out of the cluster.
pub(super) struct Leaving<'a> {
    /// Machine name, or the node's hostname for a node of no machine.
    pub target: String,
    /// The machine, when one exists.
    pub machine: Option<&'a ObservedMachine>,
    /// Its node, when it is in the swarm.
    pub node: Option<&'a ObservedNode>,
}

/// Desired and observed state, paired.
pub(super) struct Pairing<'a> {
    /// Each desired machine, by name.
    pub machines: BTreeMap<&'a str, MachinePair<'a>>,
    /// The node of each machine that has one.
    pub node_of: BTreeMap<&'a str, &'a ObservedNode>,
    /// Stacks shoal manages: the desired ones and those the swarm label lists.
    pub managed: BTreeSet<&'a str>,
}

impl<'a> Pairing<'a> {
    /// Pairs `desired` with `observed`.
    pub(super) fn new(desired: &'a Desired, observed: &'a Observed) -> Pairing<'a> {
        let node_of: BTreeMap<&str, &ObservedNode> = observed
            .nodes
            .values()
            .filter_map(|n| n.machine.as_deref().map(|m| (m, n)))
            .collect();
        let machines = desired
            .machines
            .values()
            .map(|spec| {
                let machine = observed.machines.get(&spec.name);
                let node = node_of.get(spec.name.as_str()).copied();
                let active = machine.is_some_and(|m| m.swarm_state == LocalSwarmState::Active);
                let member = (active && observed.swarm.is_some())
                    .then_some(node)
                    .flatten();
                let pair = MachinePair {
                    spec,
                    machine,
                    node,
                    member,
                };
                (spec.name.as_str(), pair)
            })
            .collect();
        let managed = desired
            .stacks
            .keys()
            .map(String::as_str)
            .chain(
                observed
                    .swarm
                    .as_ref()
                    .and_then(|s| s.labels.get(LABEL_STACKS))
                    .into_iter()
                    .flat_map(|list| list.split(',').filter(|s| !s.is_empty())),
            )
            .collect();
        Pairing {
            machines,
            node_of,
            managed,
        }
    }

    /// The managed stack an object's labels put it in.
    pub(super) fn managed_stack(&self, labels: &BTreeMap<String, String>) -> Option<String> {
        labels
            .get(LABEL_STACK_NAMESPACE)
            .filter(|s| self.managed.contains(s.as_str()))
            .cloned()
    }

    /// Machines no longer desired, then down nodes of no machine of this cluster; ready
    /// nodes of no machine are left alone, with a warning each.
    pub(super) fn leaving(
        &self,
        desired: &'a Desired,
        observed: &'a Observed,
        warnings: &mut Vec<Warning>,
    ) -> Vec<Leaving<'a>> {
        let mut leaving: Vec<Leaving> = observed
            .machines
            .iter()
            .filter(|(name, _)| !desired.machines.contains_key(*name))
            .map(|(name, machine)| Leaving {
                target: name.clone(),
                machine: Some(machine),
                node: self.node_of.get(name.as_str()).copied(),
            })
            .collect();
        let claimed =
            |m: &str| observed.machines.contains_key(m) || desired.machines.contains_key(m);
        for node in observed.nodes.values() {
            if node.machine.as_deref().is_some_and(claimed) {
                continue;
            }
            if node.state == NodeState::Ready {
                warnings.push(Warning::NodeOfNoMachine {
                    hostname: node.hostname.clone(),
                    id: node.id.clone(),
                });
            } else if let Some(unseen) = may_be_unseen_machine(node, observed) {
                warnings.push(Warning::NodeMayBeUnseen {
                    hostname: node.hostname.clone(),
                    id: node.id.clone(),
                    state: node.state,
                    machines: unseen,
                });
            } else {
                leaving.push(Leaving {
                    target: node.hostname.clone(),
                    machine: None,
                    node: Some(node),
                });
            }
        }
        leaving
    }
}

/// Never remove a silent machine's node: a down node that no machine claims may still be the
/// node of a machine whose engine does not answer (a reboot, a freeze, a partition), unless its
/// identity label names a machine that is seen elsewhere. Returns the machines it may be.
fn may_be_unseen_machine(node: &ObservedNode, observed: &Observed) -> Option<String> {
    let labelled = node.labels.get(LABEL_MACHINE);
    if labelled
        .and_then(|name| observed.machines.get(name))
        .is_some_and(ObservedMachine::is_accounted_for)
    {
        return None;
    }
    let unseen: Vec<&str> = observed
        .machines
        .values()
        .filter(|m| !m.is_accounted_for())
        .map(|m| m.name.as_str())
        .collect();
    (!unseen.is_empty()).then(|| unseen.join(", "))
}

/// A desired service and the observed service of its name.
pub(super) struct ServicePair<'a> {
    /// Its stack.
    pub stack: &'a str,
    /// Its full name.
    pub name: &'a str,
    /// The desired spec.
    pub spec: &'a ServiceSpec,
    /// The observed service, when it exists.
    pub current: Option<&'a ObservedService>,
}

/// Each desired service, stack by stack, with the observed service of its name.
pub(super) fn services<'a>(
    desired: &'a Desired,
    observed: &'a Observed,
) -> impl Iterator<Item = ServicePair<'a>> {
    desired.stacks.values().flat_map(move |stack| {
        stack.services.iter().map(move |(name, spec)| ServicePair {
            stack: &stack.name,
            name,
            spec,
            current: observed.services.get(name),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;
    use crate::plan::testing::{desired_with, machine, manager, observed_with};

    #[test]
    fn a_member_is_an_active_machine_with_a_node() {
        let desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let mut observed = observed_with(vec![manager("m1", true)]);
        observed
            .machines
            .insert("m1".into(), machine("m1", Role::Manager));
        let mut stale = machine("w1", Role::Worker);
        stale.swarm_state = LocalSwarmState::Pending;
        observed.machines.insert("w1".into(), stale);
        let pairing = Pairing::new(&desired, &observed);
        assert!(pairing.machines["m1"].member.is_some());
        assert!(pairing.machines["w1"].member.is_none());
    }

    /// Three generic managers whose hosts' hostnames are not their machine names; m3's engine
    /// is silent (a reboot, a freeze) and its node is down. `label` gives its node the identity
    /// label a join writes.
    fn silent_manager(label: bool) -> crate::plan::Plan {
        let mut desired = desired_with(&[
            ("m1", Role::Manager),
            ("m2", Role::Manager),
            ("m3", Role::Manager),
        ]);
        desired.driver = crate::model::DriverKind::Generic;
        let mut observed = Observed::with_members_of(&desired);
        for node in observed.nodes.values_mut() {
            node.hostname = format!("host-{}", node.hostname);
            node.machine = None;
        }
        let m3 = observed.machines.get_mut("m3").unwrap();
        let node_id = m3.node_id.take().unwrap();
        m3.state = crate::model::MachineState::Unreachable;
        m3.swarm_state = LocalSwarmState::Inactive;
        let node = observed.nodes.get_mut(&node_id).unwrap();
        node.state = NodeState::Down;
        node.reachability = Some(crate::model::Reachability::Unreachable);
        node.down_for_seconds = Some(3_600);
        if label {
            node.labels.insert(LABEL_MACHINE.into(), "m3".into());
        }
        // observe matches nodes to machines; here by the node IDs the engines report.
        for node in observed.nodes.values_mut() {
            node.machine = observed
                .machines
                .values()
                .find(|m| m.node_id.as_deref() == Some(node.id.as_str()))
                .map(|m| m.name.clone())
                .or_else(|| node.labels.get(LABEL_MACHINE).cloned());
        }
        crate::plan::plan(&desired, &observed, &crate::plan::PlanOptions::default()).unwrap()
    }

    #[test]
    fn a_silent_managers_node_is_never_demoted_or_removed() {
        for label in [false, true] {
            let plan = silent_manager(label);
            assert!(
                plan.steps.is_empty(),
                "label {label}: {:?}",
                crate::plan::testing::steps(&plan)
            );
            assert!(!plan.saw_everything());
        }
        let unlabelled = silent_manager(false);
        assert!(
            unlabelled
                .warnings
                .iter()
                .any(|w| w.to_string().contains("m3 cannot be seen and may be it")),
            "{:?}",
            unlabelled.warnings
        );
        let labelled = silent_manager(true);
        assert!(
            labelled
                .warnings
                .iter()
                .any(|w| w.to_string().contains("m3 is down or does not answer")),
            "{:?}",
            labelled.warnings
        );
    }

    #[test]
    fn a_stale_node_whose_label_names_a_machine_seen_elsewhere_leaves() {
        let desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let mut observed = Observed::with_members_of(&desired);
        let mut unseen = machine("w9", Role::Worker);
        unseen.state = crate::model::MachineState::Unreachable;
        unseen.node_id = None;
        observed.machines.insert("w9".into(), unseen);
        let mut stale = manager("old", false);
        stale.role = Role::Worker;
        stale.reachability = None;
        stale.machine = None;
        stale.labels.insert(LABEL_MACHINE.into(), "w1".into());
        observed.nodes.insert("old".into(), stale);
        let pairing = Pairing::new(&desired, &observed);
        let mut warnings = Vec::new();
        let leaving = pairing.leaving(&desired, &observed, &mut warnings);
        assert!(leaving.iter().any(|l| l.target == "old"), "{warnings:?}");
    }

    #[test]
    fn down_nodes_of_no_machine_leave_and_ready_ones_are_warned_about() {
        let desired = desired_with(&[("m1", Role::Manager)]);
        let mut stray = manager("old", false);
        stray.machine = None;
        let mut ready = manager("other", true);
        ready.machine = Some("elsewhere".into());
        let observed = observed_with(vec![stray, ready]);
        let pairing = Pairing::new(&desired, &observed);
        let mut warnings = Vec::new();
        let leaving = pairing.leaving(&desired, &observed, &mut warnings);
        assert_eq!(leaving.len(), 1);
        assert_eq!(leaving[0].target, "old");
        assert_eq!(warnings.len(), 1);
    }
}
