//! The fast tier: every integration test that needs no Docker Engine (the sim driver, fixture
//! folders, property tests, the CLI and the watcher on the sim), in one test binary, one module
//! per suite. `cargo test --test fast` runs it alone; `cargo test` runs it and the engine tier
//! (`tests/engine/`).

#[path = "../common/mod.rs"]
mod common;
#[path = "../watch_support/mod.rs"]
mod watch_support;

// proptest keeps the regressions of `properties` in tests/proptest-regressions/properties.txt:
// its layout for a source file beside a crate root (main.rs), as for src/.
mod adopt_objects;
mod apply_rollback_sim;
mod ci_recipes;
mod confirm_pty;
mod content_keys_sim;
mod crash_sim;
mod docs;
mod fixtures;
mod health_fixtures;
mod health_sim;
mod hostile_fixtures;
mod hostile_input;
mod hostile_secrets;
mod hostile_sim;
mod images;
mod no_drift;
mod notify_sim;
mod order_sim;
mod pause_sim;
mod plan_file;
mod properties;
mod revision_sim;
mod stacks_sim;
mod timings_sim;
mod tutorial_sim;
mod watch_cli;
mod watch_hardening;
mod watch_last_good;
mod watch_latency;
mod watch_local;
mod watch_remote;
mod watch_restart;
mod watch_rollback;
