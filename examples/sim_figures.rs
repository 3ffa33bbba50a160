//! Prints whole-process figures of the `shoal` binary on the sim driver: for 100 machines with
//! 200 services and 1,000 machines with 2,000 services, the time of a cold `shoal plan` (nothing
//! exists), of `shoal apply --yes` from nothing, and of a converged `shoal plan
//! --detailed-exitcode`. Run with `cargo run --release --example sim_figures` (`-- --quick` for
//! a short smoke run at 10/20 and 100/200). It builds the `shoal` binary of its own profile
//! first. The figures are printed, never asserted.

use std::fmt::Write as _;

#[path = "support/shoal_bin.rs"]
mod shoal_bin;
use shoal_bin::shoal_binary;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Services per stack (compose file).
const PER_STACK: usize = 20;

/// Writes a repository of `machines` sim machines (3 managers) and `services` services in
/// stacks of [`PER_STACK`].
fn write_repo(dir: &Path, machines: usize, services: usize) {
    let managers = 3.min(machines);
    let stacks = services.div_ceil(PER_STACK);
    let mut yml = String::from("cluster: figures\ndriver: sim\nmachines:\n");
    writeln!(
        yml,
        "  vm-manager:\n    role: manager\n    count: {managers}"
    )
    .unwrap();
    if machines > managers {
        writeln!(
            yml,
            "  vm-worker:\n    role: worker\n    count: {}\n    labels:\n      zone: a",
            machines - managers
        )
        .unwrap();
    }
    yml.push_str("stacks:\n");
    for s in 0..stacks {
        writeln!(yml, "  stack{s:03}: stack{s:03}.yml").unwrap();
        let mut compose = String::from("version: \"3.8\"\nservices:\n");
        for v in 0..PER_STACK.min(services - s * PER_STACK) {
            writeln!(
                compose,
                "  svc{v:02}:\n    image: registry.local/app{v}:1.{s}\n    environment:\n      \
                 - MODE=figures\n      - INDEX={v}\n    deploy:\n      replicas: {}\n      \
                 restart_policy:\n        condition: on-failure",
                1 + v % 3
            )
            .unwrap();
        }
        std::fs::write(dir.join(format!("stack{s:03}.yml")), compose).expect("write a stack");
    }
    std::fs::write(dir.join("machines.yml"), yml).expect("write machines.yml");
}

/// Runs `shoal ARGS --repo DIR`; returns its wall time, after checking its exit code.
fn timed(shoal: &Path, dir: &Path, args: &[&str], expected_code: i32) -> Duration {
    let start = Instant::now();
    let output = Command::new(shoal)
        .args(args)
        .arg("--repo")
        .arg(dir)
        .env_remove("SHOAL_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run shoal");
    let elapsed = start.elapsed();
    assert_eq!(
        output.status.code(),
        Some(expected_code),
        "shoal {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

/// The median wall time of `runs` runs.
fn median(shoal: &Path, dir: &Path, args: &[&str], code: i32, runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs).map(|_| timed(shoal, dir, args, code)).collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[(usize, usize)] = if quick {
        &[(10, 20), (100, 200)]
    } else {
        &[(100, 200), (1_000, 2_000)]
    };
    let runs = 3;
    let shoal = shoal_binary();
    let plan = ["plan", "--detailed-exitcode"];
    println!(
        "{:>9} {:>9} {:>14} {:>10} {:>19} {:>10} {:>13}",
        "machines",
        "services",
        "cold plan (s)",
        "apply (s)",
        "converged plan (s)",
        "warm/cold",
        "sim.json (KB)"
    );
    for &(machines, services) in sizes {
        let repo = tempfile::tempdir().expect("temp dir");
        let dir = repo.path();
        write_repo(dir, machines, services);
        let cold = median(&shoal, dir, &plan, 2, runs);
        let apply = timed(&shoal, dir, &["apply", "--yes"], 0);
        let warm = median(&shoal, dir, &plan, 0, runs);
        let state = std::fs::metadata(dir.join(".shoal/sim.json")).map_or(0, |m| m.len());
        println!(
            "{machines:>9} {services:>9} {:>14.3} {:>10.3} {:>19.3} {:>10.2} {:>13}",
            cold.as_secs_f64(),
            apply.as_secs_f64(),
            warm.as_secs_f64(),
            warm.as_secs_f64() / cold.as_secs_f64(),
            state / 1024
        );
    }
}
