//! Carries out a rollback (`policy.on_failure: rollback`, `apply --rollback-on-failure`): loads
//! the last healthy revision's files, keeps today's machines ([`rollback_desired`]), plans
//! under the apply lock and applies, recording the failed commit in the swarm so that no shoal
//! applies it again while it is the branch tip. The decision is the pure rule
//! [`crate::plan::rollback::should_roll_back`]; the watcher and `shoal apply` call this.

use super::progress::Progress;
use super::{apply, ApplyError, ApplyOptions};
use crate::model::rollback::Held;
use crate::model::Desired;
use crate::observe::{load_desired, plan_loaded, OpenDriver, Planned, Planning, PlanningError};
use crate::plan::report::ApplyReport;
use crate::plan::rollback::rollback_desired;
use crate::source::Source;

/// Why a rollback could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// The healthy revision's files do not load, or the cluster cannot be observed or planned.
    #[error("cannot roll back to {revision}: {source}")]
    Planning {
        /// The healthy revision.
        revision: String,
        /// Why.
        #[source]
        source: PlanningError,
    },
    /// The apply could not start (the lock).
    #[error("cannot roll back to {revision}: {source}")]
    Apply {
        /// The healthy revision.
        revision: String,
        /// Why.
        #[source]
        source: ApplyError,
    },
}

/// A rollback carried out: what was planned and how the apply went.
pub struct RolledBack {
    /// The rollback's desired state, driver, observation and plan.
    pub planned: Planned,
    /// The apply's report (its revision is the healthy one).
    pub report: ApplyReport,
}

/// Loads the desired state of a rollback (the files of the healthy revision `held.at` in
/// `healthy_files`, the machines of `current`) and plans it under `planning`; the plan's
/// revision is `held.at`.
pub async fn plan_rollback(
    healthy_files: Source,
    current: &Desired,
    held: &Held,
    planning: &Planning,
    opener: &dyn OpenDriver,
) -> Result<Planned, RollbackError> {
    let failed = |source| RollbackError::Planning {
        revision: held.at.clone(),
        source,
    };
    let env = planning.env.clone();
    let driver_override = planning.driver_override;
    let files = healthy_files.files;
    let healthy =
        tokio::task::spawn_blocking(move || load_desired(files.as_ref(), &env, driver_override))
            .await
            .map_err(|e| failed(PlanningError::Task(e.to_string())))?
            .map_err(|e| failed(PlanningError::Invalid(e)))?;
    let desired = rollback_desired(current, healthy);
    plan_loaded(desired, Some(held.at.clone()), planning, opener)
        .await
        .map_err(failed)
}

/// Plans the rollback ([`plan_rollback`]) and applies it with `options`, recording `held`.
pub async fn roll_back(
    healthy_files: Source,
    current: &Desired,
    held: Held,
    planning: &Planning,
    opener: &dyn OpenDriver,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<RolledBack, RollbackError> {
    let planned = plan_rollback(healthy_files, current, &held, planning, opener).await?;
    let revision = held.at.clone();
    let options = ApplyOptions {
        observation: Some(planned.observed.clone()),
        held: Some(held),
        ..options.clone()
    };
    let report = apply(
        &planned.plan,
        &planned.desired,
        planned.driver.clone(),
        &options,
        progress,
    )
    .await
    .map_err(|source| RollbackError::Apply { revision, source })?;
    Ok(RolledBack { planned, report })
}
