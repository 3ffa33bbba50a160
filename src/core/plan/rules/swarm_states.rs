//! Never lose a cluster (DESIGN §3.6): a swarm that exists is never re-initialized, and no node
//! that is in a swarm is ever made to leave it, force-left or initialized anew.
//!
//! - Machines are in a swarm but no manager answers with a leader (managers that came back with
//!   other addresses, a lost Raft majority): the plan refuses and explains the recovery.
//! - Machines of the cluster cannot be read (stopped, unreachable) while no swarm answers: the
//!   swarm may live on them, so the plan only brings machines back and initializes nothing.
//! - A desired machine whose engine is `pending`, `error` or `locked`, or a member of a swarm
//!   that is not this cluster's: the plan refuses and says what to do by hand.

use super::Ctx;
use crate::model::observed::LocalSwarmState;
use crate::model::{MachineState, ObservedMachine};
use crate::plan::planner::PlanError;
use crate::plan::quorum::Quorum;
use crate::plan::warning::Warning;

/// What the swarm states allow this plan to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwarmAccess {
    /// A swarm with a leader answers, or no machine is in any swarm: plan everything.
    Readable,
    /// No swarm answers and some machines cannot be read: only bring machines back.
    MachinesOnly,
}

/// Refuses what would lose a swarm; tells whether the plan may go beyond machines. A swarm
/// that lost quorum is refused with the recovery, unless machines of the cluster are merely
/// stopped: starting them can only help, so the plan starts them first.
pub fn refuse_unsafe_swarm_states(ctx: &mut Ctx) -> Result<SwarmAccess, PlanError> {
    let observed = ctx.observed;
    if let Err(lost) = Quorum::check_observed(observed) {
        let stopped: Vec<&str> = observed
            .machines
            .values()
            .filter(|m| m.state == MachineState::Stopped)
            .map(|m| m.name.as_str())
            .collect();
        if stopped.is_empty() || !ctx.desired.policy.self_heal {
            return Err(lost);
        }
        ctx.warnings.push(Warning::NoQuorumWhileStopped {
            machines: stopped.into_iter().map(String::from).collect(),
        });
        return Ok(SwarmAccess::MachinesOnly);
    }
    if observed.swarm.is_none() {
        let in_swarm: Vec<&ObservedMachine> = observed
            .machines
            .values()
            .filter(|m| m.state == MachineState::Running)
            .filter(|m| m.swarm_state != LocalSwarmState::Inactive)
            .collect();
        let dark: Vec<&str> = observed
            .machines
            .values()
            .filter(|m| matches!(m.state, MachineState::Stopped | MachineState::Unreachable))
            .map(|m| m.name.as_str())
            .collect();
        if !dark.is_empty() {
            ctx.warnings.push(Warning::NoManagerAnswers {
                machines: dark.into_iter().map(String::from).collect(),
            });
            return Ok(SwarmAccess::MachinesOnly);
        }
        if !in_swarm.is_empty() {
            let listed: Vec<String> = in_swarm
                .iter()
                .map(|m| format!("{} ({})", m.name, state_word(m.swarm_state)))
                .collect();
            return Err(PlanError::Leaderless {
                machines: listed.join(", "),
                manager: in_swarm
                    .iter()
                    .find(|m| m.created_role == Some(crate::model::Role::Manager))
                    .map_or_else(|| "<manager>".to_string(), |m| m.name.clone()),
            });
        }
        return Ok(SwarmAccess::Readable);
    }
    for pair in ctx.pairing.machines.values() {
        let Some(machine) = pair.machine else {
            continue;
        };
        if machine.state != MachineState::Running {
            continue;
        }
        let foreign = machine.swarm_state == LocalSwarmState::Active
            && machine
                .node_id
                .as_ref()
                .is_some_and(|id| !observed.nodes.contains_key(id));
        let stuck = matches!(
            machine.swarm_state,
            LocalSwarmState::Pending | LocalSwarmState::Error | LocalSwarmState::Locked
        );
        if foreign || stuck {
            return Err(PlanError::NodeSwarmState {
                machine: machine.name.clone(),
                state: if foreign {
                    "active in a swarm that is not this cluster's".to_string()
                } else {
                    state_word(machine.swarm_state).to_string()
                },
                advice: advice(machine.swarm_state, foreign),
            });
        }
    }
    Ok(SwarmAccess::Readable)
}

/// What to do by hand for a machine in this local swarm state.
fn advice(state: LocalSwarmState, foreign: bool) -> &'static str {
    if foreign {
        return "it holds the state of another swarm (or of this one, from before its node was removed). If nothing on it is needed, make it leave by hand: eval $(shoal env MACHINE) && docker swarm leave --force; then plan again";
    }
    match state {
        LocalSwarmState::Locked => {
            "the swarm is autolocked: unlock it on that machine with `docker swarm unlock` (eval $(shoal env MACHINE) first), then plan again"
        }
        LocalSwarmState::Pending => {
            "it is still joining a swarm: wait and plan again; if it stays pending, look at it (eval $(shoal env MACHINE) && docker info) and make it leave by hand with `docker swarm leave --force` once you are sure it holds nothing you need"
        }
        _ => {
            "its engine reports a swarm error: look at it (eval $(shoal env MACHINE) && docker info); once you are sure it holds nothing you need, make it leave by hand with `docker swarm leave --force`, then plan again"
        }
    }
}

