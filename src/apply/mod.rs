//! Apply: carries out a plan's steps over the driver and the engines, in dependency order.
//!
//! Independent steps run in parallel up to a bound; manager changes are chained by the
//! planner, so they run one at a time. Every step is idempotent (an object that already
//! exists, or is already gone, counts as done), so a re-run after a crash converges.
//! Updates retry with a fresh version on "update out of sequence".

pub mod progress;
pub mod record;

use crate::drivers::{Driver, DriverError};
use crate::engine::{EngineError, NodeSpecUpdate, Swarm};
use crate::model::observed::LocalSwarmState;
use crate::model::report::{ApplyReport, StepReport, StepStatus};
use crate::model::{Desired, MachineSpec, NodeState, ObservedNode, Role, LABEL_REVISION};
use crate::observe::observe;
use crate::plan::{plan as make_plan, Action, Plan, PlanOptions, Step, LABEL_STACKS};
use progress::Progress;
use record::Recorder;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// How apply runs.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Steps running at once.
    pub parallelism: usize,
    /// Record writes instead of sending them.
    pub dry_run: bool,
    /// Who takes the apply lock (host and process).
    pub holder: String,
    /// How long the lock lives if this process dies.
    pub lock_ttl_seconds: u64,
    /// How long to wait for a node to go down after it leaves.
    pub node_wait: Duration,
    /// How long the cluster may take to settle before apply reports it as not converged.
    pub settle: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 4,
            dry_run: false,
            holder: format!("shoal-{}", std::process::id()),
            lock_ttl_seconds: 600,
            node_wait: Duration::from_secs(60),
            settle: Duration::from_secs(10),
        }
    }
}

