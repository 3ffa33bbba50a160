//! Self-heal (DESIGN §3.5, §5): a stopped machine is started (it keeps its disk and its swarm
//! membership); an unreachable one is reported and waited for, never replaced; a machine that is
//! gone, or whose setup never finished, is created again: its manager seat is freed, its node
//! removed, the old machine destroyed and a new one created (it joins later, like any new
//! machine). A machine whose engine answers is never destroyed for its node being down.

use super::Ctx;
use crate::model::{MachineState, NodeState, ObservedNode, Role};
use crate::plan::model::{StepId, StepOp};
use crate::plan::planner::PlanError;
use crate::plan::quorum::Quorum;
use crate::plan::reason::{DownNode, HealStage, Loss, Reason};
use crate::plan::warning::Warning;
use std::collections::{BTreeMap, BTreeSet};

/// What self-heal does with one desired machine.
enum Heal {
    /// Nothing: it runs, or it does not exist yet (created by the next rule).
    Nothing,
    /// Start the stopped machine.
    Start,
    /// Replace it (gone, or never fully set up).
    Replace(Loss),
    /// Leave it alone for now, with this warning.
    Wait(Warning),
}

/// A machine self-heal replaces: the step that creates it again, and what its join waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replacement {
    /// The step that creates it again.
    pub(crate) created: StepId,
    /// Steps its join waits for (the removal of its stale node).
    pub(crate) before_join: Vec<StepId>,
}

/// What self-heal decided for the desired machines, for the rules that create and join them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Healed<'a> {
    /// The machines it replaces, by name.
    pub(crate) replaced: BTreeMap<&'a str, Replacement>,
    /// The machines left alone for now: started (they come back as they were), or waited for
    /// (unreachable, down within the grace period, or self-heal off).
    pub(crate) waiting: BTreeSet<&'a str>,
}

/// Starts stopped machines, re-creates gone or incomplete ones, and warns about the machines
/// it waits for (unreachable, down within the grace period, or self-heal off). A lost manager
/// replaced frees its seat in `quorum`.
pub(crate) fn heal_machines<'a>(
    ctx: &mut Ctx<'a>,
    quorum: &mut Quorum,
) -> Result<Healed<'a>, PlanError> {
    let mut healed = Healed::default();
    let names: Vec<&'a str> = ctx.pairing.machines.keys().copied().collect();
    for name in names {
        let pair = &ctx.pairing.machines[name];
        let (spec, node) = (pair.spec, pair.node);
        match decide(ctx, name) {
            Heal::Nothing => {}
            Heal::Start => {
                let reason = Reason::Stopped {
                    machine: name.to_string(),
                };
                ctx.push(StepOp::StartMachine {}, name, None, reason);
                healed.waiting.insert(name);
            }
            Heal::Replace(loss) => {
                let replacement = replace_machine(ctx, quorum, name, spec.role, node, loss)?;
                healed.replaced.insert(name, replacement);
            }
            Heal::Wait(warning) => {
                ctx.warnings.push(warning);
                healed.waiting.insert(name);
            }
        }
    }
    Ok(healed)
}

/// The self-heal decision for one machine, from its state, its node's and the policy.
fn decide(ctx: &Ctx, name: &str) -> Heal {
    let policy = &ctx.desired.policy;
    let grace = policy.down_grace_seconds;
    let pair = &ctx.pairing.machines[name];
    let node = pair.node;
    let node_down = node.filter(|n| n.state != NodeState::Ready);
    let down_for = node_down.and_then(|n| n.down_for_seconds).unwrap_or(0);
    let running = pair
        .machine
        .is_some_and(|m| m.state == MachineState::Running);
    if !ctx.desired.driver.manages_machines() && !running {
        return Heal::Wait(Warning::HostWaited {
            machine: name.to_string(),
            driver: ctx.desired.driver,
        });
    }
    let Some(machine) = pair.machine else {
        // Gone (its node outlived it) or never made (no node: created by the next rule).
        return match node {
            Some(_) if policy.self_heal => Heal::Replace(Loss::Gone),
            Some(_) => Heal::Wait(Warning::GoneWithoutSelfHeal {
                machine: name.to_string(),
            }),
            None => Heal::Nothing,
        };
    };
    match machine.state {
        MachineState::Running => {
            if node_down.is_some() && pair.member.is_some() {
                return Heal::Wait(Warning::NodeDownEngineAnswers {
                    machine: name.to_string(),
                    seconds: down_for,
                });
            }
            Heal::Nothing
        }
        MachineState::Stopped if policy.self_heal => Heal::Start,
        MachineState::Stopped => Heal::Wait(Warning::StoppedWithoutSelfHeal {
            machine: name.to_string(),
        }),
        MachineState::Unreachable => Heal::Wait(Warning::Unreachable {
            machine: name.to_string(),
        }),
        MachineState::Incomplete if !policy.self_heal => {
            Heal::Wait(Warning::IncompleteWithoutSelfHeal {
                machine: name.to_string(),
            })
        }
        MachineState::Incomplete => match node {
            None => Heal::Replace(Loss::Incomplete),
            Some(n) if n.state == NodeState::Ready => Heal::Wait(Warning::IncompleteNodeReady {
                machine: name.to_string(),
            }),
            Some(n) if down_for >= grace => Heal::Replace(Loss::Down {
                node: Some(DownNode {
                    state: n.state,
                    seconds: down_for,
                }),
            }),
            Some(_) => Heal::Wait(Warning::IncompleteWithinGrace {
                machine: name.to_string(),
                seconds: down_for,
                grace,
            }),
        },
    }
}

