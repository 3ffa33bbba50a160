//! Planning: desired + observed → an ordered, safe, minimal plan (pure).

pub mod model;

pub use model::{Action, Detail, FieldChange, Plan, Step, Summary, FORMAT_VERSION};
