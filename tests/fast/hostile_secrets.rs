//! No output of any command, at any log level, and no file shoal writes holds a secret's
//! plaintext, the sha256 of it (not even its 8-hex prefix: versions are keyed), the cluster's
//! content key (but in the swarm's store and the saved plan of a cluster without one yet) or a
//! `SHOAL_*` credential; secret-looking environment values never appear in plan diffs.

use crate::common;

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
    // The cluster has no content key yet: the saved plan carries the one its versions use.
    let saved_text = std::fs::read_to_string(&saved).unwrap();
    assert!(saved_text.contains("\"content_key\""), "{saved_text}");
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
        &["apply", "--dry-run"],
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

    let state = std::fs::read_to_string(repo.path().join(".shoal/sim.json")).unwrap();
    let key = content_key_in(&state);
    assert!(
        !std::fs::read_to_string(&saved).unwrap().contains(&key),
        "a saved plan of a cluster that has its key does not carry it"
    );
    let mut written = Vec::new();
    files_under(&repo.path(), &mut written);
    let written: Vec<(String, String)> = written
        .into_iter()
        .filter(|(path, _)| !secret_files.iter().any(|f| path.ends_with(f)))
        .collect();
    assert!(written.iter().any(|(path, _)| path.ends_with("sim.json")));
    let mut forbidden = vec![
        SECRET.to_string(),
        SECRET_TWO.to_string(),
        CONFIG.to_string(),
        sha256(SECRET)[..8].to_string(),
        sha256(SECRET_TWO)[..8].to_string(),
        sha256(CONFIG)[..8].to_string(),
        OWN_CREDENTIAL.to_string(),
    ];
    for (name, text) in outputs.iter().chain(written.iter()) {
        for needle in &forbidden {
            assert!(!text.contains(needle.as_str()), "{name} holds {needle}");
        }
    }
    // The content key: in the swarm's store (the sim's state file), nowhere else; not even a
    // key a dry run would write (each run of a cluster without one makes its own).
    for (name, text) in &outputs {
        for (at, _) in text.match_indices("io.shoal.content-key=") {
            let value = &text[at + "io.shoal.content-key=".len()..];
            assert!(
                value.starts_with("(secret)"),
                "{name} shows a content key: {text}"
            );
        }
    }
    forbidden.push(key.clone());
    for (name, text) in outputs.iter().chain(
        written
            .iter()
            .filter(|(path, _)| !path.ends_with("sim.json")),
    ) {
        assert!(!text.contains(&key), "{name} holds the content key");
    }
    // What identifies a version is still there: the name's 8 hex, keyed.
    let key = shoal::model::content_key::ContentKey::parse(&key).unwrap();
    assert!(state.contains(&format!(
        "secrets_db_password-{}",
        key.version(SECRET_TWO.as_bytes(), None)
    )));
}

/// The content key the sim's swarm holds (its state file's `io.shoal.content-key` label).
fn content_key_in(state: &str) -> String {
    let label = "\"io.shoal.content-key\":";
    let at = state.find(label).expect("the swarm holds a content key") + label.len();
    let value = state[at..].trim_start().trim_start_matches('"');
    value[..64].to_string()
}

/// Credentials an attacker would try, each where a compose file can hold one: environment
/// lists and maps (under secret-looking keys and inside URLs and connection strings), labels,
/// `command` as a string and as a list, `entrypoint`, and healthchecks in their CMD, CMD-SHELL
/// and string forms.
const CREDENTIALS: &[&str] = &[
    "pw-list-1a",
    "pw-url-2b",
    "aws-3c",
    "pw-conn-4d",
    "tok-map-5e",
    "pw-redis-6f",
    "p%40ss-7g",
    "pw-cmd-8h",
    "tok-cmd-9i",
    "sec-ep-11k",
    "pw-hc-12l",
    "pw-hcs-13m",
    "pw-hcstr-14n",
    "pw-label-15o",
    "pw-jdbc-16p",
    "ghp-tok-17q",
];

const HOSTILE_COMPOSE: &str = r#"services:
  a:
    image: nginx
    entrypoint: ["/bin/app", "--client-secret=sec-ep-11k"]
    environment:
      - DB_PASSWORD=pw-list-1a
      - DATABASE_URL=postgres://app:pw-url-2b@db:5432/app
      - AWS_SECRET_ACCESS_KEY=aws-3c
      - CONN=Server=db;Password=pw-conn-4d;Encrypt=true
      - MODE=fast
    healthcheck:
      test: ["CMD", "mysqladmin", "ping", "-h", "localhost", "-ppw-hc-12l"]
    deploy:
      labels:
        db_password: pw-label-15o
  b:
    image: nginx
    command: app --db-password=pw-cmd-8h --api-token tok-cmd-9i
    environment:
      API_TOKEN: tok-map-5e
      REDIS_URL: "redis://:pw-redis-6f@cache:6379/0"
      MONGO_URL: "mongodb://u:p%40ss-7g@mongo/db"
      JDBC: "jdbc:mysql://db/app?user=u&password=pw-jdbc-16p"
      GIT_REMOTE: "https://ghp-tok-17q@github.com/o/r.git"
    healthcheck:
      test: ["CMD-SHELL", "mysql -uroot -ppw-hcs-13m -e 'select 1' || exit 1"]
  c:
    image: nginx
    healthcheck:
      test: mysqladmin ping --password=pw-hcstr-14n
