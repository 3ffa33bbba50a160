//! The rule: which revision an apply records as the last healthy one. When an apply moves the
//! cluster from revision A to another, and every service of the stacks shoal manages was
//! healthy when the plan was made, A was healthy: it is recorded with the new revision, in the
//! same label write (so recording it costs no request of its own).

use crate::health;
use crate::model::{Observed, LABEL_STACK_NAMESPACE};

/// The revision to record as the last healthy one, given the observation the plan was made
/// from and the revision being applied: the observed revision when it is another one and every
/// stack service observed is healthy (and at least one runs); `None` otherwise (the label keeps
/// what it holds).
pub fn healthy_to_record(before: &Observed, applying: Option<&str>) -> Option<String> {
    let previous = before.revision().filter(|r| !r.is_empty())?;
    if Some(previous) == applying || before.healthy_revision() == Some(previous) {
        return None;
    }
    let mut managed = (before.services.iter())
        .filter(|(_, s)| s.spec.labels.contains_key(LABEL_STACK_NAMESPACE))
        .peekable();
    managed.peek()?;
    managed
        .all(|(name, _)| health::health_of(before, name).is_healthy())
        .then(|| previous.to_string())
}

/// The last healthy revision once an apply of `applying` over `before` has recorded its labels:
/// the one it records ([`healthy_to_record`]), else the one the swarm holds.
pub fn last_healthy(before: &Observed, applying: Option<&str>) -> Option<String> {
    healthy_to_record(before, applying).or_else(|| before.healthy_revision().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rollback::LABEL_HEALTHY;
    use crate::model::LABEL_REVISION;
    use crate::plan::testing::{observed_with, running, service};

    fn cluster(revision: &str, running_tasks: u64) -> Observed {
        let mut observed = observed_with(Vec::new());
        let swarm = observed.swarm.as_mut().unwrap();
        swarm
            .labels
            .insert(LABEL_REVISION.to_string(), revision.to_string());
        running(&mut observed, vec![service("app", "web", "web:1", 2)]);
        let web = observed.services.get_mut("app_web").unwrap();
        web.running = running_tasks;
        observed
    }

    #[test]
    fn a_healthy_cluster_moving_on_records_its_revision() {
        assert_eq!(
            healthy_to_record(&cluster("aaa", 2), Some("bbb")),
            Some("aaa".to_string())
        );
        // A working tree (no revision) applied over it records it too.
        assert_eq!(
            healthy_to_record(&cluster("aaa", 2), None),
            Some("aaa".to_string())
        );
    }

    #[test]
    fn the_same_revision_or_one_already_recorded_writes_nothing() {
        assert_eq!(healthy_to_record(&cluster("aaa", 2), Some("aaa")), None);
        let mut recorded = cluster("aaa", 2);
        let swarm = recorded.swarm.as_mut().unwrap();
        swarm
            .labels
            .insert(LABEL_HEALTHY.to_string(), "aaa".to_string());
        assert_eq!(healthy_to_record(&recorded, Some("bbb")), None);
    }

    #[test]
    fn the_last_healthy_is_the_one_recorded_now_else_the_swarms() {
        assert_eq!(
            last_healthy(&cluster("aaa", 2), Some("bbb")).as_deref(),
            Some("aaa")
        );
        let mut sick = cluster("bbb", 0);
        let swarm = sick.swarm.as_mut().unwrap();
        swarm
            .labels
            .insert(LABEL_HEALTHY.to_string(), "aaa".to_string());
        assert_eq!(last_healthy(&sick, Some("ccc")).as_deref(), Some("aaa"));
        assert_eq!(last_healthy(&cluster("aaa", 0), Some("bbb")), None);
    }

    #[test]
    fn an_unhealthy_or_empty_cluster_is_not_recorded() {
        assert_eq!(healthy_to_record(&cluster("aaa", 0), Some("bbb")), None);
        let mut empty = cluster("aaa", 2);
        empty.services.clear();
        assert_eq!(healthy_to_record(&empty, Some("bbb")), None);
        let mut unrecorded = cluster("aaa", 2);
        unrecorded.swarm.as_mut().unwrap().labels.clear();
        assert_eq!(healthy_to_record(&unrecorded, Some("bbb")), None);
    }
}
