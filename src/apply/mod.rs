//! Apply: carries out a plan's steps over the driver and the engines, in dependency order.
//!
//! Independent steps run in parallel up to a bound; manager changes are chained by the
//! planner, so they run one at a time. Every step is idempotent (an object that already
//! exists, or is already gone, counts as done), so a re-run after a crash converges.
//! Updates retry with a fresh version on "update out of sequence".

pub mod drift;
pub mod progress;
pub mod record;
pub mod rollback;

use crate::clock::unix_now;
use crate::drivers::lock::LockHolder;
use crate::drivers::{Driver, DriverError};
use crate::engine::{EngineError, EngineResult, NodeSpecUpdate, Swarm};
use crate::health;
use crate::model::content_key::{ContentKey, LABEL_CONTENT_KEY};
use crate::model::observed::LocalSwarmState;
use crate::model::rollback::{Held, LABEL_HEALTHY};
use crate::model::{
    node_labels_to_store, Availability, Condition, Desired, MachineSpec, NodeState, Observed,
    ObservedNode, ObservedService, Role, ServiceSpec, LABEL_CLUSTER, LABEL_MACHINE, LABEL_REVISION,
};
use crate::observe::observe;
use crate::plan::report::{ApplyReport, StepReport, StepStatus};
use crate::plan::rollback::healthy_to_record;
use crate::plan::{
    plan as make_plan, stacks_to_remember, Plan, PlanOptions, Step, StepId, StepOp, LABEL_STACKS,
};
use progress::Progress;
use record::Recorder;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tracing::Instrument;

/// How apply runs.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Steps running at once.
    pub parallelism: usize,
    /// Record writes instead of sending them.
    pub dry_run: bool,
    /// Who takes the apply lock (host and process).
    pub holder: LockHolder,
    /// How long the lock lives if this process dies.
    pub lock_ttl_seconds: u64,
    /// How long to wait for a node to go down after it leaves.
    pub node_wait: Duration,
    /// How long the cluster may take to settle before apply reports it as not converged.
    pub settle: Duration,
    /// How long to wait, after the steps, for the services they created or changed to become
    /// healthy (`--timeout`); `None` does not wait (`--no-wait`), and only reports health.
    pub wait: Option<Duration>,
    /// The observation the plan was made from (under the lock): when the plan is empty and
    /// apply writes nothing, it is the cluster afterwards too, and no second look is taken.
    pub observation: Option<Observed>,
    /// Set by a rollback: the commit rolled back from and why, recorded in the swarm with the
    /// revision applied (the last healthy one), so no shoal applies that commit again while it
    /// is the branch tip.
    pub held: Option<Held>,
    /// Whether the caller took the apply lock already (it planned under it, see
    /// [`crate::observe::Planning::lock`]) and hands it over: apply does not take it again,
    /// renews it while the steps run and releases it once they are done, as when it takes it
    /// itself (it is never held while apply waits for health).
    pub lock_held: bool,
}

/// How long apply waits for the services it changed by default (`--timeout`).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 4,
            dry_run: false,
            holder: LockHolder::this_process("shoal apply"),
            lock_ttl_seconds: 600,
            node_wait: Duration::from_secs(60),
            settle: Duration::from_secs(10),
            wait: Some(DEFAULT_WAIT),
            observation: None,
            held: None,
            lock_held: false,
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

/// apply's exit code: 1 when a step did not succeed, a service it waited for is not healthy, or
/// the cluster did not converge although apply `waited` for it; else 0. `--no-wait` asks only
/// that every step be sent (the cluster may still be settling), and a dry run converges nothing.
pub fn exit_code(report: &ApplyReport, dry_run: bool, waited: bool) -> u8 {
    let failed = report.steps.iter().any(|s| s.status != StepStatus::Done);
    let unconverged = !report.converged && !dry_run && waited;
    u8::from(failed || !report.unhealthy().is_empty() || unconverged)
}