"#;

/// A fresh plan's output holds none of [`CREDENTIALS`].
fn assert_no_credential(name: &str, text: &str) {
    for credential in CREDENTIALS {
        assert!(
            !text.contains(credential),
            "{name} holds {credential}:\n{text}"
        );
    }
}

#[cfg(unix)]
#[test]
fn plan_json_saved_plans_and_reports_hold_no_credential() {
    use std::os::unix::fs::PermissionsExt;
    let repo = Repo::empty();
    let write = |path: &str, text: &str| std::fs::write(repo.path().join(path), text).unwrap();
    write(
        "machines.yml",
        "cluster: creds\ndriver: sim\nmachines:\n  vm-manager:\n    role: manager\n",
    );
    write("docker-compose.yml", HOSTILE_COMPOSE);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;

    let plan = run(&repo, &["plan", "--json"]);
    assert_no_credential("plan --json", &plan);
    // What is not secret is still shown, and the credentials' places are marked.
    for shown in [
        "MODE=fast",
        "DB_PASSWORD=(sensitive value)",
        "postgres://app:(sensitive value)@db:5432/app",
        "-p(sensitive value)",
        "--db-password=(sensitive value)",
    ] {
        assert!(plan.contains(shown), "plan --json lacks {shown}:\n{plan}");
    }

    // A new saved plan, and one over a file anyone could read: both 0600, neither holds a
    // credential, and apply carries the saved plan out.
    let new = repo.path().join("new-plan.json");
    let old = repo.path().join("old-plan.json");
    std::fs::write(&old, "{}").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o666)).unwrap();
    for file in [&new, &old] {
        let shown = run(&repo, &["plan", "--out", &file.display().to_string()]);
        assert_no_credential("plan --out (its output)", &shown);
        assert_eq!(mode(file), 0o600, "{}", file.display());
        assert_no_credential("the saved plan", &std::fs::read_to_string(file).unwrap());
    }
    assert_no_credential("plan", &run(&repo, &["plan"]));
    assert_no_credential(
        "apply --dry-run --json",
        &run(&repo, &["apply", "--dry-run", "--json"]),
    );
    let applied = run(
        &repo,
        &["apply", "--yes", "--json", &new.display().to_string()],
    );
    assert_no_credential("apply --json PLANFILE", &applied);
    assert!(applied.contains("\"converged\": true"), "{applied}");
    assert_no_credential("status --json", &run(&repo, &["status", "--json"]));

    // New credentials: the update's diff and details mark them changed, never show them.
    let compose = std::fs::read_to_string(repo.path().join("docker-compose.yml")).unwrap();
    let mut renewed = compose.clone();
    for credential in CREDENTIALS {
        renewed = renewed.replace(credential, &credential.to_uppercase());
    }
    write("docker-compose.yml", &renewed);
    for args in [
        &["plan", "--json"][..],
        &["plan"],
        &["apply", "--yes", "--json"],
    ] {
        let text = run(&repo, args);
        for credential in CREDENTIALS {
            for value in [credential.to_string(), credential.to_uppercase()] {
                assert!(!text.contains(&value), "{args:?} holds {value}:\n{text}");
            }
        }
        if args == ["plan"] {
            for changed in [
                "DB_PASSWORD=(sensitive value, changed)",
                "postgres://app:(sensitive value, changed)@db:5432/app",
            ] {
                assert!(text.contains(changed), "plan lacks {changed}:\n{text}");
            }
        }
    }
}

#[cfg(unix)]
#[test]
fn an_age_key_file_others_can_read_is_refused_naming_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let repo = Repo::empty();
    std::fs::write(
        repo.path().join("machines.yml"),
        "cluster: keys\ndriver: sim\nmachines:\n  vm-manager:\n    role: manager\n",
    )
    .unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("cluster.key");
    // Not a real identity: a refused file is never read, so its content does not matter.
    std::fs::write(&key, "AGE-SECRET-KEY-1NOTAREALKEY\n").unwrap();
    let validate = |mode: u32| {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = repo
            .command(&["validate"])
            .env_remove("SHOAL_AGE_KEY")
            .env("SHOAL_AGE_KEY_FILE", &key)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = validate(0o644);
    assert!(stderr.contains("UNPROTECTED AGE KEY FILE"), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", key.display())),
        "{stderr}"
    );
    assert!(stderr.contains("0644"), "{stderr}");
    let stderr = validate(0o600);
    assert!(!stderr.contains("UNPROTECTED"), "{stderr}");
}