/// The steps of one replacement: demote (a manager), remove its node, destroy the machine
/// (when it still exists), create it.
fn replace_machine(
    ctx: &mut Ctx,
    quorum: &mut Quorum,
    name: &str,
    role: Role,
    node: Option<&ObservedNode>,
    loss: Loss,
) -> Result<Replacement, PlanError> {
    let reason = |stage| Reason::SelfHeal {
        machine: name.to_string(),
        loss: loss.clone(),
        stage,
    };
    let mut before_join = Vec::new();
    if let Some(node) = node {
        let mut after = None;
        if node.role == Role::Manager {
            quorum.demote(node, name)?;
            let op = StepOp::DemoteNode {
                node_id: node.id.clone(),
            };
            let chain = quorum.chain();
            let id = ctx.push(op, name, chain, reason(HealStage::FreeManagerSeat));
            after = Some(quorum.chained(id));
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
            StepOp::DestroyMachine {},
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
    Ok(Replacement {
        created,
        before_join,
    })
}

#[cfg(test)]
mod tests {
    use crate::model::{DriverKind, MachineState, NodeState, Observed, Role};
    use crate::plan::testing::{desired_with, steps};
    use crate::plan::{plan, Plan, PlanOptions};

    /// A converged m1 + w1 cluster where w1's machine is in `state` and its node has been
    /// `node` for `down_for` seconds.
    fn w1_plan(state: Option<MachineState>, node: NodeState, down_for: u64) -> Plan {
        w1_plan_healing(state, node, down_for, true)
    }

    /// [`w1_plan`] with `policy.self_heal` set to `self_heal`.
    fn w1_plan_healing(
        state: Option<MachineState>,
        node: NodeState,
        down_for: u64,
        self_heal: bool,
    ) -> Plan {
        let mut desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        desired.policy.self_heal = self_heal;
        let mut observed = Observed::with_members_of(&desired);
        match state {
            Some(state) => observed.machines.get_mut("w1").unwrap().state = state,
            None => {
                observed.machines.remove("w1");
            }
        }
        let w1 = observed
            .nodes
            .values_mut()
            .find(|n| n.hostname == "w1")
            .unwrap();
        w1.state = node;
        w1.down_for_seconds = (node != NodeState::Ready).then_some(down_for);
        plan(&desired, &observed, &PlanOptions::default()).unwrap()
    }

    #[test]
    fn a_stopped_machine_is_started_not_replaced() {
        let plan = w1_plan(Some(MachineState::Stopped), NodeState::Down, 600);
        assert_eq!(steps(&plan), ["start_machine w1"]);
        assert!(!plan.steps[0].reason.replaces());
    }

    #[test]
    fn a_running_machine_whose_node_is_down_is_waited_for_never_destroyed() {
        let plan = w1_plan(Some(MachineState::Running), NodeState::Down, 6_000);
        assert!(plan.steps.is_empty(), "{:?}", steps(&plan));
        assert!(
            plan.warnings[0].to_string().contains("never replaced"),
            "{:?}",
            plan.warnings
        );
    }

    #[test]
    fn an_unreachable_machine_is_reported_and_waited_for() {
        let plan = w1_plan(Some(MachineState::Unreachable), NodeState::Down, 6_000);
        assert!(plan.steps.is_empty(), "{:?}", steps(&plan));
        assert!(plan.warnings[0].to_string().contains("w1 is unreachable"));
    }

    #[test]
    fn a_gone_machine_is_created_again_and_rejoins() {
        let plan = w1_plan(None, NodeState::Down, 0);
        assert_eq!(
            steps(&plan),
            ["remove_node w1", "create_machine w1", "join_swarm w1"]
        );
        assert!(plan.steps[1].reason.replaces());
    }

    #[test]
    fn an_incomplete_machine_whose_node_is_down_past_grace_is_replaced() {
        let plan = w1_plan(Some(MachineState::Incomplete), NodeState::Down, 600);
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
    fn an_incomplete_machine_within_grace_waits_with_a_warning() {
        let plan = w1_plan(Some(MachineState::Incomplete), NodeState::Down, 5);
        assert!(plan.steps.is_empty());
        assert!(plan.warnings[0]
            .to_string()
            .contains("replaces it after 60s"));
    }

    #[test]
    fn an_incomplete_machine_with_a_ready_node_is_kept() {
        let plan = w1_plan(Some(MachineState::Incomplete), NodeState::Ready, 0);
        assert!(plan.steps.is_empty(), "{:?}", steps(&plan));
    }

    #[test]
    fn an_incomplete_machine_that_never_joined_is_created_again_at_once() {
        let desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let mut observed = Observed::with_members_of(&desired_with(&[("m1", Role::Manager)]));
        let mut w1 = crate::plan::testing::machine("w1", Role::Worker);
        w1.state = MachineState::Incomplete;
        w1.swarm_state = Default::default();
        w1.node_id = None;
        observed.machines.insert("w1".into(), w1);
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            steps(&plan),
            ["destroy_machine w1", "create_machine w1", "join_swarm w1"]
        );
    }

    #[test]
    fn with_self_heal_off_a_gone_or_stopped_machine_is_only_reported() {
        for state in [None, Some(MachineState::Stopped)] {
            let plan = w1_plan_healing(state, NodeState::Down, 600, false);
            assert!(plan.steps.is_empty(), "{state:?}: {:?}", steps(&plan));
            assert!(
                plan.warnings
                    .iter()
                    .any(|w| w.to_string().contains("self-heal is off")),
                "{:?}",
                plan.warnings
            );
        }
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
            plan.warnings[0]
                .to_string()
                .contains("never replaces hosts"),
            "{:?}",
            plan.warnings
        );
    }
}
