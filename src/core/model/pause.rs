//! A paused cluster (`shoal pause`): while the swarm carries the pause labels, apply refuses to
//! write (unless `--ignore-pause`) and the watcher observes and plans but writes nothing.
//! The labels say who paused it, since when and why; `shoal resume` removes them.

use serde::Serialize;
use std::collections::BTreeMap;

/// Swarm label: who paused the cluster (`user@host`).
pub const LABEL_PAUSED_BY: &str = "io.shoal.paused.by";
/// Swarm label: since when, Unix time.
pub const LABEL_PAUSED_SINCE: &str = "io.shoal.paused.since";
/// Swarm label: why, as given to `shoal pause --reason`.
pub const LABEL_PAUSED_REASON: &str = "io.shoal.paused.reason";

/// Who paused a cluster, since when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pause {
    /// `user@host` of whoever ran `shoal pause`.
    pub by: String,
    /// Unix time.
    pub since: u64,
    /// The reason given, possibly empty.
    pub reason: String,
}

impl Pause {
    /// The pause the swarm labels describe; `None` when the cluster is not paused. A label
    /// edited into nonsense still pauses (since 0): a pause is never lifted by a typo.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<Pause> {
        let by = labels.get(LABEL_PAUSED_BY)?;
        Some(Pause {
            by: by.clone(),
            since: labels
                .get(LABEL_PAUSED_SINCE)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            reason: labels.get(LABEL_PAUSED_REASON).cloned().unwrap_or_default(),
        })
    }

    /// Sets this pause's labels in `labels`.
    pub fn write_into(&self, labels: &mut BTreeMap<String, String>) {
        labels.insert(LABEL_PAUSED_BY.to_string(), self.by.clone());
        labels.insert(LABEL_PAUSED_SINCE.to_string(), self.since.to_string());
        labels.insert(LABEL_PAUSED_REASON.to_string(), self.reason.clone());
    }

    /// Removes every pause label from `labels`; whether there was one.
    pub fn clear(labels: &mut BTreeMap<String, String>) -> bool {
        let removed: Vec<bool> = [LABEL_PAUSED_BY, LABEL_PAUSED_SINCE, LABEL_PAUSED_REASON]
            .iter()
            .map(|label| labels.remove(*label).is_some())
            .collect();
        removed.contains(&true)
    }

    /// One line for people: "paused by X since T: reason".
    pub fn line(&self, since: &str) -> String {
        let reason = if self.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", self.reason)
        };
        format!("paused by {} since {since}{reason}", self.by)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_round_trips_through_labels_and_clears() {
        let pause = Pause {
            by: "ana@ops1".into(),
            since: 1_700_000_000,
            reason: "db migration".into(),
        };
        let mut labels = BTreeMap::from([("io.shoal.revision".to_string(), "abc".to_string())]);
        pause.write_into(&mut labels);
        assert_eq!(Pause::from_labels(&labels), Some(pause.clone()));
        assert!(Pause::clear(&mut labels));
        assert_eq!(Pause::from_labels(&labels), None);
        assert_eq!(labels.len(), 1, "other labels are kept");
        assert!(!Pause::clear(&mut labels));
    }

    #[test]
    fn a_garbled_pause_still_pauses() {
        let labels = BTreeMap::from([
            (LABEL_PAUSED_BY.to_string(), "x".to_string()),
            (LABEL_PAUSED_SINCE.to_string(), "yesterday".to_string()),
        ]);
        let pause = Pause::from_labels(&labels).unwrap();
        assert_eq!(pause.since, 0);
        assert_eq!(pause.line("then"), "paused by x since then");
    }
}
