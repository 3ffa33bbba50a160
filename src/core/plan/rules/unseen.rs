//! Unseen is not in sync (DESIGN §2): what could not be observed is listed with the plan, so an
//! empty plan of a cluster whose machines did not answer (a wrong CA, a rejected certificate, a
//! frozen host) is never taken for "the cluster matches".

use crate::model::{MachineState, Observed, Role};
use crate::plan::model::Unseen;

/// The machines whose engines did not answer, and the swarm when no manager could be read
/// because its managers are among them.
pub fn unseen_parts(observed: &Observed) -> Vec<Unseen> {
    let silent: Vec<_> = observed
        .machines
        .values()
        .filter(|m| m.state == MachineState::Unreachable)
        .collect();
    let mut unseen: Vec<Unseen> = silent
        .iter()
        .map(|m| Unseen {
            what: format!("machine {}", m.name),
            why: m
                .problem
                .clone()
                .unwrap_or_else(|| "its engine does not answer".to_string()),
        })
        .collect();
    let silent_managers: Vec<&str> = silent
        .iter()
        .filter(|m| m.created_role != Some(Role::Worker))
        .map(|m| m.name.as_str())
        .collect();
    if observed.swarm.is_none() && !silent_managers.is_empty() {
        unseen.push(Unseen {
            what: "the swarm".to_string(),
            why: format!(
                "no manager could be read; {} did not answer",
                silent_managers.join(", ")
            ),
        });
    }
    unseen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Desired;
    use crate::plan::testing::{desired_with, machine};

    #[test]
    fn a_silent_only_manager_hides_the_machine_and_the_swarm() {
        let mut observed = Observed::default();
        let mut m1 = machine("m1", Role::Manager);
        m1.state = MachineState::Unreachable;
        m1.problem = Some("invalid peer certificate: UnknownIssuer".into());
        observed.machines.insert("m1".into(), m1);
        let unseen = unseen_parts(&observed);
        assert_eq!(unseen.len(), 2, "{unseen:?}");
        assert_eq!(unseen[0].what, "machine m1");
        assert!(unseen[0].why.contains("UnknownIssuer"));
        assert_eq!(unseen[1].what, "the swarm");
    }

    #[test]
    fn a_cluster_that_answers_hides_nothing() {
        let desired: Desired = desired_with(&[("m1", Role::Manager)]);
        assert!(unseen_parts(&Observed::with_members_of(&desired)).is_empty());
    }

    #[test]
    fn an_empty_plan_of_an_unseen_cluster_says_so() {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        desired.driver = crate::model::DriverKind::Generic;
        let mut observed = Observed::default();
        let mut m1 = machine("m1", Role::Manager);
        m1.state = MachineState::Unreachable;
        m1.swarm_state = Default::default();
        m1.node_id = None;
        observed.machines.insert("m1".into(), m1);
        let plan =
            crate::plan::plan(&desired, &observed, &crate::plan::PlanOptions::default()).unwrap();
        assert!(plan.is_empty());
        assert!(!plan.saw_everything());
    }
}
