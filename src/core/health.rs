//! Health: whether each service runs as its spec asks, computed purely from its observed tasks
//! and its update status (DESIGN §6), as Argo CD does for Kubernetes objects.
//!
//! - `healthy`: as many current tasks run as are desired, and no update is under way or failed;
//! - `progressing`: a rollout or scale is under way and nothing has failed yet;
//! - `degraded`: tasks keep failing (rejected, e.g. "No such image"; exited with a code; stopped
//!   by a failing health check), no node is suitable, or the update paused or was rolled back;
//!   the reason names the task and the engine's error;
//! - `missing`: the service does not exist.
//!
//! A task is current when it runs the service's task template (see
//! [`ObservedTask::spec_key`]): tasks of the old spec still running mid-update do not count.

use crate::model::observed::{ObservedTask, TaskState, UpdateState};
use crate::model::{Availability, NodeState, Observed, ObservedNode, ObservedService};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a service is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Runs as its spec asks.
    Healthy,
    /// A rollout or scale is under way.
    Progressing,
    /// Tasks fail, cannot be placed, or the update paused or was rolled back.
    Degraded,
    /// Not created.
    Missing,
}

impl HealthState {
    /// The state's name in output, JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Progressing => "progressing",
            HealthState::Degraded => "degraded",
            HealthState::Missing => "missing",
        }
    }

    /// Every state, for metrics that export one series per state.
    pub const ALL: [HealthState; 4] = [
        HealthState::Healthy,
        HealthState::Progressing,
        HealthState::Degraded,
        HealthState::Missing,
    ];
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service's health and why (`{"state": "degraded", "reason": "..."}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The state.
    pub state: HealthState,
    /// Why, for every state but `healthy`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Whether the engine has stopped trying: the update paused or was rolled back, so waiting
    /// longer changes nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settled: bool,
}

impl Health {
    /// A health in `state` for `reason`, not settled.
    pub fn new(state: HealthState, reason: impl Into<String>) -> Health {
        Health {
            state,
            reason: reason.into(),
            settled: false,
        }
    }

    /// `healthy`.
    pub fn healthy() -> Health {
        Health::new(HealthState::Healthy, "")
    }

    /// `missing`: the service does not exist.
    pub fn missing() -> Health {
        Health::new(HealthState::Missing, "not created")
    }

    /// Whether it is `healthy`.
    pub fn is_healthy(&self) -> bool {
        self.state == HealthState::Healthy
    }

    /// `state` or `state: reason`, for one line of output.
    pub fn line(&self) -> String {
        if self.reason.is_empty() {
            self.state.to_string()
        } else {
            format!("{}: {}", self.state, self.reason)
        }
    }
}

/// The health of the service `name` in `observed` (`missing` when it does not exist).
pub fn health_of(observed: &Observed, name: &str) -> Health {
    match observed.services.get(name) {
        Some(service) => service_health(service, &tasks_of(observed, service), &observed.nodes),
        None => Health::missing(),
    }
}

/// The health of every service observed, by name.
pub fn all(observed: &Observed) -> BTreeMap<String, Health> {
    observed
        .services
        .keys()
        .map(|name| (name.clone(), health_of(observed, name)))
        .collect()
}

/// The tasks of `service`, newest first.
pub fn tasks_of<'a>(observed: &'a Observed, service: &ObservedService) -> Vec<&'a ObservedTask> {
    let mut tasks: Vec<&ObservedTask> = observed
        .tasks
        .iter()
        .filter(|t| t.service_id == service.id)
        .collect();
    newest_first(&mut tasks);
    tasks
}

/// Sorts tasks newest first (ties by ID, so the order is stable).
fn newest_first(tasks: &mut [&ObservedTask]) {
    tasks.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then(a.id.cmp(&b.id)));
}

