//! `shoal watch` as a user runs it: `--once` and its exit codes, `shoal status --json` showing
//! the applied commit, and a running watcher answering HTTP, then stopping cleanly on SIGTERM.

use crate::watch_support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use watch_support::*;

fn shoal(repo: &WorkRepo, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command
        .args(args)
        .arg("--repo")
        .arg(repo.path())
        .env_remove("DOCKER_HOST")
        .env_remove("SHOAL_WEBHOOK_SECRET")
        .env_remove("SHOAL_LOG")
        .stdin(Stdio::null());
    command
}

fn run(repo: &WorkRepo, args: &[&str]) -> Output {
    shoal(repo, args).output().expect("run shoal")
}

fn status_json(repo: &WorkRepo) -> Value {
    let out = run(repo, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// `watch --once`, which must exit 0, then `status --json`.
fn watch_once_then_status(repo: &WorkRepo) -> Value {
    let out = run(repo, &["watch", "--once"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    status_json(repo)
}

#[test]
fn once_applies_the_tip_commit_and_status_shows_it() {
    let (repo, first) = WorkRepo::with_cluster(2);
    let status = watch_once_then_status(&repo);
    assert_eq!(status["revision"], first.as_str());
    assert_eq!(status["services"][0]["running"], 2);

    // A broken commit: --once fails, says why, and changes nothing.
    repo.commit(
        &[("machines.yml", "machines:\n  m:\n    rol: manager\n")],
        "typo",
    );
    let out = run(&repo, &["watch", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("machines.yml"), "{stderr}");
    assert_eq!(recorded_revision(&repo.path()), Some(first));

    // Fixed, with an uncommitted edit beside it: the commit applies, the edit does not.
    let fixed = repo.commit(
        &[
            ("machines.yml", MACHINES),
            ("docker-compose.yml", &compose(3)),
        ],
        "fixed",
    );
    repo.write("docker-compose.yml", &compose(9));
    let status = watch_once_then_status(&repo);
    assert_eq!(status["revision"], fixed.as_str());
    assert_eq!(status["services"][0]["replicas"], 3);
}

#[test]
fn bad_flags_are_refused() {
    let (repo, _) = WorkRepo::with_cluster(1);
    let out = run(&repo, &["watch", "--interval", "10ms", "--once"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1s"));
    let out = run(&repo, &["watch", "--cache", "/tmp/x", "--once"]);
    assert_eq!(out.status.code(), Some(2), "--cache needs --remote");
    let out = run(&repo, &["watch", "--once", "--branch", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("branch nope"));
}

/// Reads the JSON log lines of a running watcher until it says where it listens.
fn listening_address(child: &mut Child) -> (SocketAddr, mpsc::Receiver<String>) {
    let stderr = child.stderr.take().expect("stderr");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    loop {
        let line = received
            .recv_timeout(Duration::from_secs(20))
            .expect("the watcher logs where it listens");
        let Ok(json) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let message = json["fields"]["message"].as_str().unwrap_or("");
        if let Some(addr) = message.strip_prefix("listening on http://") {
            return (addr.parse().expect("address"), received);
        }
    }
}

#[test]
fn sigterm_stops_a_running_watcher_with_exit_code_0() {
    let (repo, first) = WorkRepo::with_cluster(2);
    let mut child = shoal(
        &repo,
        &["--log-format", "json", "watch", "--listen", "127.0.0.1:0"],
    )
    .env("SHOAL_LOG", "shoal=info")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn shoal watch");
    let (addr, logs) = listening_address(&mut child);

    assert!(
        wait_until(Duration::from_secs(20), || get(addr, "/readyz").status
            == 200),
        "ready after the first pass"
    );
    assert_eq!(get(addr, "/healthz").status, 200);
    let metrics = get(addr, "/metrics").body;
    assert!(
        metric(&metrics, "shoal_reconciles_total") >= 1.0,
        "{metrics}"
    );
    let status: Value = serde_json::from_str(&get(addr, "/status").body).expect("JSON");
    assert_eq!(status["revision"], first.as_str());

    // A new commit reaches the running binary through notify.
    let second = repo.commit(&[("docker-compose.yml", &compose(3))], "three");
    assert!(
        wait_until(Duration::from_secs(20), || {
            let status: Value = serde_json::from_str(&get(addr, "/status").body).expect("JSON");
            status["synced_revision"] == second.as_str()
        }),
        "the running watcher applies the new commit"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    let rest: Vec<String> = logs.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM")),
        "the stop is logged: {rest:?}"
    );
    assert!(sim(&repo.path()).lock.is_none(), "no lock left behind");
}

#[test]
fn the_self_hosting_example_validates() {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["validate", "--repo"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/selfhost"))
        .output()
        .expect("run shoal validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 service(s)"));
}
