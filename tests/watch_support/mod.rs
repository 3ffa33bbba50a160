//! What the watch tests share: cluster repositories made with git2 (a work tree, or a bare
//! remote), the sim's state, a small HTTP client for 127.0.0.1, and waiting for a condition.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

pub mod receiver;

use git2::{Repository, RepositoryInitOptions, Signature};
use shoal::drivers::sim::{SimDriver, SimState};
use shoal::watch::{WatchOptions, WatchSource};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cluster every test uses.
pub const CLUSTER: &str = "wapp";
/// Its one service's full name.
pub const SERVICE: &str = "web_api";

/// machines.yml: one manager, one worker, one stack, on the sim.
pub const MACHINES: &str = "cluster: wapp\ndriver: sim\nmachines:\n  mgr:\n    role: manager\n  wrk:\n    role: worker\n    count: 1\nstacks:\n  web: docker-compose.yml\n";

/// The stack with `replicas` replicas of its one service.
pub fn compose(replicas: u64) -> String {
    format!(
        "version: \"3.8\"\nservices:\n  api:\n    image: nginx:1.27\n    deploy:\n      replicas: {replicas}\n"
    )
}

fn signature() -> Signature<'static> {
    Signature::now("shoal tests", "tests@example.com").expect("signature")
}

/// A repository with a work tree, on branch main.
pub struct WorkRepo {
    /// The folder (the work tree).
    pub dir: tempfile::TempDir,
    repo: Repository,
}

impl WorkRepo {
    /// An empty repository whose `.gitignore` leaves out the sim's state.
    pub fn new() -> WorkRepo {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repository::init_opts(
            dir.path(),
            RepositoryInitOptions::new().initial_head("main"),
        )
        .expect("git init");
        std::fs::write(dir.path().join(".gitignore"), ".shoal/\n").expect("write .gitignore");
        WorkRepo { dir, repo }
    }

    /// A repository whose first commit holds machines.yml and a stack of `replicas` replicas;
    /// returns it and that commit.
    pub fn with_cluster(replicas: u64) -> (WorkRepo, String) {
        let repo = WorkRepo::new();
        let commit = repo.commit(
            &[
                ("machines.yml", MACHINES),
                ("docker-compose.yml", &compose(replicas)),
            ],
            "first",
        );
        (repo, commit)
    }

    /// The work tree.
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Writes a file in the work tree, without committing it.
    pub fn write(&self, path: &str, content: &str) {
        std::fs::write(self.dir.path().join(path), content).expect("write file");
    }

    /// Writes the files and commits everything in the work tree on main; returns the commit.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            self.write(path, content);
        }
        let mut index = self.repo.index().expect("index");
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .expect("git add");
        index.write().expect("write index");
        let tree = self
            .repo
            .find_tree(index.write_tree().expect("write tree"))
            .expect("tree");
        let parent = self.repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let sig = signature();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .expect("commit")
            .to_string()
    }
}

/// A bare repository standing for a remote (GitHub, GitLab, Gitea), on branch main.
pub struct BareRepo {
    /// Its folder.
    pub dir: tempfile::TempDir,
    repo: Repository,
}

impl BareRepo {
    /// An empty bare repository.
    pub fn new() -> BareRepo {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repository::init_opts(
            dir.path(),
            RepositoryInitOptions::new().bare(true).initial_head("main"),
        )
        .expect("git init --bare");
        BareRepo { dir, repo }
    }

