//! One reconcile pass: fetch (a remote), read the branch's tip commit, load its files, observe,
//! plan, and apply under the driver's lock. It does the same whatever woke the loop.

use super::driver::driver_key;
use super::state::{SourceInfo, TargetKind};
use crate::apply::progress::Progress;
use crate::apply::rollback::{plan_rollback, roll_back};
use crate::apply::{apply_observing, ApplyError, ApplyOptions};
use crate::clock::unix_now;
use crate::config::notifications::{NotifyEvent, NotifyTarget};
use crate::drivers::open_driver;
use crate::drivers::{Driver, DriverError};
use crate::model::rollback::Held;
use crate::model::{Desired, DriverKind};
use crate::notify::{notice_of_failed_rollback, notice_of_report, notices_of_rollback, Notice};
use crate::observe::{load_and_plan, observe, OpenDriver, Planned, Planning, PlanningError};
use crate::plan::report::{ApplyReport, StepReport, StepStatus};
use crate::plan::rollback::{last_healthy, should_roll_back, Verdict};
use crate::plan::{Plan, Step};
use crate::render::Status;
use crate::source::follow::{FollowError, LocalBranch, Tip};
use crate::source::remote::RemoteBranch;
use crate::source::Source;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

/// The branch followed.
#[derive(Debug)]
pub(crate) enum Followed {
    /// A repository on this machine.
    Local(LocalBranch),
    /// A remote repository, fetched into a cache.
    Remote(RemoteBranch),
}

impl Followed {
    /// What is followed, for `/status`.
    pub fn info(&self) -> SourceInfo {
        match self {
            Followed::Local(local) => SourceInfo {
                kind: "local".to_string(),
                location: local
                    .dir()
                    .canonicalize()
                    .unwrap_or_else(|_| local.dir().to_path_buf())
                    .display()
                    .to_string(),
                branch: Some(local.branch().to_string()),
            },
            Followed::Remote(remote) => SourceInfo {
                kind: "remote".to_string(),
                location: remote.shown_url(),
                branch: remote.branch(),
            },
        }
    }

    /// Where the sim driver keeps its state: the cluster folder, or the cache of a remote.
    fn state_dir(&self) -> PathBuf {
        match self {
            Followed::Local(local) => local.dir().to_path_buf(),
            Followed::Remote(remote) => remote.cache().to_path_buf(),
        }
    }

    pub(crate) fn tip(&self) -> Result<Tip, FollowError> {
        match self {
            Followed::Local(local) => local.tip(),
            Followed::Remote(remote) => remote.tip(),
        }
    }

    pub(crate) fn files(&self, commit: &str) -> Source {
        match self {
            Followed::Local(local) => local.files(commit),
            Followed::Remote(remote) => remote.files(commit),
        }
    }
}

/// The commit a pass held the cluster to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The commit.
    pub tip: Tip,
    /// The tip, the last good commit (the tip is broken), or the last healthy revision (the
    /// tip failed and was rolled back).
    pub kind: TargetKind,
}

/// The last commit that loaded and planned, and what it loaded: the cluster is held to it
/// while the branch tip does not load or plan.
#[derive(Clone, Debug)]
struct LastGood {
    tip: Tip,
    desired: Desired,
}

/// What one pass found and did.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// The tip commit read.
    pub tip: Option<Tip>,
    /// The commit the cluster was held to: the tip, or the last good commit while the tip is
    /// broken; `None` when nothing was planned.
    pub target: Option<Target>,
    /// The plan made from the target.
    pub plan: Option<Plan>,
    /// The apply carried out, when the plan had steps or the swarm had another revision recorded.
    pub report: Option<ApplyReport>,
    /// The cluster as observed last in the pass.
    pub status: Option<Status>,
    /// When `status` was observed, Unix time.
    pub observed_at: Option<u64>,
    /// Steps planned although the commit had already been applied: drift.
    pub drift_steps: usize,
    /// Whether the remote was fetched (`Some`), and the fetch's error if it failed.
    pub fetch: Option<Option<String>>,
    /// Why the tip commit does not load or plan. It fails the same way until the branch moves,
    /// so it is not retried with backoff; the pass still holds the cluster to the last good commit.
    pub broken_tip: Option<String>,
    /// Why the pass failed otherwise (the engine, the lock, a step): retried with backoff.
    pub error: Option<String>,
    /// When the apply lock that refused this pass expires, Unix time: retry then at the latest.
    pub locked_until: Option<u64>,
    /// Wall time.
    pub seconds: f64,
    /// The cluster changed while the apply waited for health: the next pass runs at once.
    pub replan: bool,
    /// What to tell the `notify:` webhooks about this pass, in order.
    pub notices: Vec<Notice>,
    /// The webhooks of the target's machines.yml.
    pub notify: Vec<NotifyTarget>,
    /// The rollback carried out after `report`'s apply failed (`policy.on_failure: rollback`).
    pub rollback: Option<ApplyReport>,
    /// Whether the cluster was paused with a plan pending: nothing was written.
    pub paused: bool,
}

