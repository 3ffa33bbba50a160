//! Engines over SSH: one `ssh` process per machine that forwards the remote engine's socket to
//! a local one, so the engine is then reached like a local unix socket.
//!
//! bollard's own `ssh` transport starts an ssh master per pooled connection, cannot take a port,
//! trusts host keys on first use and needs a docker CLI on the host (notes/realmachines.md §2).
//! Here host keys are checked strictly against the known_hosts file machines.yml names, the key
//! file is the only identity offered, and nothing but sshd and the engine socket is needed on
//! the host.
//!
//! The process runs under a small `sh` guard that reads shoal's end of a pipe: when shoal exits,
//! or is killed, the pipe closes and the guard ends ssh, so no forwarder outlives its shoal.
//! Each forward's folder (`shoal-ssh-<pid>-<machine>-<n>` in the temp folder) is removed when
//! the forward ends; those a killed shoal left are removed by the next one to open a forward.

use crate::engine::EngineError;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, ChildStdin};

/// The remote engine socket that is forwarded.
pub const REMOTE_SOCKET: &str = "/var/run/docker.sock";
/// How long the forward may take to appear.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Where and how to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// `user@host`.
    pub destination: String,
    /// The ssh port, when not 22.
    pub port: Option<u16>,
    /// The private key file.
    pub key: PathBuf,
    /// The known_hosts file holding the host's key.
    pub known_hosts: PathBuf,
}

/// A running forward; ssh is ended and the local socket removed on drop.
#[derive(Debug)]
pub struct SshTunnel {
    child: Child,
    _guard_pipe: ChildStdin,
    dir: PathBuf,
    socket: PathBuf,
}

