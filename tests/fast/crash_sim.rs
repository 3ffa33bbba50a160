//! Crashes mid-apply on the sim (DESIGN §3.6, issue "never lose a cluster"): an apply killed at
//! every step boundary (`SHOAL_CRASH_AT=after-step-N`), and at random moments with a real
//! `kill -9`, is followed by a plain `shoal apply` that converges with no manual step: no lock
//! to clear by hand, every replica running, and a plan that is empty afterwards.

use crate::common;

use common::{steps_of, Repo};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A phase of the tutorial: what it changes in the files, from the state the earlier ones left.
type Phase = fn(&Repo);

fn create(_: &Repo) {}

fn scale_out(repo: &Repo) {
    repo.edit("machines.yml", "count: 1", "count: 3");
    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 10");
}

fn shrink(repo: &Repo) {
    repo.edit("machines.yml", "count: 3", "count: 1");
}

fn add_managers(repo: &Repo) {
    repo.edit(
        "machines.yml",
        "  vm-manager:\n    role: manager\n",
        "  vm-manager:\n    role: manager\n    count: 3\n",
    );
}

const PHASES: [(&str, Phase); 4] = [
    ("create", create),
    ("scale out", scale_out),
    ("shrink", shrink),
    ("1 → 3 managers", add_managers),
];

/// The tutorial repository with phases `0..upto` applied and phase `upto` edited in, unapplied.
fn at_phase(upto: usize) -> Repo {
    let repo = Repo::copy_of("examples/dataapp");
    for (index, (_, edit)) in PHASES.iter().enumerate().take(upto + 1) {
        edit(&repo);
        if index < upto {
            repo.apply();
        }
    }
    repo
}

fn apply_command(repo: &Repo) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command
        .args(["apply", "--yes", "--json", "--repo"])
        .arg(repo.path())
        .env_remove("SHOAL_LOG")
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// After a crash: one plain apply converges, the plan is empty, every replica runs.
fn recovers(repo: &Repo) -> Result<(), String> {
    let report = repo.json(&["apply", "--yes", "--json"]);
    if report["converged"] != true {
        return Err(format!(
            "the apply after the crash did not converge: {report}"
        ));
    }
    let left = repo.steps();
    if !left.is_empty() {
        return Err(format!("a plan after recovery still has steps: {left:?}"));
    }
    let status = repo.json(&["status", "--json"]);
    for service in status["services"].as_array().into_iter().flatten() {
        if service["running"] != service["replicas"] {
            return Err(format!("not every replica runs: {service}"));
        }
    }
    Ok(())
}

#[test]
fn an_apply_killed_at_every_step_boundary_converges_when_run_again() {
    let (mut runs, mut converged) = (0, 0);
    let mut failures = Vec::new();
    for (phase, (name, _)) in PHASES.iter().enumerate() {
        let steps = steps_of(&at_phase(phase).plan()).len();
        assert!(steps > 0, "phase {name} plans nothing");
        for after in 1..=steps {
            let repo = at_phase(phase);
            let out = apply_command(&repo)
                .env("SHOAL_CRASH_AT", format!("after-step-{after}"))
                .output()
                .expect("run shoal");
            assert_eq!(
                out.status.signal(),
                Some(9),
                "phase {name}: the apply was to be killed after step {after}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            runs += 1;
            match recovers(&repo) {
                Ok(()) => converged += 1,
                Err(e) => failures.push(format!("{name}, killed after step {after}: {e}")),
            }
        }
    }
    eprintln!(
        "sim: {runs} applies killed at a step boundary, {converged} converged with a plain re-run"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn an_apply_killed_at_random_moments_converges_when_run_again() {
    // A small fixed-seed generator: the same moments on every run of the test.
    let mut seed: u64 = 0x5eed_5ea1;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let (mut runs, mut killed, mut converged) = (0, 0, 0);
    for round in 0..12 {
        let phase = round % PHASES.len();
        let repo = at_phase(phase);
        let delay = Duration::from_millis(next() % 120);
        let mut child = apply_command(&repo).spawn().expect("run shoal");
        let started = Instant::now();
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().expect("reap shoal");
        runs += 1;
        if status.signal() == Some(9) {
            killed += 1;
        }
        match recovers(&repo) {
            Ok(()) => converged += 1,
            Err(e) => panic!(
                "phase {}, killed after {:?} ({:?} in): {e}",
                PHASES[phase].0,
                delay,
                started.elapsed()
            ),
        }
    }
    eprintln!(
        "sim: {runs} applies sent SIGKILL at random moments ({killed} still running when killed), {converged} converged with a plain re-run"
    );
}