/// `action target` of the plan's first steps, for a notification's line.
fn pending(plan: &Plan) -> String {
    const SHOWN: usize = 5;
    let mut steps: Vec<String> = (plan.steps.iter().take(SHOWN))
        .map(|s| format!("{} {}", s.action(), s.target))
        .collect();
    if plan.steps.len() > SHOWN {
        steps.push(format!("{} more", plan.steps.len() - SHOWN));
    }
    steps.join(", ")
}

impl Pass {
    /// Whether the cluster matched the target at the end (true when nothing was applied).
    pub fn converged(&self) -> bool {
        self.report.as_ref().is_none_or(|r| r.converged)
    }

    /// The commit a failure concerns: the tip when it was rolled back (the target is then the
    /// healthy revision), else the target, else the tip.
    pub fn failed_revision(&self) -> Option<&str> {
        let target = self.target.as_ref().map(|t| &t.tip);
        let concerned = if self.rollback.is_some() {
            self.tip.as_ref().or(target)
        } else {
            target.or(self.tip.as_ref())
        };
        concerned.map(|t| t.commit.as_str())
    }

    /// Whether the pass succeeded: the tip loaded and planned, and nothing failed.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.broken_tip.is_none()
    }
}

/// The services of `status` that are degraded, missing or failed jobs, as `name: state: reason`.
fn not_healthy(status: &Status) -> Vec<String> {
    status
        .services
        .iter()
        .filter(|s| {
            matches!(
                s.health.state,
                crate::health::HealthState::Degraded
                    | crate::health::HealthState::Missing
                    | crate::health::HealthState::Failed
            )
        })
        .map(|s| format!("{} is {}", s.name, s.health.line()))
        .collect()
}

/// Runs passes; keeps the driver open between them while machines.yml names the same one.
pub(crate) struct Reconciler {
    followed: Arc<Followed>,
    planning: Planning,
    apply: ApplyOptions,
    driver: Mutex<Option<(String, Arc<dyn Driver>)>>,
    last_good: std::sync::Mutex<Option<LastGood>>,
    /// The plan warnings logged since the watcher started: each is logged once (an unset
    /// `${VAR}` in a notify URL is in every plan; `/status` shows the last plan's).
    warned: std::sync::Mutex<BTreeSet<String>>,
    /// The release of the apply lock at the end of the last pass, under way in the background.
    releasing: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Runs blocking git work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("a git task failed: {e}"))?
}

/// The first 12 characters of a commit hash.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// What a failure to load, observe or plan `tip` means, for the log and `/status`.
fn describe(error: PlanningError, tip: &Tip) -> String {
    let short = short(&tip.commit);
    match error {
        PlanningError::Invalid(invalid) => {
            format!("commit {short} ({}) is not valid.\n{invalid}", tip.summary)
        }
        PlanningError::Observe(e) => format!("cannot observe the cluster: {e}"),
        PlanningError::Plan(e) => {
            format!("commit {short} ({}) cannot be planned: {e}", tip.summary)
        }
        other => other.to_string(),
    }
}

/// [`describe`], noting in the pass until when the apply lock that refused it is held.
fn refused(pass: &mut Pass, error: PlanningError, tip: &Tip) -> String {
    if let PlanningError::Lock(DriverError::Locked(held)) = &error {
        pass.locked_until = Some(held.expires_at);
    }
    describe(error, tip)
}

