//! Hostile input, through the CLI on the sim driver: every class is refused by validate (files
//! alone, with file:line and a fix) or by plan (with the cluster, naming the object), and
//! apply refuses the same before any write. The classes a fixed set of files shows live in
//! `fixtures/invalid/` (`hostile_fixtures.rs`); these need a cluster, a FIFO, a symlink or git.

use crate::common;

use common::Repo;
use std::process::Output;
use std::time::{Duration, Instant};

const MACHINES: &str =
    "cluster: hostile\ndriver: sim\nmachines:\n  vm-manager:\n    role: manager\n";

/// A repository with these files (path, text).
fn repo(files: &[(&str, &str)]) -> Repo {
    let repo = Repo::empty();
    for (path, text) in files {
        let full = repo.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    repo
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `validate`, `plan` and `apply --yes` all exit 1 naming `needle`, and nothing is written.
fn refused_everywhere(repo: &Repo, needle: &str) -> String {
    let before = repo.sim_state();
    let mut said = String::new();
    for args in [
        &["validate"][..],
        &["plan"],
        &["plan", "--json"],
        &["apply", "--yes"],
        &["apply", "--dry-run"],
    ] {
        let out = repo.shoal(args);
        let output = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {output}");
        assert!(
            output.contains(needle),
            "{args:?} does not say {needle:?}: {output}"
        );
        said = output;
    }
    assert_eq!(repo.sim_state(), before, "a refused input must not write");
    said
}

#[test]
fn missing_external_objects_are_refused_at_plan_before_any_write() {
    let repo = repo(&[
        ("machines.yml", MACHINES),
        (
            "docker-compose.yml",
            "services:\n  web:\n    image: nginx\n",
        ),
    ]);
    repo.apply();
    std::fs::write(
        repo.path().join("docker-compose.yml"),
        "services:\n  web:\n    image: nginx\n    networks: [edge]\n    secrets: [db]\n    configs: [conf]\n  api:\n    image: nginx\n    ports: [\"9000:80\"]\nnetworks:\n  edge: {external: true}\nsecrets:\n  db: {external: true}\nconfigs:\n  conf: {external: true}\n",
    )
    .unwrap();
    repo.ok(&["validate"]);
    let before = repo.sim_state();
    for args in [&["plan"][..], &["apply", "--yes"], &["apply", "--dry-run"]] {
        let out = repo.shoal(args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        for needle in [
            "external network edge, which does not exist",
            "docker network create --driver overlay",
            "external secret db",
            "external config conf",
        ] {
            assert!(said.contains(needle), "{args:?}: no {needle:?} in {said}");
        }
    }
    assert_eq!(repo.sim_state(), before, "nothing was written");
}

#[cfg(unix)]
#[test]
fn fifos_are_refused_without_hanging() {
    for (fifo, files) in [
        ("machines.yml", vec![]),
        (".env", vec![("machines.yml", MACHINES)]),
        (
            "secret.txt",
            vec![
                ("machines.yml", MACHINES),
                (
                    "docker-compose.yml",
                    "services:\n  web:\n    image: nginx\n    secrets: [s]\nsecrets:\n  s: {file: secret.txt}\n",
                ),
            ],
        ),
    ] {
        let repo = repo(&files);
        let made = std::process::Command::new("mkfifo")
            .arg(repo.path().join(fifo))
            .status()
            .unwrap();
        assert!(made.success());
        let started = Instant::now();
        let said = refused_everywhere(&repo, "not a regular file");
        assert!(said.contains(fifo), "{said}");
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}

fn git(repo: &Repo, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(repo.path())
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_repository_is_refused_in_the_tree_and_in_commits() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("key"), "outside-plaintext").unwrap();
    let repo = repo(&[
        ("machines.yml", MACHINES),
        ("inside.txt", "inside"),
        (
            "docker-compose.yml",
            "services:\n  web:\n    image: nginx\n    secrets: [s, t]\nsecrets:\n  s: {file: link.txt}\n  t: {file: ok.txt}\n",
        ),
    ]);
    std::os::unix::fs::symlink(outside.path().join("key"), repo.path().join("link.txt")).unwrap();
    std::os::unix::fs::symlink("inside.txt", repo.path().join("ok.txt")).unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "links"]);
    let tree = repo.shoal(&["plan"]);
    let at_head = repo.shoal(&["plan", "--rev", "HEAD"]);
    for out in [&tree, &at_head] {
        let said = text(out);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains("link.txt"), "{said}");
        assert!(said.contains("outside the repository"), "{said}");
        assert!(
            !said.contains("ok.txt"),
            "a link inside is followed: {said}"
        );
    }
    assert_eq!(repo.sim_state(), "");
}

#[test]
fn secret_looking_environment_values_are_masked_unless_shown() {
    let repo = repo(&[
        ("machines.yml", MACHINES),
        ("docker-compose.yml", "services:\n  web:\n    image: nginx\n    environment:\n      DB_PASSWORD: ${PW:-first-pw}\n      API_TOKEN: tok-one\n      MODE: fast\n"),
    ]);
    repo.apply();
    repo.edit("docker-compose.yml", "tok-one", "tok-two");
    repo.edit("docker-compose.yml", "first-pw", "second-pw");
    repo.edit("docker-compose.yml", "fast", "slow");
    let human = repo.ok(&["plan"]);
    let json = repo.ok(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let changes = plan["steps"][0]["detail"]["changes"].to_string();
    for shown in [&human, &changes] {
        assert!(
            shown.contains("DB_PASSWORD=(sensitive value, changed)"),
            "{shown}"
        );
        assert!(shown.contains("MODE=slow"), "{shown}");
        for secret in ["first-pw", "second-pw", "tok-one", "tok-two"] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
    }
    repo.edit(
        "machines.yml",
        "machines:",
        "policy:\n  show_values: [API_TOKEN]\nmachines:",
    );
    let human = repo.ok(&["plan"]);
    assert!(human.contains("API_TOKEN=tok-two"), "{human}");
    assert!(!human.contains("second-pw"), "{human}");
}

#[test]
fn a_huge_key_says_what_is_wrong() {
    let key = "A".repeat(100_000);
    let repo = repo(&[
        ("machines.yml", MACHINES),
        (
            "docker-compose.yml",
            &format!("services:\n  web:\n    image: nginx\n    environment:\n      {key}: x\n"),
        ),
    ]);
    let said = refused_everywhere(&repo, "docker-compose.yml:5:7: a key of 100000 characters");
    assert!(
        said.len() < 2_000,
        "the key is not echoed: {} bytes",
        said.len()
    );
}

#[test]
fn a_dry_run_reports_no_write_sent() {
    let repo = repo(&[
        ("machines.yml", MACHINES),
        (
            "docker-compose.yml",
            "services:\n  web:\n    image: nginx\n",
        ),
    ]);
    let report = repo.json(&["apply", "--dry-run", "--json"]);
    assert_eq!(report["writes"], 0, "{report:#}");
    assert!(!report["dry_run_writes"].as_array().unwrap().is_empty());
    let human = repo.ok(&["apply", "--dry-run"]);
    assert!(human.contains("recorded and none sent"), "{human}");
    assert!(!human.contains("not converged"), "{human}");
    assert_eq!(repo.sim_state(), "");
}
