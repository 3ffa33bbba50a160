//! How fast a watcher reacts, measured and printed, never asserted (wall time depends on the
//! machine): commit → first write for a local repository (notify), and webhook → first write
//! for a remote one (fetch, then apply). The sim driver's write counter marks the first write.
//!
//! `cargo test --test fast watch_latency -- --nocapture` shows the figures.

use crate::watch_support;

use shoal::signature::hmac_sha256_hex as sign;
use shoal::watch::{WatchSource, Watcher};
use std::path::Path;
use std::time::{Duration, Instant};
use watch_support::*;

const COMMITS: usize = 20;
const WAIT: Duration = Duration::from_secs(20);

/// Polls the sim's write counter every millisecond until it passes `writes`.
async fn first_write_after(dir: &Path, writes: u64, since: Instant) -> Duration {
    loop {
        if sim_writes(dir) > writes {
            return since.elapsed();
        }
        assert!(since.elapsed() < WAIT, "no write within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: n={} p50={:.1} ms p95={:.1} ms min={:.1} ms max={:.1} ms",
        samples.len(),
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 95.0)),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
    );
}

async fn synced(watcher: &Watcher, commit: &str) {
    assert!(
        eventually(WAIT, || watcher.status().synced_revision.as_deref()
            == Some(commit))
        .await,
        "{commit} applied: {:?}",
        watcher.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_to_first_write_for_a_local_repository() {
    let (repo, first) = WorkRepo::with_cluster(2);
    let dir = repo.path();
    let watcher = Watcher::start(options(WatchSource::Local(repo.path())))
        .await
        .expect("start");
    synced(&watcher, &first).await;
    let mut samples = Vec::new();
    for i in 0..COMMITS {
        let writes = sim_writes(&dir);
        let replicas = 3 + (i as u64 % 2);
        let commit = repo.commit(
            &[("docker-compose.yml", &compose(replicas))],
            &format!("replicas {replicas}"),
        );
        let committed = Instant::now();
        samples.push(first_write_after(&dir, writes, committed).await);
        synced(&watcher, &commit).await;
    }
    report(
        "watch latency, local commit -> first write (notify, 100 ms debounce)",
        samples,
    );
    watcher.control().stop();
    assert_eq!(watcher.wait().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_to_first_write_for_a_remote_repository() {
    let forge = BareRepo::new();
    let first = forge.commit(
        &[
            ("machines.yml", MACHINES),
            ("docker-compose.yml", &compose(2)),
        ],
        "first",
    );
    let cache = tempfile::tempdir().expect("cache");
    let mut options = options(WatchSource::Remote {
        url: forge.url(),
        cache: Some(cache.path().to_path_buf()),
        path: String::new(),
    });
    options.webhook_secret = Some("s".to_string());
    let watcher = Watcher::start(options).await.expect("start");
    let addr = watcher.local_addr().expect("listening");
    synced(&watcher, &first).await;
    let body = br#"{"ref":"refs/heads/main"}"#;
    let signature = format!("sha256={}", sign(b"s", body));
    let mut samples = Vec::new();
    for i in 0..COMMITS {
        let writes = sim_writes(cache.path());
        let replicas = 3 + (i as u64 % 2);
        let commit = forge.commit(
            &[
                ("machines.yml", MACHINES),
                ("docker-compose.yml", &compose(replicas)),
            ],
            &format!("replicas {replicas}"),
        );
        let sent = Instant::now();
        let answer = http(
            addr,
            "POST",
            "/hooks/git",
            &[("X-Hub-Signature-256", &signature)],
            body,
        );
        assert_eq!(answer.status, 202);
        samples.push(first_write_after(cache.path(), writes, sent).await);
        synced(&watcher, &commit).await;
    }
    report(
        "watch latency, remote webhook -> first write (fetch from a local bare repository, 100 ms debounce)",
        samples,
    );
    watcher.control().stop();
    assert_eq!(watcher.wait().await, 0);
}
