//! Notifications (DESIGN §9): what happened to the cluster, told to the `notify:` webhooks of
//! machines.yml. [`payload`] builds the bodies (pure); [`send`] delivers them in the background
//! (the edge), and a failure never fails the apply or the reconcile that caused it.

pub mod payload;
pub mod send;

pub use payload::{notice_of_failed_rollback, notice_of_report, notices_of_rollback, Notice};
pub use send::{spawn, spawn_in_order, wait, Delivery, Pacing, Sending};
