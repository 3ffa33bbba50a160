//! The rule: what a rollback applies. The last healthy revision's stacks (services, networks,
//! secrets, configs), with the machines, driver, policy and webhooks of the revision applied
//! now: a rollback never creates, removes or re-roles a machine, nor touches swarm membership.

use crate::model::Desired;

/// The desired state of a rollback to `healthy` from `current`: `healthy`'s stacks and their
/// load warnings, everything else `current`'s.
pub fn rollback_desired(current: &Desired, healthy: Desired) -> Desired {
    let mut warnings = current.warnings.clone();
    warnings.extend(
        (healthy.warnings.into_iter())
            .map(|w| format!("(the last healthy revision) {w}"))
            .filter(|w| !current.warnings.contains(w)),
    );
    Desired {
        stacks: healthy.stacks,
        warnings,
        ..current.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;
    use crate::plan::testing::{desired_with, service, with_stack};

    #[test]
    fn the_stacks_come_from_the_healthy_revision_and_the_machines_from_now() {
        let mut healthy = desired_with(&[("m1", Role::Manager)]);
        with_stack(&mut healthy, "app", vec![service("app", "web", "web:1", 2)]);
        healthy.warnings.push("w-old".into());
        let mut current = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        with_stack(&mut current, "app", vec![service("app", "web", "web:2", 2)]);
        current.policy.prune = false;
        let rollback = rollback_desired(&current, healthy.clone());
        assert_eq!(rollback.stacks, healthy.stacks);
        assert_eq!(rollback.machines, current.machines);
        assert!(!rollback.policy.prune);
        assert_eq!(rollback.warnings, ["(the last healthy revision) w-old"]);
    }
}