/// The last `limit` task errors of the service `name`, newest first, one line each
/// (`task 2 on vm-worker1 rejected: No such image: app:2`).
pub fn task_errors(observed: &Observed, name: &str, limit: usize) -> Vec<String> {
    let Some(service) = observed.services.get(name) else {
        return Vec::new();
    };
    tasks_of(observed, service)
        .into_iter()
        .filter(|t| is_failure(service, t) || (t.wanted() && t.error.is_some()))
        .take(limit)
        .map(|t| describe(service, t, &observed.nodes, 1))
        .collect()
}

/// The health of one service from its tasks (any order) and the nodes (for their names).
pub fn service_health(
    service: &ObservedService,
    tasks: &[&ObservedTask],
    nodes: &BTreeMap<String, ObservedNode>,
) -> Health {
    let mut tasks: Vec<&ObservedTask> = tasks.to_vec();
    newest_first(&mut tasks);
    if let Some(update) = &service.update_status {
        // A rollback leaves the failed tasks of the new spec behind as old ones; an update
        // under way fails only by tasks of its own spec.
        let rolling_back = matches!(
            update.state,
            UpdateState::RollbackStarted
                | UpdateState::RollbackPaused
                | UpdateState::RollbackCompleted
        );
        let failure = tasks
            .iter()
            .find(|t| is_failure(service, t) && (rolling_back || is_current(service, t)))
            .map(|t| failure_line(service, t, &tasks, nodes));
        let detail = failure.clone().unwrap_or_else(|| update.message.clone());
        let settled = |what: &str| Health {
            state: HealthState::Degraded,
            reason: join(what, &detail),
            settled: true,
        };
        match update.state {
            UpdateState::RollbackCompleted => return settled("update rolled back"),
            UpdateState::RollbackPaused => return settled("rollback paused"),
            UpdateState::Paused => return settled("update paused"),
            UpdateState::RollbackStarted => {
                return Health::new(
                    HealthState::Degraded,
                    join("rolling back the update", &detail),
                )
            }
            UpdateState::Updating => {
                return match failure {
                    Some(failure) => Health::new(HealthState::Degraded, join("updating", &failure)),
                    None => Health::new(HealthState::Progressing, counts_line(service, &tasks)),
                }
            }
            UpdateState::Completed | UpdateState::Unknown => {}
        }
    }
    let (running, desired) = counts(service, &tasks);
    let failure = unplaced_or_failing(service, &tasks, nodes);
    if service.spec.is_job() {
        // A job is healthy once its tasks run or completed: apply does not wait for it to end.
        let starting = tasks
            .iter()
            .any(|t| is_current(service, t) && t.wanted() && t.state < TaskState::Running);
        return match (failure, starting) {
            (Some(failure), _) => Health::new(HealthState::Degraded, failure),
            (None, true) => Health::new(HealthState::Progressing, "job starting"),
            (None, false) => Health::healthy(),
        };
    }
    if running >= desired {
        return Health::healthy();
    }
    match failure {
        Some(failure) => Health::new(HealthState::Degraded, failure),
        None => Health::new(
            HealthState::Progressing,
            format!("{running}/{desired} tasks running"),
        ),
    }
}

/// `what: detail`, or `what` alone.
fn join(what: &str, detail: &str) -> String {
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {detail}")
    }
}

fn counts_line(service: &ObservedService, tasks: &[&ObservedTask]) -> String {
    let (running, desired) = counts(service, tasks);
    format!("updating, {running}/{desired} tasks running the new spec")
}

