//! Secret and config files encrypted with age (issue 12), through the CLI as a user would, with
//! fixtures made by Debian's real `age` and `age-keygen` (installed by `.ci/run`), so that the
//! files the tool writes are proven to be read: a repository with `db_password.txt.age` deploys;
//! the plaintext appears in no output and no file under the repository; re-encrypting the same
//! value plans nothing, a new value rotates the secret; without the identity, or with a wrong
//! one, `validate` exits 1 naming the file. On a dind cluster, the secret inside the running
//! task is the plaintext.
//!
//! Fails, naming what is missing, when the `age` CLI (or, for the dind part, a Docker Engine) is
//! missing: `.ci/test` installs the CLI.

use crate::common;

use common::Repo;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PLAINTEXT: &str = "correct-horse-battery-staple-42";

/// Fails the test when the age CLI is missing, in and out of CI: these tests prove that the
/// files the real tool writes are read, so they need it (`.ci/test` installs Debian's `age`).
fn require_age() {
    let found = ["age", "age-keygen"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        found,
        "the age scenarios need the age CLI (age and age-keygen), which is missing: run `.ci/test` \
         (it installs the tests' packages) or `apt-get install age`"
    );
}

/// `age-keygen -o FILE`: the identity file, and the public key it prints.
fn keygen(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let file = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&file)
        .output()
        .expect("age-keygen");
    assert!(out.status.success(), "age-keygen failed");
    let text = std::fs::read_to_string(&file).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key line")
        .to_string();
    (file, public)
}

/// `age -r PUBLIC [-a] -o OUT`, the plaintext on standard input.
fn encrypt(public: &str, armor: bool, plaintext: &str, out: &Path) {
    use std::io::Write;
    let mut cmd = Command::new("age");
    cmd.arg("-r").arg(public);
    if armor {
        cmd.arg("-a");
    }
    let mut child = cmd
        .arg("-o")
        .arg(out)
        .stdin(Stdio::piped())
        .spawn()
        .expect("age");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plaintext.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "age failed");
}

/// A repository whose secret `db_password` is `db_password.txt.age` and whose config `app` is an
/// armored age file without the suffix.
fn repo(machines: &str, image: &str) -> (Repo, tempfile::TempDir, String) {
    let keys = tempfile::tempdir().unwrap();
    let (_, public) = keygen(keys.path(), "cluster.key");
    let repo = Repo::empty();
    std::fs::write(repo.path().join("machines.yml"), machines).unwrap();
    std::fs::write(
        repo.path().join("docker-compose.yml"),
        format!(
            "services:\n  web:\n    image: {image}\n    secrets: [db_password]\n    configs: [app]\nsecrets:\n  db_password:\n    file: ./db_password.txt.age\nconfigs:\n  app:\n    file: ./app.conf\n"
        ),
    )
    .unwrap();
    encrypt(
        &public,
        false,
        PLAINTEXT,
        &repo.path().join("db_password.txt.age"),
    );
    encrypt(
        &public,
        true,
        "listen 8080\n",
        &repo.path().join("app.conf"),
    );
    (repo, keys, public)
}

/// `shoal ARGS --repo DIR` with the identity file in SHOAL_AGE_KEY_FILE (or none).
fn shoal(repo: &Repo, keys: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = repo.command(args);
    cmd.env_remove("SHOAL_AGE_KEY")
        .env_remove("SHOAL_AGE_KEY_FILE")
        .env("SHOAL_LOG", "debug");
    if let Some(keys) = keys {
        cmd.env("SHOAL_AGE_KEY_FILE", keys);
    }
    cmd.output().expect("run shoal")
}

/// Standard output of a run that must succeed, checked not to show the plaintext.
fn ok(repo: &Repo, keys: &Path, args: &[&str]) -> String {
    let out = shoal(repo, Some(keys), args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "shoal {args:?} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains(PLAINTEXT) && !stderr.contains(PLAINTEXT),
        "shoal {args:?} showed the plaintext"
    );
    stdout
}

fn steps(repo: &Repo, keys: &Path) -> Vec<String> {
    let plan: serde_json::Value =
        serde_json::from_str(&ok(repo, keys, &["plan", "--json"])).unwrap();
    common::steps_of(&plan)
}

/// No file under `dir` holds the plaintext.
fn assert_not_on_disk(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_not_on_disk(&path);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(PLAINTEXT),
                "{} holds the plaintext",
                path.display()
            );
        }
    }
}

