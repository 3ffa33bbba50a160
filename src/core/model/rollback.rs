//! Rollback to the last healthy revision (`policy.on_failure: rollback`, DESIGN §9): the swarm
//! labels that record the last healthy revision and the commit held back because it failed.
//!
//! The labels live on the swarm object beside `io.shoal.revision`, so a restarted watcher
//! knows which revision was healthy last and which commit it must not apply again until the
//! branch moves.

use serde::Serialize;
use std::collections::BTreeMap;

/// Swarm label: the last revision whose services were all found healthy.
pub const LABEL_HEALTHY: &str = "io.shoal.revision.healthy";
/// Swarm label: the commit that failed and was rolled back; not applied again while it is the tip.
pub const LABEL_FAILED: &str = "io.shoal.failed.revision";
/// Swarm label: why that commit failed (the services and their health).
pub const LABEL_FAILED_REASON: &str = "io.shoal.failed.reason";

/// Longest reason kept in a label: swarm labels are small, and the reason is for people.
const REASON_MAX: usize = 1000;

/// A cluster held at its last healthy revision because a later commit failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The revision re-applied: the last healthy one (`A`).
    pub at: String,
    /// The commit that failed (`B`): not applied again while it is the branch tip.
    pub failed: String,
    /// Why it failed.
    pub reason: String,
}

impl Held {
    /// The hold the swarm labels describe: the failed commit and its reason, held at the
    /// applied revision. `None` when no commit is marked failed, or no revision is recorded to
    /// hold at (labels edited by hand), or both are the same commit.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<Held> {
        let failed = labels.get(LABEL_FAILED).filter(|f| !f.is_empty())?;
        let at =
            (labels.get(super::LABEL_REVISION)).filter(|at| !at.is_empty() && *at != failed)?;
        Some(Held {
            at: at.clone(),
            failed: failed.clone(),
            reason: labels.get(LABEL_FAILED_REASON).cloned().unwrap_or_default(),
        })
    }

    /// Sets the failed commit's labels in `labels` (the held revision is `io.shoal.revision`,
    /// which the rollback's apply writes).
    pub fn write_into(&self, labels: &mut BTreeMap<String, String>) {
        labels.insert(LABEL_FAILED.to_string(), self.failed.clone());
        let reason: String = self.reason.chars().take(REASON_MAX).collect();
        labels.insert(LABEL_FAILED_REASON.to_string(), reason);
    }

    /// Removes the failed commit's labels from `labels`; whether there were any.
    pub fn clear(labels: &mut BTreeMap<String, String>) -> bool {
        let failed = labels.remove(LABEL_FAILED).is_some();
        labels.remove(LABEL_FAILED_REASON).is_some() || failed
    }

    /// One line for people: "held at A, B failed: reason" (commits shortened to 12 characters).
    pub fn line(&self) -> String {
        let reason = if self.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", self.reason)
        };
        format!(
            "held at {}, {} failed{reason}",
            short(&self.at),
            short(&self.failed)
        )
    }
}

/// The first 12 characters of a commit hash.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        (pairs.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_hold_round_trips_through_labels_and_clears() {
        let held = Held {
            at: "a".repeat(40),
            failed: "b".repeat(40),
            reason: "app_web: degraded: task 1 failed".into(),
        };
        let mut current = labels(&[("io.shoal.revision", &"a".repeat(40))]);
        held.write_into(&mut current);
        assert_eq!(Held::from_labels(&current), Some(held.clone()));
        assert_eq!(
            held.line(),
            "held at aaaaaaaaaaaa, bbbbbbbbbbbb failed: app_web: degraded: task 1 failed"
        );
        assert!(Held::clear(&mut current));
        assert_eq!(Held::from_labels(&current), None);
        assert_eq!(current.len(), 1, "the revision is kept");
        assert!(!Held::clear(&mut current));
    }

    #[test]
    fn an_empty_or_absent_failed_label_holds_nothing() {
        let revision = "io.shoal.revision";
        assert_eq!(
            Held::from_labels(&labels(&[(LABEL_FAILED, ""), (revision, "a")])),
            None
        );
        assert_eq!(Held::from_labels(&labels(&[])), None);
    }

    #[test]
    fn a_hold_needs_another_revision_to_hold_at() {
        let revision = "io.shoal.revision";
        assert_eq!(Held::from_labels(&labels(&[(LABEL_FAILED, "b")])), None);
        assert_eq!(
            Held::from_labels(&labels(&[(LABEL_FAILED, "b"), (revision, "")])),
            None
        );
        assert_eq!(
            Held::from_labels(&labels(&[(LABEL_FAILED, "b"), (revision, "b")])),
            None
        );
        assert!(Held::from_labels(&labels(&[(LABEL_FAILED, "b"), (revision, "a")])).is_some());
    }

    #[test]
    fn a_long_reason_is_cut_in_the_label() {
        let held = Held {
            at: "a".into(),
            failed: "b".into(),
            reason: "é".repeat(5000),
        };
        let mut out = BTreeMap::new();
        held.write_into(&mut out);
        assert_eq!(out[LABEL_FAILED_REASON].chars().count(), REASON_MAX);
    }
}
