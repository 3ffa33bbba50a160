//! `shoal watch` under hostile conditions, as a user runs it: hundreds of half-open HTTP
//! connections under a low `ulimit -n` stop neither `/healthz` nor reconciling, and no log line
//! (at any level), HTTP answer or file in the cache holds a password from `--remote`, a
//! `SHOAL_*` credential or the webhook secret. Everything talks to 127.0.0.1 only; port 9
//! there (discard) refuses, standing for an unreachable forge.

use crate::watch_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use watch_support::*;

const WAIT: Duration = Duration::from_secs(30);
/// Half-open connections opened per wave: several times the server's connection cap.
const SLOW_CLIENTS: usize = 300;

const URL_PASSWORD: &str = "s3cret-in-the-url";
const TOKEN: &str = "tok3n-from-the-env";
const WEBHOOK_SECRET: &str = "h00k-secret-from-the-env";
const UNREACHABLE: &str = "https://dep1oyer-q7:s3cret-in-the-url@127.0.0.1:9/cluster.git";

/// `shoal ARGS`, under `ulimit -n 256`, with the credentials of a real setup in its
/// environment and every log level on.
fn shoal(args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("RUST_LOG")
        .env("SHOAL_LOG", "trace")
        .env("SHOAL_GIT_TOKEN", TOKEN)
        .env("SHOAL_GIT_SSH_PASSPHRASE", TOKEN)
        .env("SHOAL_WEBHOOK_SECRET", WEBHOOK_SECRET);
    command
}

/// `GET path` that fails quietly: the status and body, or `None` when no answer came within
/// `timeout`.
fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    Some((status, body.unwrap_or_default()))
}

/// Opens `count` connections that send half a request and stall.
fn slow_clients(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            let _ = stream.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
            Some(stream)
        })
        .collect()
}

/// Asks `/healthz` until it answers 200, for at most `bound`; returns how long it took.
fn healthz_within(addr: SocketAddr, bound: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < bound {
        if let Some((200, _)) = probe(addr, "/healthz", Duration::from_secs(2)) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("/healthz did not answer within {bound:?}");
}

fn synced(addr: SocketAddr) -> Option<String> {
    let (_, body) = probe(addr, "/status", Duration::from_secs(5))?;
    let status: serde_json::Value = serde_json::from_str(&body).ok()?;
    status["synced_revision"].as_str().map(str::to_string)
}

#[test]
fn half_open_connections_stop_neither_healthz_nor_reconciling() {
    let (repo, first) = WorkRepo::with_cluster(2);
    let mut watcher = Spawned::spawn({
        let mut command = shoal(&["watch", "--listen", "127.0.0.1:0", "--repo"]);
        command.arg(repo.path()).env("SHOAL_LOG", "shoal=info");
        command
    });
    let addr = watcher.listening(WAIT);
    assert!(
        wait_until(WAIT, || synced(addr).as_deref() == Some(first.as_str())),
        "the first commit applies: {:?}",
        watcher.seen
    );

    let mut stalled = slow_clients(addr, SLOW_CLIENTS);
    assert!(
        stalled.len() >= SLOW_CLIENTS / 2,
        "only {} connections opened",
        stalled.len()
    );
    let took = healthz_within(addr, Duration::from_secs(5));
    assert!(took < Duration::from_secs(5), "/healthz took {took:?}");

    // A commit made while the server is flooded is still applied, and a second wave during
    // the pass changes nothing.
    let second = repo.commit(&[("docker-compose.yml", &compose(3))], "three");
    stalled.extend(slow_clients(addr, SLOW_CLIENTS));
    assert!(
        wait_until(WAIT, || synced(addr).as_deref() == Some(second.as_str())),
        "the commit made under the flood applies: {:?}",
        watcher.seen
    );
    assert_eq!(replicas(&repo.path(), SERVICE), Some(3));
    healthz_within(addr, Duration::from_secs(5));
    let (status, metrics) = probe(addr, "/metrics", Duration::from_secs(5)).expect("/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&metrics, "shoal_reconcile_errors_total"), 0.0);

    // SIGTERM still stops it promptly, with the stalled clients connected.
    assert_eq!(watcher.terminate(Duration::from_secs(15)), Some(0));
    drop(stalled);
    let logs = watcher.seen.join("\n");
    assert!(!logs.contains("Too many open files"), "{logs}");
    assert!(sim(&repo.path()).lock.is_none(), "no lock left behind");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [URL_PASSWORD, TOKEN, WEBHOOK_SECRET] {
        assert!(
            !text.contains(secret),
            "{what} holds the secret {secret}:\n{text}"
        );
    }
}

#[test]
fn an_unreachable_remote_is_reported_as_such_and_no_credential_leaks() {
    let cache = tempfile::tempdir().expect("cache dir");
    let cache_arg = cache.path().display().to_string();

    // One pass, every log level.
    let once = shoal(&[
        "watch",
        "--once",
        "--remote",
        UNREACHABLE,
        "--cache",
        &cache_arg,
    ])
    .output()
    .expect("run shoal");
    let stderr = String::from_utf8_lossy(&once.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&once.stdout).into_owned();
    assert_eq!(once.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach https://***@127.0.0.1:9/cluster.git"),
        "{stderr}"
    );
    assert!(!stderr.contains("no commit yet"), "{stderr}");
    assert_no_secret("stderr of --once", &stderr);
    assert_no_secret("stdout of --once", &stdout);

    // A running watcher: its logs, every endpoint, and a webhook carrying the secret.
    let mut watcher = Spawned::spawn(shoal(&[
        "watch",
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "1s",
        "--remote",
        UNREACHABLE,
        "--cache",
        &cache_arg,
    ]));
    let addr = watcher.listening(WAIT);
    assert!(
        wait_until(WAIT, || {
            probe(addr, "/status", Duration::from_secs(5))
                .is_some_and(|(_, body)| body.contains("cannot reach"))
        }),
        "/status reports the unreachable remote: {:?}",
        watcher.seen
    );
    let hook = http(
        addr,
        "POST",
        "/hooks/git",
        &[("X-Gitlab-Token", WEBHOOK_SECRET)],
        b"{}",
    );
    assert_eq!(hook.status, 202, "{}", hook.body);
    let refused = http(
        addr,
        "POST",
        "/hooks/git",
        &[("X-Gitlab-Token", "h00k-secret-from-the-en")],
        b"{}",
    );
    assert_eq!(refused.status, 401);
    for path in ["/", "/status", "/metrics", "/healthz", "/readyz", "/nope"] {
        let (_, body) = probe(addr, path, Duration::from_secs(5)).expect(path);
        assert_no_secret(path, &body);
    }
    let status = get(addr, "/status").body;
    assert!(
        status.contains("https://***@127.0.0.1:9/cluster.git"),
        "{status}"
    );
    assert_eq!(watcher.terminate(WAIT), Some(0));
    assert_no_secret("the watcher's output", &watcher.seen.join("\n"));

    // Nothing on disk: the cache's git config holds the URL without credentials.
    let files = files_under(cache.path());
    assert!(!files.is_empty(), "the cache was made");
    for file in &files {
        let bytes = std::fs::read(file).expect("read cache file");
        assert_no_secret(
            &file.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
        assert!(
            !String::from_utf8_lossy(&bytes).contains("dep1oyer-q7"),
            "{} holds the URL's user name",
            file.display()
        );
    }
    let config = std::fs::read_to_string(cache.path().join("repo.git/config")).expect("config");
    assert!(
        config.contains("url = https://127.0.0.1:9/cluster.git"),
        "{config}"
    );
}
