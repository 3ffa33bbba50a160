//! The CI recipes of `examples/ci/` run as written: every shell step of the GitHub Actions
//! workflow and every script line of the GitLab CI file, in order, against the sim, with fake
//! `gh` and `curl` that record the review comment instead of posting it. A pull request's plan
//! is commented as Markdown; the merged commit is applied; a cluster changed between the
//! merge's plan and its apply makes the apply refuse the stale plan.

use crate::common;

use common::Repo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=shoal", "-c", "user.email=shoal@localhost"])
        .args(args)
        .current_dir(repo)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The tutorial's repository under git, applied on the sim from `main`, with a branch
/// `change` that scales the service and sets an environment variable with a secret-looking
/// name; and a folder of fake programs (`gh`, `curl`) and `shoal` first on the PATH.
struct Setup {
    repo: Repo,
    bin: tempfile::TempDir,
    change: String,
}

impl Setup {
    fn new() -> Setup {
        let repo = Repo::copy_of("examples/dataapp");
        let dir = repo.path();
        std::fs::write(dir.join(".gitignore"), ".shoal/\nplan.md\nplan.json\n").unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        git(&dir, &["add", "."]);
        git(&dir, &["commit", "-q", "-m", "tutorial"]);
        repo.apply();
        git(&dir, &["checkout", "-q", "-b", "change"]);
        repo.edit("docker-compose.yml", "replicas: 5", "replicas: 7");
        repo.edit(
            "docker-compose.yml",
            "    image: dataservice:1\n",
            "    image: dataservice:1\n    environment:\n      DB_PASSWORD: hunter2-ci\n",
        );
        git(&dir, &["commit", "-q", "-am", "seven replicas"]);
        let change = git(&dir, &["rev-parse", "HEAD"]);
        git(&dir, &["checkout", "-q", "main"]);

        let bin = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_shoal"), bin.path().join("shoal")).unwrap();
        // Each fake keeps its arguments and the comment it was given.
        let fake = |name: &str, body: &str| {
            let path = bin.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        fake(
            "gh",
            r#"echo "$@" > "$RECORD/gh.args"
while [ $# -gt 0 ]; do [ "$1" = --body-file ] && cp "$2" "$RECORD/comment.md"; shift; done"#,
        );
        fake(
            "curl",
            r#"echo "$@" > "$RECORD/curl.args"
for arg in "$@"; do case "$arg" in body@*) cp "${arg#body@}" "$RECORD/comment.md";; esac; done"#,
        );
        Setup { repo, bin, change }
    }

    fn dir(&self) -> PathBuf {
        self.repo.path()
    }

    /// Runs one shell step in the repository with `env`; its exit status and output.
    fn step(&self, script: &str, env: &[(&str, &str)]) -> (bool, String) {
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .args(["-e", "-c", script])
            .current_dir(self.dir())
            .env("PATH", path)
            .env("RECORD", self.bin.path())
            .env_remove("DOCKER_HOST")
            .env_remove("SHOAL_LOG")
            .envs(env.iter().copied())
            .output()
            .expect("bash");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn recorded(&self, name: &str) -> String {
        std::fs::read_to_string(self.bin.path().join(name))
            .unwrap_or_else(|_| panic!("nothing recorded in {name}"))
    }

    /// Merges `change` into main; the merged commit.
    fn merge(&self) -> String {
        git(&self.dir(), &["merge", "-q", "--ff-only", "change"]);
        git(&self.dir(), &["rev-parse", "HEAD"])
    }
}

fn recipe(name: &str) -> Value {
    let text = std::fs::read_to_string(common::crate_path(&format!("examples/ci/{name}"))).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("examples/ci/{name}: {e}"))
}

/// The `run:` steps of a GitHub Actions job.
fn github_steps(workflow: &Value, job: &str) -> Vec<String> {
    workflow["jobs"][job]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in job {job}"))
        .iter()
        .filter_map(|step| step["run"].as_str().map(str::to_string))
        .collect()
}

/// The script of a GitLab CI job, as one shell script (GitLab runs the lines in one shell).
fn gitlab_script(pipeline: &Value, job: &str) -> Vec<String> {
    pipeline[job]["script"]
        .as_array()
        .unwrap_or_else(|| panic!("no script in job {job}"))
        .iter()
        .map(|line| line.as_str().unwrap().to_string())
        .collect()
}

fn assert_comment_is_the_plan(comment: &str) {
    assert!(
        comment.starts_with("### shoal plan: cluster `dataapp`"),
        "{comment}"
    );
    assert!(
        comment.contains("| update_service | `dataapp_dataservice`"),
        "{comment}"
    );
    assert!(comment.contains("<details>"), "{comment}");
    assert!(comment.contains("+7"), "{comment}");
    assert!(
        !comment.contains("hunter2-ci"),
        "the comment shows a secret: {comment}"
    );
}

#[test]
fn the_github_actions_recipe_comments_the_plan_and_applies_the_merge() {
    let setup = Setup::new();
    let workflow = recipe("github-actions.yml");
    let head = setup.change.clone();
    for script in github_steps(&workflow, "plan") {
        let (ok, output) = setup.step(
            &script,
            &[("HEAD_SHA", &head), ("GH_TOKEN", "t"), ("PR_NUMBER", "12")],
        );
        assert!(ok, "{script}\n{output}");
    }
    assert!(
        setup
            .recorded("gh.args")
            .starts_with("pr comment 12 --body-file plan.md"),
        "{}",
        setup.recorded("gh.args")
    );
    assert_comment_is_the_plan(&setup.recorded("comment.md"));

    let merged = setup.merge();
    let steps = github_steps(&workflow, "apply");
    for script in &steps {
        let (ok, output) = setup.step(script, &[("GITHUB_SHA", &merged)]);
        assert!(ok, "{script}\n{output}");
    }
    let (_, after) = setup.step("shoal plan --detailed-exitcode", &[]);
    assert!(after.contains("No changes."), "{after}");

    // A cluster changed between the merge's plan and its apply: the saved plan is refused.
    setup
        .repo
        .edit("docker-compose.yml", "replicas: 7", "replicas: 6");
    git(&setup.dir(), &["commit", "-q", "-am", "six"]);
    let six = git(&setup.dir(), &["rev-parse", "HEAD"]);
    let (ok, output) = setup.step(&steps[0], &[("GITHUB_SHA", &six)]);
    assert!(ok, "{output}");
    setup
        .repo
        .ok(&["sim", "set-replicas", "dataapp_dataservice", "3"]);
    let (ok, output) = setup.step(&steps[1], &[("GITHUB_SHA", &six)]);
    assert!(!ok, "a stale plan was applied:\n{output}");
    assert!(output.contains("stale"), "{output}");
}

#[test]
fn the_gitlab_recipe_posts_the_plan_as_a_note_and_applies_the_merge() {
    let setup = Setup::new();
    let pipeline = recipe("gitlab-ci.yml");
    let head = setup.change.clone();
    let script = gitlab_script(&pipeline, "shoal-plan").join("\n");
    let (ok, output) = setup.step(
        &script,
        &[
            ("CI_COMMIT_SHA", &head),
            ("CI_API_V4_URL", "https://gitlab.invalid/api/v4"),
            ("CI_PROJECT_ID", "7"),
            ("CI_MERGE_REQUEST_IID", "3"),
            ("SHOAL_NOTE_TOKEN", "t"),
        ],
    );
    assert!(ok, "{script}\n{output}");
    let args = setup.recorded("curl.args");
    assert!(
        args.contains("PRIVATE-TOKEN: t")
            && args.ends_with("https://gitlab.invalid/api/v4/projects/7/merge_requests/3/notes\n"),
        "{args}"
    );
    assert_comment_is_the_plan(&setup.recorded("comment.md"));

    let merged = setup.merge();
    let script = gitlab_script(&pipeline, "shoal-apply").join("\n");
    let (ok, output) = setup.step(&script, &[("CI_COMMIT_SHA", &merged)]);
    assert!(ok, "{script}\n{output}");
    let (_, after) = setup.step("shoal plan --detailed-exitcode", &[]);
    assert!(after.contains("No changes."), "{after}");
}