/// The error of a broken tip: why, and what the cluster is held to meanwhile.
fn broken_tip_message(tip: &Tip, error: PlanningError, last_good: Option<&Tip>) -> String {
    let why = describe(error, tip);
    let (first, rest) = why.split_once('\n').unwrap_or((&why, ""));
    let held = match last_good {
        Some(good) => format!(
            "It is not applied: drift is healed against the last good commit {} ({}) until a \
             commit that loads and plans arrives on the branch.",
            short(&good.commit),
            good.summary
        ),
        None => "It is not applied, and no commit has loaded and planned since this watcher \
                 started, so nothing is known to be good: the cluster stays as it is, drift \
                 included, until a commit that loads and plans arrives on the branch."
            .to_string(),
    };
    if rest.is_empty() {
        format!("{first} {held}")
    } else {
        format!("{first} {held}\n{rest}")
    }
}

impl Reconciler {
    /// A reconciler of `followed`.
    pub fn new(
        followed: Arc<Followed>,
        driver_override: Option<DriverKind>,
        env: BTreeMap<String, String>,
        apply: ApplyOptions,
    ) -> Reconciler {
        Reconciler {
            followed,
            planning: Planning {
                env,
                driver_override,
                allow_destroy_all: false,
                // Each pass plans under the apply lock (DESIGN §3.6) and releases it at its end.
                lock: Some((apply.holder.clone(), apply.lock_ttl_seconds)),
                // One key for the watcher's life: passes before the first apply that writes it
                // version alike. None when the system has no random source: each pass makes
                // one then, and reports it cannot.
                content_key: crate::observe::new_content_key().ok(),
            },
            // Each pass plans under the lock and hands it to apply, which releases it.
            apply: ApplyOptions {
                lock_held: true,
                ..apply
            },
            driver: Mutex::new(None),
            last_good: std::sync::Mutex::new(None),
            warned: std::sync::Mutex::new(BTreeSet::new()),
            releasing: Mutex::new(None),
        }
    }

    /// What is followed.
    pub fn followed(&self) -> &Followed {
        &self.followed
    }

    /// One pass. `synced` is the commit the cluster last matched, to tell drift from change.
    pub async fn pass(&self, synced: Option<String>) -> Pass {
        self.released().await;
        let started = Instant::now();
        let mut pass = Pass::default();
        if let Err(error) = self.run(&mut pass, synced.as_deref()).await {
            tracing::error!(revision = pass.failed_revision(), "{error}");
            pass.error = Some(error);
        }
        self.release_in_background().await;
        pass.seconds = started.elapsed().as_secs_f64();
        pass
    }

