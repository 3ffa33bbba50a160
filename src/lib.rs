//! shoal: a declarative GitOps reconciler for Docker Swarm clusters.
//!
//! The functional core lives in the `shoal-core` crate (`model`, `yaml`, `config`, `compose`,
//! `plan`, `health`, `render`, `diag`: pure and synchronous, re-exported here under the same
//! names); this crate holds the edges (`drivers`, `docker`, `engine`, `observe`, `apply`,
//! `source`, `registry`, `notify`, `watch`) that do the I/O behind the [`drivers::Driver`] and
//! [`engine::Swarm`] traits.

pub use shoal_core::{compose, config, diag, health, model, plan, render, signature, yaml};

pub mod apply;
pub mod clock;
pub mod crash;
pub mod docker;
pub mod drivers;
pub mod engine;
pub mod http;
pub mod notify;
pub mod observe;
pub mod registry;
pub mod source;
pub mod timings;
pub mod watch;
