//! `shoal watch` keeps the last good commit (issue 8): a broken tip does not stop drift from
//! being healed against the last commit that loaded, without a growing backoff; `/status`
//! shows the cluster as observed at the last pass, with its time; a commit that changes
//! nothing in the cluster still moves the swarm's revision label.

use crate::watch_support;

use serde_json::Value;
use shoal::drivers::sim::SimDriver;
use shoal::watch::{TargetKind, WatchSource, Watcher};
use std::time::Duration;
use watch_support::*;

const WAIT: Duration = Duration::from_secs(20);

/// A compose file that does not parse.
const BROKEN: &str = "services:\n  api: [unclosed\n";

fn status_json(addr: std::net::SocketAddr) -> Value {
    serde_json::from_str(&get(addr, "/status").body).expect("status JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_healed_against_the_last_good_commit_while_the_tip_is_broken() {
    let (repo, first) = WorkRepo::with_cluster(3);
    let dir = repo.path();
    let mut options = options(WatchSource::Local(repo.path()));
    options.interval = Duration::from_secs(1);
    let watcher = Watcher::start(options).await.expect("start");
    let addr = watcher.local_addr().expect("listening");
    assert!(
        eventually(WAIT, || watcher.status().synced_revision.as_deref()
            == Some(&*first))
        .await
    );

    let broken = repo.commit(&[("docker-compose.yml", BROKEN)], "broken");
    assert!(
        eventually(WAIT, || watcher
            .status()
            .tip_error
            .is_some_and(|e| e.revision.as_deref() == Some(&*broken)))
        .await,
        "the broken tip is reported: {:?}",
        watcher.status()
    );

    // Someone scales the service by hand: the watcher puts back the last good commit's 3.
    SimDriver::open(&dir, CLUSTER)
        .expect("sim")
        .set_replicas(SERVICE, 1)
        .expect("scale by hand");
    assert!(
        eventually(WAIT, || replicas(&dir, SERVICE) == Some(3)).await,
        "drift is healed while the tip is broken: {:?}",
        watcher.status()
    );
    // The status shows the cluster as observed after the heal, and the tip's error still.
    assert!(
        eventually(WAIT, || metric(
            &watcher.metrics(),
            "shoal_drift_steps_total"
        ) >= 1.0)
        .await,
        "the heal is recorded"
    );
    assert_eq!(status_json(addr)["cluster"]["services"][0]["running"], 3);
    let status = watcher.status();
    let error = status.tip_error.expect("the tip's error stays visible");
    assert!(error.message.contains("not valid"), "{}", error.message);
    assert!(
        error.message.contains(&first[..12]),
        "names the last good commit: {}",
        error.message
    );
    let target = status.target.expect("target");
    assert_eq!(target.revision, first);
    assert_eq!(target.kind, TargetKind::LastGood);
    assert_eq!(recorded_revision(&dir).as_deref(), Some(&*first));
    let json = status_json(addr);
    assert_eq!(json["tip"]["commit"], broken.as_str());
    assert_eq!(json["tip_error"]["revision"], broken.as_str());
    assert_eq!(json["target"]["kind"], "last_good");
    assert_eq!(json["target"]["revision"], first.as_str());
    let observed_at = json["observed_at"].as_u64().expect("observed_at");
    assert!(shoal::clock::unix_now().saturating_sub(observed_at) < 10);
    let metrics = watcher.metrics();
    assert_eq!(metric(&metrics, "shoal_tip_broken"), 1.0, "{metrics}");
    assert_eq!(metric(&metrics, "shoal_last_reconcile_success"), 0.0);
    assert!(metric(&metrics, "shoal_reconcile_errors_total") >= 1.0);
    // A broken tip fails the same way until the branch moves: it is not retried with backoff.
    assert_eq!(
        metric(&metrics, "shoal_triggers_total{source=\"retry\"}"),
        0.0,
        "{metrics}"
    );
    let page = get(addr, "/").body;
    assert!(page.contains("The branch tip is broken"), "{page}");
    assert!(page.contains("Cluster observed"));

    // A good commit clears the error and applies.
    let good = repo.commit(&[("docker-compose.yml", &compose(4))], "four");
    assert!(
        eventually(WAIT, || replicas(&dir, SERVICE) == Some(4)).await,
        "{:?}",
        watcher.status()
    );
    assert!(
        eventually(WAIT, || watcher.status().tip_error.is_none()
            && watcher.status().synced_revision.as_deref() == Some(&*good))
        .await
    );
    let status = watcher.status();
    assert_eq!(status.target.map(|t| t.kind), Some(TargetKind::Tip));
    assert_eq!(metric(&watcher.metrics(), "shoal_tip_broken"), 0.0);
    assert_eq!(
        metric(&watcher.metrics(), "shoal_last_reconcile_success"),
        1.0
    );
    watcher.control().stop();
    assert_eq!(watcher.wait().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_tip_at_start_heals_nothing_and_says_so() {
    let (repo, _first) = WorkRepo::with_cluster(2);
    let dir = repo.path();
    let broken = repo.commit(&[("docker-compose.yml", BROKEN)], "broken");
    let watcher = Watcher::start(options(WatchSource::Local(repo.path())))
        .await
        .expect("start");
    assert!(
        eventually(WAIT, || watcher.status().tip_error.is_some()).await,
        "{:?}",
        watcher.status()
    );
    let status = watcher.status();
    let error = status.tip_error.expect("tip error");
    assert_eq!(error.revision.as_deref(), Some(&*broken));
    assert!(
        error.message.contains("nothing is known to be good"),
        "{}",
        error.message
    );
    assert!(status.target.is_none());
    assert_eq!(sim(&dir).machines.len(), 0, "nothing applied");
    watcher.control().stop();
    assert_eq!(watcher.wait().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_changes_nothing_moves_the_revision_label() {
    let (repo, first) = WorkRepo::with_cluster(2);
    let dir = repo.path();
    let watcher = Watcher::start(options(WatchSource::Local(repo.path())))
        .await
        .expect("start");
    assert!(eventually(WAIT, || recorded_revision(&dir).as_deref() == Some(&first)).await);

    let readme = repo.commit(&[("README.md", "# wapp\n")], "docs only");
    assert!(
        eventually(WAIT, || recorded_revision(&dir).as_deref() == Some(&readme)).await,
        "the swarm label follows the no-op commit: {:?}",
        watcher.status()
    );
    assert!(
        eventually(WAIT, || watcher.status().revision.as_deref()
            == Some(&*readme)
            && watcher.status().synced_revision.as_deref() == Some(&*readme))
        .await,
        "{:?}",
        watcher.status()
    );
    watcher.control().stop();
    assert_eq!(watcher.wait().await, 0);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["status", "--json", "--repo"])
        .arg(&dir)
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run shoal status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(status["revision"], readme.as_str());
}