    fn remembered(&self) -> Option<LastGood> {
        self.last_good
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn remember(&self, good: LastGood) {
        *self
            .last_good
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(good);
    }

    async fn run(&self, pass: &mut Pass, synced: Option<&str>) -> Result<(), String> {
        if let Followed::Remote(remote) = self.followed.as_ref() {
            let remote = remote.clone();
            let fetched = blocking(move || remote.fetch().map_err(|e| e.to_string())).await;
            if let Err(error) = &fetched {
                tracing::warn!("{error}; using the last fetched commit");
            }
            pass.fetch = Some(fetched.err());
        }
        let followed = self.followed.clone();
        let tip = blocking(move || followed.tip().map_err(|e| e.to_string())).await?;
        pass.tip = Some(tip.clone());
        let source = self.followed.files(&tip.commit);
        match load_and_plan(source, &self.planning, self).await {
            Ok(planned) => {
                self.remember(LastGood {
                    tip: tip.clone(),
                    desired: planned.desired.clone(),
                });
                if let Some(held) = planned.observed.held().filter(|h| h.failed == tip.commit) {
                    // The tip failed and was rolled back: held at the last healthy revision
                    // until the branch moves.
                    return self.hold(pass, synced, held, planned).await;
                }
                let target = Target {
                    tip,
                    kind: TargetKind::Tip,
                };
                self.reconcile(pass, synced, target, planned).await
            }
            Err(error @ (PlanningError::Invalid(_) | PlanningError::Plan(_))) => {
                let good = self.remembered();
                let broken = broken_tip_message(&tip, error, good.as_ref().map(|g| &g.tip));
                tracing::error!(revision = %tip.commit, "{broken}");
                let Some(LastGood { tip: good, desired }) = good else {
                    pass.broken_tip = Some(broken);
                    return Ok(());
                };
                pass.notices.push(Notice::new(
                    &desired.cluster,
                    Some(&tip.commit),
                    NotifyEvent::Failed,
                    &broken,
                    Default::default(),
                    "watch",
                ));
                pass.notify = desired.notify.clone();
                pass.broken_tip = Some(broken);
                let target = Target {
                    tip: good.clone(),
                    kind: TargetKind::LastGood,
                };
                pass.target = Some(target.clone());
                let planned = self
                    .plan_loaded(desired, &good.commit)
                    .await
                    .map_err(|e| refused(pass, e, &good))?;
                self.reconcile(pass, synced, target, planned).await
            }
            Err(error) => Err(refused(pass, error, &tip)),
        }
    }

    /// Holds the cluster at the last healthy revision while the tip is the commit that failed
    /// and was rolled back: plans the rollback's desired state (that revision's stacks, the
    /// tip's machines) and heals drift against it. The hold is read from the swarm's labels, so
    /// a restarted watcher holds too.
    async fn hold(
        &self,
        pass: &mut Pass,
        synced: Option<&str>,
        held: Held,
        tip_planned: Planned,
    ) -> Result<(), String> {
        tracing::info!(
            revision = %held.failed,
            "the cluster is {}: commit {} is not applied again until the branch moves",
            held.line(),
            short(&held.failed)
        );
        let files = self.followed.files(&held.at);
        let planned = plan_rollback(files, &tip_planned.desired, &held, &self.planning, self)
            .await
            .map_err(|e| {
                format!(
                    "the cluster is {}, and the hold cannot be kept: {e}. Commit {} is not applied again; push a commit to move the branch",
                    held.line(),
                    short(&held.failed)
                )
            })?;
        let target = Target {
            tip: healthy_tip(&held),
            kind: TargetKind::Held,
        };
        self.reconcile_held(pass, synced, target, planned, Some(held))
            .await
    }

    /// Opens the driver of a desired state already loaded, observes and plans, as
    /// [`load_and_plan`] does after loading.
    async fn plan_loaded(&self, desired: Desired, commit: &str) -> Result<Planned, PlanningError> {
        crate::observe::plan_loaded(desired, Some(commit.to_string()), &self.planning, self).await
    }

    /// Applies the plan of the pass's target; an empty plan still records the target as the
    /// applied revision when the swarm has another one recorded (a commit that changes nothing
    /// in the cluster, a README edit, is applied too).
    async fn reconcile(
        &self,
        pass: &mut Pass,
        synced: Option<&str>,
        target: Target,
        planned: Planned,
    ) -> Result<(), String> {
        self.reconcile_held(pass, synced, target, planned, None)
            .await
    }

    /// [`Reconciler::reconcile`], recording `held` with the revision when the cluster is held
    /// at the last healthy revision.
    async fn reconcile_held(
        &self,
        pass: &mut Pass,
        synced: Option<&str>,
        target: Target,
        planned: Planned,
        held: Option<Held>,
    ) -> Result<(), String> {
        let Planned {
            desired,
            driver,
            observed,
            plan,
        } = planned;
        pass.target = Some(target.clone());
        let target = target.tip;
        let short = short(&target.commit);
        self.log_new_warnings(&plan, &target.commit);
        pass.plan = Some(plan.clone());
        pass.observed_at = Some(observed.observed_at);
        pass.status = Some(Status::new(&desired, &observed));
        pass.notify = desired.notify.clone();
        let recordable = observed
            .swarm
            .as_ref()
            .is_some_and(|s| s.quorum_error.is_none());
        let unrecorded = recordable
            && plan.revision.is_some()
            && observed.revision() != plan.revision.as_deref();
        if plan.is_empty() && !unrecorded {
            tracing::debug!(revision = %target.commit, "the cluster matches commit {short}");
            return match pass.status.as_ref().map(not_healthy) {
                Some(unhealthy) if !unhealthy.is_empty() => Err(format!(
                    "commit {short} is applied, but {}",
                    unhealthy.join("; ")
                )),
                _ => Ok(()),
            };
        }
        if let Some(pause) = observed.pause() {
            // Paused: observed and planned (the plan is on /status), nothing written.
            tracing::warn!(
                revision = %target.commit,
                "the cluster is {}: not applying commit {short} ({} step(s) pending) until `shoal resume`",
                pause.line(&pause.since.to_string()),
                plan.steps.len()
            );
            pass.notices.push(Notice::new(
                &desired.cluster,
                Some(&target.commit),
                NotifyEvent::Paused,
                &format!(
                    "the cluster is {}: commit {short} is not applied, {} step(s) pending ({})",
                    pause.line(&pause.since.to_string()),
                    plan.steps.len(),
                    pending(&plan)
                ),
                plan.summary,
                "watch",
            ));
            pass.paused = true;
            return Ok(());
        }
        let mut healing = false;
        if plan.is_empty() {
            tracing::info!(
                revision = %target.commit,
                "recording commit {short} ({}) as applied: it changes nothing in the cluster",
                target.summary
            );
        } else {
            let applied_before = synced == Some(target.commit.as_str())
                || observed.revision() == Some(target.commit.as_str());
            if applied_before {
                healing = true;
                pass.drift_steps = plan.steps.len();
                tracing::warn!(
                    revision = %target.commit,
                    "drift: the cluster no longer matches commit {short}; {} step(s) bring it back",
                    plan.steps.len()
                );
            }
            tracing::info!(
                revision = %target.commit,
                "applying commit {short} ({}): {} to add, {} to change, {} to destroy",
                target.summary,
                plan.summary.add,
                plan.summary.change,
                plan.summary.destroy
            );
        }
        let options = ApplyOptions {
            observation: Some(observed.clone()),
            held,
            ..self.apply.clone()
        };
        let (report, after) =
            apply_observing(&plan, &desired, driver.clone(), &options, &TracingProgress)
                .await
                .map_err(|e| {
                    if let ApplyError::Driver(DriverError::Locked(held)) = &e {
                        pass.locked_until = Some(held.expires_at);
                        // Another shoal is applying: nothing failed.
                    } else {
                        pass.notices.push(Notice::new(
                            &desired.cluster,
                            Some(&target.commit),
                            NotifyEvent::Failed,
                            &format!("cannot apply commit {short}: {e}"),
                            plan.summary,
                            "watch",
                        ));
                    }
                    format!("cannot apply commit {short}: {e}")
                })?;
        if let Some(held) = rollback_of(&desired, &observed, &report, &target.commit) {
            return self
                .roll_back(pass, &desired, plan.summary, report, held)
                .await;
        }
        let mut notice = notice_of_report(&desired.cluster, plan.summary, &report, "watch");
        if healing && notice.event == NotifyEvent::Applied {
            notice.event = NotifyEvent::DriftHealed;
            notice.message = format!(
                "the cluster no longer matched commit {short}; {} step(s) brought it back ({})",
                plan.steps.len(),
                pending(&plan)
            );
        }
        pass.notices.push(notice);
        // The cluster as apply saw it last (it observed after its steps): not looked at again.
        if let Some(after) = after {
            pass.observed_at = Some(after.observed_at);
            pass.status = Some(Status::new(&desired, &after));
        }
        judge_report(pass, report, &target.commit, short)
    }

    /// Logs the warnings of `plan` this watcher has not logged yet.
    fn log_new_warnings(&self, plan: &Plan, commit: &str) {
        let new_warnings = first_seen(
            &mut self
                .warned
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            &plan
                .warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        );
        for warning in new_warnings {
            tracing::warn!(revision = %commit, "{warning}");
        }
    }

    /// Rolls the failed apply of `report` back to `held.at` (the last healthy revision): tells
    /// `failed` then `rolled_back`, holds the pass's target at that revision, and fails the
    /// pass with what failed (the next pass holds: the failed commit is marked in the swarm).
    async fn roll_back(
        &self,
        pass: &mut Pass,
        desired: &Desired,
        summary: crate::plan::Summary,
        report: ApplyReport,
        held: Held,
    ) -> Result<(), String> {
        let (from, to) = (short(&held.failed).to_string(), short(&held.at).to_string());
        tracing::warn!(
            revision = %held.failed,
            "commit {from} left {}; rolling back to the last healthy revision {to} (policy.on_failure: rollback)",
            held.reason
        );
        let failing = held.reason.clone();
        pass.report = Some(report);
        let files = self.followed.files(&held.at);
        let target = Target {
            tip: healthy_tip(&held),
            kind: TargetKind::Held,
        };
        let rolled = roll_back(
            files,
            desired,
            held,
            &self.planning,
            self,
            &self.apply,
            &TracingProgress,
        )
        .await;
        let failed = pass.report.as_ref().expect("the failed apply's report");
        let rolled = match rolled {
            Ok(rolled) => rolled,
            Err(e) => {
                pass.notices.push(notice_of_failed_rollback(
                    &desired.cluster,
                    summary,
                    failed,
                    &format!("applied {from}, but it left {failing}"),
                    &e.to_string(),
                    "watch",
                ));
                return Err(format!("commit {from} left {failing}; {e}"));
            }
        };
        pass.notices.extend(notices_of_rollback(
            &desired.cluster,
            summary,
            failed,
            &failing,
            &rolled.report,
            "watch",
        ));
        pass.target = Some(target);
        pass.plan = Some(rolled.planned.plan.clone());
        if let Ok(after) = observe(&rolled.planned.driver, unix_now()).await {
            pass.observed_at = Some(after.observed_at);
            pass.status = Some(Status::new(&rolled.planned.desired, &after));
        }
        let outcome = rollback_outcome(&rolled.report);
        pass.rollback = Some(rolled.report);
        Err(format!(
            "applied commit {from}, but it left {failing}; rolled back to the last healthy revision {to}{outcome}"
        ))
    }

    /// The driver the last pass opened, if one did.
    pub async fn current_driver(&self) -> Option<Arc<dyn Driver>> {
        self.driver.lock().await.as_ref().map(|(_, d)| d.clone())
    }

    /// Releases the apply lock if this watcher holds it, once a release under way has ended.
    pub async fn release_lock(&self) {
        self.released().await;
        if let Some(driver) = self.current_driver().await {
            release(driver, &self.apply.holder).await;
        }
    }

    /// Starts releasing the apply lock if this watcher holds it (at the end of every pass; apply
    /// released it already when it ran), without waiting for it: the next pass, and the end of
    /// the watcher, wait for it ([`Reconciler::released`]).
    async fn release_in_background(&self) {
        if let Some(driver) = self.current_driver().await {
            let holder = self.apply.holder.clone();
            let task = tokio::spawn(async move { release(driver, &holder).await });
            *self.releasing.lock().await = Some(task);
        }
    }

    /// Waits for the release of the apply lock started at the end of the last pass, if any.
    pub async fn released(&self) {
        let task = self.releasing.lock().await.take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::warn!("releasing the apply lock failed: {e}");
            }
        }
    }
}

