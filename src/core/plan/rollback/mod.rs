//! Rollback to the last healthy revision (`policy.on_failure: rollback`,
//! `apply --rollback-on-failure`, DESIGN §9), as pure rules the watcher and apply carry out:
//! whether a finished apply is rolled back ([`should_roll_back`]), which revision an apply
//! records as the last healthy one ([`healthy_to_record`]), and what the rollback applies
//! ([`rollback_desired`]: the healthy revision's stacks, today's machines).

mod desired;
mod last_healthy;
mod should_roll_back;

pub use desired::rollback_desired;
pub use last_healthy::{healthy_to_record, last_healthy};
pub use should_roll_back::{should_roll_back, Verdict};
