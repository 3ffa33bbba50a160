//! What apply did, as `apply --json` prints it (DESIGN §2).

use super::model::{Action, StepId};
use crate::health::Health;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Carried out.
    Done,
    /// Failed; its dependents were skipped.
    Failed,
    /// Not run because a step it depends on failed.
    Skipped,
}

/// One step's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The plan step's id.
    pub id: StepId,
    /// Its action.
    pub action: Action,
    /// Its target.
    pub target: String,
    /// How it ended.
    pub status: StepStatus,
    /// How long it took.
    pub seconds: f64,
    /// Why it failed.
    pub error: Option<String>,
}

/// The outcome of an apply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Revision applied.
    pub revision: Option<String>,
    /// Each step's outcome, in plan order.
    pub steps: Vec<StepReport>,
    /// Mutating Docker API requests and driver actions actually sent.
    pub writes: u64,
    /// Whether a fresh observation after the apply plans to nothing.
    pub converged: bool,
    /// Wall time of the whole apply.
    pub seconds: f64,
    /// When not converged: what a fresh plan still wants (`action target`), or why it could not plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<String>,
    /// In a dry run, the writes that would have been sent, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run_writes: Vec<String>,
    /// Each service of the stacks, by name, and its health at the end (DESIGN §6).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub health: BTreeMap<String, Health>,
    /// The services the apply created or changed and waited for to become healthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waited_for: Vec<String>,
    /// Changes made to the cluster while apply waited for health (`action target: reason`
    /// of the steps a fresh plan takes): they ended the wait, and the next pass brings them back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}

impl ApplyReport {
    /// The steps that failed, each as `action target: error`.
    pub fn failed_steps(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::Failed)
            .map(|s| {
                format!(
                    "{} {}: {}",
                    s.action,
                    s.target,
                    s.error.as_deref().unwrap_or("failed")
                )
            })
            .collect()
    }

    /// Whether the service `name` was changed by hand while apply waited (a line of `drift`,
    /// `action target: reason`, names it): then its health is not the apply's doing.
    pub fn drifted(&self, name: &str) -> bool {
        self.drift.iter().any(|line| drift_target(line) == name)
    }

    /// The services waited for that did not end healthy (a rollback, a paused update, failing
    /// tasks, or still progressing at the timeout), with their health.
    pub fn unhealthy(&self) -> Vec<(&str, &Health)> {
        self.waited_for
            .iter()
            .filter_map(|name| {
                let health = self.health.get(name)?;
                (!health.is_healthy()).then_some((name.as_str(), health))
            })
            .collect()
    }
}

/// The target of a drift line (`action target: reason`).
fn drift_target(line: &str) -> &str {
    let step = line.split(':').next().unwrap_or_default();
    step.split_whitespace().nth(1).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::drift_target;

    #[test]
    fn a_drift_line_names_its_target() {
        assert_eq!(
            drift_target("scale_service app_web: replicas: 6 → 3"),
            "app_web"
        );
        assert_eq!(drift_target(""), "");
    }
}