/// Releases `holder`'s apply lock through `driver`, if it holds it.
async fn release(driver: Arc<dyn Driver>, holder: &crate::drivers::lock::LockHolder) {
    if let Err(e) = driver.unlock(holder).await {
        tracing::warn!("could not release the apply lock: {e}");
    }
}

/// The watcher keeps its driver open while machines.yml names the same one.
#[async_trait::async_trait]
impl OpenDriver for Reconciler {
    async fn open(&self, desired: &Desired) -> Result<Arc<dyn Driver>, DriverError> {
        let key = driver_key(desired);
        let mut cached = self.driver.lock().await;
        if let Some((open_key, driver)) = cached.as_ref() {
            if *open_key == key {
                return Ok(driver.clone());
            }
        }
        let driver = open_driver(desired, &self.followed.state_dir()).await?;
        *cached = Some((key, driver.clone()));
        Ok(driver)
    }
}

/// The hold to roll the apply of `commit` (its `report`, planned over `before`) back to, when
/// the rule [`should_roll_back`] says so; logs why not when it cannot.
fn rollback_of(
    desired: &Desired,
    before: &crate::model::Observed,
    report: &ApplyReport,
    commit: &str,
) -> Option<Held> {
    let healthy = last_healthy(before, report.revision.as_deref());
    match should_roll_back(desired.policy.on_failure, report, healthy.as_deref()) {
        Verdict::Stay => None,
        Verdict::Cannot { failing, why } => {
            tracing::warn!(
                revision = %commit,
                "commit {} left {failing}; policy.on_failure is rollback, but it is not rolled back: {why}",
                short(commit)
            );
            None
        }
        Verdict::RollBack { to, failing } => Some(Held {
            at: to,
            failed: commit.to_string(),
            reason: failing,
        }),
    }
}