/// Carries out `plan`, then observes again and reports whether the cluster now matches `desired`.
pub async fn apply(
    plan: &Plan,
    desired: &Desired,
    driver: Arc<dyn Driver>,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<ApplyReport, ApplyError> {
    Ok(apply_observing(plan, desired, driver, options, progress)
        .await?
        .0)
}

/// [`apply`], with the cluster as apply saw it last (after its steps, or at the end of its
/// wait for health); `None` for a dry run, or when it could not be observed.
pub async fn apply_observing(
    plan: &Plan,
    desired: &Desired,
    driver: Arc<dyn Driver>,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<(ApplyReport, Option<Observed>), ApplyError> {
    let started = Instant::now();
    let recorder = Recorder::new(driver.clone(), options.dry_run);
    let labels = swarm_labels_to_record(plan, desired, options);
    let moving_on = options.held.is_none();

    let writes = !plan.steps.is_empty() && !options.dry_run;
    let locked = writes && !options.lock_held;
    let releases = locked || (options.lock_held && !options.dry_run);
    if locked {
        driver
            .lock(&options.holder, unix_now(), options.lock_ttl_seconds)
            .instrument(crate::phase!("lock"))
            .await?;
    }
    let held = writes.then(|| (options.holder.clone(), options.lock_ttl_seconds));
    let executor = Arc::new(Executor {
        driver: Arc::new(recorder.clone()),
        manager: Mutex::new(None),
        known_managers: options
            .observation
            .as_ref()
            .map(managers_of)
            .unwrap_or_default(),
        leaving: Mutex::new(BTreeSet::new()),
        node_wait: options.node_wait,
        held: held.clone(),
        content_key: plan.new_content_key.clone(),
        key_written: Mutex::new(false),
        dry_run: options.dry_run,
        hold: hold_bound(options, driver.as_ref()),
    });
    let work = run_steps(&executor, plan, options.parallelism.max(1), progress);
    let steps = match &held {
        Some((holder, ttl)) => renewing_lock(&driver, holder, *ttl, work).await,
        None => work.await,
    };
    let all_done = steps.iter().all(|s| s.status == StepStatus::Done);
    let mut label_error = None;
    let recording = || crate::phase!("record labels");
    if all_done && !plan.steps.is_empty() {
        if let Err(e) = executor
            .record_labels(&labels, desired, moving_on)
            .instrument(recording())
            .await
        {
            label_error = Some(e);
        }
    } else if plan.steps.is_empty() && plan.revision.is_some() {
        // A commit that changes nothing in the cluster (a README edit) is still the applied
        // revision; the label is written only when it differs, so a re-apply sends nothing.
        if let Err(e) = executor
            .record_labels(&labels, desired, moving_on)
            .instrument(recording())
            .await
        {
            tracing::debug!("no swarm to record the revision in: {e}");
        }
    }
    if let Some(e) = label_error {
        tracing::warn!("could not record the applied revision: {e}");
    }
    // The lock is released while the cluster is looked at again, not before.
    let release = async {
        if releases {
            if let Err(e) = driver
                .unlock(&options.holder)
                .instrument(crate::phase!("unlock"))
                .await
            {
                tracing::warn!("could not release the apply lock: {e}");
            }
        }
    };
    // After a failed step the plan cannot be empty: waiting for the cluster to settle into it
    // would only delay the report.
    let settle = if all_done {
        options.settle
    } else {
        Duration::ZERO
    };
    let looking = looked_again(
        &executor,
        plan,
        desired,
        &driver,
        options,
        recorder.writes(),
        settle,
    );
    let ((), (remaining, observed)) = tokio::join!(release, looking);
    let waited_for = if options.dry_run || !all_done || options.wait.is_none() {
        Vec::new()
    } else {
        changed_services(plan, desired)
    };
    let wait = options.wait.map(|d| waited_at_most(driver.as_ref(), d));
    let (observed, drift) = match (wait, observed) {
        (Some(timeout), Some(observed)) if !waited_for.is_empty() => {
            let waiting = Waiting {
                desired,
                revision: plan.revision.clone(),
                content_key: plan.new_content_key.clone(),
                services: &waited_for,
                timeout,
            };
            let (observed, drift) = wait_healthy(&driver, observed, &waiting, progress)
                .instrument(crate::phase!("wait healthy"))
                .await;
            (Some(observed), drift)
        }
        (_, observed) => (observed, Vec::new()),
    };
    let health = final_health(desired, observed.as_ref(), &drift);
    let report = ApplyReport {
        revision: plan.revision.clone(),
        steps,
        writes: recorder.writes(),
        converged: remaining.is_empty(),
        remaining,
        seconds: started.elapsed().as_secs_f64(),
        dry_run_writes: recorder.recorded(),
        health,
        waited_for,
        drift: drift.into_iter().map(|d| d.line).collect(),
    };
    Ok((report, observed))
}

/// The swarm labels an apply records once its steps are done: the revision, the cluster, the
/// last healthy revision (in the same write: it costs no request of its own) and, for a
/// rollback, the commit held back and why (a working tree that failed marks nothing: there is
/// no commit to hold back).
fn swarm_labels_to_record(
    plan: &Plan,
    desired: &Desired,
    options: &ApplyOptions,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Some(revision) = &plan.revision {
        labels.insert(LABEL_REVISION.to_string(), revision.clone());
    }
    labels.insert(LABEL_CLUSTER.to_string(), desired.cluster.clone());
    let healthy = (options.observation.as_ref())
        .and_then(|before| healthy_to_record(before, plan.revision.as_deref()));
    if let Some(healthy) = healthy {
        labels.insert(LABEL_HEALTHY.to_string(), healthy);
    }
    if let Some(held) = options.held.as_ref().filter(|h| !h.failed.is_empty()) {
        held.write_into(&mut labels);
    }
    labels
}

/// A machine step's outcome: done, or done already (`already(error)`: the machine exists, or is
/// gone, as the step would leave it), or failed with the driver's words.
fn machine_step(
    verb: &'static str,
    machine: &str,
    result: Result<(), DriverError>,
    already: fn(&DriverError) -> bool,
) -> Result<(), StepError> {
    match result {
        Ok(()) => Ok(()),
        Err(error) if already(&error) => Ok(()),
        Err(source) => Err(StepError::Machine {
            verb,
            machine: machine.to_string(),
            source,
        }),
    }
}

/// How long a step may be held for a service it waits for (`depends_on`), and a job awaited:
/// `--timeout` (its default with `--no-wait`: the order the files ask for is kept even then).
fn hold_bound(options: &ApplyOptions, driver: &dyn Driver) -> Duration {
    waited_at_most(driver, options.wait.unwrap_or(DEFAULT_WAIT))
}

/// `timeout`, or nothing for a cluster that changes only when written to (the sim's): there
/// one look tells all there is to know.
fn waited_at_most(driver: &dyn Driver, timeout: Duration) -> Duration {
    if driver.changes_on_its_own() {
        timeout
    } else {
        Duration::ZERO
    }
}

/// Each service of `desired`'s stacks and its health at the end: what `observed` says, unless
/// the service changed by hand during the wait (`drift`); empty when nothing was observed.
fn final_health(
    desired: &Desired,
    observed: Option<&Observed>,
    drift: &[drift::Drift],
) -> BTreeMap<String, health::Health> {
    let Some(observed) = observed else {
        return BTreeMap::new();
    };
    desired
        .stacks
        .values()
        .flat_map(|stack| stack.services.keys())
        .map(|name| {
            let health = drift::drifted_health(drift, name)
                .unwrap_or_else(|| health::health_of(observed, name));
            (name.clone(), health)
        })
        .collect()
}

/// Runs `work` while renewing `holder`'s apply lock every third of its TTL, so a long apply
/// (a cloud machine created, a slow rollout) never outlives its lock, while the lock of a
/// holder that died still expires one TTL after its last renewal.
async fn renewing_lock<T>(
    driver: &Arc<dyn Driver>,
    holder: &LockHolder,
    ttl_seconds: u64,
    work: impl std::future::Future<Output = T>,
) -> T {
    let period = Duration::from_secs((ttl_seconds / 3).max(1));
    let renew = async {
        loop {
            tokio::time::sleep(period).await;
            match driver.lock(holder, unix_now(), ttl_seconds).await {
                Ok(()) => tracing::debug!(lock = %holder.id, "renewed the apply lock"),
                Err(e) => tracing::warn!("could not renew the apply lock: {e}"),
            }
        }
    };
    tokio::select! {
        out = work => out,
        never = renew => never,
    }
}

/// The services apply waits for: those the plan creates or changes, by name, in plan order,
/// and, when it joins machines, every global service of `desired` (they start tasks there).
fn changed_services(plan: &Plan, desired: &Desired) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for step in &plan.steps {
        let service = matches!(
            step.op,
            StepOp::CreateService { .. }
                | StepOp::UpdateService { .. }
                | StepOp::ScaleService { .. }
                | StepOp::RebalanceService { .. }
                | StepOp::RunJob { .. }
        );
        if service && !names.contains(&step.target) {
            names.push(step.target.clone());
        }
    }
    if plan
        .steps
        .iter()
        .any(|s| matches!(s.op, StepOp::JoinSwarm { .. }))
    {
        let global = (desired.stacks.values())
            .flat_map(|stack| stack.services.iter())
            .filter(|(_, spec)| spec.is_global())
            .map(|(name, _)| name);
        for name in global {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// How long apply waits for a changed global service's first tasks before its `0/0` counts as
/// healthy (no node matches its constraints).
const GLOBAL_PLACING_GRACE: Duration = Duration::from_secs(10);

/// What apply waits for after its steps.
struct Waiting<'a> {
    /// The desired state each observation of the wait is planned against.
    desired: &'a Desired,
    /// The revision applied.
    revision: Option<String>,
    /// The applied plan's new content key, should the swarm still have none.
    content_key: Option<ContentKey>,
    /// The services to become healthy.
    services: &'a [String],
    /// How long at most.
    timeout: Duration,
}

/// Observes every second until each of the services is healthy, or settled unhealthy (its
/// update paused or rolled back), or the timeout passed, or an observation plans a change (a
/// hand edit made since: [`drift`]); tells `progress` each state change. Returns the last
/// observation (`first` when it could not observe again) and the drift that ended the wait.
async fn wait_healthy(
    driver: &Arc<dyn Driver>,
    first: Observed,
    waiting: &Waiting<'_>,
    progress: &dyn Progress,
) -> (Observed, Vec<drift::Drift>) {
    let (services, timeout) = (waiting.services, waiting.timeout);
    let deadline = Instant::now() + timeout;
    // A global service with no task yet is not known healthy until its tasks are placed; one
    // that no node matches never gets any, and counts as healthy after this long.
    let placing_deadline = Instant::now() + GLOBAL_PLACING_GRACE.min(timeout);
    let mut observed = first;
    let mut shown: BTreeMap<&str, (health::HealthState, u64, u64)> = BTreeMap::new();
    loop {
        let mut done = true;
        for name in services {
            let mut health = health::Health::missing();
            let (running, desired) = observed.services.get(name).map_or((0, 0), |service| {
                let tasks = health::tasks_of(&observed, service);
                health = health::service_health(service, &tasks, &observed.nodes);
                if health.is_healthy()
                    && health::awaiting_global_tasks(service, &tasks, &observed.nodes)
                    && Instant::now() < placing_deadline
                {
                    health = health::Health::new(
                        health::HealthState::Progressing,
                        "waiting for its tasks to be placed",
                    );
                }
                health::counts(service, &tasks)
            });
            let now = (health.state, running, desired);
            if shown.get(name.as_str()) != Some(&now) {
                progress.health(&format!("{name}: {running}/{desired} {}", health.line()));
                shown.insert(name, now);
            }
            done &= health.is_healthy() || health.settled;
        }
        if done || Instant::now() >= deadline {
            return (observed, Vec::new());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        match observe(driver, unix_now()).await {
            Ok(fresh) => observed = fresh,
            Err(e) => tracing::warn!("waiting for the services to become healthy: {e}"),
        }
        let drift = drift::drift_of(
            waiting.desired,
            &observed,
            waiting.revision.clone(),
            waiting.content_key.clone(),
        );
        if !drift.is_empty() {
            for line in drift.iter().map(|d| &d.line) {
                progress.health(&format!("changed while waiting: {line}"));
            }
            return (observed, drift);
        }
    }
}

/// After the steps: what is still to do (see [`remaining_after`]) and the cluster as seen then.
/// A dry run changed nothing and looks at nothing; an apply that wrote nothing keeps the
/// observation its plan was made from; one whose steps wrote the stack objects only (networks,
/// secrets, configs, services) reads only the swarm's part again, through the manager the
/// steps used (its machines and their engines are as they were observed); any other observes
/// the whole cluster again.
async fn looked_again(
    executor: &Executor,
    plan: &Plan,
    desired: &Desired,
    driver: &Arc<dyn Driver>,
    options: &ApplyOptions,
    writes: u64,
    settle: Duration,
) -> (Vec<String>, Option<Observed>) {
    if options.dry_run {
        let remaining = plan
            .steps
            .iter()
            .map(|s| format!("{} {}", s.action(), s.target))
            .collect();
        return (remaining, None);
    }
    let before = options.observation.as_ref();
    if let Some(observed) = before.filter(|_| plan.steps.is_empty() && writes == 0) {
        return (remaining_in(plan), Some(observed.clone()));
    }
    let again = PlanOptions {
        revision: plan.revision.clone(),
        allow_destroy_all: true,
        routing_mesh: None,
        content_key: plan.new_content_key.clone(),
    };
    let stack_only = plan.steps.iter().all(|s| s.op.writes_stack_objects_only());
    let manager = executor.manager.lock().await.clone();
    match (before, manager) {
        (Some(before), Some((name, manager))) if stack_only => {
            let read = || async {
                let mut observed = before.clone();
                crate::observe::read_swarm_into(manager.as_ref(), &mut observed, unix_now())
                    .await
                    .map_err(|source| crate::observe::ObserveError::Engine {
                        machine: name.clone(),
                        source,
                    })?;
                Ok(observed)
            };
            remaining_after(read, desired, &again, settle)
                .instrument(crate::phase!("read after"))
                .await
        }
        _ => {
            let observing = || observe(driver, unix_now());
            remaining_after(observing, desired, &again, settle)
                .instrument(crate::phase!("observe after"))
                .await
        }
    }
}

/// What a fresh observation (made by `observing`) still plans (`action target`, or the
/// planning error), empty when the cluster matches, and the observation it was made from. The
/// engine settles asynchronously (a joined node reports `ready`, a demoted manager leaves Raft
/// a moment later), so a non-empty answer is asked again for up to `settle`.
async fn remaining_after<F, Fut>(
    observing: F,
    desired: &Desired,
    options: &PlanOptions,
    settle: Duration,
) -> (Vec<String>, Option<Observed>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Observed, crate::observe::ObserveError>>,
{
    let deadline = Instant::now() + settle;
    loop {
        let mut last = None;
        let remaining = match observing().await {
            Ok(observed) => {
                let planned = make_plan(desired, &observed, options);
                last = Some(observed);
                match planned {
                    Ok(plan) => remaining_in(&plan),
                    Err(e) => vec![format!("cannot plan: {e}")],
                }
            }
            Err(e) => vec![format!("cannot observe: {e}")],
        };
        if remaining.is_empty() || Instant::now() >= deadline {
            return (remaining, last);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The machines `observed` found managing the swarm (their node a reachable manager), the
/// leader's first.
fn managers_of(observed: &Observed) -> Vec<String> {
    let mut managers: Vec<&ObservedNode> = (observed.nodes.values())
        .filter(|n| n.machine.is_some() && n.is_reachable_manager())
        .collect();
    managers.sort_by_key(|n| !n.leader);
    managers
        .into_iter()
        .filter_map(|n| n.machine.clone())
        .collect()
}

/// What a plan says is still to do: its steps, and what it could not see.
fn remaining_in(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| format!("{} {}", s.action(), s.target))
        .chain(
            plan.unseen
                .iter()
                .map(|u| format!("cannot see {}: {}", u.what, u.why)),
        )
        .collect()
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
    let mut reports: HashMap<StepId, StepReport> = HashMap::new();
    let mut running: JoinSet<(StepId, f64, Result<(), StepError>)> = JoinSet::new();
    let mut started: Vec<bool> = vec![false; total];
    let mut tasks: BTreeMap<tokio::task::Id, (StepId, Instant)> = BTreeMap::new();
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
                    action: step.action(),
                    target: step.target.clone(),
                    status: StepStatus::Skipped,
                    seconds: 0.0,
                    error: Some(skip_reason(step, &reports)),
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
                let id = step.id;
                let task = running.spawn(async move {
                    let begin = Instant::now();
                    let span = crate::phase!("step", format!("{} {}", step.action(), step.target));
                    let result = executor.run(&step).instrument(span).await;
                    (step.id, begin.elapsed().as_secs_f64(), result)
                });
                tasks.insert(task.id(), (id, Instant::now()));
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (id, seconds, result) = match joined {
            Ok(outcome) => outcome,
            // A step that panicked failed: its dependants are skipped like any failure's.
            Err(e) => {
                let (id, begin) = tasks[&e.id()];
                tracing::error!("step #{id} panicked: {e}");
                let failure = Err(StepError::Panicked(e.to_string()));
                (id, begin.elapsed().as_secs_f64(), failure)
            }
        };
        let step = plan
            .steps
            .iter()
            .find(|s| s.id == id)
            .expect("step of the plan");
        let report = StepReport {
            id,
            action: step.action(),
            target: step.target.clone(),
            status: match &result {
                Ok(()) => StepStatus::Done,
                Err(StepError::DependencyNotMet { .. }) => StepStatus::Skipped,
                Err(_) => StepStatus::Failed,
            },
            seconds,
            error: result.err().map(|e| e.to_string()),
        };
        progress.finished(step, &report, reports.len() + 1, total);
        reports.insert(id, report);
        crate::crash::point(&format!("after-step-{}", reports.len()));
    }
    plan.steps
        .iter()
        .map(|s| {
            reports.remove(&s.id).unwrap_or(StepReport {
                id: s.id,
                action: s.action(),
                target: s.target.clone(),
                status: StepStatus::Skipped,
                seconds: 0.0,
                error: Some("not reached".to_string()),
            })
        })
        .collect()
}

/// Why `step` is skipped: the first step it depends on that did not succeed, and why.
fn skip_reason(step: &Step, reports: &HashMap<StepId, StepReport>) -> String {
    let failed = (step.depends_on.iter())
        .filter_map(|id| reports.get(id))
        .find(|r| r.status != StepStatus::Done);
    match failed {
        Some(r) => format!(
            "it waits for #{} ({} {}), which {}: {}",
            r.id,
            r.action,
            r.target,
            if r.status == StepStatus::Failed {
                "failed"
            } else {
                "was skipped"
            },
            r.error.as_deref().unwrap_or("no reason given")
        ),
        None => "a step it depends on did not succeed".to_string(),
    }
}

/// Attempts for an update that keeps meeting "update out of sequence".
const VERSION_RETRIES: usize = 8;

/// Why a step failed. Its text is the report's `error`.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A machine's engine cannot be reached through the driver.
    #[error("cannot reach {machine}: {source}")]
    Reach {
        /// The machine.
        machine: String,
        /// What the driver said.
        #[source]
        source: DriverError,
    },
    /// The driver cannot list the machines.
    #[error("cannot list machines: {0}")]
    ListMachines(#[source] DriverError),
    /// No machine's engine serves the control API.
    #[error("no manager answers: is the swarm initialized and in quorum?")]
    NoManager,
    /// The driver refused to create, start or destroy a machine.
    #[error("cannot {verb} {machine}: {source}")]
    Machine {
        /// `create` or `destroy`.
        verb: &'static str,
        /// The machine.
        machine: String,
        /// What the driver said.
        #[source]
        source: DriverError,
    },
    /// An engine request failed.
    #[error("{context}: {source}")]
    Engine {
        /// What was being done, naming the machine or object.
        context: String,
        /// What the engine said.
        #[source]
        source: EngineError,
    },
    /// A machine is in a swarm that is not the one it should join or initialize: shoal never
    /// makes a node leave a swarm (the plan refuses this; the cluster changed since).
    #[error("{machine} is already in a swarm (state {state}); shoal never makes a node leave a swarm: plan again to see why")]
    InAnotherSwarm {
        /// The machine.
        machine: String,
        /// Its local swarm state.
        state: String,
    },
    /// A machine's engine reports no node ID.
    #[error("{0} is not in the swarm")]
    NotInSwarm(String),
    /// The node to update is no longer in the swarm.
    #[error("node {0} is not in the swarm")]
    NoSuchNode(String),
    /// The service to update does not exist.
    #[error("service {0} does not exist")]
    NoSuchService(String),
    /// The object changed after the plan was made (by hand, or by another tool): nothing was
    /// written to it, so that change is kept.
    #[error("{what} changed since the plan was made ({how}); nothing was written to it, so that change is kept. Plan again to see it: `shoal plan`")]
    Stale {
        /// The object, e.g. `service dataapp_web`.
        what: String,
        /// What changed, in words.
        how: String,
    },
    /// The step's task panicked (a bug in shoal): it is failed, never taken as done.
    #[error("the step failed unexpectedly ({0}); this is a bug in shoal: plan again to see where the cluster stands")]
    Panicked(String),
    /// A service the step waits for (`depends_on`) did not reach its condition: the step is
    /// skipped, not failed.
    #[error("it waits for {service} {}, {}", condition_words(*condition), why)]
    DependencyNotMet {
        /// The service waited for.
        service: String,
        /// The condition.
        condition: Condition,
        /// How it stands, and whether the wait timed out.
        why: String,
    },
    /// A job's run failed (a task exited non-zero, with the task's error), or did not
    /// complete in time.
    #[error("job {job} {why}")]
    Job {
        /// The job.
        job: String,
        /// What happened.
        why: String,
    },
    /// An object kept changing between inspect and update.
    #[error("{0} kept changing while being updated; run apply again")]
    KeptChanging(String),
    /// A node that left the swarm still reports ready.
    #[error("node {id} still reports ready {seconds}s after leaving")]
    StillReady {
        /// The node.
        id: String,
        /// How long apply waited.
        seconds: u64,
    },
}

/// How a condition reads after "it waits for SERVICE".
fn condition_words(condition: Condition) -> &'static str {
    match condition {
        Condition::ServiceStarted => "to start",
        Condition::ServiceHealthy => "to be healthy",
        Condition::ServiceCompletedSuccessfully => "to complete successfully",
    }
}

/// How a service waited for stands when apply stops waiting.
fn not_reached(health: &health::Health, timed_out: Option<Duration>) -> String {
    match timed_out {
        Some(bound) => format!(
            "which is still {} after {}s (--timeout)",
            health.line(),
            bound.as_secs()
        ),
        None => format!("but it is {}", health.line()),
    }
}

impl StepError {
    fn engine(context: impl Into<String>) -> impl FnOnce(EngineError) -> StepError {
        let context = context.into();
        move |source| StepError::Engine { context, source }
    }
}

/// A boxed future, for the steps of [`Executor::update_versioned`].
type Fut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the inspect step of [`Executor::update_versioned`] returns: the version and the spec.
type Inspected<S> = Fut<Result<(u64, S), StepError>>;

/// Carries out single steps.
struct Executor {
    driver: Arc<dyn Driver>,
    /// The manager engine in use, found on first need.
    manager: Mutex<Option<(String, Arc<dyn Swarm>)>>,
    /// The machines the plan's observation found managing the swarm, the leader first: asked
    /// first for the manager to use.
    known_managers: Vec<String>,
    /// Machines being demoted, removed or destroyed: never chosen as the manager to work through
    /// (a manager demoting itself would lose the control API half-way).
    leaving: Mutex<BTreeSet<String>>,
    node_wait: Duration,
    /// The apply lock this apply holds, and its TTL: taken again as soon as a swarm exists, so
    /// it moves from the driver's store into the swarm's.
    held: Option<(LockHolder, u64)>,
    /// The content key the plan versioned with while the swarm has none: written into the
    /// swarm before the first secret or config is created, and with the labels at the end.
    content_key: Option<ContentKey>,
    /// Whether the swarm is known to hold `content_key`.
    key_written: Mutex<bool>,
    /// Writes are recorded, not sent (`apply --dry-run`): what was written cannot be read back.
    dry_run: bool,
    /// How long a step is held for a service it waits for, or a job awaited ([`hold_bound`]).
    hold: Duration,
}

impl Executor {
    async fn engine(&self, machine: &str) -> Result<Arc<dyn Swarm>, StepError> {
        self.driver
            .engine(machine)
            .await
            .map_err(|source| StepError::Reach {
                machine: machine.to_string(),
                source,
            })
    }

    /// A manager's engine: the one in use, else the first machine whose engine serves the
    /// control API (answers `GET /swarm`), trying those the plan's observation found managing
    /// first, then every machine of the driver's list.
    async fn manager(&self) -> Result<Arc<dyn Swarm>, StepError> {
        let mut current = self.manager.lock().await;
        if let Some((_, engine)) = current.as_ref() {
            return Ok(engine.clone());
        }
        let leaving = self.leaving.lock().await.clone();
        let serving = |engine: Arc<dyn Swarm>| async move {
            engine.inspect_swarm().await.is_ok().then_some(engine)
        };
        for name in self.known_managers.iter().filter(|m| !leaving.contains(*m)) {
            let Ok(engine) = self.driver.engine(name).await else {
                continue;
            };
            if let Some(engine) = serving(engine).await {
                *current = Some((name.clone(), engine.clone()));
                return Ok(engine);
            }
        }
        let machines = self.driver.list().await.map_err(StepError::ListMachines)?;
        for machine in machines.iter().filter(|m| !leaving.contains(&m.name)) {
            let Ok(engine) = self.driver.engine(&machine.name).await else {
                continue;
            };
            if let Some(engine) = serving(engine).await {
                *current = Some((machine.name.clone(), engine.clone()));
                return Ok(engine);
            }
        }
        Err(StepError::NoManager)
    }

    async fn use_manager(&self, machine: &str) -> Result<Arc<dyn Swarm>, StepError> {
        let engine = self.engine(machine).await?;
        *self.manager.lock().await = Some((machine.to_string(), engine.clone()));
        Ok(engine)
    }

    /// Forgets the manager in use when it is leaving (demoted, removed, destroyed), and never
    /// picks that machine again in this apply.
    async fn forget_manager(&self, machine: &str) {
        self.leaving.lock().await.insert(machine.to_string());
        let mut current = self.manager.lock().await;
        if current.as_ref().is_some_and(|(name, _)| name == machine) {
            *current = None;
        }
    }

    /// Holds `step` until every service it waits for reaches its condition.
    async fn await_dependencies(&self, step: &Step) -> Result<(), StepError> {
        if self.dry_run {
            return Ok(());
        }
        for wait in &step.waits {
            if let Err((health, timed_out)) = self.until(&wait.service, wait.condition).await {
                return Err(StepError::DependencyNotMet {
                    service: wait.service.clone(),
                    condition: wait.condition,
                    why: not_reached(&health, timed_out.then_some(self.hold)),
                });
            }
        }
        Ok(())
    }

    /// Awaits the run of the job that `step` just started (nothing for other steps).
    async fn await_run(&self, step: &Step) -> Result<(), StepError> {
        if self.dry_run || !matches!(step.op, StepOp::RunJob { .. }) {
            return Ok(());
        }
        let job = step.target.as_str();
        let done = self
            .until(job, Condition::ServiceCompletedSuccessfully)
            .await;
        done.map_err(|(health, timed_out)| StepError::Job {
            job: job.to_string(),
            why: if timed_out {
                format!(
                    "did not complete within {}s (--timeout): {}",
                    self.hold.as_secs(),
                    health.line()
                )
            } else {
                format!("failed: {}", health.reason)
            },
        })
    }

    /// Observes once a second until `service` reaches `condition` (with the health that
    /// [`wait_healthy`] waits with), at most [`Executor::hold`]; else its last health, and
    /// whether the time ran out (rather than the condition becoming unreachable).
    async fn until(
        &self,
        service: &str,
        condition: Condition,
    ) -> Result<(), (health::Health, bool)> {
        let deadline = Instant::now() + self.hold;
        loop {
            let state = match observe(&self.driver, unix_now()).await {
                Ok(observed) => health::condition_state(&observed, service, condition),
                Err(e) => health::ConditionState::Waiting(health::Health::new(
                    health::HealthState::Missing,
                    format!("cannot observe: {e}"),
                )),
            };
            match state {
                health::ConditionState::Reached => return Ok(()),
                health::ConditionState::Unreachable(health) => return Err((health, false)),
                health::ConditionState::Waiting(health) if Instant::now() >= deadline => {
                    return Err((health, true))
                }
                health::ConditionState::Waiting(_) => {
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
            }
        }
    }

    async fn run(&self, step: &Step) -> Result<(), StepError> {
        self.await_dependencies(step).await?;
        let target = step.target.as_str();
        match &step.op {
            StepOp::CreateMachine { role, labels } => {
                let spec = MachineSpec {
                    name: target.to_string(),
                    role: *role,
                    labels: labels.clone(),
                    host: None,
                };
                let created = self.driver.create(&spec).await;
                machine_step("create", target, created, |e| {
                    matches!(e, DriverError::MachineExists(_))
                })
            }
            StepOp::StartMachine {} => {
                machine_step("start", target, self.driver.start(target).await, |_| false)
            }
            StepOp::DestroyMachine {} => {
                self.forget_manager(target).await;
                let destroyed = self.driver.destroy(target).await;
                machine_step("destroy", target, destroyed, |e| {
                    matches!(e, DriverError::NoSuchMachine(_))
                })
            }
            StepOp::InitSwarm { via } => self.init_swarm(via).await,
            StepOp::JoinSwarm {
                role, via, labels, ..
            } => {
                // A machine replaced by self-heal left the managers and comes back as new.
                self.leaving.lock().await.remove(target);
                self.join_swarm(target, *role, via, labels).await
            }
            StepOp::PromoteNode { node_id } => {
                self.update_node(node_id, |spec| spec.role = Role::Manager)
                    .await
            }
            StepOp::DemoteNode { node_id } => {
                self.forget_manager(target).await;
                self.demote(node_id).await
            }
            StepOp::DrainNode { node_id } => {
                self.update_node(node_id, |spec| spec.availability = Availability::Drain)
                    .await
            }
            StepOp::UpdateNode {
                node_id,
                labels,
                availability,
            } => {
                let id = match node_id {
                    Some(id) => id.clone(),
                    None => self.node_id_of(target).await?,
                };
                let availability = *availability;
                self.update_node(&id, |spec| {
                    spec.labels = node_labels_to_store(&spec.labels, labels);
                    spec.availability = availability;
                })
                .await
            }
            StepOp::RemoveNode { node_id, force } => {
                self.remove_node(target, node_id, *force).await
            }
            StepOp::CreateNetwork { network } => {
                let result = self.manager().await?.create_network(network).await;
                created(result, &format!("cannot create network {target}"))
            }
            StepOp::CreateSecret { object } => {
                self.ensure_content_key().await?;
                let result = self.manager().await?.create_secret(object).await;
                created(result, &format!("cannot create {target}"))
            }
            StepOp::CreateConfig { object } => {
                self.ensure_content_key().await?;
                let result = self.manager().await?.create_config(object).await;
                created(result, &format!("cannot create {target}"))
            }
            StepOp::CreateService { spec } | StepOp::RunJob { id: None, spec, .. } => {
                let result = self.manager().await?.create_service(spec).await;
                created(result, &format!("cannot create service {target}"))?;
                self.await_run(step).await
            }
            StepOp::RemoveNetwork { id } => {
                removed(self.manager().await?.remove_network(id).await, target)
            }
            StepOp::RemoveSecret { id } => {
                removed(self.manager().await?.remove_secret(id).await, target)
            }
            StepOp::RemoveConfig { id } => {
                removed(self.manager().await?.remove_config(id).await, target)
            }
            StepOp::RemoveService { id } => {
                removed(self.manager().await?.remove_service(id).await, target)
            }
            StepOp::UpdateService {
                id,
                spec,
                observed_spec,
                ..
            }
            | StepOp::RunJob {
                id: Some(id),
                spec,
                observed_spec,
                ..
            } => {
                let spec = spec.clone();
                let planned = Planned::new(target, id, observed_spec);
                self.update_service(planned, move |current| {
                    let mut next = (*spec).clone();
                    next.task_template.force_update = current.task_template.force_update;
                    next
                })
                .await?;
                self.await_run(step).await
            }
            StepOp::ScaleService {
                id,
                replicas,
                observed_spec,
            } => {
                let replicas = *replicas;
                let planned = Planned::new(target, id, observed_spec);
                self.update_service(planned, move |current| {
                    let mut next = current.clone();
                    next.set_replicas(replicas);
                    next
                })
                .await
            }
            StepOp::RebalanceService {
                id, observed_spec, ..
            } => {
                let planned = Planned::new(target, id, observed_spec);
                self.update_service(planned, |current| {
                    let mut next = current.clone();
                    next.task_template.force_update += 1;
                    next
                })
                .await
            }
        }
    }

    /// Initializes the swarm on a machine in no swarm; one that already leads a swarm (a re-run
    /// after a crash) is used as it is. Nothing is ever made to leave a swarm.
    async fn init_swarm(&self, machine: &str) -> Result<(), StepError> {
        let engine = self.engine(machine).await?;
        let info = engine.info().await.map_err(StepError::engine(machine))?;
        if info.swarm_state == LocalSwarmState::Active && info.control_available {
            self.use_manager(machine).await?;
            return Ok(());
        }
        if info.swarm_state != LocalSwarmState::Inactive {
            return Err(StepError::InAnotherSwarm {
                machine: machine.to_string(),
                state: format!("{:?}", info.swarm_state).to_lowercase(),
            });
        }
        engine
            .init_swarm()
            .await
            .map_err(StepError::engine(format!(
                "cannot init the swarm on {machine}"
            )))?;
        self.use_manager(machine).await?;
        if let Some((holder, ttl)) = &self.held {
            if let Err(e) = self.driver.lock(holder, unix_now(), *ttl).await {
                tracing::warn!("could not move the apply lock into the new swarm: {e}");
            }
        }
        self.label_node(machine, &BTreeMap::new()).await
    }

    async fn join_swarm(
        &self,
        target: &str,
        role: Role,
        via: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), StepError> {
        let manager = match self.engine(via).await {
            Ok(engine) if engine.info().await.is_ok_and(|i| i.control_available) => engine,
            _ => self.manager().await?,
        };
        let address = manager
            .info()
            .await
            .map_err(StepError::engine("manager"))?
            .node_addr;
        let tokens = manager
            .join_tokens()
            .await
            .map_err(StepError::engine("cannot read the join tokens"))?;
        let engine = self.engine(target).await?;
        let info = engine.info().await.map_err(StepError::engine(target))?;
        let members = manager
            .list_nodes()
            .await
            .map_err(StepError::engine("cannot list nodes"))?;
        let already = info.swarm_state == LocalSwarmState::Active
            && info
                .node_id
                .as_ref()
                .is_some_and(|id| members.iter().any(|n| &n.id == id));
        if !already {
            if info.swarm_state != LocalSwarmState::Inactive {
                return Err(StepError::InAnotherSwarm {
                    machine: target.to_string(),
                    state: format!("{:?}", info.swarm_state).to_lowercase(),
                });
            }
            let token = match role {
                Role::Manager => &tokens.manager,
                Role::Worker => &tokens.worker,
            };
            engine
                .join_swarm(&address, token)
                .await
                .map_err(StepError::engine(format!("{target} cannot join")))?;
        }
        self.label_node(target, labels).await
    }

    /// Gives `machine`'s node the labels machines.yml wants and its identity label
    /// (`io.shoal.machine`), by which its node is known while its engine is silent.
    async fn label_node(
        &self,
        machine: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), StepError> {
        let id = self.node_id_of(machine).await?;
        self.update_node(&id, |spec| {
            spec.labels = node_labels_to_store(&spec.labels, labels);
            spec.labels
                .insert(LABEL_MACHINE.to_string(), machine.to_string());
        })
        .await
    }

    /// The node ID a machine's engine reports.
    async fn node_id_of(&self, machine: &str) -> Result<String, StepError> {
        let engine = self.engine(machine).await?;
        engine
            .info()
            .await
            .map_err(StepError::engine(machine))?
            .node_id
            .ok_or_else(|| StepError::NotInSwarm(machine.to_string()))
    }

    async fn find_node(
        &self,
        manager: &Arc<dyn Swarm>,
        id: &str,
    ) -> Result<Option<ObservedNode>, StepError> {
        let nodes = manager
            .list_nodes()
            .await
            .map_err(StepError::engine("cannot list nodes"))?;
        Ok(nodes.into_iter().find(|n| n.id == id))
    }

    /// Inspect → change → update with the inspected version, retried with a fresh version on
    /// "update out of sequence". `change` returns `None` when there is nothing to update.
    async fn update_versioned<S>(
        &self,
        what: String,
        inspect: impl Fn(Arc<dyn Swarm>) -> Inspected<S>,
        change: impl Fn(&S) -> Option<S>,
        update: impl Fn(Arc<dyn Swarm>, u64, S) -> Fut<EngineResult<()>>,
    ) -> Result<(), StepError> {
        for _ in 0..VERSION_RETRIES {
            let manager = self.manager().await?;
            let (version, current) = inspect(manager.clone()).await?;
            let Some(next) = change(&current) else {
                return Ok(());
            };
            match update(manager, version, next).await {
                Ok(()) => return Ok(()),
                Err(EngineError::OutOfSequence(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(source) => {
                    return Err(StepError::Engine {
                        context: format!("cannot update {what}"),
                        source,
                    })
                }
            }
        }
        Err(StepError::KeptChanging(what))
    }

    /// Changes a node's spec.
    async fn update_node(
        &self,
        id: &str,
        change: impl Fn(&mut NodeSpecUpdate),
    ) -> Result<(), StepError> {
        let id = id.to_string();
        let inspect = {
            let id = id.clone();
            move |manager: Arc<dyn Swarm>| -> Inspected<NodeSpecUpdate> {
                let id = id.clone();
                Box::pin(async move {
                    let nodes = manager
                        .list_nodes()
                        .await
                        .map_err(StepError::engine("cannot list nodes"))?;
                    let node = nodes
                        .into_iter()
                        .find(|n| n.id == id)
                        .ok_or(StepError::NoSuchNode(id))?;
                    let spec = NodeSpecUpdate {
                        role: node.role,
                        availability: node.availability,
                        labels: node.labels,
                    };
                    Ok((node.version, spec))
                })
            }
        };
        let update = {
            let id = id.clone();
            move |manager: Arc<dyn Swarm>, version, spec| -> Fut<EngineResult<()>> {
                let id = id.clone();
                Box::pin(async move { manager.update_node(&id, version, spec).await })
            }
        };
        let change = |current: &NodeSpecUpdate| {
            let mut next = current.clone();
            change(&mut next);
            Some(next)
        };
        self.update_versioned(format!("node {id}"), inspect, change, update)
            .await
    }

    /// Demotes a manager and waits until it has left the Raft group. The engine removes the
    /// member asynchronously; until it has, a next demotion may be refused as a loss of quorum
    /// that the planner has already ruled out, so such a refusal is retried while the group
    /// settles.
    async fn demote(&self, id: &str) -> Result<(), StepError> {
        let deadline = Instant::now() + self.node_wait;
        loop {
            match self.update_node(id, |spec| spec.role = Role::Worker).await {
                Ok(()) => break,
                Err(StepError::Engine {
                    source: EngineError::QuorumLoss(_),
                    ..
                }) if Instant::now() < deadline => {
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

    async fn remove_node(&self, target: &str, id: &str, force: bool) -> Result<(), StepError> {
        let mut force = force;
        if !force {
            let left = match self.driver.engine(target).await {
                Ok(engine) => engine.leave_swarm(false).await,
                Err(e) => Err(EngineError::Unreachable(e.to_string())),
            };
            match left {
                Ok(()) => self.wait_until_down(id).await?,
                Err(e) => {
                    tracing::warn!(
                        "{target} could not leave the swarm ({e}); removing its node with force"
                    );
                    force = true;
                }
            }
        }
        let manager = self.manager().await?;
        match manager.remove_node(id, force).await {
            Ok(()) | Err(EngineError::NotFound(_)) => Ok(()),
            Err(source) => Err(StepError::Engine {
                context: format!("cannot remove node {target}"),
                source,
            }),
        }
    }

    async fn wait_until_down(&self, id: &str) -> Result<(), StepError> {
        let deadline = Instant::now() + self.node_wait;
        loop {
            let manager = self.manager().await?;
            match self.find_node(&manager, id).await? {
                None => return Ok(()),
                Some(node) if node.state != NodeState::Ready => return Ok(()),
                Some(_) if Instant::now() >= deadline => {
                    return Err(StepError::StillReady {
                        id: id.to_string(),
                        seconds: self.node_wait.as_secs(),
                    })
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Changes a service's spec.
    /// Updates the service the plan planned on, only while its spec is the one observed then
    /// (see [`Planned`]): a change made since is reported as [`StepError::Stale`], never
    /// overwritten.
    async fn update_service(
        &self,
        planned: Planned,
        change: impl Fn(&ServiceSpec) -> ServiceSpec,
    ) -> Result<(), StepError> {
        let name = planned.name.clone();
        let inspect = {
            move |manager: Arc<dyn Swarm>| -> Inspected<(String, ServiceSpec)> {
                let planned = planned.clone();
                Box::pin(async move {
                    let services = manager
                        .list_services()
                        .await
                        .map_err(StepError::engine("cannot list services"))?;
                    let current = planned.find(services)?;
                    Ok((current.version, (current.id, current.spec)))
                })
            }
        };
        let update = |manager: Arc<dyn Swarm>,
                      version,
                      (id, spec): (String, ServiceSpec)|
         -> Fut<EngineResult<()>> {
            Box::pin(async move { manager.update_service(&id, version, &spec).await })
        };
        let change = |(id, spec): &(String, ServiceSpec)| Some((id.clone(), change(spec)));
        self.update_versioned(format!("service {name}"), inspect, change, update)
            .await
    }

    /// Records the applied revision, the managed stacks and (when the swarm has none) the
    /// plan's content key as swarm labels, when they differ. `moving_on`: an apply that is no
    /// rollback and records another revision than the swarm's ends a hold (clears the failed
    /// commit's labels).
    async fn record_labels(
        &self,
        labels: &BTreeMap<String, String>,
        desired: &Desired,
        moving_on: bool,
    ) -> Result<(), StepError> {
        let key = self.content_key.as_ref().map(ContentKey::to_label);
        let change = |current: &BTreeMap<String, String>| {
            let mut next = current.clone();
            let revision = labels.get(LABEL_REVISION);
            if moving_on && revision.is_some() && current.get(LABEL_REVISION) != revision {
                Held::clear(&mut next);
            }
            next.extend(labels.clone());
            let stacks = stacks_to_remember(desired, current.get(LABEL_STACKS).map(String::as_str));
            next.insert(LABEL_STACKS.to_string(), stacks);
            if let Some(key) = &key {
                // Never replaces a key: every version in the swarm depends on it.
                next.entry(LABEL_CONTENT_KEY.to_string())
                    .or_insert_with(|| key.clone());
            }
            (next != *current).then_some(next)
        };
        self.update_swarm_labels(change).await
    }

    /// Writes the plan's content key into the swarm, once, before the first secret or config
    /// is created, so that what is created under it is what the next plan recognises. A swarm
    /// that got another key since the plan (another apply, a hand edit) is stale: nothing is
    /// created under a key the swarm does not hold.
    async fn ensure_content_key(&self) -> Result<(), StepError> {
        let Some(key) = &self.content_key else {
            return Ok(());
        };
        let mut written = self.key_written.lock().await;
        if *written {
            return Ok(());
        }
        let label = key.to_label();
        let change = |current: &BTreeMap<String, String>| {
            (!current.contains_key(LABEL_CONTENT_KEY)).then(|| {
                let mut next = current.clone();
                next.insert(LABEL_CONTENT_KEY.to_string(), label.clone());
                next
            })
        };
        self.update_swarm_labels(change).await?;
        if self.dry_run {
            *written = true;
            return Ok(());
        }
        let swarm = self
            .manager()
            .await?
            .inspect_swarm()
            .await
            .map_err(StepError::engine("cannot inspect the swarm"))?;
        if swarm.labels.get(LABEL_CONTENT_KEY) != Some(&label) {
            return Err(StepError::Stale {
                what: format!("the swarm label {LABEL_CONTENT_KEY}"),
                how: "another apply or a hand edit wrote another content key, which the plan's secret and config versions do not match".to_string(),
            });
        }
        *written = true;
        Ok(())
    }

    /// Changes the swarm's labels with `change` (`None`: nothing to change), at the version
    /// inspected.
    async fn update_swarm_labels(
        &self,
        change: impl Fn(&BTreeMap<String, String>) -> Option<BTreeMap<String, String>>,
    ) -> Result<(), StepError> {
        let inspect = |manager: Arc<dyn Swarm>| -> Inspected<BTreeMap<String, String>> {
            Box::pin(async move {
                let swarm = manager
                    .inspect_swarm()
                    .await
                    .map_err(StepError::engine("cannot inspect the swarm"))?;
                Ok((swarm.version, swarm.labels))
            })
        };
        let update = |manager: Arc<dyn Swarm>, version, next| -> Fut<EngineResult<()>> {
            Box::pin(async move { manager.update_swarm_labels(version, next).await })
        };
        self.update_versioned("the swarm labels".to_string(), inspect, change, update)
            .await
    }
}

/// The service a write was planned on: its name, its ID and the digest of its spec then.
#[derive(Clone)]
struct Planned {
    name: String,
    id: String,
    observed_spec: Option<String>,
}

impl Planned {
    fn new(name: &str, id: &str, observed_spec: &Option<String>) -> Planned {
        Planned {
            name: name.to_string(),
            id: id.to_string(),
            observed_spec: observed_spec.clone(),
        }
    }

    /// The planned service among `services`, still as it was observed: the same ID (a service
    /// removed and created again by hand is another service) and, when the plan recorded it,
    /// the same spec.
    fn find(&self, services: Vec<ObservedService>) -> Result<ObservedService, StepError> {
        let stale = |how: &str| StepError::Stale {
            what: format!("service {}", self.name),
            how: how.to_string(),
        };
        let Some(current) = services.into_iter().find(|s| s.id == self.id) else {
            return Err(stale("it was removed, or removed and created again"));
        };
        match &self.observed_spec {
            Some(digest) if current.spec_digest() != *digest => Err(stale("its spec was updated")),
            _ => Ok(current),
        }
    }
}

/// A creation's outcome: an object that exists already counts as created.
fn created(result: EngineResult<String>, context: &str) -> Result<(), StepError> {
    match result {
        Ok(_) | Err(EngineError::Conflict(_)) => Ok(()),
        Err(source) => Err(StepError::engine(context)(source)),
    }
}

/// A removal's outcome: an object that is gone already counts as removed.
fn removed(result: EngineResult<()>, target: &str) -> Result<(), StepError> {
    match result {
        Ok(()) | Err(EngineError::NotFound(_)) => Ok(()),
        Err(source) => Err(StepError::engine(format!("cannot remove {target}"))(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sim whose machines panic when created (a bug in a driver).
    struct PanicsOnCreate(crate::drivers::sim::SimDriver);

    #[async_trait::async_trait]
    impl Driver for PanicsOnCreate {
        async fn list(&self) -> crate::drivers::DriverResult<Vec<crate::model::ObservedMachine>> {
            self.0.list().await
        }
        async fn create(&self, _: &MachineSpec) -> crate::drivers::DriverResult<()> {
            panic!("a driver bug")
        }
        async fn start(&self, machine: &str) -> crate::drivers::DriverResult<()> {
            self.0.start(machine).await
        }
        async fn destroy(&self, machine: &str) -> crate::drivers::DriverResult<()> {
            self.0.destroy(machine).await
        }
        async fn endpoint(&self, machine: &str) -> crate::drivers::DriverResult<String> {
            self.0.endpoint(machine).await
        }
        async fn engine(&self, machine: &str) -> crate::drivers::DriverResult<Arc<dyn Swarm>> {
            self.0.engine(machine).await
        }
        async fn lock(
            &self,
            h: &LockHolder,
            now: u64,
            ttl: u64,
        ) -> crate::drivers::DriverResult<()> {
            self.0.lock(h, now, ttl).await
        }
        async fn unlock(&self, h: &LockHolder) -> crate::drivers::DriverResult<()> {
            self.0.unlock(h).await
        }
        async fn force_unlock(
            &self,
            id: &str,
        ) -> crate::drivers::DriverResult<Option<crate::drivers::lock::HeldLock>> {
            self.0.force_unlock(id).await
        }
        async fn destroy_all(&self) -> crate::drivers::DriverResult<()> {
            self.0.destroy_all().await
        }
    }

    /// Issue 18: a step whose task panics is failed (not "not reached"), and what depends on it
    /// is skipped.
    #[tokio::test]
    async fn a_panicked_step_fails_and_its_dependants_are_skipped() {
        let desired = crate::plan::testing::desired_with(&[("m1", Role::Manager)]);
        let plan = make_plan(&desired, &Observed::default(), &PlanOptions::default()).unwrap();
        let driver: Arc<dyn Driver> =
            Arc::new(PanicsOnCreate(crate::drivers::sim::SimDriver::in_memory()));
        let options = ApplyOptions {
            settle: Duration::ZERO,
            ..ApplyOptions::default()
        };
        let report = apply(&plan, &desired, driver, &options, &progress::Lines)
            .await
            .unwrap();
        let statuses: Vec<(String, StepStatus)> = report
            .steps
            .iter()
            .map(|s| (s.action.to_string(), s.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("create_machine".to_string(), StepStatus::Failed),
                ("init_swarm".to_string(), StepStatus::Skipped)
            ]
        );
        assert!(report.steps[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("bug in shoal")));
    }

    /// Issue 18: a lock whose TTL is shorter than the apply is renewed while the apply runs, so
    /// another holder (on another host, never judged dead) is refused past the first TTL; once
    /// the apply is over and renewal stops, the lock expires by itself.
    #[tokio::test]
    async fn a_short_lock_outlives_a_long_apply_by_renewal() {
        let driver: Arc<dyn Driver> = Arc::new(crate::drivers::sim::SimDriver::in_memory());
        let me = LockHolder::this_process("shoal apply");
        let mut other = LockHolder::this_process("shoal apply");
        other.host = "another-host".into();
        let ttl = 3;
        driver.lock(&me, unix_now(), ttl).await.unwrap();
        let long_step = async {
            tokio::time::sleep(Duration::from_millis(4_500)).await;
            driver.lock(&other, unix_now(), ttl).await
        };
        let during = renewing_lock(&driver, &me, ttl, long_step).await;
        assert!(
            matches!(during, Err(DriverError::Locked(_))),
            "taken over during the apply: {during:?}"
        );
        let later = unix_now() + ttl + 1;
        driver.lock(&other, later, ttl).await.unwrap();
    }

    /// Issue 18: a hand scale made while apply waits for health ends the wait at once, is
    /// reported as drift, and the scaled service is not called healthy (it was, at 6/6).
    #[tokio::test]
    async fn drift_during_the_health_wait_ends_it_and_is_not_healthy() {
        let mut desired = crate::plan::testing::desired_with(&[("m1", Role::Manager)]);
        let web = crate::plan::testing::service("app", "web", "nginx:1", 3);
        crate::plan::testing::with_stack(&mut desired, "app", vec![web]);
        let sim = Arc::new(crate::drivers::sim::SimDriver::in_memory());
        let driver: Arc<dyn Driver> = sim.clone();
        let plan = make_plan(&desired, &Observed::default(), &PlanOptions::default()).unwrap();
        let options = ApplyOptions {
            settle: Duration::ZERO,
            ..ApplyOptions::default()
        };
        let report = apply(&plan, &desired, driver.clone(), &options, &progress::Lines)
            .await
            .unwrap();
        assert!(report.converged, "{report:?}");
        // The wait starts while the service's rollout is under way.
        let mut first = observe(&driver, unix_now()).await.unwrap();
        first.services.get_mut("app_web").unwrap().update_status =
            Some(crate::model::observed::UpdateStatus {
                state: crate::model::observed::UpdateState::Updating,
                message: String::new(),
            });
        sim.set_replicas("app_web", 6).unwrap();
        let waiting = Waiting {
            desired: &desired,
            revision: None,
            content_key: None,
            services: &["app_web".to_string()],
            timeout: Duration::from_secs(60),
        };
        let started = Instant::now();
        let (observed, drift) = wait_healthy(&driver, first, &waiting, &progress::Lines).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert!(
            drift[0].line.starts_with("scale_service app_web"),
            "{drift:?}"
        );
        assert_eq!(observed.services["app_web"].running, 6);
        assert!(drift::drifted_health(&drift, "app_web").is_some_and(|h| !h.is_healthy()));
    }

    fn report(converged: bool, status: StepStatus) -> ApplyReport {
        ApplyReport {
            revision: None,
            steps: vec![StepReport {
                id: StepId(1),
                action: crate::plan::Action::CreateService,
                target: "app_web".into(),
                status,
                seconds: 0.1,
                error: None,
            }],
            writes: 1,
            converged,
            seconds: 1.0,
            remaining: if converged {
                Vec::new()
            } else {
                vec!["join_swarm w1".into()]
            },
            dry_run_writes: Vec::new(),
            health: BTreeMap::new(),
            waited_for: Vec::new(),
            drift: Vec::new(),
        }
    }

    #[test]
    fn not_converged_is_exit_1_unless_apply_did_not_wait() {
        assert_eq!(exit_code(&report(true, StepStatus::Done), false, true), 0);
        assert_eq!(exit_code(&report(false, StepStatus::Done), false, true), 1);
        assert_eq!(exit_code(&report(false, StepStatus::Done), false, false), 0);
        assert_eq!(exit_code(&report(false, StepStatus::Done), true, true), 0);
        assert_eq!(
            exit_code(&report(true, StepStatus::Failed), false, false),
            1
        );
    }
}
