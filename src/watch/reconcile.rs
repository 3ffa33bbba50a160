//! One reconcile pass: fetch (a remote), read the branch's tip commit, load its files, observe,
//! plan, and apply under the driver's lock. It does the same whatever woke the loop.

use super::driver::driver_key;
use super::state::SourceInfo;
use crate::apply::progress::Progress;
use crate::apply::{apply, unix_now, ApplyOptions};
use crate::drivers::open_driver;
use crate::drivers::{Driver, DriverError};
use crate::model::{Desired, DriverKind};
use crate::observe::{load_and_plan, observe, OpenDriver, Planned, Planning, PlanningError};
use crate::plan::report::{ApplyReport, StepReport, StepStatus};
use crate::plan::{Plan, Step};
use crate::render::Status;
use crate::source::follow::{FollowError, LocalBranch, Tip};
use crate::source::remote::RemoteBranch;
use crate::source::Source;
use std::collections::BTreeMap;
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

    fn tip(&self) -> Result<Tip, FollowError> {
        match self {
            Followed::Local(local) => local.tip(),
            Followed::Remote(remote) => remote.tip(),
        }
    }

    fn files(&self, commit: &str) -> Source {
        match self {
            Followed::Local(local) => local.files(commit),
            Followed::Remote(remote) => remote.files(commit),
        }
    }
}

/// What one pass found and did.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// The tip commit read.
    pub tip: Option<Tip>,
    /// The plan made from it.
    pub plan: Option<Plan>,
    /// The apply carried out, when the plan had steps.
    pub report: Option<ApplyReport>,
    /// The cluster as observed last in the pass.
    pub status: Option<Status>,
    /// Steps planned although the commit had already been applied: drift.
    pub drift_steps: usize,
    /// Whether the remote was fetched (`Some`), and the fetch's error if it failed.
    pub fetch: Option<Option<String>>,
    /// Why the pass failed.
    pub error: Option<String>,
    /// Wall time.
    pub seconds: f64,
}

impl Pass {
    /// Whether the cluster matched the commit at the end (true when nothing was applied).
    pub fn converged(&self) -> bool {
        self.report.as_ref().is_none_or(|r| r.converged)
    }
}

/// Runs passes; keeps the driver open between them while machines.yml names the same one.
pub(crate) struct Reconciler {
    followed: Arc<Followed>,
    planning: Planning,
    apply: ApplyOptions,
    driver: Mutex<Option<(String, Arc<dyn Driver>)>>,
}

/// Runs blocking git work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("a git task failed: {e}"))?
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
                lock: None,
            },
            apply,
            driver: Mutex::new(None),
        }
    }

    /// What is followed.
    pub fn followed(&self) -> &Followed {
        &self.followed
    }

    /// One pass. `synced` is the commit the cluster last matched, to tell drift from change.
    pub async fn pass(&self, synced: Option<String>) -> Pass {
        let started = Instant::now();
        let mut pass = Pass::default();
        if let Err(error) = self.run(&mut pass, synced.as_deref()).await {
            tracing::error!(
                revision = pass.tip.as_ref().map(|t| t.commit.as_str()),
                "{error}"
            );
            pass.error = Some(error);
        }
        pass.seconds = started.elapsed().as_secs_f64();
        pass
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
        let short = tip.commit.get(..12).unwrap_or(&tip.commit).to_string();
        let source = self.followed.files(&tip.commit);
        let Planned {
            desired,
            driver,
            observed,
            plan,
        } = load_and_plan(source, &self.planning, self).await.map_err(|e| match e {
            PlanningError::Invalid(invalid) => format!(
                "commit {short} ({}) is not valid, so it is not applied; the cluster stays as it is.\n{invalid}",
                tip.summary
            ),
            PlanningError::Observe(e) => format!("cannot observe the cluster: {e}"),
            PlanningError::Plan(e) => format!(
                "commit {short} ({}) cannot be planned, so it is not applied; the cluster stays as it is: {e}",
                tip.summary
            ),
            other => other.to_string(),
        })?;
        pass.plan = Some(plan.clone());
        if plan.is_empty() {
            tracing::debug!(revision = %tip.commit, "the cluster matches commit {short}");
            pass.status = Some(Status::new(&desired, &observed));
            return Ok(());
        }
        let applied_before =
            synced == Some(tip.commit.as_str()) || observed.revision() == Some(tip.commit.as_str());
        if applied_before {
            pass.drift_steps = plan.steps.len();
            tracing::warn!(
                revision = %tip.commit,
                "drift: the cluster no longer matches commit {short}; {} step(s) bring it back",
                plan.steps.len()
            );
        }
        tracing::info!(
            revision = %tip.commit,
            "applying commit {short} ({}): {} to add, {} to change, {} to destroy",
            tip.summary,
            plan.summary.add,
            plan.summary.change,
            plan.summary.destroy
        );
        let report = apply(
            &plan,
            &desired,
            driver.clone(),
            &self.apply,
            &TracingProgress,
        )
        .await
        .map_err(|e| format!("cannot apply commit {short}: {e}"))?;
        let after = observe(&driver, unix_now()).await;
        pass.status = Some(Status::new(&desired, after.as_ref().unwrap_or(&observed)));
        let failed: Vec<String> = report
            .steps
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
            .collect();
        let converged = report.converged;
        let remaining = report.remaining.clone();
        pass.report = Some(report);
        if !failed.is_empty() {
            return Err(format!(
                "applying commit {short}: {} step(s) failed: {}",
                failed.len(),
                failed.join("; ")
            ));
        }
        if converged {
            tracing::info!(revision = %tip.commit, "applied commit {short}");
        } else {
            tracing::warn!(
                revision = %tip.commit,
                "applied commit {short}, but the cluster has not settled yet: {}",
                remaining.join(", ")
            );
        }
        Ok(())
    }

    /// Releases the apply lock if this watcher holds it (after an interrupted apply).
    pub async fn release_lock(&self) {
        let driver = self.driver.lock().await.as_ref().map(|(_, d)| d.clone());
        if let Some(driver) = driver {
            if let Err(e) = driver.unlock(&self.apply.holder).await {
                tracing::warn!("could not release the apply lock: {e}");
            }
        }
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
}
