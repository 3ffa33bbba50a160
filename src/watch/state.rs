//! What the watcher knows about its last passes: the `/status` JSON, the HTML page's data.

use crate::notify::Delivery;
use crate::plan::{Plan, Summary};
use crate::render::Status;
use crate::source::follow::Tip;
use serde::Serialize;

/// What is followed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    /// `local` or `remote`.
    pub kind: String,
    /// The folder, or the URL without credentials.
    pub location: String,
    /// The branch, once known (a remote's default branch is learnt on the first fetch).
    pub branch: Option<String>,
}

/// The last plan made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanInfo {
    /// The commit it was made from.
    pub revision: Option<String>,
    /// Counts by effect.
    pub summary: Summary,
    /// `action target` of each step, in order.
    pub steps: Vec<String>,
    /// The planner's warnings.
    pub warnings: Vec<String>,
    /// `what: why` of each part of the cluster that could not be seen (unseen is not in sync).
    pub unseen: Vec<String>,
}

impl PlanInfo {
    /// The plan in brief.
    pub fn of(plan: &Plan) -> PlanInfo {
        PlanInfo {
            revision: plan.revision.clone(),
            summary: plan.summary,
            steps: plan
                .steps
                .iter()
                .map(|s| format!("{} {}", s.action(), s.target))
                .collect(),
            warnings: plan.warnings.iter().map(ToString::to_string).collect(),
            unseen: plan
                .unseen
                .iter()
                .map(|u| format!("{}: {}", u.what, u.why))
                .collect(),
        }
    }
}

/// The last apply carried out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApplyInfo {
    /// The commit applied.
    pub revision: Option<String>,
    /// Writes sent.
    pub writes: u64,
    /// Whether the cluster matched afterwards.
    pub converged: bool,
    /// Wall time.
    pub seconds: f64,
    /// `action target: error` of the steps that failed.
    pub failed: Vec<String>,
    /// What a fresh plan still wanted afterwards.
    pub remaining: Vec<String>,
    /// When it ended, Unix time.
    pub at: u64,
}

/// The last error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorInfo {
    /// When, Unix time.
    pub at: u64,
    /// The commit it concerned, when one was read.
    pub revision: Option<String>,
    /// What went wrong.
    pub message: String,
}

/// The last pass.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PassInfo {
    /// When it ended, Unix time.
    pub at: u64,
    /// How long it took.
    pub seconds: f64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// What a pass amounted to, in the revision history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassResult {
    /// Nothing to do: the cluster matched.
    Unchanged,
    /// A commit was applied (or recorded, when it changes nothing in the cluster).
    Applied,
    /// The commit had not changed, the cluster had: drift was put back.
    DriftHealed,
    /// Paused with a plan pending: nothing was written.
    Paused,
    /// The branch tip does not load or plan; the cluster is held to the last good commit.
    BrokenTip,
    /// The pass failed (a step, the engine, the lock, a service left not healthy).
    Failed,
    /// The commit left a service degraded and was rolled back to the last healthy revision.
    RolledBack,
}

/// One entry of the revision history: a pass, or several alike in a row (`passes`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// When the (last of the) pass(es) ended, Unix time.
    pub at: u64,
    /// The commit the pass held the cluster to, else the tip it read.
    pub commit: Option<String>,
    /// What it amounted to.
    pub result: PassResult,
    /// How long it took.
    pub seconds: f64,
    /// Writes sent (a rollback's included).
    pub writes: u64,
    /// How many passes in a row this entry stands for (alike passes with nothing to do, a
    /// paused cluster planned again, are folded into one).
    pub passes: u64,
}

impl HistoryEntry {
    /// Whether `next` folds into this entry: the same commit and result, nothing written.
    fn folds(&self, next: &HistoryEntry) -> bool {
        self.commit == next.commit
            && self.result == next.result
            && self.writes == 0
            && next.writes == 0
            && matches!(
                next.result,
                PassResult::Unchanged | PassResult::Paused | PassResult::BrokenTip
            )
    }
}

/// How many entries the revision history keeps.
pub const HISTORY_SHOWN: usize = 20;

/// Adds `entry` to `history` (newest first, at most [`HISTORY_SHOWN`]), folding it into the
/// newest entry when they are alike.
pub fn push_history(history: &mut Vec<HistoryEntry>, entry: HistoryEntry) {
    if let Some(newest) = history.first_mut().filter(|newest| newest.folds(&entry)) {
        newest.at = entry.at;
        newest.seconds = entry.seconds;
        newest.passes += 1;
        return;
    }
    history.insert(0, entry);
    history.truncate(HISTORY_SHOWN);
}

/// Which commit a pass held the cluster to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// The branch tip.
    Tip,
    /// The last commit that loaded and planned, because the tip does not.
    LastGood,
    /// The last healthy revision, because the tip failed and was rolled back
    /// (`policy.on_failure: rollback`).
    Held,
}

/// The commit the last pass held the cluster to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetInfo {
    /// The commit's full hash.
    pub revision: String,
    /// The first line of its message.
    pub summary: String,
    /// `tip`, `last_good` while the tip is broken, or `held` while the tip failed and was
    /// rolled back.
    pub kind: TargetKind,
}

