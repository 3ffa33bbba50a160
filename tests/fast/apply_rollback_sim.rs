//! `shoal apply --rollback-on-failure` on the sim (issue 22): an apply whose changed service
//! ends degraded applies the last healthy revision's stacks again, marks the commit failed in
//! the swarm (`shoal status`: "held at A, B failed: reason"), tells `failed` then `rolled_back`,
//! and exits 1; with `--json` the rollback's report is under `rollback`.

use crate::common::Repo;
use crate::watch_support::receiver::{Answer, Receiver};

use serde_json::Value;

fn git(repo: &Repo, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=shoal", "-c", "user.email=shoal@localhost"])
        .args(args)
        .current_dir(repo.path())
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn commit(repo: &Repo, message: &str) -> String {
    git(repo, &["commit", "-qam", message]);
    git(repo, &["rev-parse", "HEAD"])
}

fn image(repo: &Repo) -> String {
    let status = repo.json(&["status", "--json"]);
    status["services"][0]["image"].as_str().unwrap().to_string()
}

#[test]
fn a_degraded_apply_is_rolled_back_to_the_last_healthy_commit() {
    // The first `failed` is answered 500 and tried again a second later: the `rolled_back`
    // still arrives after it.
    let receiver = Receiver::start(&[
        Answer::Status(200),
        Answer::Status(200),
        Answer::Status(500),
        Answer::Status(200),
    ]);
    let repo = Repo::copy_of("examples/dataapp");
    let machines = repo.path().join("machines.yml");
    let mut text = std::fs::read_to_string(&machines).unwrap();
    text.push_str(&format!("notify:\n  - url: {}\n", receiver.url()));
    std::fs::write(&machines, text).unwrap();
    std::fs::write(repo.path().join(".gitignore"), ".shoal/\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "tutorial"]);
    repo.ok(&["apply", "--yes", "--rollback-on-failure"]);
    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 6");
    let healthy = commit(&repo, "six");
    repo.ok(&["apply", "--yes", "--rollback-on-failure"]);

    repo.edit(
        "docker-compose.yml",
        "image: dataservice:1",
        "image: missing/dataservice:2",
    );
    let bad = commit(&repo, "a missing image");
    let out = repo.shoal(&["apply", "--yes", "--rollback-on-failure"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("Rolled back to {}", &healthy[..12])),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("rolling back to the last healthy revision"),
        "{stderr}"
    );
    assert!(
        image(&repo).starts_with("dataservice:1"),
        "{}",
        image(&repo)
    );
    let status = repo.ok(&["status"]);
    assert!(
        status.contains(&format!(
            "held at {}, {} failed",
            &healthy[..12],
            &bad[..12]
        )),
        "{status}"
    );
    assert!(status.contains("No such image"), "{status}");
    let shown = repo.json(&["status", "--json"]);
    assert_eq!(shown["held"]["failed"], bad.as_str(), "{shown:#}");
    assert_eq!(shown["revision"], healthy.as_str(), "{shown:#}");
    assert_eq!(
        receiver.events(),
        ["applied", "applied", "failed", "failed", "rolled_back"]
    );
    let told: Value = receiver.got()[4].json();
    assert_eq!(told["source"], "apply");
    assert!(
        told["failing"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("No such image"),
        "{told:#}"
    );

    // Once more, as JSON: the failed report carries the rollback's.
    repo.edit(
        "docker-compose.yml",
        "missing/dataservice:2",
        "missing/dataservice:3",
    );
    commit(&repo, "another missing image");
    let out = repo.shoal(&["apply", "--yes", "--json", "--rollback-on-failure"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(
        report["rollback"]["revision"],
        healthy.as_str(),
        "{report:#}"
    );
    assert!(report["rollback"]["writes"].as_u64().unwrap() > 0);

    // A good commit clears the hold.
    repo.edit(
        "docker-compose.yml",
        "missing/dataservice:3",
        "dataservice:1",
    );
    repo.edit("docker-compose.yml", "replicas: 6", "replicas: 4");
    commit(&repo, "good");
    repo.ok(&["apply", "--yes", "--rollback-on-failure"]);
    assert!(!repo.ok(&["status"]).contains("held at"));
}

#[test]
fn rollback_on_failure_needs_the_wait_and_real_writes() {
    let repo = Repo::copy_of("examples/dataapp");
    for other in ["--no-wait", "--dry-run"] {
        let out = repo.shoal(&["apply", "--yes", "--rollback-on-failure", other]);
        assert_eq!(out.status.code(), Some(2), "{other}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot be used with"), "{stderr}");
    }
}
