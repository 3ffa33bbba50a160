//! Task placement in the sim: placement constraints and the per-service task lists.
//!
//! Like swarmkit's orchestrators, placement never rebalances: tasks stay where they are as
//! long as their node is ready, not drained and still matches the constraints. Only tasks
//! that lose their node, and new replicas, are placed, each on the eligible node that holds
//! the fewest tasks of that service, then the fewest tasks overall (ties by hostname, then
//! ID). A global service has one task per eligible node. Changing a service's task template
//! redeploys all its tasks (the caller clears them first).
//!
//! Tasks on a ready node run at once, except those of a service whose image starts with
//! [`MISSING_IMAGE_PREFIX`]: no node has it, so they are rejected as the engine rejects them.
//! A job's tasks complete at once, or fail (exit code 1) when its image starts with
//! [`FAILING_JOB_PREFIX`].

use super::state::{SimNode, SimSwarm, SimTask};
use crate::model::spec::ServiceSpec;
use crate::model::{Availability, NodeState};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The comparison of a constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
}

/// One parsed placement constraint, such as `node.labels.zone==a`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Constraint {
    key: String,
    operator: Operator,
    value: String,
}

impl Constraint {
    /// Parses `key==value` or `key!=value`, with optional spaces around the operator.
    pub(super) fn parse(text: &str) -> Result<Constraint, String> {
        let (key, operator, value) = if let Some((k, v)) = text.split_once("==") {
            (k, Operator::Equal, v)
        } else if let Some((k, v)) = text.split_once("!=") {
            (k, Operator::NotEqual, v)
        } else {
            return Err(format!(
                "invalid constraint {text:?}: constraint expected one operator from ==, !="
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() || value.contains("==") || value.contains("!=") {
            return Err(format!("invalid constraint {text:?}"));
        }
        Ok(Constraint {
            key: key.to_string(),
            operator,
            value: value.to_string(),
        })
    }

    /// Whether a node satisfies this constraint. Values compare case-insensitively; a label the
    /// node lacks matches only `!=`; unknown keys (and engine labels, which sim engines have
    /// none of) never match `==`.
    pub(super) fn matches(&self, node: &SimNode) -> bool {
        let lower = self.key.to_ascii_lowercase();
        let actual: Option<String> = if let Some(label) = self.key.strip_prefix("node.labels.") {
            node.labels.get(label).cloned()
        } else {
            match lower.as_str() {
                "node.id" => Some(node.id.clone()),
                "node.hostname" => Some(node.hostname.clone()),
                "node.role" => Some(node.role.as_str().to_string()),
                "node.platform.os" => Some("linux".to_string()),
                "node.platform.arch" => Some("x86_64".to_string()),
                _ => None,
            }
        };
        let equal = actual.is_some_and(|a| a.eq_ignore_ascii_case(&self.value));
        match self.operator {
            Operator::Equal => equal,
            Operator::NotEqual => !equal,
        }
    }
}

/// The image prefix the sim treats as present on no node: a service whose image starts with it
/// has every task rejected with the engine's "No such image" error (to try health without Docker).
pub(crate) const MISSING_IMAGE_PREFIX: &str = "missing/";

/// The image prefix of jobs whose tasks fail in the sim: each exits with code 1, as a failing
/// migration does (to try ordered rollouts and job failures without Docker).
pub(crate) const FAILING_JOB_PREFIX: &str = "failing/";

/// Whether the service is a job whose tasks fail in the sim (see [`FAILING_JOB_PREFIX`]).
pub(super) fn job_fails(spec: &ServiceSpec) -> bool {
    spec.is_job()
        && spec
            .task_template
            .container_spec
            .image
            .starts_with(FAILING_JOB_PREFIX)
}

/// Whether no sim node has the service's image (see [`MISSING_IMAGE_PREFIX`]).
pub(super) fn image_missing(spec: &ServiceSpec) -> bool {
    spec.task_template
        .container_spec
        .image
        .starts_with(MISSING_IMAGE_PREFIX)
}

/// The constraints of a service's spec.
pub(super) fn constraints_of(spec: &ServiceSpec) -> Result<Vec<Constraint>, String> {
    spec.task_template
        .placement
        .as_ref()
        .map(|p| p.constraints.iter().map(|c| Constraint::parse(c)).collect())
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// How a service wants its tasks spread.
enum Want {
    /// This many tasks, on any eligible nodes.
    Replicas(u64),
    /// One task per eligible node.
    PerNode,
}

fn want_of(spec: &ServiceSpec) -> Want {
    match &spec.mode {
        None => Want::Replicas(1),
        Some(mode) if mode.replicated.is_some() => Want::Replicas(spec.replicas().unwrap_or(1)),
        Some(mode) if mode.global.is_some() || mode.global_job.is_some() => Want::PerNode,
        Some(mode) => Want::Replicas(
            mode.replicated_job
                .as_ref()
                .and_then(|j| j.total_completions)
                .unwrap_or(1),
        ),
    }
}

/// Takes a task off its node, keeping the load count right.
fn unassign(task: &mut SimTask, load: &mut HashMap<&str, u64>) {
    if let Some(id) = task.node.take() {
        if let Some(count) = load.get_mut(id.as_str()) {
            *count = count.saturating_sub(1);
        }
    }
}

/// Brings the task lists in line with the nodes: every service's, or with `only` that one
/// service's (enough after a write to it alone, when every other service is placed already and
/// no node changed). Call it only while the swarm has a leader: without quorum nothing is
/// started, stopped or moved.
pub(super) fn reconcile(swarm: &mut SimSwarm, only: Option<&str>) {
    if only.is_some_and(|id| !swarm.services.contains_key(id)) {
        return;
    }
    let nodes = &swarm.nodes;
    let mut load: HashMap<&str, u64> = HashMap::new();
    for service in swarm.services.values() {
        for id in service.tasks.iter().filter_map(|t| t.node.as_deref()) {
            if let Some((id, _)) = nodes.get_key_value(id) {
                *load.entry(id.as_str()).or_insert(0) += 1;
            }
        }
    }
    let services = swarm
        .services
        .values_mut()
        .filter(|service| only.is_none_or(|id| service.id == id));
    for service in services {
        let constraints = constraints_of(&service.spec).unwrap_or_default();
        let fits = |node: &SimNode| constraints.iter().all(|c| c.matches(node));
        let keeps = |id: &str| {
            nodes.get(id).is_some_and(|n| {
                n.state == NodeState::Ready && n.availability != Availability::Drain && fits(n)
            })
        };
        let takes = |n: &SimNode| {
            n.state == NodeState::Ready && n.availability == Availability::Active && fits(n)
        };
        for task in service.tasks.iter_mut() {
            if task.node.as_deref().is_some_and(|id| !keeps(id)) {
                unassign(task, &mut load);
            }
        }
        match want_of(&service.spec) {
            Want::PerNode => {
                let mut seen = std::collections::HashSet::new();
                let mut kept = Vec::with_capacity(service.tasks.len());
                for mut task in service.tasks.drain(..) {
                    match task.node.clone() {
                        Some(id) if seen.insert(id.clone()) => kept.push(task),
                        _ => unassign(&mut task, &mut load),
                    }
                }
                for node in nodes.values().filter(|n| takes(n)) {
                    if seen.insert(node.id.clone()) {
                        *load.entry(node.id.as_str()).or_insert(0) += 1;
                        kept.push(SimTask {
                            node: Some(node.id.clone()),
                        });
                    }
                }
                service.tasks = kept;
            }
            Want::Replicas(wanted) => {
                let wanted = usize::try_from(wanted).unwrap_or(usize::MAX);
                let max_per_node = service
                    .spec
                    .task_template
                    .placement
                    .as_ref()
                    .and_then(|p| p.max_replicas)
                    .filter(|m| *m > 0);
                let mut mine: HashMap<&str, u64> = HashMap::new();
                for id in service.tasks.iter().filter_map(|t| t.node.as_deref()) {
                    if let Some((id, _)) = nodes.get_key_value(id) {
                        *mine.entry(id.as_str()).or_insert(0) += 1;
                    }
                }
                while service.tasks.len() > wanted {
                    let victim = service
                        .tasks
                        .iter()
                        .rposition(|t| t.node.is_none())
                        .or_else(|| {
                            (0..service.tasks.len()).max_by_key(|&i| {
                                let id = service.tasks[i].node.as_deref().unwrap_or_default();
                                (
                                    mine.get(id).copied().unwrap_or(0),
                                    load.get(id).copied().unwrap_or(0),
                                    i,
                                )
                            })
                        });
                    let Some(index) = victim else { break };
                    let mut task = service.tasks.remove(index);
                    if let Some(id) = task.node.as_deref() {
                        if let Some(count) = mine.get_mut(id) {
                            *count = count.saturating_sub(1);
                        }
                    }
                    unassign(&mut task, &mut load);
                }
                if service.tasks.len() < wanted {
                    service.tasks.resize_with(wanted, || SimTask { node: None });
                }
                if service.tasks.iter().any(|t| t.node.is_none()) {
                    let mut heap: BinaryHeap<Reverse<(u64, u64, &str, &str)>> = nodes
                        .values()
                        .filter(|n| takes(n))
                        .map(|n| {
                            Reverse((
                                mine.get(n.id.as_str()).copied().unwrap_or(0),
                                load.get(n.id.as_str()).copied().unwrap_or(0),
                                n.hostname.as_str(),
                                n.id.as_str(),
                            ))
                        })
                        .filter(|Reverse((m, ..))| max_per_node.is_none_or(|max| *m < max))
                        .collect();
                    for task in service.tasks.iter_mut().filter(|t| t.node.is_none()) {
                        let Some(Reverse((m, l, host, id))) = heap.pop() else {
                            break;
                        };
                        task.node = Some(id.to_string());
                        *load.entry(id).or_insert(0) += 1;
                        if max_per_node.is_none_or(|max| m + 1 < max) {
                            heap.push(Reverse((m + 1, l + 1, host, id)));
                        }
                    }
                }
            }
        }
    }
}
