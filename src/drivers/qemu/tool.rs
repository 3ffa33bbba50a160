//! The host programs the qemu driver runs (qemu, qemu-img, mke2fs, depmod, ip, iptables): one
//! way to run them, with the program's own words when it fails and what to install when it is
//! missing.

use super::QemuError;
use std::process::Output;

/// What `program args` gave: its standard output when it succeeded, else its error.
fn outcome(program: &str, args: &[&str], output: Output) -> Result<String, QemuError> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(QemuError::Unavailable(format!(
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// The error of a program that cannot be run at all.
fn missing(program: &str, e: &std::io::Error, install: &str) -> QemuError {
    QemuError::Unavailable(format!("cannot run {program} ({e}); {install}"))
}

/// Runs `program args` and waits for it; its standard output.
pub fn run(program: &str, args: &[&str], install: &str) -> Result<String, QemuError> {
    let output = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| missing(program, &e, install))?;
    outcome(program, args, output)
}

/// [`run`] without blocking the runtime.
pub async fn run_async(program: &str, args: &[&str], install: &str) -> Result<String, QemuError> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| missing(program, &e, install))?;
    outcome(program, args, output)
}
