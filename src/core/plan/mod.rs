//! Planning: desired + observed → an ordered, safe, minimal plan (pure).
//!
//! Pair first ([`pairing`]), then one function per rule ([`rules`]), with quorum bookkeeping in
//! one type ([`quorum`]); steps are typed ([`StepOp`]) and their reasons an enum ([`Reason`]), as are the plan's warnings ([`Warning`]).

pub mod diff;
pub mod fingerprint;
pub mod mask;
pub mod model;
pub mod normalize;
mod pairing;
pub mod planner;
mod quorum;
pub mod reason;
pub mod report;
pub mod rollback;
mod rules;
pub mod saved;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod warning;
mod wire;

pub use model::{
    Action, Effect, FieldChange, Plan, Step, StepId, StepOp, Summary, Unseen, Wait, FORMAT_VERSION,
};
pub use planner::{plan, PlanError, PlanOptions, LABEL_STACKS};
pub use reason::Reason;
pub use rules::prune::stacks_to_remember;
pub use warning::Warning;
pub use wire::{UnknownFormat, UnreadableStep};