/// The warnings of `warnings` not in `seen`, which remembers them: each is told once.
fn first_seen(seen: &mut BTreeSet<String>, warnings: &[String]) -> Vec<String> {
    (warnings.iter())
        .filter(|w| seen.insert((*w).clone()))
        .cloned()
        .collect()
}

/// The target of a hold: the last healthy revision, named as such.
fn healthy_tip(held: &Held) -> Tip {
    Tip {
        commit: held.at.clone(),
        summary: format!(
            "the last healthy revision ({} failed and was rolled back)",
            short(&held.failed)
        ),
        time: 0,
    }
}

/// How a rollback's apply went, as the end of the pass's error: empty when it went well.
fn rollback_outcome(report: &ApplyReport) -> String {
    let failed = report.failed_steps();
    let unhealthy: Vec<String> = (report.unhealthy().into_iter())
        .map(|(name, health)| format!("{name}: {}", health.line()))
        .collect();
    match (failed.is_empty(), unhealthy.is_empty()) {
        (true, true) => String::new(),
        (false, _) => format!(", but the rollback's steps failed: {}", failed.join("; ")),
        (true, false) => format!(", but it is not healthy either: {}", unhealthy.join("; ")),
    }
}

/// Apply's progress, as log lines.
struct TracingProgress;

