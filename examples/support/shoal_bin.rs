//! The `shoal` binary of the figure examples' own profile, built first.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `shoal` binary next to this example's folder (`target/<profile>/shoal`), built first
/// when run through cargo so that the figures are never those of a stale binary.
pub fn shoal_binary() -> PathBuf {
    let me = std::env::current_exe().expect("the example's own path");
    let profile_dir = me
        .parent()
        .and_then(Path::parent)
        .expect("the example lives in target/<profile>/examples");
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--bin", "shoal"]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin shoal failed");
    }
    let binary = profile_dir.join("shoal");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build --release --bin shoal`",
        binary.display()
    );
    binary
}
