//! What the CLI tests share: a cluster repository in a temporary folder, driven through the
//! `shoal` binary as a user would.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A cluster repository in a temporary folder.
pub struct Repo {
    /// The folder.
    pub dir: tempfile::TempDir,
    /// Arguments added to every command (e.g. `--driver sim`).
    pub extra_args: Vec<String>,
}

/// A path under the crate's root.
pub fn crate_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("folder entry");
        // `.shoal/` is the state a user's own `shoal apply` left in the example (the sim's
        // cluster, its lock): a test starts from the files alone.
        if entry.file_name() == ".shoal" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy file");
        }
    }
}

impl Repo {
    /// A copy of the files of `source` (a folder relative to the crate's root).
    pub fn copy_of(source: &str) -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&crate_path(source), dir.path());
        Repo {
            dir,
            extra_args: Vec::new(),
        }
    }

    /// An empty repository.
    pub fn empty() -> Repo {
        Repo {
            dir: tempfile::tempdir().expect("temp dir"),
            extra_args: Vec::new(),
        }
    }

    /// The folder.
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Runs `shoal ARGS --repo DIR` with no standard input and no DOCKER_HOST.
    pub fn shoal(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run shoal")
    }

    /// The command `shoal ARGS --repo DIR` with no standard input and no DOCKER_HOST, to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .args(args)
            .arg("--repo")
            .arg(self.path())
            .args(&self.extra_args)
            .env_remove("SHOAL_LOG")
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null());
        command
    }

    /// Standard output and standard error of a run that must succeed.
    pub fn ok_both(&self, args: &[&str]) -> (String, String) {
        let out = self.shoal(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "shoal {args:?} failed:\n{stdout}\n{stderr}"
        );
        (stdout, stderr)
    }

    /// Standard output of a run that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_both(args).0
    }

    /// Standard output of a run that must succeed, as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// `plan --json`.
    pub fn plan(&self) -> Value {
        self.json(&["plan", "--json"])
    }

    /// `action target` of each step of a fresh plan.
    pub fn steps(&self) -> Vec<String> {
        steps_of(&self.plan())
    }

    /// `apply --yes --json`, which must converge.
    pub fn apply(&self) -> Value {
        let report = self.json(&["apply", "--yes", "--json"]);
        assert_eq!(
            report["converged"], true,
            "apply did not converge: {report:#}"
        );
        report
    }

    /// Replaces `from` by `to` in a file of the repository.
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.path().join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replace(from, to)).expect("write");
    }

    /// The sim driver's state file, empty when there is none.
    pub fn sim_state(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(".shoal/sim.json")).unwrap_or_default()
    }
}

/// `action target` of each step of a plan.
pub fn steps_of(plan: &Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["action"].as_str().expect("action"),
                s["target"].as_str().expect("target")
            )
        })
        .collect()
}

/// How many steps have this action.
pub fn count(steps: &[String], action: &str) -> usize {
    steps
        .iter()
        .filter(|s| s.starts_with(&format!("{action} ")))
        .count()
}

/// The position of a step, which must be there.
pub fn position(steps: &[String], step: &str) -> usize {
    steps
        .iter()
        .position(|s| s == step)
        .unwrap_or_else(|| panic!("no step {step} in {steps:?}"))
}

/// Asserts that these steps are all in the plan, in this order.
pub fn assert_in_order(steps: &[String], expected: &[String]) {
    let positions: Vec<usize> = expected.iter().map(|step| position(steps, step)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "expected {expected:?} in this order: {steps:?}"
    );
}

/// Whether a Docker Engine answers, for the tests that need one (`what` names them). Outside CI
/// they are skipped with a note when none does; with `CI=true` a missing engine is a failure.
pub fn docker_available(what: &str) -> bool {
    let answers = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !answers && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but no Docker Engine answers: {what} must run in CI");
    }
    if !answers {
        eprintln!("note: no Docker Engine answers; {what} skipped (they run in CI)");
    }
    answers
}