/// Why apply could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The lock is held, or the driver failed before any step.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Carries out `plan`, then observes again and reports whether the cluster now matches `desired`.
pub async fn apply(
    plan: &Plan,
    desired: &Desired,
    driver: Arc<dyn Driver>,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<ApplyReport, ApplyError> {
    let started = Instant::now();
    let recorder = Recorder::new(driver.clone(), options.dry_run);
    let stacks: Vec<&str> = desired.stacks.keys().map(String::as_str).collect();
    let mut labels = BTreeMap::new();
    if let Some(revision) = &plan.revision {
        labels.insert(LABEL_REVISION.to_string(), revision.clone());
    }
    labels.insert(LABEL_STACKS.to_string(), stacks.join(","));

    let locked = !plan.steps.is_empty() && !options.dry_run;
    if locked {
        driver
            .lock(&options.holder, unix_now(), options.lock_ttl_seconds)
            .await?;
    }
    let executor = Arc::new(Executor {
        driver: Arc::new(recorder.clone()),
        manager: Mutex::new(None),
        node_wait: options.node_wait,
    });
    let steps = run_steps(&executor, plan, options.parallelism.max(1), progress).await;
    let all_done = steps.iter().all(|s| s.status == StepStatus::Done);
    let mut label_error = None;
    if all_done && !plan.steps.is_empty() {
        if let Err(e) = executor.record_labels(&labels).await {
            label_error = Some(e);
        }
    } else if plan.steps.is_empty() && plan.revision.is_some() {
        // A commit that changes nothing in the cluster (a README edit) is still the applied
        // revision; the label is written only when it differs, so a re-apply sends nothing.
        if let Err(e) = executor.record_labels(&labels).await {
            tracing::debug!("no swarm to record the revision in: {e}");
        }
    }
    if locked {
        if let Err(e) = driver.unlock(&options.holder).await {
            tracing::warn!("could not release the apply lock: {e}");
        }
    }
    if let Some(e) = label_error {
        tracing::warn!("could not record the applied revision: {e}");
    }
    let remaining = if options.dry_run {
        plan.steps
            .iter()
            .map(|s| format!("{} {}", s.action, s.target))
            .collect()
    } else {
        remaining_after(&driver, desired, plan.revision.clone(), options.settle).await
    };
    Ok(ApplyReport {
        revision: plan.revision.clone(),
        steps,
        writes: recorder.writes(),
        converged: remaining.is_empty(),
        remaining,
        seconds: started.elapsed().as_secs_f64(),
        dry_run_writes: recorder.recorded(),
    })
}

/// What a fresh observation still plans (`action target`, or the planning error), empty when the
/// cluster matches. The engine settles asynchronously (a joined node reports `ready`, a demoted
/// manager leaves Raft a moment later), so a non-empty answer is asked again for up to `settle`.
async fn remaining_after(
    driver: &Arc<dyn Driver>,
    desired: &Desired,
    revision: Option<String>,
    settle: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + settle;
    loop {
        let remaining = match observe(driver, unix_now()).await {
            Ok(observed) => match make_plan(
                desired,
                &observed,
                &PlanOptions {
                    revision: revision.clone(),
                    allow_destroy_all: true,
                    routing_mesh: None,
                },
            ) {
                Ok(plan) => plan
                    .steps
                    .iter()
                    .map(|s| format!("{} {}", s.action, s.target))
                    .collect(),
                Err(e) => vec![format!("cannot plan: {e}")],
            },
            Err(e) => vec![format!("cannot observe: {e}")],
        };
        if remaining.is_empty() || Instant::now() >= deadline {
            return remaining;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the step graph: a step starts when all it depends on is done; it is skipped when
/// something it depends on failed or was skipped.
async fn run_steps(
    executor: &Arc<Executor>,
    plan: &Plan,
    parallelism: usize,
    progress: &dyn Progress,
) -> Vec<StepReport> {
    let total = plan.steps.len();
    let mut reports: HashMap<u32, StepReport> = HashMap::new();
    let mut running: JoinSet<(u32, f64, Result<(), String>)> = JoinSet::new();
    let mut started: Vec<bool> = vec![false; total];
    loop {
        for (index, step) in plan.steps.iter().enumerate() {
            if started[index] || running.len() >= parallelism {
                continue;
            }
            let deps: Vec<Option<StepStatus>> = step
                .depends_on
                .iter()
                .map(|d| reports.get(d).map(|r| r.status))
                .collect();
            if deps
                .iter()
                .any(|d| matches!(d, Some(StepStatus::Failed | StepStatus::Skipped)))
            {
                started[index] = true;
                let report = StepReport {
                    id: step.id,
                    action: step.action,
                    target: step.target.clone(),
                    status: StepStatus::Skipped,
                    seconds: 0.0,
                    error: Some("a step it depends on did not succeed".to_string()),
                };
                progress.finished(step, &report, reports.len() + 1, total);
                reports.insert(step.id, report);
                continue;
            }
            if deps.iter().all(|d| *d == Some(StepStatus::Done)) {
                started[index] = true;
                progress.started(step, reports.len() + running.len() + 1, total);
                let executor = executor.clone();
                let step = step.clone();
                running.spawn(async move {
                    let begin = Instant::now();
                    let result = executor.run(&step).await;
                    (step.id, begin.elapsed().as_secs_f64(), result)
                });
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (id, seconds, result) = match joined {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!("a step task panicked: {e}");
                continue;
            }
        };
        let step = plan
            .steps
            .iter()
            .find(|s| s.id == id)
            .expect("step of the plan");
        let report = StepReport {
            id,
            action: step.action,
            target: step.target.clone(),
            status: if result.is_ok() {
                StepStatus::Done
            } else {
                StepStatus::Failed
            },
            seconds,
            error: result.err(),
        };
        progress.finished(step, &report, reports.len() + 1, total);
        reports.insert(id, report);
    }
    plan.steps
        .iter()
        .map(|s| {
            reports.remove(&s.id).unwrap_or(StepReport {
                id: s.id,
                action: s.action,
                target: s.target.clone(),
                status: StepStatus::Skipped,
                seconds: 0.0,
                error: Some("not reached".to_string()),
            })
        })
        .collect()
}

/// Attempts for an update that keeps meeting "update out of sequence".
const VERSION_RETRIES: usize = 8;

/// Carries out single steps.
struct Executor {
    driver: Arc<dyn Driver>,
    /// The manager engine in use, found on first need.
    manager: Mutex<Option<(String, Arc<dyn Swarm>)>>,
    node_wait: Duration,
}

fn engine_err(context: &str) -> impl Fn(EngineError) -> String + '_ {
    move |e| format!("{context}: {e}")
}

fn driver_err(context: &str) -> impl Fn(DriverError) -> String + '_ {
    move |e| format!("{context}: {e}")
}

impl Executor {
    async fn engine(&self, machine: &str) -> Result<Arc<dyn Swarm>, String> {
        self.driver
            .engine(machine)
            .await
            .map_err(driver_err(&format!("cannot reach {machine}")))
    }

    /// A manager's engine: the one in use, else the first machine whose engine serves the
    /// control API.
    async fn manager(&self) -> Result<Arc<dyn Swarm>, String> {
        let mut current = self.manager.lock().await;
        if let Some((_, engine)) = current.as_ref() {
            return Ok(engine.clone());
        }
        let machines = self
            .driver
            .list()
            .await
            .map_err(driver_err("cannot list machines"))?;
        for machine in machines {
            let Ok(engine) = self.driver.engine(&machine.name).await else {
                continue;
            };
            if engine.info().await.is_ok_and(|i| i.control_available) {
                *current = Some((machine.name.clone(), engine.clone()));
                return Ok(engine);
            }
        }
        Err("no manager answers: is the swarm initialized and in quorum?".to_string())
    }

    async fn use_manager(&self, machine: &str) -> Result<Arc<dyn Swarm>, String> {
        let engine = self.engine(machine).await?;
        *self.manager.lock().await = Some((machine.to_string(), engine.clone()));
        Ok(engine)
    }

    /// Forgets the manager in use when it stopped being one (demoted, removed).
    async fn forget_manager(&self, machine: &str) {
        let mut current = self.manager.lock().await;
        if current.as_ref().is_some_and(|(name, _)| name == machine) {
            *current = None;
        }
    }

    async fn run(&self, step: &Step) -> Result<(), String> {
        let d = &step.detail;
        let target = step.target.as_str();
        match step.action {
            Action::CreateMachine => {
                let spec = MachineSpec {
                    name: target.to_string(),
                    role: d.role.unwrap_or(Role::Worker),
                    labels: d.labels.clone().unwrap_or_default(),
                    host: None,
                };
                match self.driver.create(&spec).await {
                    Ok(()) | Err(DriverError::MachineExists(_)) => Ok(()),
                    Err(e) => Err(format!("cannot create {target}: {e}")),
                }
            }
            Action::DestroyMachine => {
                self.forget_manager(target).await;
                match self.driver.destroy(target).await {
                    Ok(()) | Err(DriverError::NoSuchMachine(_)) => Ok(()),
                    Err(e) => Err(format!("cannot destroy {target}: {e}")),
                }
            }
            Action::InitSwarm => self.init_swarm(step).await,
            Action::JoinSwarm => self.join_swarm(step).await,
            Action::PromoteNode | Action::DemoteNode => {
                let role = if step.action == Action::PromoteNode {
                    Role::Manager
                } else {
                    Role::Worker
                };
                if role == Role::Worker {
                    self.forget_manager(target).await;
                }
                let id = self.node_id(step).await?;
                if role == Role::Manager {
                    return self.update_node(&id, |spec| spec.role = role).await;
                }
                self.demote(&id).await
            }
            Action::DrainNode => {
                let id = self.node_id(step).await?;
                self.update_node(&id, |spec| {
                    spec.availability = crate::model::Availability::Drain
                })
                .await
            }
            Action::UpdateNode => {
                let id = self.node_id(step).await?;
                let labels = d.labels.clone();
                let availability = d.availability;
                self.update_node(&id, |spec| {
                    if let Some(labels) = &labels {
                        spec.labels = labels.clone();
                    }
                    if let Some(availability) = availability {
                        spec.availability = availability;
                    }
                })
                .await
            }
            Action::RemoveNode => self.remove_node(step).await,
            Action::CreateNetwork => {
                let network = d
                    .network
                    .as_ref()
                    .ok_or("create_network without a network")?;
                let manager = self.manager().await?;
                match manager.create_network(network).await {
                    Ok(_) | Err(EngineError::Conflict(_)) => Ok(()),
                    Err(e) => Err(format!("cannot create network {target}: {e}")),
                }
            }
            Action::CreateSecret | Action::CreateConfig => {
                let object = d.object.as_ref().ok_or("create step without an object")?;
                let manager = self.manager().await?;
                let result = if step.action == Action::CreateSecret {
                    manager.create_secret(object).await
                } else {
                    manager.create_config(object).await
                };
                match result {
                    Ok(_) | Err(EngineError::Conflict(_)) => Ok(()),
                    Err(e) => Err(format!("cannot create {target}: {e}")),
                }
            }
            Action::RemoveNetwork
            | Action::RemoveSecret
            | Action::RemoveConfig
            | Action::RemoveService => {
                let id = d.id.clone().ok_or("removal without an object id")?;
                let manager = self.manager().await?;
                let result = match step.action {
                    Action::RemoveNetwork => manager.remove_network(&id).await,
                    Action::RemoveSecret => manager.remove_secret(&id).await,
                    Action::RemoveConfig => manager.remove_config(&id).await,
                    _ => manager.remove_service(&id).await,
                };
                match result {
                    Ok(()) | Err(EngineError::NotFound(_)) => Ok(()),
                    Err(e) => Err(format!("cannot remove {target}: {e}")),
                }
            }
            Action::CreateService => {
                let spec = d.service.as_ref().ok_or("create_service without a spec")?;
                let manager = self.manager().await?;
                match manager.create_service(spec).await {
                    Ok(_) | Err(EngineError::Conflict(_)) => Ok(()),
                    Err(e) => Err(format!("cannot create service {target}: {e}")),
                }
            }
            Action::UpdateService => {
                let spec = d.service.clone().ok_or("update_service without a spec")?;
                self.update_service(target, move |current| {
                    let mut next = (*spec).clone();
                    next.task_template.force_update = current.task_template.force_update;
                    next
                })
                .await
            }
            Action::ScaleService => {
                let replicas = d.replicas.ok_or("scale_service without replicas")?;
                self.update_service(target, move |current| {
                    let mut next = current.clone();
                    next.set_replicas(replicas);
                    next
                })
                .await
            }
            Action::RebalanceService => {
                self.update_service(target, |current| {
                    let mut next = current.clone();
                    next.task_template.force_update += 1;
                    next
                })
                .await
            }
        }
    }

    async fn init_swarm(&self, step: &Step) -> Result<(), String> {
        let machine = step
            .detail
            .via
            .as_deref()
            .ok_or("init_swarm without a machine")?;
        let engine = self.engine(machine).await?;
        let info = engine.info().await.map_err(engine_err(machine))?;
        if info.swarm_state == LocalSwarmState::Active && info.control_available {
            if step.detail.force != Some(true) {
                self.use_manager(machine).await?;
                return Ok(());
            }
            engine
                .leave_swarm(true)
                .await
                .map_err(engine_err("cannot leave the old swarm"))?;
        } else if info.swarm_state != LocalSwarmState::Inactive {
            engine
                .leave_swarm(true)
                .await
                .map_err(engine_err("cannot leave the old swarm"))?;
        }
        engine
            .init_swarm()
            .await
            .map_err(engine_err(&format!("cannot init the swarm on {machine}")))?;
        self.use_manager(machine).await?;
        Ok(())
    }

    async fn join_swarm(&self, step: &Step) -> Result<(), String> {
        let target = step.target.as_str();
        let d = &step.detail;
        let manager = match d.via.as_deref() {
            Some(via) => match self.engine(via).await {
                Ok(engine) if engine.info().await.is_ok_and(|i| i.control_available) => engine,
                _ => self.manager().await?,
            },
            None => self.manager().await?,
        };
        let address = manager
            .info()
            .await
            .map_err(engine_err("manager"))?
            .node_addr;
        let tokens = manager
            .join_tokens()
            .await
            .map_err(engine_err("cannot read the join tokens"))?;
        let engine = self.engine(target).await?;
        let info = engine.info().await.map_err(engine_err(target))?;
        let members = manager
            .list_nodes()
            .await
            .map_err(engine_err("cannot list nodes"))?;
        let already = info.swarm_state == LocalSwarmState::Active
            && info
                .node_id
                .as_ref()
                .is_some_and(|id| members.iter().any(|n| &n.id == id));
        if !already {
            if info.swarm_state != LocalSwarmState::Inactive {
                engine
                    .leave_swarm(true)
                    .await
                    .map_err(engine_err(&format!("{target} cannot leave its old swarm")))?;
            }
            let token = if d.role == Some(Role::Manager) {
                &tokens.manager
            } else {
                &tokens.worker
            };
            engine
                .join_swarm(&address, token)
                .await
                .map_err(engine_err(&format!("{target} cannot join")))?;
        }
        if let Some(labels) = &d.labels {
            let id = engine
                .info()
                .await
                .map_err(engine_err(target))?
                .node_id
                .ok_or_else(|| format!("{target} reports no node ID after joining"))?;
            let labels = labels.clone();
            self.update_node(&id, |spec| spec.labels = labels.clone())
                .await?;
        }
        Ok(())
    }

    /// The node a step acts on: the plan's node ID, else the one its machine's engine reports.
    async fn node_id(&self, step: &Step) -> Result<String, String> {
        if let Some(id) = &step.detail.node_id {
            return Ok(id.clone());
        }
        let engine = self.engine(&step.target).await?;
        engine
            .info()
            .await
            .map_err(engine_err(&step.target))?
            .node_id
            .ok_or_else(|| format!("{} is not in the swarm", step.target))
    }

    async fn find_node(
        &self,
        manager: &Arc<dyn Swarm>,
        id: &str,
    ) -> Result<Option<ObservedNode>, String> {
        let nodes = manager
            .list_nodes()
            .await
            .map_err(engine_err("cannot list nodes"))?;
        Ok(nodes.into_iter().find(|n| n.id == id))
    }

    /// Inspect → modify → update with the version, retried on "update out of sequence".
    async fn update_node(
        &self,
        id: &str,
        change: impl Fn(&mut NodeSpecUpdate),
    ) -> Result<(), String> {
        for _ in 0..VERSION_RETRIES {
            let manager = self.manager().await?;
            let node = self
                .find_node(&manager, id)
                .await?
                .ok_or_else(|| format!("node {id} is not in the swarm"))?;
            let mut spec = NodeSpecUpdate {
                role: node.role,
                availability: node.availability,
                labels: node.labels.clone(),
            };
            change(&mut spec);
            match manager.update_node(id, node.version, spec).await {
                Ok(()) => return Ok(()),
                Err(EngineError::OutOfSequence(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => return Err(format!("cannot update node {id}: {e}")),
            }
        }
        Err(format!(
            "node {id} kept changing while being updated; run apply again"
        ))
    }

    /// Demotes a manager and waits until it has left the Raft group. The engine removes the
    /// member asynchronously; until it has, a next demotion may be refused as a loss of quorum
    /// that the planner has already ruled out, so such a refusal is retried while the group
    /// settles.
    async fn demote(&self, id: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.node_wait;
        loop {
            match self.update_node(id, |spec| spec.role = Role::Worker).await {
                Ok(()) => break,
                Err(e) if e.contains("loss of quorum") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await
                }
                Err(e) => return Err(e),
            }
        }
        loop {
            let manager = self.manager().await?;
            match self.find_node(&manager, id).await? {
                Some(node) if node.reachability.is_some() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await
                }
                _ => return Ok(()),
            }
        }
    }

    async fn remove_node(&self, step: &Step) -> Result<(), String> {
        let target = step.target.as_str();
        let id = step
            .detail
            .node_id
            .clone()
            .ok_or("remove_node without a node id")?;
        let mut force = step.detail.force == Some(true);
        if !force {
            let left = match self.driver.engine(target).await {
                Ok(engine) => engine.leave_swarm(false).await,
                Err(e) => Err(EngineError::Unreachable(e.to_string())),
            };
            match left {
                Ok(()) => self.wait_until_down(&id).await?,
                Err(e) => {
                    tracing::warn!(
                        "{target} could not leave the swarm ({e}); removing its node with force"
                    );
                    force = true;
                }
            }
        }
        let manager = self.manager().await?;
        match manager.remove_node(&id, force).await {
            Ok(()) | Err(EngineError::NotFound(_)) => Ok(()),
            Err(e) => Err(format!("cannot remove node {target}: {e}")),
        }
    }

    async fn wait_until_down(&self, id: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.node_wait;
        loop {
            let manager = self.manager().await?;
            match self.find_node(&manager, id).await? {
                None => return Ok(()),
                Some(node) if node.state != NodeState::Ready => return Ok(()),
                Some(_) if Instant::now() >= deadline => {
                    return Err(format!(
                        "node {id} still reports ready {}s after leaving",
                        self.node_wait.as_secs()
                    ))
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Inspect → change → update a service with its version, retried on "update out of sequence".
    async fn update_service(
        &self,
        name: &str,
        change: impl Fn(&crate::model::ServiceSpec) -> crate::model::ServiceSpec,
    ) -> Result<(), String> {
        for _ in 0..VERSION_RETRIES {
            let manager = self.manager().await?;
            let services = manager
                .list_services()
                .await
                .map_err(engine_err("cannot list services"))?;
            let Some(current) = services.into_iter().find(|s| s.spec.name == name) else {
                return Err(format!("service {name} does not exist"));
            };
            let next = change(&current.spec);
            match manager
                .update_service(&current.id, current.version, &next)
                .await
            {
                Ok(()) => return Ok(()),
                Err(EngineError::OutOfSequence(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => return Err(format!("cannot update service {name}: {e}")),
            }
        }
        Err(format!(
            "service {name} kept changing while being updated; run apply again"
        ))
    }

    /// Records the applied revision and the managed stacks as swarm labels, when they differ.
    async fn record_labels(&self, labels: &BTreeMap<String, String>) -> Result<(), String> {
        for _ in 0..VERSION_RETRIES {
            let manager = self.manager().await?;
            let swarm = manager
                .inspect_swarm()
                .await
                .map_err(engine_err("cannot inspect the swarm"))?;
            let mut next = swarm.labels.clone();
            next.extend(labels.clone());
            if next == swarm.labels {
                return Ok(());
            }
            match manager.update_swarm_labels(swarm.version, next).await {
                Ok(()) => return Ok(()),
                Err(EngineError::OutOfSequence(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => return Err(format!("cannot label the swarm: {e}")),
            }
        }
        Err("the swarm kept changing while being labelled".to_string())
    }
}