    /// Its path, as a remote URL.
    pub fn url(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Commits exactly these files (at the root) on main, as a push would; returns the commit.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        let mut builder = self.repo.treebuilder(None).expect("tree builder");
        for (path, content) in files {
            assert!(!path.contains('/'), "files at the root only");
            let blob = self.repo.blob(content.as_bytes()).expect("blob");
            builder.insert(path, blob, 0o100644).expect("insert");
        }
        let tree = self
            .repo
            .find_tree(builder.write().expect("write tree"))
            .expect("tree");
        let parent = self
            .repo
            .find_reference("refs/heads/main")
            .ok()
            .and_then(|r| r.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let sig = signature();
        self.repo
            .commit(
                Some("refs/heads/main"),
                &sig,
                &sig,
                message,
                &tree,
                &parents,
            )
            .expect("commit")
            .to_string()
    }
}

/// The sim's state kept under `dir` (a repository folder, or a remote's cache folder).
pub fn sim(dir: &Path) -> SimState {
    SimDriver::open(dir, CLUSTER)
        .expect("open sim")
        .try_snapshot()
        .expect("read sim state")
}

/// Mutating requests the sim under `dir` has received.
pub fn sim_writes(dir: &Path) -> u64 {
    sim(dir).counters.writes
}

/// The replicas (tasks) of `service` in the sim under `dir`, `None` when it does not exist.
pub fn replicas(dir: &Path, service: &str) -> Option<usize> {
    let state = sim(dir);
    state
        .swarms
        .values()
        .flat_map(|s| s.services.values())
        .find(|s| s.spec.name == service)
        .map(|s| s.tasks.len())
}

/// The revision recorded in the sim's swarm (`io.shoal.revision`).
pub fn recorded_revision(dir: &Path) -> Option<String> {
    sim(dir)
        .swarms
        .values()
        .find_map(|s| s.labels.get("io.shoal.revision").cloned())
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The async form of [`wait_until`], for tests on a tokio runtime.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A response: status code and body.
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body text.
    pub body: String,
}

/// Sends one HTTP/1.1 request to `addr` (a 127.0.0.1 address) and reads the whole response.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    stream.write_all(body).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code");
    let (head, rest) = text.split_once("\r\n\r\n").expect("head and body");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Response { status, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    http(addr, "GET", path, &[], b"")
}

/// The value of the sample `name` (with its labels, e.g. `shoal_triggers_total{source="git"}`)
/// in OpenMetrics text, 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Options for tests: HTTP on a free 127.0.0.1 port, a resync interval of an hour (so only
/// what a test does wakes the loop), quick retries, no webhook secret.
pub fn options(source: WatchSource) -> WatchOptions {
    WatchOptions {
        listen: Some("127.0.0.1:0".parse().expect("address")),
        interval: Duration::from_secs(3600),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        webhook_secret: None,
        ..WatchOptions::new(source)
    }
}

/// A `shoal` process that is killed (by its id) and reaped when dropped, so a failing test
/// leaves nothing running.
pub struct Spawned {
    /// The process.
    pub child: std::process::Child,
    /// Its standard error, line by line, read by a thread.
    pub lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far through [`Spawned::line`] or [`Spawned::drain`].
    pub seen: Vec<String>,
}

impl Spawned {
    /// Spawns `command` with standard error piped, and starts reading it.
    pub fn spawn(mut command: std::process::Command) -> Spawned {
        use std::io::BufRead;
        let mut child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn shoal");
        let (send, lines) = std::sync::mpsc::channel();
        for pipe in [
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let send = send.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    if send.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Spawned {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `timeout` for the next line of output.
    pub fn line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads lines until one says where the watcher listens; returns the address.
    pub fn listening(&mut self, timeout: Duration) -> SocketAddr {
        let deadline = Instant::now() + timeout;
        while let Some(line) = self.line(deadline.saturating_duration_since(Instant::now())) {
            if let Some((_, rest)) = line.split_once("listening on http://") {
                let addr = rest.split(|c: char| c == '"' || c.is_whitespace()).next();
                return addr.and_then(|a| a.parse().ok()).expect("address");
            }
        }
        panic!("the watcher did not say where it listens: {:?}", self.seen);
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit code; then reads the rest of the
    /// output.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        self.wait(timeout)
    }

    /// Waits up to `timeout` for the process to exit; then reads the rest of the output.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let exited = wait_until(timeout, || matches!(self.child.try_wait(), Ok(Some(_))));
        let code = exited
            .then(|| self.child.try_wait().ok().flatten())
            .flatten()
            .and_then(|status| status.code());
        self.drain();
        code
    }

    /// Collects the output not read yet (all of it once the process has exited).
    pub fn drain(&mut self) {
        while let Some(_line) = self.line(Duration::from_millis(200)) {}
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
