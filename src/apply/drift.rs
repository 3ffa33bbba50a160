//! Drift that arrives while apply waits for health (issue 18): each observation of the wait is
//! planned against the desired state (the planner is pure and cheap). A step that plan would
//! take is a change made since the apply (a hand scale, an edited spec): it ends the wait, so
//! the watcher's next pass brings it back at once, and a service that drifted is never
//! reported healthy, whatever its task counts say.
//!
//! A service swarm itself is rolling back is not drift: its health says so.

use crate::health::{Health, HealthState};
use crate::model::content_key::ContentKey;
use crate::model::observed::UpdateState;
use crate::model::{Desired, Observed};
use crate::plan::{plan, PlanOptions};

/// One change a fresh plan would undo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// The plan step's target (a service, a network, a machine).
    pub target: String,
    /// `action target: reason`, for people.
    pub line: String,
}

/// Whether swarm is rolling the service back or has rolled it back.
fn rolling_back(observed: &Observed, service: &str) -> bool {
    let state = observed
        .services
        .get(service)
        .and_then(|s| s.update_status.as_ref())
        .map(|u| u.state);
    matches!(
        state,
        Some(
            UpdateState::RollbackStarted
                | UpdateState::RollbackPaused
                | UpdateState::RollbackCompleted
        )
    )
}

/// What a plan of `observed` against `desired` would change, services swarm rolls back
/// aside; empty when it plans nothing or cannot plan (the wait goes on then). `content_key`:
/// the applied plan's new key, should the swarm still have none.
pub fn drift_of(
    desired: &Desired,
    observed: &Observed,
    revision: Option<String>,
    content_key: Option<ContentKey>,
) -> Vec<Drift> {
    let options = PlanOptions {
        revision,
        allow_destroy_all: true,
        routing_mesh: None,
        content_key,
    };
    let Ok(planned) = plan(desired, observed, &options) else {
        return Vec::new();
    };
    planned
        .steps
        .iter()
        .filter(|step| !rolling_back(observed, &step.target))
        .map(|step| Drift {
            target: step.target.clone(),
            line: format!("{} {}: {}", step.action(), step.target, step.reason),
        })
        .collect()
}

/// The health of `service` when it drifted while apply waited: not healthy, and settled (the
/// wait ended; the next pass or apply brings it back).
pub fn drifted_health(drift: &[Drift], service: &str) -> Option<Health> {
    let reasons: Vec<&str> = drift
        .iter()
        .filter(|d| d.target == service)
        .map(|d| d.line.as_str())
        .collect();
    if reasons.is_empty() {
        return None;
    }
    Some(Health {
        settled: true,
        ..Health::new(
            HealthState::Progressing,
            format!(
                "changed since the apply, so it is not known healthy ({}); the next pass brings it back",
                reasons.join("; ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::observed::UpdateStatus;
    use crate::model::Role;
    use crate::plan::testing::{desired_with, running, service, with_stack};

    fn applied() -> (Desired, Observed) {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let mut observed = Observed::with_members_of(&desired);
        let web = service("app", "web", "nginx", 3);
        with_stack(&mut desired, "app", vec![web.clone()]);
        running(&mut observed, vec![web]);
        (desired, observed)
    }

    #[test]
    fn a_hand_scale_is_drift_and_never_healthy() {
        let (desired, mut observed) = applied();
        assert!(drift_of(&desired, &observed, None, None).is_empty());
        let web = observed.services.get_mut("app_web").unwrap();
        web.spec.set_replicas(6);
        (web.running, web.desired) = (6, 6);
        let drift = drift_of(&desired, &observed, None, None);
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert!(
            drift[0].line.starts_with("scale_service app_web"),
            "{drift:?}"
        );
        let health = drifted_health(&drift, "app_web").unwrap();
        assert!(!health.is_healthy());
        assert!(health.reason.contains("6 → 3"), "{}", health.reason);
        assert!(drifted_health(&drift, "app_db").is_none());
    }

    #[test]
    fn a_rollback_by_swarm_is_not_drift() {
        let (desired, mut observed) = applied();
        let web = observed.services.get_mut("app_web").unwrap();
        web.spec.task_template.container_spec.image = "nginx:old".into();
        web.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackStarted,
            message: "update rolled back".into(),
        });
        assert!(drift_of(&desired, &observed, None, None).is_empty());
    }
}
