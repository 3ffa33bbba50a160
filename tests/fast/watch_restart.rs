//! A `shoal watch` killed with SIGKILL in the middle of a pass, then started again: how long the
//! new one takes to converge. The time is measured and printed, never asserted: a killed apply
//! leaves its lock, and whether the successor takes it over at once or waits for its TTL is the
//! apply lock's business.

use crate::watch_support;

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use watch_support::*;

/// How long the successor is given before the test reports it as waiting for the lock.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);

/// machines.yml with one manager and `workers` workers, so that a first apply takes a while.
fn machines(workers: u32) -> String {
    format!(
        "cluster: wapp\ndriver: sim\nmachines:\n  mgr:\n    role: manager\n  wrk:\n    role: worker\n    count: {workers}\nstacks:\n  web: docker-compose.yml\n"
    )
}

fn watch(repo: &WorkRepo) -> Spawned {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command
        .args(["watch", "--listen", "127.0.0.1:0", "--repo"])
        .arg(repo.path())
        .env_remove("DOCKER_HOST")
        .env_remove("SHOAL_WEBHOOK_SECRET")
        .env("SHOAL_LOG", "shoal=info");
    Spawned::spawn(command)
}

fn status(addr: std::net::SocketAddr) -> Value {
    serde_json::from_str(&get(addr, "/status").body).unwrap_or(Value::Null)
}

#[test]
fn a_watcher_killed_mid_pass_is_succeeded_by_one_that_converges() {
    let repo = WorkRepo::new();
    let commit = repo.commit(
        &[
            ("machines.yml", &machines(24)),
            ("docker-compose.yml", &compose(6)),
        ],
        "first",
    );
    let dir = repo.path();

    let mut first = watch(&repo);
    first.listening(Duration::from_secs(20));
    let mid_apply = wait_until(Duration::from_secs(20), || {
        sim(&dir)
            .lock
            .is_some_and(|l| l.holder.pid == first.child.id())
    });
    first.child.kill().expect("SIGKILL the first watcher");
    first.child.wait().expect("reap it");
    let left = sim(&dir);
    eprintln!(
        "killed the first watcher {}: {} machine(s) made, lock left: {:?}",
        if mid_apply {
            "while it held the apply lock"
        } else {
            "(its apply was not caught holding the lock)"
        },
        left.machines.len(),
        left.lock
    );

    let started = Instant::now();
    let mut second = watch(&repo);
    let addr = second.listening(Duration::from_secs(20));
    let converged = wait_until(CONVERGE_WITHIN, || {
        status(addr)["synced_revision"] == commit.as_str()
    });
    let elapsed = started.elapsed();
    assert!(
        converged,
        "the restarted watcher did not converge within {CONVERGE_WITHIN:?} (a dead holder's lock on this host is taken over at once): lock {:?}, status {}",
        sim(&dir).lock,
        status(addr)
    );
    eprintln!(
        "the restarted watcher converged {:.2}s after it started",
        elapsed.as_secs_f64()
    );
    assert_eq!(replicas(&dir, SERVICE), Some(6));
    assert_eq!(recorded_revision(&dir).as_deref(), Some(&*commit));
    assert_eq!(second.terminate(Duration::from_secs(20)), Some(0));
}
