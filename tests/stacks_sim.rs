//! Real-world stacks through the CLI on the sim: they plan, apply and converge with no false
//! drift, and a changed secret file rotates the secret without its data appearing anywhere.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn shoal(repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .arg("--repo")
        .arg(repo)
        .arg("--driver")
        .arg("sim")
        .stdin(Stdio::null())
        .output()
        .expect("run shoal")
}

/// Standard output of a successful run.
fn ok(repo: &Path, args: &[&str]) -> String {
    let (stdout, stderr) = ok_both(repo, args);
    assert!(!stdout.is_empty() || stderr.is_empty());
    stdout
}

/// Standard output and standard error of a successful run.
fn ok_both(repo: &Path, args: &[&str]) -> (String, String) {
    let out = shoal(repo, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "shoal {args:?} failed:\n{stdout}{stderr}"
    );
    (stdout, stderr)
}

fn steps(repo: &Path) -> Vec<String> {
    let plan: serde_json::Value = serde_json::from_str(&ok(repo, &["plan", "--json"])).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["action"].as_str().unwrap(),
                s["target"].as_str().unwrap()
            )
        })
        .collect()
}

fn converge(example: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/compose")
        .join(example);
    copy_dir(&source, dir.path());
    // The sim cannot hold secrets made outside shoal: make the external one file-backed.
    let compose = dir.path().join("docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap().replace(
        "    external: true\n    name: shop-payment-key-v2\n",
        "    file: ./secrets/payment.key\n",
    );
    std::fs::write(&compose, text).unwrap();
    std::fs::write(dir.path().join("secrets/payment.key"), "payment-key").ok();
    ok(dir.path(), &["validate"]);
    let report: serde_json::Value =
        serde_json::from_str(&ok(dir.path(), &["apply", "--yes", "--json"])).unwrap();
    assert_eq!(report["converged"], true, "{report:#}");
    assert!(steps(dir.path()).is_empty(), "false drift after apply");
    dir
}

#[test]
fn real_world_stacks_converge_without_false_drift() {
    for example in ["webshop", "monitoring"] {
        let dir = converge(example);
        let again = shoal(dir.path(), &["apply", "--yes", "--json"]);
        let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(
            report["writes"], 0,
            "{example}: a converged apply must send nothing"
        );
    }
}

#[test]
fn a_changed_secret_is_rotated_and_never_shown() {
    let dir = converge("webshop");
    let secret = "s3cr3t-rotated-value";
    std::fs::write(dir.path().join("secrets/db_password.txt"), secret).unwrap();
    let plan = steps(dir.path());
    let creates: Vec<&String> = plan
        .iter()
        .filter(|s| s.starts_with("create_secret"))
        .collect();
    let removes: Vec<&String> = plan
        .iter()
        .filter(|s| s.starts_with("remove_secret"))
        .collect();
    assert_eq!(creates.len(), 1, "{plan:?}");
    assert_eq!(removes.len(), 1, "{plan:?}");
    let updates = plan
        .iter()
        .filter(|s| s.starts_with("update_service"))
        .count();
    assert!(
        updates >= 2,
        "the services using the secret are updated: {plan:?}"
    );
    let created = plan
        .iter()
        .position(|s| s.starts_with("create_secret"))
        .unwrap();
    let removed = plan
        .iter()
        .position(|s| s.starts_with("remove_secret"))
        .unwrap();
    assert!(created < removed);
    for args in [
        &["plan"][..],
        &["plan", "--json"][..],
        &["apply", "--yes"][..],
        &["apply", "--yes", "--json"][..],
        &["status", "--json"][..],
    ] {
        let (stdout, stderr) = ok_both(dir.path(), args);
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{args:?} printed the secret"
        );
    }
    let state = std::fs::read_to_string(dir.path().join(".shoal/sim.json")).unwrap();
    assert!(
        !state.contains(secret),
        "the sim must not store secret data"
    );
    assert!(steps(dir.path()).is_empty());
}
