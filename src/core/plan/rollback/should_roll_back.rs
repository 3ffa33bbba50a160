//! The rule: an apply that left a service it changed degraded (tasks failing, its update
//! paused, or swarm rolled it back) is rolled back to the last healthy revision, when the
//! policy asks for it and such a revision is known and is another one.

use crate::health::HealthState;
use crate::model::OnFailure;
use crate::plan::report::ApplyReport;

/// What to do after an apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to roll back: the policy holds, or no service the apply changed is degraded.
    Stay,
    /// A service the apply changed is degraded, but there is nothing to roll back to.
    Cannot {
        /// The degraded services, `name: health`, joined by `; `.
        failing: String,
        /// Why not, for people.
        why: String,
    },
    /// Apply the services, secrets and configs of revision `to` again.
    RollBack {
        /// The last healthy revision.
        to: String,
        /// The degraded services, `name: health`, joined by `; `.
        failing: String,
    },
}

/// Decides whether `report`'s apply is rolled back: under `on_failure: rollback`, when a
/// service it created or changed (and waited for) ended degraded or missing, to `healthy`, the
/// last revision recorded as healthy, unless that is the revision just applied. A service changed
/// by hand while apply waited is not the commit's failure and does not count; a service still
/// progressing when the wait ended is not degraded.
pub fn should_roll_back(
    on_failure: OnFailure,
    report: &ApplyReport,
    healthy: Option<&str>,
) -> Verdict {
    if on_failure == OnFailure::Hold {
        return Verdict::Stay;
    }
    let failing: Vec<String> = (report.unhealthy().into_iter())
        .filter(|(name, health)| {
            matches!(health.state, HealthState::Degraded | HealthState::Missing)
                && !report.drifted(name)
        })
        .map(|(name, health)| format!("{name}: {}", health.line()))
        .collect();
    if failing.is_empty() {
        return Verdict::Stay;
    }
    let failing = failing.join("; ");
    match healthy {
        None => Verdict::Cannot {
            failing,
            why: "no revision is recorded as healthy yet (the first one is recorded when the next commit is applied over a healthy cluster)".to_string(),
        },
        Some(healthy) if report.revision.as_deref() == Some(healthy) => Verdict::Cannot {
            failing,
            why: "the last healthy revision is the one just applied".to_string(),
        },
        Some(healthy) => Verdict::RollBack {
            to: healthy.to_string(),
            failing,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Health;
    use std::collections::BTreeMap;

    fn report(health: &[(&str, HealthState)]) -> ApplyReport {
        ApplyReport {
            revision: Some("b".repeat(40)),
            steps: Vec::new(),
            writes: 1,
            converged: true,
            seconds: 1.0,
            remaining: Vec::new(),
            dry_run_writes: Vec::new(),
            health: (health.iter())
                .map(|(name, state)| (name.to_string(), Health::new(*state, "task 1 failed")))
                .chain([(
                    "app_other".to_string(),
                    Health::new(HealthState::Degraded, "x"),
                )])
                .collect::<BTreeMap<_, _>>(),
            waited_for: health.iter().map(|(name, _)| name.to_string()).collect(),
            drift: Vec::new(),
        }
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn a_degraded_changed_service_rolls_back_to_the_healthy_revision() {
        let verdict = should_roll_back(
            OnFailure::Rollback,
            &report(&[
                ("app_web", HealthState::Degraded),
                ("app_db", HealthState::Healthy),
            ]),
            Some(A),
        );
        assert_eq!(
            verdict,
            Verdict::RollBack {
                to: A.to_string(),
                failing: "app_web: degraded: task 1 failed".to_string()
            }
        );
    }

    #[test]
    fn the_hold_policy_never_rolls_back() {
        let degraded = report(&[("app_web", HealthState::Degraded)]);
        assert_eq!(
            should_roll_back(OnFailure::Hold, &degraded, Some(A)),
            Verdict::Stay
        );
    }

    #[test]
    fn healthy_or_still_progressing_changed_services_stay() {
        let fine = report(&[("app_web", HealthState::Healthy)]);
        assert_eq!(
            should_roll_back(OnFailure::Rollback, &fine, Some(A)),
            Verdict::Stay
        );
        let slow = report(&[("app_web", HealthState::Progressing)]);
        assert_eq!(
            should_roll_back(OnFailure::Rollback, &slow, Some(A)),
            Verdict::Stay
        );
    }

    #[test]
    fn an_unchanged_degraded_service_is_not_this_commits_failure() {
        // app_other is degraded but the apply did not change it (not waited for).
        let fine = report(&[("app_web", HealthState::Healthy)]);
        assert!(fine.health["app_other"].state == HealthState::Degraded);
        assert_eq!(
            should_roll_back(OnFailure::Rollback, &fine, Some(A)),
            Verdict::Stay
        );
    }

    #[test]
    fn a_service_changed_by_hand_during_the_wait_does_not_count() {
        let mut drifted = report(&[("app_web", HealthState::Degraded)]);
        drifted.drift = vec!["scale_service app_web: replicas: 6 → 3".to_string()];
        assert_eq!(
            should_roll_back(OnFailure::Rollback, &drifted, Some(A)),
            Verdict::Stay
        );
    }

    #[test]
    fn without_another_healthy_revision_it_cannot() {
        let degraded = report(&[("app_web", HealthState::Missing)]);
        let Verdict::Cannot { failing, why } =
            should_roll_back(OnFailure::Rollback, &degraded, None)
        else {
            panic!("expected Cannot");
        };
        assert_eq!(failing, "app_web: missing: task 1 failed");
        assert!(why.contains("no revision is recorded as healthy"), "{why}");
        let itself = degraded.revision.clone();
        assert!(matches!(
            should_roll_back(OnFailure::Rollback, &degraded, itself.as_deref()),
            Verdict::Cannot { .. }
        ));
    }
}
