//! Planning: desired + observed → an ordered, safe, minimal plan (pure).

pub mod diff;
pub mod fingerprint;
pub mod model;
pub mod normalize;
pub mod planner;
pub mod saved;

pub use model::{Action, Detail, Effect, FieldChange, Plan, Step, Summary, FORMAT_VERSION};
pub use planner::{plan, PlanError, PlanOptions, LABEL_STACKS};
