//! Revisions: a plan names the commit its files came from (HEAD when the tracked files are
//! unchanged, none when they are edited), `--rev` plans any commit, and apply records the
//! revision in the swarm, where `status` shows it.

use crate::common;

use common::Repo;
use std::process::Command;

fn git(repo: &Repo, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=shoal", "-c", "user.email=shoal@localhost"])
        .args(args)
        .current_dir(repo.path())
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn plans_name_their_commit_and_apply_records_it() {
    let repo = Repo::copy_of("examples/dataapp");
    std::fs::write(repo.path().join(".gitignore"), ".shoal/\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "tutorial"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);

    assert_eq!(repo.plan()["revision"], first.as_str());
    repo.apply();
    assert_eq!(repo.json(&["status", "--json"])["revision"], first.as_str());

    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 7");
    let edited = repo.plan();
    assert!(
        edited["revision"].is_null(),
        "an edited work tree has no revision"
    );
    assert_eq!(
        common::steps_of(&edited),
        ["scale_service dataapp_dataservice"]
    );

    git(&repo, &["commit", "-q", "-am", "seven replicas"]);
    let second = git(&repo, &["rev-parse", "HEAD"]);
    let at_first = repo.json(&["plan", "--json", "--rev", &first]);
    assert_eq!(at_first["revision"], first.as_str());
    assert!(
        at_first["steps"].as_array().unwrap().is_empty(),
        "the first commit is applied"
    );

    repo.edit("docker-compose.yml", "replicas: 7", "replicas: 9");
    let report = repo.json(&["apply", "--yes", "--json", "--rev", "HEAD"]);
    assert_eq!(report["revision"], second.as_str());
    let status = repo.json(&["status", "--json"]);
    assert_eq!(status["revision"], second.as_str());
    assert_eq!(
        status["services"][0]["replicas"], 7,
        "--rev applies the commit, not the edit"
    );

    std::fs::write(
        repo.path().join("NOTES.md"),
        "a commit that changes no cluster file\n",
    )
    .unwrap();
    git(&repo, &["add", "NOTES.md"]);
    git(&repo, &["commit", "-q", "-m", "notes"]);
    let third = git(&repo, &["rev-parse", "HEAD"]);
    repo.edit("docker-compose.yml", "replicas: 9", "replicas: 7");
    let report = repo.json(&["apply", "--yes", "--json", "--rev", "HEAD"]);
    assert!(report["steps"].as_array().unwrap().is_empty());
    assert_eq!(report["writes"], 1, "only the revision label is written");
    assert_eq!(repo.json(&["status", "--json"])["revision"], third.as_str());
    let again = repo.json(&["apply", "--yes", "--json", "--rev", "HEAD"]);
    assert_eq!(again["writes"], 0);

    let out = repo.shoal(&["plan", "--rev", "no-such-branch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-branch"));
}
