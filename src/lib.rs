//! shoal: a declarative GitOps reconciler for Docker Swarm clusters.
//!
//! The functional core (`model`, `yaml`, `config`, `compose`, `plan`, `render`) is pure and
//! synchronous; the edges (`drivers`, `engine`, `observe`, `apply`, `source`, `watch`) do the I/O
//! behind the [`drivers::Driver`] and [`engine::Swarm`] traits.

pub mod apply;
pub mod compose;
pub mod config;
pub mod crash;
pub mod diag;
pub mod docker;
pub mod drivers;
pub mod engine;
pub mod health;
pub mod model;
pub mod notify;
pub mod observe;
pub mod plan;
pub mod registry;
pub mod render;
pub mod source;
pub mod timings;
pub mod watch;
pub mod yaml;