impl SshTunnel {
    /// Starts ssh for `machine` and waits until the forwarded socket accepts connections.
    ///
    /// # Errors
    ///
    /// [`EngineError::Unreachable`] with ssh's own words and what to check (address, host
    /// key, key file and authorized_keys).
    pub async fn open(machine: &str, target: &SshTarget) -> Result<SshTunnel, EngineError> {
        let dir = private_dir(machine)?;
        let socket = dir.join("docker.sock");
        let log = dir.join("ssh.log");
        let args = forward_args(target, &socket);
        // The guard: ssh in the background, ended when shoal's end of stdin closes.
        // An asynchronous list's standard input is /dev/null unless redirected (POSIX), so
        // the watcher reads shoal's pipe through a copy of it on fd 3.
        let script = r#"log="$1"; shift
exec 3<&0
ssh "$@" </dev/null 2>"$log" & child=$!
(read -r _ <&3; kill "$child" 2>/dev/null) &
wait "$child""#;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&log)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                EngineError::Unreachable(format!(
                    "machine {machine}: cannot start ssh: {e}; is the OpenSSH client installed?"
                ))
            })?;
        let pipe = child.stdin.take().ok_or_else(|| {
            EngineError::Unreachable(format!("machine {machine}: ssh has no standard input"))
        })?;
        let mut tunnel = SshTunnel {
            child,
            _guard_pipe: pipe,
            dir,
            socket,
        };
        let deadline = Instant::now() + SETUP_TIMEOUT;
        loop {
            if tokio::net::UnixStream::connect(&tunnel.socket)
                .await
                .is_ok()
            {
                return Ok(tunnel);
            }
            let exited = tunnel.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(EngineError::Unreachable(explain(
                    machine,
                    target,
                    said.trim(),
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The local socket that reaches the remote engine.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether ssh still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// A forward for the docker CLI (`shoal env` of an ssh machine) that outlives shoal: ssh, with
/// the same strict host keys and only the configured key, forwards the remote engine's socket to
/// `dir/docker.sock` and goes to the background as a control master (`dir/ssh.ctl`), so that
/// [`stop_lasting_forward`] ends it. One that already answers is kept.
///
/// # Errors
///
/// [`EngineError::Unreachable`] with ssh's own words and what to check.
pub async fn open_lasting_forward(
    machine: &str,
    target: &SshTarget,
    dir: &Path,
) -> Result<PathBuf, EngineError> {
    let socket = dir.join("docker.sock");
    if tokio::net::UnixStream::connect(&socket).await.is_ok() {
        return Ok(socket);
    }
    let control = dir.join("ssh.ctl");
    let _ = std::fs::remove_file(&control);
    let mut args = vec![
        "-f".to_string(),
        "-M".into(),
        "-S".into(),
        control.display().to_string(),
    ];
    args.extend(forward_args(target, &socket));
    let out = tokio::process::Command::new("ssh")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| {
            EngineError::Unreachable(format!(
                "machine {machine}: cannot start ssh: {e}; is the OpenSSH client installed?"
            ))
        })?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(EngineError::Unreachable(explain(
            machine,
            target,
            said.trim(),
        )));
    }
    Ok(socket)
}

/// Ends the forward [`open_lasting_forward`] left in `dir`, if one runs; returns whether one did.
pub fn stop_lasting_forward(target: &SshTarget, dir: &Path) -> bool {
    let control = dir.join("ssh.ctl");
    if !control.exists() {
        return false;
    }
    let stopped = std::process::Command::new("ssh")
        .args(["-F", "/dev/null", "-S"])
        .arg(&control)
        .args(["-O", "exit", "--", &target.destination])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let _ = std::fs::remove_file(dir.join("docker.sock"));
    let _ = std::fs::remove_file(&control);
    stopped
}

/// ssh's arguments for a forward of the remote engine's socket to `socket`: host keys checked
/// strictly against the named known_hosts only, the named key the only identity, no config
/// file, no agent, no prompt.
fn forward_args(target: &SshTarget, socket: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-N".into(),
        "-F".into(),
        "/dev/null".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", target.known_hosts.display()),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "IdentityAgent=none".into(),
        "-i".into(),
        target.key.display().to_string(),
        "-o".into(),
        "ExitOnForwardFailure=yes".into(),
        "-o".into(),
        "StreamLocalBindUnlink=yes".into(),
        "-o".into(),
        "ConnectTimeout=10".into(),
        "-o".into(),
        "ServerAliveInterval=10".into(),
        "-L".into(),
        format!("{}:{REMOTE_SOCKET}", socket.display()),
    ];
    if let Some(port) = target.port {
        args.extend(["-p".into(), port.to_string()]);
    }
    args.extend(["--".into(), target.destination.clone()]);
    args
}

impl Drop for SshTunnel {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The prefix of every forward's folder.
const DIR_PREFIX: &str = "shoal-ssh-";

/// The process that made the forward folder `name` (`shoal-ssh-<pid>-...`), if it is one.
fn folder_pid(name: &str) -> Option<u32> {
    name.strip_prefix(DIR_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// The forward folders in `root` that `alive` says no process holds any more.
fn stale_folders(root: &Path, alive: impl Fn(u32) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            folder_pid(&entry.file_name().to_string_lossy()).is_some_and(|pid| !alive(pid))
        })
        .map(|entry| entry.path())
        .collect()
}

/// Removes the forward folders of this user's shoal processes that were killed (once per
/// process; only where `/proc` tells which processes live).
fn remove_stale_folders(own: &Path) {
    use std::os::unix::fs::MetadataExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let proc = Path::new("/proc");
        let (Some(root), Ok(mine)) = (own.parent(), std::fs::metadata(own)) else {
            return;
        };
        if !proc.join("self").exists() {
            return;
        }
        let alive = |pid: u32| proc.join(pid.to_string()).exists();
        for stale in stale_folders(root, alive) {
            let ours = std::fs::symlink_metadata(&stale)
                .is_ok_and(|m| m.is_dir() && m.uid() == mine.uid());
            if ours {
                tracing::debug!(
                    "removing {}, left by a shoal that was killed",
                    stale.display()
                );
                let _ = std::fs::remove_dir_all(&stale);
            }
        }
    });
}