/// Current tasks running, and tasks desired: the engine's `ServiceStatus`, or, for a global
/// service, more when more nodes have a current task the orchestrator wants: 20.10 counts a
/// global service whose tasks are all rejected as `0/0`. Without any task listed (an engine
/// that does not list them), the service's own counts.
pub fn counts(service: &ObservedService, tasks: &[&ObservedTask]) -> (u64, u64) {
    if tasks.is_empty() {
        return (service.running, service.desired);
    }
    let running = tasks
        .iter()
        .filter(|t| t.is_running() && is_current(service, t))
        .count() as u64;
    if !service.spec.is_global() {
        return (running, service.desired);
    }
    let mut wanted_nodes: Vec<String> = tasks
        .iter()
        .filter(|t| t.wanted() && is_current(service, t))
        .map(|t| slot_key(t))
        .collect();
    wanted_nodes.sort();
    wanted_nodes.dedup();
    (running, service.desired.max(wanted_nodes.len() as u64))
}

/// Whether a global service still waits for tasks of its current spec: a ready, active node
/// has none (just created or updated, or the node just joined: the orchestrator has not placed
/// it yet, or no task of it matches its constraints). Its counts alone do not prove it healthy
/// then (`0/0`, or `2/2` before the third node's task exists).
pub fn awaiting_global_tasks(
    service: &ObservedService,
    tasks: &[&ObservedTask],
    nodes: &BTreeMap<String, ObservedNode>,
) -> bool {
    if !service.spec.is_global() {
        return false;
    }
    let placed: Vec<&str> = (tasks.iter())
        .filter(|t| is_current(service, t))
        .filter_map(|t| t.node_id.as_deref())
        .collect();
    let no_current_task = !tasks.iter().any(|t| is_current(service, t));
    no_current_task
        || nodes.values().any(|node| {
            node.state == NodeState::Ready
                && node.availability == Availability::Active
                && !placed.contains(&node.id.as_str())
        })
}

/// Whether a task runs the service's current template (unknown keys count as current).
fn is_current(service: &ObservedService, task: &ObservedTask) -> bool {
    match (&service.template_key, &task.spec_key) {
        (Some(service), Some(task)) => service == task,
        _ => true,
    }
}

/// Whether a task ended in a way that is a failure for its service: rejected, failed, or
/// (for a service that should keep running) exited.
fn is_failure(service: &ObservedService, task: &ObservedTask) -> bool {
    match task.state {
        TaskState::Failed | TaskState::Rejected => true,
        TaskState::Complete => !service.spec.is_job(),
        _ => false,
    }
}

/// The reason a service with too few tasks running is degraded: a wanted task that cannot be
/// placed ("no suitable node"), or the newest failure of a slot that has no task running.
fn unplaced_or_failing(
    service: &ObservedService,
    tasks: &[&ObservedTask],
    nodes: &BTreeMap<String, ObservedNode>,
) -> Option<String> {
    if let Some(pending) = tasks
        .iter()
        .find(|t| t.wanted() && t.state == TaskState::Pending && t.error.is_some())
    {
        return Some(describe(service, pending, nodes, 1));
    }
    let running: Vec<String> = tasks
        .iter()
        .filter(|t| t.is_running() && is_current(service, t))
        .map(|t| slot_key(t))
        .collect();
    tasks
        .iter()
        .filter(|t| is_failure(service, t) && !running.contains(&slot_key(t)))
        .find(|t| is_current(service, t))
        .map(|t| failure_line(service, t, tasks, nodes))
}

/// A failed task's line, with how often its slot failed.
fn failure_line(
    service: &ObservedService,
    task: &ObservedTask,
    tasks: &[&ObservedTask],
    nodes: &BTreeMap<String, ObservedNode>,
) -> String {
    let key = slot_key(task);
    let times = tasks
        .iter()
        .filter(|t| slot_key(t) == key && is_failure(service, t))
        .count();
    describe(service, task, nodes, times)
}

/// What groups the attempts of one task: its slot (replicated), else its node (global), else
/// itself.
fn slot_key(task: &ObservedTask) -> String {
    match (task.slot, &task.node_id) {
        (Some(slot), _) => format!("slot {slot}"),
        (None, Some(node)) => format!("node {node}"),
        (None, None) => task.id.clone(),
    }
}

