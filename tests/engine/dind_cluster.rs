//! A dind cluster made by the `shoal` binary for a test: the binary run against a repository,
//! the docker CLI against the manager's engine, and `destroy` when the test ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs the `shoal` binary with `args` on the repository `dir`, labelling what it makes as a
/// test's.
pub fn shoal(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .env(shoal::drivers::dind::TEST_LABEL_ENV, "1")
        .args(args)
        .arg("--repo")
        .arg(dir)
        .env_remove("SHOAL_LOG")
        .env_remove("DOCKER_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run shoal")
}

/// `shoal watch` on the repository `dir`: a resync every 10 minutes (events wake it sooner), its
/// status server on a free port of 127.0.0.1, logging at info, labelling what it makes as a
/// test's.
pub fn watch_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command
        .args([
            "watch",
            "--interval",
            "10m",
            "--listen",
            "127.0.0.1:0",
            "--repo",
        ])
        .arg(dir)
        .env("SHOAL_LOG", "info")
        .env(shoal::drivers::dind::TEST_LABEL_ENV, "1")
        .env_remove("DOCKER_HOST");
    command
}

/// Standard output, then standard error.
pub fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A test's cluster: destroyed when dropped, however the test ends.
pub struct Cluster {
    /// The repository it was applied from.
    pub dir: PathBuf,
    /// The manager's engine (`DOCKER_HOST`).
    pub docker_host: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = shoal(&self.dir, &["destroy", "--yes"]);
    }
}

impl Cluster {
    /// The docker CLI against the manager's engine; its standard output, or `None` on failure.
    pub fn try_docker(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.docker_host)
            .output()
            .expect("docker");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The docker CLI against the manager's engine; its standard output (failing the test when
    /// the command fails).
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.docker_host)
            .output()
            .expect("docker");
        assert!(out.status.success(), "docker {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
