//! Create machines (DESIGN §3.1): each machine machines.yml names that does not exist and is
//! not already being replaced is created, all in parallel, right after the replacements.
//! Drivers of existing hosts (`generic`) create nothing: a missing host is reported.

use super::self_heal::Healed;
use super::Ctx;
use crate::model::ObservedNode;
use crate::plan::model::{StepId, StepOp};
use crate::plan::pairing::MachinePair;
use crate::plan::reason::Reason;
use crate::plan::warning::Warning;
use std::collections::BTreeMap;

/// The desired machines as the swarm rules see them once self-heal and creation are planned:
/// which are created (new or replaced), what their joins wait for, and which are left alone.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct MachineSteps<'a> {
    /// What self-heal decided.
    healed: Healed<'a>,
    /// The step that creates each new machine, by name.
    created: BTreeMap<&'a str, StepId>,
}

impl<'a> MachineSteps<'a> {
    /// The step that creates (or re-creates) machine `name`, if this plan does.
    pub(crate) fn created(&self, name: &str) -> Option<StepId> {
        (self.created.get(name).copied())
            .or_else(|| self.healed.replaced.get(name).map(|r| r.created))
    }

    /// The steps machine `name`'s join waits for besides its creation (its stale node's removal).
    pub(crate) fn before_join(&self, name: &str) -> &[StepId] {
        self.healed
            .replaced
            .get(name)
            .map_or(&[], |r| r.before_join.as_slice())
    }

    /// Whether machine `name` is left alone for now (started, or waited for).
    pub(crate) fn waiting(&self, name: &str) -> bool {
        self.healed.waiting.contains(name)
    }

    /// The node of `pair` in the current swarm, when it is a member that is not replaced.
    pub(crate) fn member<'p>(&self, pair: &MachinePair<'p>) -> Option<&'p ObservedNode> {
        let replaced = self.healed.replaced.contains_key(pair.spec.name.as_str());
        pair.member.filter(|_| !replaced)
    }
}

/// Creates the desired machines that never existed, except those self-heal leaves alone.
pub(crate) fn create_missing_machines<'a>(
    ctx: &mut Ctx<'a>,
    healed: Healed<'a>,
) -> MachineSteps<'a> {
    let (desired, observed) = (ctx.desired, ctx.observed);
    let missing: Vec<&'a str> = ctx
        .pairing
        .machines
        .keys()
        .copied()
        .filter(|name| {
            !healed.replaced.contains_key(name) && !observed.machines.contains_key(*name)
        })
        .collect();
    let mut created = BTreeMap::new();
    if !desired.driver.manages_machines() {
        for name in missing {
            ctx.warnings.push(Warning::HostNotFound {
                machine: name.to_string(),
                driver: desired.driver,
            });
        }
        return MachineSteps { healed, created };
    }
    // A machine self-heal leaves alone (gone with self-heal off) is not created either.
    for name in missing
        .into_iter()
        .filter(|name| !healed.waiting.contains(name))
    {
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
        created.insert(name, ctx.push(op, name, [], reason));
    }
    MachineSteps { healed, created }
}

#[cfg(test)]
mod tests {
    use super::create_missing_machines;
    use crate::model::{DriverKind, MachineState, NodeState, Observed, Role};
    use crate::plan::quorum::Quorum;
    use crate::plan::rules::{self_heal, Ctx};
    use crate::plan::testing::{desired_with, steps};
    use crate::plan::{plan, PlanOptions, StepId};

    #[test]
    fn a_replaced_machine_is_created_again_and_no_longer_a_member() {
        let desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let mut observed = Observed::with_members_of(&desired);
        observed.machines.get_mut("w1").unwrap().state = MachineState::Incomplete;
        let node = (observed.nodes.values_mut())
            .find(|n| n.hostname == "w1")
            .unwrap();
        node.state = NodeState::Down;
        node.down_for_seconds = Some(600);
        let options = PlanOptions::default();
        let mut ctx = Ctx::new(&desired, &observed, &options);
        let mut quorum = Quorum::observed(&observed);
        let healed = self_heal::heal_machines(&mut ctx, &mut quorum).unwrap();
        let machines = create_missing_machines(&mut ctx, healed);
        let (m1, w1) = (&ctx.pairing.machines["m1"], &ctx.pairing.machines["w1"]);
        assert!(w1.member.is_some(), "the pairing is left as it was made");
        assert!(machines.member(w1).is_none());
        assert!(machines.member(m1).is_some());
        assert_eq!(machines.before_join("w1"), [StepId(1)]);
        assert_eq!(machines.created("w1"), Some(StepId(3)));
        assert_eq!(machines.created("m1"), None);
        assert!(!machines.waiting("w1"));
    }

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
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.to_string().contains("w1 is not found")));
    }
}