/// One line about a task: `task 2 on vm-worker1 rejected (3 times): No such image: app:2`.
fn describe(
    service: &ObservedService,
    task: &ObservedTask,
    nodes: &BTreeMap<String, ObservedNode>,
    times: usize,
) -> String {
    let mut line = match task.slot {
        Some(slot) => format!("task {slot}"),
        None => format!("task {}", task.id.get(..12).unwrap_or(&task.id)),
    };
    if let Some(node) = &task.node_id {
        let name = nodes
            .get(node)
            .map(|n| n.machine.clone().unwrap_or_else(|| n.hostname.clone()))
            .unwrap_or_else(|| node.get(..12).unwrap_or(node).to_string());
        line.push_str(&format!(" on {name}"));
    }
    line.push(' ');
    line.push_str(task.state.as_str());
    if times > 1 {
        line.push_str(&format!(" ({times} times)"));
    }
    let checked = task.health_checked
        || service
            .spec
            .task_template
            .container_spec
            .healthcheck
            .as_ref()
            .is_some_and(|h| h.test.first().is_some_and(|t| t != "NONE"));
    let detail = match (&task.error, task.state, task.exit_code) {
        (Some(error), _, _) => error.clone(),
        (None, TaskState::Complete, code) if checked => format!(
            "exited with code {} before it became healthy: its health check fails",
            code.unwrap_or(0)
        ),
        (None, TaskState::Complete, code) => {
            format!("exited with code {} while it should run", code.unwrap_or(0))
        }
        (None, _, Some(code)) => format!("exit code {code}"),
        (None, _, None) => task.message.clone(),
    };
    if !detail.is_empty() {
        line.push_str(": ");
        line.push_str(&detail);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::observed::{UpdateState, UpdateStatus};
    use crate::model::ServiceSpec;

    fn service(desired: u64, running: u64) -> ObservedService {
        ObservedService {
            id: "svc".into(),
            version: 1,
            spec: ServiceSpec::default(),
            running,
            desired,
            update_status: None,
            template_key: Some("new".into()),
        }
    }

    fn task(slot: u64, state: TaskState, key: &str) -> ObservedTask {
        ObservedTask {
            id: format!("t{slot}{}", state.as_str()),
            service_id: "svc".into(),
            slot: Some(slot),
            node_id: None,
            desired_state: TaskState::Running,
            state,
            message: String::new(),
            error: None,
            exit_code: None,
            timestamp: 0,
            spec_key: Some(key.into()),
            health_checked: false,
        }
    }

    fn global_service() -> ObservedService {
        let mut global = service(0, 0);
        global.spec.mode = Some(crate::model::spec::ServiceMode {
            global: Some(Default::default()),
            ..Default::default()
        });
        global
    }

    #[test]
    fn a_global_service_whose_tasks_are_all_rejected_is_degraded_not_zero_of_zero() {
        let global = global_service();
        let rejected = |node: &str| ObservedTask {
            slot: None,
            node_id: Some(node.into()),
            desired_state: TaskState::Ready,
            error: Some("No such image: app:1".into()),
            ..task(0, TaskState::Rejected, "new")
        };
        let tasks = [rejected("n1"), rejected("n2")];
        let refs: Vec<&ObservedTask> = tasks.iter().collect();
        assert_eq!(counts(&global, &refs), (0, 2));
        // A replicated service's counts are the engine's (a scale-down shows its new target).
        let scaled_down = service(1, 1);
        let two = [
            task(1, TaskState::Running, "new"),
            task(2, TaskState::Running, "new"),
        ];
        let refs_two: Vec<&ObservedTask> = two.iter().collect();
        assert_eq!(counts(&scaled_down, &refs_two), (2, 1));
        let verdict = health(&global, &tasks);
        assert_eq!(verdict.state, HealthState::Degraded, "{verdict:?}");
        assert!(verdict.reason.contains("No such image"), "{verdict:?}");
        assert!(!awaiting_global_tasks(&global, &refs, &BTreeMap::new()));
    }

    #[test]
    fn a_global_service_without_tasks_yet_is_awaiting_them() {
        let global = global_service();
        let none = BTreeMap::new();
        assert!(awaiting_global_tasks(&global, &[], &none));
        let old = task(0, TaskState::Running, "old");
        assert!(awaiting_global_tasks(&global, &[&old], &none));
        assert!(!awaiting_global_tasks(&service(1, 0), &[], &none));
        // A node that just joined has no task yet; a drained one is not waited for.
        let node = |id: &str, availability: Availability| ObservedNode {
            id: id.into(),
            machine: None,
            hostname: id.into(),
            role: crate::model::Role::Worker,
            availability,
            labels: BTreeMap::new(),
            state: NodeState::Ready,
            leader: false,
            reachability: None,
            version: 1,
            down_for_seconds: None,
        };
        let on = |id: &str| ObservedTask {
            slot: None,
            node_id: Some(id.into()),
            ..task(0, TaskState::Running, "new")
        };
        let placed = [on("n1")];
        let placed: Vec<&ObservedTask> = placed.iter().collect();
        let joined = BTreeMap::from([
            ("n1".to_string(), node("n1", Availability::Active)),
            ("n2".to_string(), node("n2", Availability::Active)),
        ]);
        assert!(awaiting_global_tasks(&global, &placed, &joined));
        let drained = BTreeMap::from([
            ("n1".to_string(), node("n1", Availability::Active)),
            ("n2".to_string(), node("n2", Availability::Drain)),
        ]);
        assert!(!awaiting_global_tasks(&global, &placed, &drained));
    }

    fn health(service: &ObservedService, tasks: &[ObservedTask]) -> Health {
        let tasks: Vec<&ObservedTask> = tasks.iter().collect();
        service_health(service, &tasks, &BTreeMap::new())
    }

    #[test]
    fn without_tasks_the_service_counts_decide() {
        assert!(health(&service(2, 2), &[]).is_healthy());
        assert_eq!(health(&service(2, 1), &[]).state, HealthState::Progressing);
        assert!(health(&service(0, 0), &[]).is_healthy());
    }

    #[test]
    fn tasks_of_the_old_spec_do_not_count() {
        let tasks = [
            task(1, TaskState::Running, "old"),
            task(2, TaskState::Running, "new"),
        ];
        let got = health(&service(2, 2), &tasks);
        assert_eq!(got.state, HealthState::Progressing, "{got:?}");
        assert_eq!(got.reason, "1/2 tasks running");
    }

    #[test]
    fn a_failed_slot_with_nothing_running_degrades() {
        let mut failed = task(1, TaskState::Failed, "new");
        failed.error = Some("task: non-zero exit (3)".into());
        failed.desired_state = TaskState::Shutdown;
        let tasks = [failed, task(1, TaskState::Starting, "new")];
        let got = health(&service(1, 0), &tasks);
        assert_eq!(got.state, HealthState::Degraded);
        assert_eq!(got.reason, "task 1 failed: task: non-zero exit (3)");
        assert!(!got.settled);
    }

    #[test]
    fn a_paused_or_rolled_back_update_is_settled_and_degraded() {
        for (state, what) in [
            (UpdateState::Paused, "update paused"),
            (UpdateState::RollbackCompleted, "update rolled back"),
        ] {
            let mut svc = service(1, 1);
            svc.update_status = Some(UpdateStatus {
                state,
                message: "engine says".into(),
            });
            let got = health(&svc, &[task(1, TaskState::Running, "new")]);
            assert_eq!(got.state, HealthState::Degraded);
            assert!(got.settled);
            assert_eq!(got.reason, format!("{what}: engine says"));
        }
    }

    #[test]
    fn an_absent_service_is_missing() {
        assert_eq!(
            health_of(&Observed::default(), "web").state,
            HealthState::Missing
        );
    }
}
