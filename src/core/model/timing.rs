//! Where a run's time went, as plain data: one [`Timing`] per timed phase, recorded by the
//! `shoal` crate's timing layer and printed as a table by `shoal --timings`.

/// One timed phase.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Timing {
    /// What it was: connect, lock, observe, plan, a write...
    pub phase: String,
    /// Which one: a machine, a step (empty when there is one of its kind).
    pub detail: String,
    /// How many timed phases enclose it.
    pub depth: usize,
    /// Seconds from the first recorded phase's start to its start.
    pub start: f64,
    /// Seconds it took.
    pub seconds: f64,
}