#[test]
fn encrypted_secrets_deploy_rotate_and_stay_secret_on_the_sim() {
    require_age();
    let machines = "cluster: agesim\ndriver: sim\nmachines:\n  m:\n    role: manager\nstacks:\n  app: docker-compose.yml\n";
    let (repo, keys, public) = repo(machines, "nginx:1.27");
    let key_file = keys.path().join("cluster.key");

    // Without the identity, or with another one: exit 1, naming the file.
    for identity in [None, Some(keygen(keys.path(), "other.key").0)] {
        let out = shoal(&repo, identity.as_deref(), &["validate"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("db_password.txt.age"), "{stderr}");
        assert!(stderr.contains("app.conf"), "{stderr}");
        assert!(!stderr.contains(PLAINTEXT));
    }

    ok(&repo, &key_file, &["validate"]);
    ok(&repo, &key_file, &["apply", "--yes"]);
    assert!(
        steps(&repo, &key_file).is_empty(),
        "false drift after apply"
    );

    // The same value encrypted again (a new ciphertext) plans nothing.
    let secret_file = repo.path().join("db_password.txt.age");
    let before = std::fs::read(&secret_file).unwrap();
    encrypt(&public, true, PLAINTEXT, &secret_file);
    assert_ne!(before, std::fs::read(&secret_file).unwrap());
    assert!(
        steps(&repo, &key_file).is_empty(),
        "re-encryption must plan nothing"
    );

    // A new value rotates the secret.
    encrypt(&public, false, "a-new-value-7", &secret_file);
    let plan = steps(&repo, &key_file);
    assert!(
        plan.iter().any(|s| s.starts_with("create_secret")),
        "{plan:?}"
    );
    assert!(
        plan.iter().any(|s| s == "update_service app_web"),
        "{plan:?}"
    );
    for args in [
        &["plan"][..],
        &["apply", "--yes", "--json"][..],
        &["status", "--json"][..],
    ] {
        ok(&repo, &key_file, args);
    }
    assert_not_on_disk(&repo.path());
}

#[test]
fn the_secret_in_the_running_task_is_the_plaintext() {
    require_age();
    let _turn = common::engine_turn("the dind age scenario");
    common::build_demo_image();
    let cluster = format!("age{}", std::process::id() % 10_000);
    let machines = format!(
        "cluster: {cluster}\ndriver: dind\ndriver_options:\n  preload_images: [dataservice:1]\nmachines:\n  m:\n    role: manager\nstacks:\n  app: docker-compose.yml\n"
    );
    let (repo, keys, _) = repo(&machines, "dataservice:1");
    let key_file = keys.path().join("cluster.key");
    let _destroy = Destroy(&repo, &key_file);
    ok(&repo, &key_file, &["apply", "--yes"]);
    assert!(
        steps(&repo, &key_file).is_empty(),
        "false drift after apply"
    );
    // The task's secret and config files, in the node's own view of its engine's container
    // folders (the secrets are on a tmpfs mounted there): the node has no shell to `cat` them,
    // so they are read from the host through `/proc/<node's pid>/root` (root only, as CI runs).
    let node = format!("{cluster}-m");
    let pid = common::host_docker(None, &["inspect", "--format", "{{.State.Pid}}", &node], "");
    let containers = std::path::PathBuf::from(format!(
        "/proc/{}/root/var/lib/docker/containers",
        pid.trim()
    ));
    let read_all = |kind: &str| -> String {
        let mut text = String::new();
        for container in std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
        {
            let folder = container.path().join("mounts").join(kind);
            for file in std::fs::read_dir(folder).into_iter().flatten().flatten() {
                text.push_str(&std::fs::read_to_string(file.path()).unwrap_or_default());
            }
        }
        text
    };
    assert!(
        std::fs::read_dir(&containers).is_ok(),
        "cannot read {} (the test reads the node's files as root, as CI runs it)",
        containers.display()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (secret, config) = loop {
        // Configs sit beside the secrets on the same tmpfs, or in a folder of their own.
        let secrets = read_all("secrets");
        let files = format!("{secrets}{}", read_all("configs"));
        let found = (secrets, files);
        if found.0.contains(PLAINTEXT) || std::time::Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(
        secret.contains(PLAINTEXT),
        "the task's secret is the plaintext: {secret:?}"
    );
    assert!(
        config.contains("listen 8080"),
        "the task's config is decrypted: {config:?}"
    );
    assert_not_on_disk(&repo.path());
}

/// Destroys the dind cluster when the test ends, failed or not.
struct Destroy<'a>(&'a Repo, &'a Path);

impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        let _ = shoal(self.0, Some(self.1), &["destroy", "--yes"]);
    }
}
