//! shoal's functional core: what the user's files mean and what to do about the cluster, as
//! pure, synchronous functions over plain data.
//!
//! Layers, each importing only the ones before it: `model` (plain data: desired and observed
//! state, specs), `yaml` (the YAML layer with positions, interpolation, units), `compose` (compose
//! files to swarm specs), `config` (machines.yml and the whole desired state), `plan` (the
//! planner's named rules), `health`, `render` (text, markdown and JSON), `diag` (errors with
//! file:line) and `signature` (HMAC of message bodies). Nothing here does I/O: this crate's manifest has no runtime, Docker client, git or
//! HTTP library, so the edges in the `shoal` crate are the only place those can be used.

pub mod compose;
pub mod config;
pub mod diag;
pub mod health;
pub mod images;
pub mod model;
pub mod plan;
pub mod render;
pub mod signature;
pub mod yaml;
