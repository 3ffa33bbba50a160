//! No output of any command, at any log level, and no file shoal writes holds a secret's
//! plaintext, the full sha256 of it, or a `SHOAL_*` credential; secret-looking environment
//! values never appear in plan diffs.

mod common;

use common::Repo;
use sha2::{Digest, Sha256};
use std::path::Path;

const SECRET: &str = "plaintext-of-the-db-password-7f3a";
const SECRET_TWO: &str = "second-plaintext-of-the-db-password-91c2";
const CONFIG: &str = "config-body-that-is-also-private-e4d1";
const ENV_SECRET: &str = "env-token-value-5b8e";
const ENV_SECRET_TWO: &str = "env-token-value-changed-0c4d";
const OWN_CREDENTIAL: &str = "shoal-own-credential-a9d7";

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Runs `shoal ARGS --repo DIR` at trace level with shoal's own credentials set, and returns
/// standard output and standard error together.
fn run(repo: &Repo, args: &[&str]) -> String {
    let out = repo
        .command(args)
        .env("RUST_LOG", "trace")
        .env("SHOAL_LOG", "trace")
        .env("SHOAL_GIT_TOKEN", OWN_CREDENTIAL)
        .env("SHOAL_WEBHOOK_SECRET", OWN_CREDENTIAL)
        .output()
        .expect("run shoal");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "shoal {args:?} failed: {text}");
    text
}

/// Every file under `dir` (shoal's own `.shoal/` included), as text.
fn files_under(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn no_output_and_no_written_file_holds_a_secret() {
    let repo = Repo::empty();
    let write = |path: &str, text: &str| std::fs::write(repo.path().join(path), text).unwrap();
    write(
        "machines.yml",
        "cluster: secrets\ndriver: sim\nmachines:\n  vm-manager:\n    role: manager\n",
    );
    write(
        "docker-compose.yml",
        "services:\n  web:\n    image: nginx\n    environment:\n      API_TOKEN: ${TOKEN:-env-token-value-5b8e}\n      OWN: ${SHOAL_GIT_TOKEN:-unset}\n    secrets: [db_password]\n    configs: [app]\nsecrets:\n  db_password: {file: db_password.txt}\nconfigs:\n  app: {file: app.conf}\n",
    );
    // The secret files live outside the repository's scanned files' names on purpose: they
    // are read, and nothing shoal writes may hold what they hold.
    write("db_password.txt", SECRET);
    write("app.conf", CONFIG);
    let secret_files = ["db_password.txt", "app.conf"];

    let saved = repo.path().join("plan.json").display().to_string();
    let mut outputs = Vec::new();
    for args in [
        &["validate"][..],
        &["plan"],
        &["plan", "--json"],
        &["plan", "--out", &saved],
        &["apply", "--dry-run"],
        &["apply", "--dry-run", "--json"],
    ] {
        outputs.push((format!("{args:?}"), run(&repo, args)));
    }
    outputs.push((
        "apply PLANFILE".into(),
        run(&repo, &["apply", "--yes", "--json", &saved]),
    ));
    outputs.push(("status".into(), run(&repo, &["status", "--json"])));

    // A new version of the secret and of the secret-looking value: an update with a diff.
    write("db_password.txt", SECRET_TWO);
    repo.edit("docker-compose.yml", ENV_SECRET, ENV_SECRET_TWO);
    for args in [
        &["plan"][..],
        &["plan", "--json"],
        &["plan", "--out", &saved],
        &["apply", "--dry-run", "--json"],
        &["apply", "--yes", "--json"],
        &["status", "--json"],
        &["plan", "--json"],
    ] {
        outputs.push((format!("{args:?} (second version)"), run(&repo, args)));
    }
    let human_plans: Vec<&String> = outputs
        .iter()
        .filter(|(name, _)| name.starts_with("[\"plan\"]"))
        .map(|(_, text)| text)
        .collect();
    assert!(human_plans
        .iter()
        .any(|text| text.contains("API_TOKEN=(sensitive value, changed)")));
    for text in human_plans {
        for value in [ENV_SECRET, ENV_SECRET_TWO] {
            assert!(!text.contains(value), "a plan shows {value}: {text}");
        }
    }

    let mut written = Vec::new();
    files_under(&repo.path(), &mut written);
    let written: Vec<(String, String)> = written
        .into_iter()
        .filter(|(path, _)| !secret_files.iter().any(|f| path.ends_with(f)))
        .collect();
    assert!(written.iter().any(|(path, _)| path.ends_with("sim.json")));
    let forbidden = [
        SECRET.to_string(),
        SECRET_TWO.to_string(),
        CONFIG.to_string(),
        sha256(SECRET),
        sha256(SECRET_TWO),
        sha256(CONFIG),
        OWN_CREDENTIAL.to_string(),
    ];
    for (name, text) in outputs.iter().chain(written.iter()) {
        for needle in &forbidden {
            assert!(!text.contains(needle.as_str()), "{name} holds {needle}");
        }
    }
    // What identifies a version is still there: the name's 8 hex.
    let plan = run(&repo, &["status", "--json"]);
    assert!(!plan.is_empty());
    let state = std::fs::read_to_string(repo.path().join(".shoal/sim.json")).unwrap();
    assert!(state.contains(&sha256(SECRET_TWO)[..8]));
}