/// A fresh folder only this user can enter, with a short path (unix socket paths are limited).
fn private_dir(machine: &str) -> Result<PathBuf, EngineError> {
    let short: String = machine.chars().take(20).collect();
    let prefix = format!("{DIR_PREFIX}{}-{short}-", std::process::id());
    // tempfile makes the folder with mode 0700 under a random name; the tunnel removes it when
    // dropped, and a later shoal removes the folders of killed ones (`remove_stale_folders`).
    let dir = tempfile::Builder::new()
        .prefix(&prefix)
        .rand_bytes(4)
        .tempdir()
        .map_err(|e| {
            EngineError::Other(format!(
                "machine {machine}: cannot create a folder for its ssh forward in {}: {e}",
                std::env::temp_dir().display()
            ))
        })?
        .keep();
    remove_stale_folders(&dir);
    Ok(dir)
}

/// ssh's failure in words, with what to check.
fn explain(machine: &str, target: &SshTarget, said: &str) -> String {
    let said = if said.is_empty() {
        "ssh ended without a message, or the forward did not appear in time"
    } else {
        said
    };
    let port = target.port.map(|p| format!(":{p}")).unwrap_or_default();
    let hint = if said.contains("Host key verification failed")
        || said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || said.contains("No ED25519 host key is known")
        || said.contains("host key")
    {
        format!(
            "check the host key: {} must hold the key of {}{port} (ssh-keyscan prints it)",
            target.known_hosts.display(),
            target.destination
        )
    } else if said.contains("Permission denied") {
        format!(
            "check the permission: is the public half of {} in the authorized_keys of {}?",
            target.key.display(),
            target.destination
        )
    } else if said.contains("Identity file") || said.contains("Load key") {
        format!("check the key file {}", target.key.display())
    } else if said.contains("forwarding") || said.contains("open failed") {
        format!("check that {REMOTE_SOCKET} exists on the host and that this user may use it")
    } else {
        format!(
            "check the address {}{port}: is sshd running there and reachable?",
            target.destination
        )
    };
    format!(
        "machine {machine}: ssh to {}{port} failed: {said}; {hint}",
        target.destination
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            destination: "root@10.0.0.1".into(),
            port: Some(2222),
            key: "keys/id".into(),
            known_hosts: "keys/known_hosts".into(),
        }
    }

    #[test]
    fn failures_say_what_to_check() {
        let t = target();
        assert!(explain("m", &t, "Host key verification failed.").contains("check the host key"));
        assert!(
            explain("m", &t, "root@10.0.0.1: Permission denied (publickey).")
                .contains("authorized_keys")
        );
        let refused = explain(
            "m",
            &t,
            "ssh: connect to host 10.0.0.1 port 2222: Connection refused",
        );
        assert!(
            refused.contains("machine m")
                && refused.contains("check the address root@10.0.0.1:2222")
        );
    }

    #[test]
    fn folders_of_dead_processes_are_stale() {
        let root = tempfile::tempdir().unwrap();
        for name in [
            "shoal-ssh-41-mgr-1f",
            "shoal-ssh-42-w1-2e",
            "shoal-ssh-x-w1-2e",
            "other-41",
        ] {
            std::fs::create_dir(root.path().join(name)).unwrap();
        }
        assert_eq!(folder_pid("shoal-ssh-41-web-mgr-1f"), Some(41));
        let stale = stale_folders(root.path(), |pid| pid == 42);
        assert_eq!(stale, [root.path().join("shoal-ssh-41-mgr-1f")]);
    }

    #[tokio::test]
    async fn an_unreachable_host_is_reported_and_nothing_is_left() {
        let t = SshTarget {
            destination: "root@127.0.0.1".into(),
            port: Some(1),
            key: "/nonexistent/key".into(),
            known_hosts: "/dev/null".into(),
        };
        let err = SshTunnel::open("lost", &t).await.unwrap_err();
        assert!(
            matches!(err, EngineError::Unreachable(ref m) if m.contains("machine lost")),
            "{err}"
        );
    }
}
