//! The engine tier: every integration test that needs this machine's Docker Engine (dind
//! clusters, generic hosts started as containers, the docker-machine stand-in, registries), in
//! one test binary, one module per suite. `cargo test --test engine` runs it alone.
//!
//! A test that needs the engine fails, naming what is missing, when no engine answers or a tool
//! it needs is not installed (`.ci/test` installs the tools); it never reports `ok` unrun. The
//! tests that use the engine take their turn ([`common::engine_turn`]): one at a time, as they
//! start clusters and hosts on two cores and share fixed names, subnets and the demo image.
//! The suites' sim halves (`scenarios::*_on_sim`, the age test on the sim) run beside them.

#[path = "../common/mod.rs"]
mod common;
#[path = "../generic_support/mod.rs"]
mod generic_support;
#[path = "../watch_support/mod.rs"]
mod watch_support;

mod adopt_dind;
mod dind_cluster;
mod dind_driver;
mod docker_machine_tutorial;
mod engines;
mod generic_hosts;
mod gitops_dind;
mod health_dind;
mod hostile_dind;
mod images_dind;
mod order_dind;
mod overrides_dind;
mod policies_dind;
mod qemu_tutorial;
mod registry_dind;
mod registry_pin;
mod scenarios;
mod selfhost_example;
mod stacks_age;