/// Where the watcher is in its life, as `/status` tells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The first pass has not run yet.
    #[default]
    Starting,
    /// At least one pass has run.
    Watching,
}

impl StatusReport {
    /// This report, told whether a first pass has run: before it, it says it is starting
    /// rather than leaving its empty fields unexplained.
    pub fn with_readiness(self, ready: bool) -> StatusReport {
        StatusReport {
            ready,
            phase: if ready {
                Phase::Watching
            } else {
                Phase::Starting
            },
            message: (!ready).then(|| {
                "starting: the first pass has not run yet, so nothing is observed or applied so far"
                    .to_string()
            }),
            ..self
        }
    }
}

/// `GET /status`: the watcher's view, and the cluster's as `shoal status --json` prints it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatusReport {
    /// What is followed.
    pub source: SourceInfo,
    /// Whether a first pass has run.
    pub ready: bool,
    /// `starting` until the first pass has run (the fields below are empty until then), then
    /// `watching`.
    pub phase: Phase,
    /// While starting: what that means for the empty fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The commit recorded in the swarm as applied (`io.shoal.revision`).
    pub revision: Option<String>,
    /// The commit the cluster was last found to match: the target of the last pass that
    /// converged (the tip, or the last good commit while the tip is broken).
    pub synced_revision: Option<String>,
    /// The tip of the branch when last read.
    pub tip: Option<Tip>,
    /// The last pass.
    pub last_reconcile: Option<PassInfo>,
    /// When a pass last succeeded, Unix time.
    pub last_success_at: Option<u64>,
    /// The last plan made.
    pub last_plan: Option<PlanInfo>,
    /// The last apply carried out.
    pub last_apply: Option<ApplyInfo>,
    /// The last error, kept after later passes succeed (compare `at` with `last_success_at`).
    pub last_error: Option<ErrorInfo>,
    /// The last fetch's error (remote only); the last fetched commit is used meanwhile.
    pub fetch_error: Option<String>,
    /// Passes run.
    pub reconciles: u64,
    /// Passes failed.
    pub errors: u64,
    /// The cluster as last observed.
    pub cluster: Option<Status>,
    /// When `cluster` was observed, Unix time; every pass that reaches the cluster observes it.
    pub observed_at: Option<u64>,
    /// The commit the last pass that planned held the cluster to: the tip, or the last good
    /// commit while the tip is broken.
    pub target: Option<TargetInfo>,
    /// Why the branch tip does not load or plan, while it does not; cleared by a tip that does.
    pub tip_error: Option<ErrorInfo>,
    /// The last notifications to the `notify:` webhooks and how each went, newest first (at
    /// most [`NOTIFICATIONS_SHOWN`]); absent until one is sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Delivery>,
    /// The last passes, newest first (at most [`HISTORY_SHOWN`]): commit, result, duration,
    /// writes.
    pub history: Vec<HistoryEntry>,
    /// The plan not carried out, while the cluster is paused or the last pass failed; absent
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_plan: Option<PlanInfo>,
}

/// How many notifications `/status` keeps.
pub const NOTIFICATIONS_SHOWN: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: u64, commit: &str, result: PassResult, writes: u64) -> HistoryEntry {
        HistoryEntry {
            at,
            commit: Some(commit.to_string()),
            result,
            seconds: 0.5,
            writes,
            passes: 1,
        }
    }

    #[test]
    fn the_history_keeps_the_last_twenty_and_folds_idle_passes() {
        let mut history = Vec::new();
        push_history(&mut history, entry(1, "a", PassResult::Applied, 4));
        push_history(&mut history, entry(2, "a", PassResult::Unchanged, 0));
        push_history(&mut history, entry(3, "a", PassResult::Unchanged, 0));
        assert_eq!(history.len(), 2, "{history:?}");
        assert_eq!((history[0].at, history[0].passes), (3, 2));
        push_history(&mut history, entry(4, "b", PassResult::Unchanged, 0));
        push_history(&mut history, entry(5, "b", PassResult::Failed, 0));
        push_history(&mut history, entry(6, "b", PassResult::Failed, 0));
        assert_eq!(history.len(), 5, "failures are never folded: {history:?}");
        for at in 10..40 {
            push_history(&mut history, entry(at, "c", PassResult::Applied, 1));
        }
        assert_eq!(history.len(), HISTORY_SHOWN);
        assert_eq!(history[0].at, 39);
        let json = serde_json::to_value(&history[0]).unwrap();
        assert_eq!(json["result"], "applied");
        assert_eq!(json["commit"], "c");
    }

    #[test]
    fn before_the_first_pass_the_status_says_it_is_starting() {
        let starting = serde_json::to_value(StatusReport::default().with_readiness(false)).unwrap();
        assert_eq!(starting["phase"], "starting");
        assert_eq!(starting["ready"], false);
        assert!(starting["message"]
            .as_str()
            .unwrap()
            .starts_with("starting"));
        let watching = serde_json::to_value(StatusReport::default().with_readiness(true)).unwrap();
        assert_eq!(watching["phase"], "watching");
        assert!(watching.get("message").is_none());
    }
}
