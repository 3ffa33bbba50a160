//! `shoal pause` and `resume` on the sim: while paused, plan warns who paused it and why, apply
//! refuses to write (unless `--ignore-pause`), status shows the pause, and the watcher leaves a
//! hand scale alone; after `resume` the watcher heals it.

use crate::common;

use common::Repo;
use std::process::Command;

fn git(repo: &Repo, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=shoal", "-c", "user.email=shoal@localhost"])
        .args(args)
        .current_dir(repo.path())
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}");
}

fn committed_tutorial() -> Repo {
    let repo = Repo::copy_of("examples/dataapp");
    std::fs::write(repo.path().join(".gitignore"), ".shoal/\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "tutorial"]);
    repo.apply();
    repo
}

#[test]
fn a_paused_cluster_is_planned_but_not_written_until_resumed() {
    let repo = committed_tutorial();
    let paused = repo.ok(&["pause", "--reason", "db migration"]);
    assert!(paused.contains("Paused cluster dataapp"), "{paused}");
    let again = repo.ok(&["pause"]);
    assert!(again.contains("already paused by"), "{again}");
    assert!(
        again.contains("db migration"),
        "the first reason stays: {again}"
    );

    let status = repo.json(&["status", "--json"]);
    assert_eq!(status["paused"]["reason"], "db migration");

    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 6");
    let plan = repo.plan();
    assert!(
        plan["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "paused" && w["text"].as_str().unwrap().contains("paused by")),
        "{plan:#}"
    );
    let refused = repo.shoal(&["apply", "--yes"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is paused by") && stderr.contains("shoal resume"),
        "{stderr}"
    );
    assert_eq!(repo.steps(), ["scale_service dataapp_dataservice"]);

    // A dry run writes nothing, so it goes on; --ignore-pause writes and keeps the pause.
    repo.ok(&["apply", "--yes", "--dry-run"]);
    repo.ok(&["apply", "--yes", "--ignore-pause"]);
    assert!(repo.steps().is_empty());
    assert!(repo.json(&["status", "--json"])["paused"].is_object());

    let resumed = repo.ok(&["resume"]);
    assert!(resumed.contains("Resumed cluster dataapp"), "{resumed}");
    assert!(repo.json(&["status", "--json"]).get("paused").is_none());
    assert!(repo.ok(&["resume"]).contains("is not paused"));
}

#[test]
fn the_watcher_leaves_drift_alone_while_paused_and_heals_it_after_resume() {
    let repo = committed_tutorial();
    repo.ok(&["pause", "--reason", "incident 42"]);
    repo.ok(&["sim", "set-replicas", "dataapp_dataservice", "2"]);
    let out = repo.shoal(&["watch", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        repo.steps(),
        ["scale_service dataapp_dataservice"],
        "a paused watcher healed the drift"
    );
    repo.ok(&["resume"]);
    let out = repo.shoal(&["watch", "--once"]);
    assert!(out.status.success());
    assert!(repo.steps().is_empty(), "resumed, the watcher heals");
}