fn state_word(state: LocalSwarmState) -> &'static str {
    match state {
        LocalSwarmState::Inactive => "inactive",
        LocalSwarmState::Pending => "pending",
        LocalSwarmState::Active => "active",
        LocalSwarmState::Error => "error",
        LocalSwarmState::Locked => "locked",
    }
}

#[cfg(test)]
mod tests {
    use crate::model::observed::LocalSwarmState;
    use crate::model::{MachineState, Observed, Role};
    use crate::plan::testing::{desired_with, machine, steps};
    use crate::plan::{plan, PlanError, PlanOptions};

    fn cluster(states: &[(&str, Role, MachineState, LocalSwarmState)]) -> Observed {
        let mut observed = Observed::default();
        for (name, role, state, swarm) in states {
            let mut m = machine(name, *role);
            m.state = *state;
            m.swarm_state = *swarm;
            observed.machines.insert(name.to_string(), m);
        }
        observed
    }

    #[test]
    fn managers_in_a_swarm_without_a_leader_are_never_initialized_anew() {
        let desired = desired_with(&[("m1", Role::Manager), ("m2", Role::Manager)]);
        let observed = cluster(&[
            (
                "m1",
                Role::Manager,
                MachineState::Running,
                LocalSwarmState::Active,
            ),
            (
                "m2",
                Role::Manager,
                MachineState::Running,
                LocalSwarmState::Pending,
            ),
        ]);
        let error = plan(&desired, &observed, &PlanOptions::default()).unwrap_err();
        assert!(matches!(error, PlanError::Leaderless { .. }), "{error}");
        let text = error.to_string();
        assert!(text.contains("m1 (active), m2 (pending)"), "{text}");
        assert!(text.contains("--force-new-cluster"), "{text}");
    }

    #[test]
    fn with_every_machine_stopped_the_plan_only_starts_them() {
        let desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let observed = cluster(&[
            (
                "m1",
                Role::Manager,
                MachineState::Stopped,
                LocalSwarmState::Inactive,
            ),
            (
                "w1",
                Role::Worker,
                MachineState::Stopped,
                LocalSwarmState::Inactive,
            ),
        ]);
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(steps(&plan), ["start_machine m1", "start_machine w1"]);
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.to_string().contains("only brings machines back")));
    }

    #[test]
    fn an_unreachable_manager_blocks_init_and_is_not_replaced() {
        let desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let observed = cluster(&[
            (
                "m1",
                Role::Manager,
                MachineState::Unreachable,
                LocalSwarmState::Inactive,
            ),
            (
                "w1",
                Role::Worker,
                MachineState::Running,
                LocalSwarmState::Active,
            ),
        ]);
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert!(plan.steps.is_empty(), "{:?}", steps(&plan));
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.to_string().contains("m1 is unreachable")));
    }

    #[test]
    fn a_machine_of_another_swarm_is_refused_not_forced_out() {
        let desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let mut observed = Observed::with_members_of(&desired_with(&[("m1", Role::Manager)]));
        let mut w1 = machine("w1", Role::Worker);
        w1.swarm_state = LocalSwarmState::Active;
        w1.node_id = Some("someone-else".into());
        observed.machines.insert("w1".into(), w1);
        let error = plan(&desired, &observed, &PlanOptions::default()).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("w1") && text.contains("not this cluster's"),
            "{text}"
        );
        assert!(text.contains("docker swarm leave --force"), "{text}");
    }

    #[test]
    fn a_quorum_lost_to_stopped_managers_is_restored_by_starting_them() {
        let desired = desired_with(&[
            ("m1", Role::Manager),
            ("m2", Role::Manager),
            ("m3", Role::Manager),
        ]);
        let mut observed = Observed::with_members_of(&desired);
        for name in ["m2", "m3"] {
            observed.machines.get_mut(name).unwrap().state = MachineState::Stopped;
            let node = observed
                .nodes
                .values_mut()
                .find(|n| n.hostname == name)
                .unwrap();
            node.state = crate::model::NodeState::Down;
            node.reachability = Some(crate::model::Reachability::Unreachable);
        }
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(steps(&plan), ["start_machine m2", "start_machine m3"]);
        observed.machines.remove("m2");
        observed.machines.remove("m3");
        let error = plan_error(&desired, &observed);
        assert!(error.contains("lost quorum"), "{error}");
    }

    fn plan_error(desired: &crate::model::Desired, observed: &Observed) -> String {
        plan(desired, observed, &PlanOptions::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_locked_node_is_refused_with_the_unlock_advice() {
        let desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let mut observed = Observed::with_members_of(&desired);
        observed.machines.get_mut("w1").unwrap().swarm_state = LocalSwarmState::Locked;
        let text = plan(&desired, &observed, &PlanOptions::default())
            .unwrap_err()
            .to_string();
        assert!(text.contains("docker swarm unlock"), "{text}");
    }
}