impl Progress for TracingProgress {
    fn started(&self, step: &Step, index: usize, total: usize) {
        tracing::debug!(
            "[{index}/{total}] {} {}: started",
            step.action(),
            step.target
        );
    }

    fn finished(&self, step: &Step, report: &StepReport, index: usize, total: usize) {
        match report.status {
            StepStatus::Done => tracing::info!(
                "[{index}/{total}] {} {}: done in {:.1}s",
                step.action(),
                step.target,
                report.seconds
            ),
            StepStatus::Failed => tracing::warn!(
                "[{index}/{total}] {} {}: FAILED: {}",
                step.action(),
                step.target,
                report.error.as_deref().unwrap_or("")
            ),
            StepStatus::Skipped => {
                tracing::warn!(
                    "[{index}/{total}] {} {}: skipped",
                    step.action(),
                    step.target
                )
            }
        }
    }

    fn health(&self, line: &str) {
        tracing::info!("{line}");
    }
}

/// Judges a pass's apply: failed steps or services it left not healthy (but for those changed
/// by hand meanwhile, which the next pass, planned at once, brings back) fail the pass; the
/// report is kept on the pass either way.
fn judge_report(
    pass: &mut Pass,
    report: ApplyReport,
    commit: &str,
    short: &str,
) -> Result<(), String> {
    let failed = report.failed_steps();
    let converged = report.converged;
    let remaining = report.remaining.clone();
    // A service changed by hand while the apply waited is not this commit's failure: the
    // next pass, planned at once, brings it back.
    let unhealthy: Vec<String> = report
        .unhealthy()
        .into_iter()
        .filter(|(name, _)| !report.drifted(name))
        .map(|(name, health)| format!("{name}: {}", health.line()))
        .collect();
    if !report.drift.is_empty() {
        pass.replan = true;
        tracing::warn!(
            revision = %commit,
            "the cluster changed while the apply waited for health: {}; planning again at once",
            report.drift.join("; ")
        );
    }
    pass.report = Some(report);
    if !failed.is_empty() {
        return Err(format!(
            "applying commit {short}: {} step(s) failed: {}",
            failed.len(),
            failed.join("; ")
        ));
    }
    if !unhealthy.is_empty() {
        return Err(format!(
            "applied commit {short}, but it left {} service(s) not healthy: {}",
            unhealthy.len(),
            unhealthy.join("; ")
        ));
    }
    if converged {
        tracing::info!(revision = %commit, "applied commit {short}");
    } else {
        tracing::warn!(
            revision = %commit,
            "applied commit {short}, but the cluster has not settled yet: {}",
            remaining.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_is_told_once_per_watcher() {
        let mut seen = BTreeSet::new();
        let plan = vec!["NOPE_URL is not set".to_string(), "other".to_string()];
        assert_eq!(first_seen(&mut seen, &plan), plan);
        assert!(first_seen(&mut seen, &plan).is_empty());
        let more = vec!["other".to_string(), "new".to_string()];
        assert_eq!(first_seen(&mut seen, &more), ["new"]);
    }
}
