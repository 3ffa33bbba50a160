//! `policy.on_failure: rollback` on the sim (issue 22): a commit that leaves the service it
//! changed degraded is rolled back to the last healthy revision's stacks; the webhooks are told
//! `failed` then `rolled_back` with the task error; `/status` and `shoal status` show "held at
//! A, B failed: reason"; the failed commit is not applied again (by this watcher, nor by a
//! restarted one) until the branch moves, and the next good commit deploys. Under the default
//! `hold`, nothing is rolled back. `apply --rollback-on-failure` does the same once.

use crate::watch_support;

use serde_json::Value;
use shoal::watch::{PassResult, TargetKind, WatchSource, Watcher};
use std::path::Path;
use std::time::Duration;
use watch_support::receiver::{Answer, Receiver};
use watch_support::*;

const WAIT: Duration = Duration::from_secs(30);

/// machines.yml on the sim with `policy.on_failure: <policy>`, notifying `url`.
fn machines(policy: &str, url: &str) -> String {
    format!("{MACHINES}policy:\n  on_failure: {policy}\nnotify:\n  - url: {url}\n")
}

/// The stack running `image` with `replicas` replicas.
fn stack(image: &str, replicas: u64) -> String {
    compose(replicas).replace("nginx:1.27", image)
}

/// The image the sim runs for the service.
fn image(dir: &Path) -> Option<String> {
    sim(dir)
        .swarms
        .values()
        .flat_map(|s| s.services.values())
        .find(|s| s.spec.name == SERVICE)
        .map(|s| s.spec.task_template.container_spec.image.clone())
}

fn label(dir: &Path, name: &str) -> Option<String> {
    sim(dir)
        .swarms
        .values()
        .find_map(|s| s.labels.get(name).cloned())
}

/// Runs `shoal ARGS --repo DIR` (no standard input, the log at info for the watcher's lines).
fn shoal_in(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .arg("--repo")
        .arg(dir)
        .env("SHOAL_LOG", "shoal=info")
        .env_remove("DOCKER_HOST")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run shoal")
}

async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_commit_is_rolled_back_and_held_until_the_branch_moves() {
    let receiver = Receiver::start(&[Answer::Status(200)]);
    let repo = WorkRepo::new();
    let dir = repo.path();
    let first = repo.commit(
        &[
            ("machines.yml", &machines("rollback", &receiver.url())),
            ("docker-compose.yml", &stack("nginx:1.27", 2)),
        ],
        "first",
    );
    let watcher = Watcher::start(options(WatchSource::Local(dir.clone())))
        .await
        .expect("start");
    let addr = watcher.local_addr().expect("listening");
    assert!(
        eventually(WAIT, || watcher.status().synced_revision.as_deref()
            == Some(&*first))
        .await
    );
    // A healthy commit on top records the first one as healthy, with no write of its own.
    let writes = sim_writes(&dir);
    let second = repo.commit(&[("docker-compose.yml", &stack("nginx:1.27", 3))], "three");
    assert!(
        eventually(WAIT, || watcher.status().synced_revision.as_deref()
            == Some(&*second))
        .await
    );
    assert_eq!(
        label(&dir, "io.shoal.revision.healthy").as_deref(),
        Some(&*first)
    );
    assert_eq!(
        sim_writes(&dir) - writes,
        2,
        "the scale and one label write (revision and healthy together)"
    );

    let bad = repo.commit(
        &[("docker-compose.yml", &stack("missing/nginx:2", 3))],
        "a broken image",
    );
    assert!(
        eventually(WAIT, || receiver.events().len() >= 4).await,
        "{:?} {:#?}",
        receiver.events(),
        watcher.status()
    );
    assert_eq!(
        receiver.events(),
        ["applied", "applied", "failed", "rolled_back"]
    );
    let rolled_back = receiver.got()[3].json();
    assert_eq!(rolled_back["revision"], bad.as_str());
    let message = rolled_back["message"].as_str().unwrap();
    assert!(
        message.contains("No such image") && message.contains(&second[..12]),
        "{rolled_back:#}"
    );
    assert!(
        rolled_back["failing"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("No such image"),
        "{rolled_back:#}"
    );
    // The second commit's stack runs again: it was the last healthy revision.
    assert_eq!(image(&dir).as_deref(), Some("nginx:1.27"));
    assert_eq!(replicas(&dir, SERVICE), Some(3));
    assert_eq!(recorded_revision(&dir).as_deref(), Some(&*second));
    assert_eq!(
        label(&dir, "io.shoal.failed.revision").as_deref(),
        Some(&*bad)
    );

    // The next passes hold: nothing is written, the status says why.
    assert!(
        eventually(WAIT, || watcher
            .status()
            .last_reconcile
            .is_some_and(|p| p.ok))
        .await
    );
    let writes = sim_writes(&dir);
    let passes = watcher.status().reconciles;
    watcher.control().trigger();
    assert!(eventually(WAIT, || watcher.status().reconciles > passes).await);
    assert_eq!(
        sim_writes(&dir),
        writes,
        "a held commit is not applied again"
    );
    let status: Value = serde_json::from_str(&get(addr, "/status").body).unwrap();
    let held = &status["cluster"]["held"];
    assert_eq!(held["at"], second.as_str(), "{status:#}");
    assert_eq!(held["failed"], bad.as_str(), "{status:#}");
    assert!(held["reason"].as_str().unwrap().contains("No such image"));
    assert_eq!(status["target"]["kind"], "held", "{status:#}");
    assert_eq!(status["last_error"]["revision"], bad.as_str(), "{status:#}");
    let results: Vec<&str> = (status["history"].as_array().unwrap().iter())
        .map(|h| h["result"].as_str().unwrap())
        .collect();
    assert!(results.contains(&"rolled_back"), "{results:?}");
    let page = get(addr, "/").body;
    assert!(
        page.contains(&format!("held at {}, {} failed", &second[..12], &bad[..12])),
        "{page}"
    );
    assert!(page.contains("Revision history"), "{page}");
    let shown = String::from_utf8(shoal_in(&dir, &["status"]).stdout).unwrap();
    assert!(shown.contains("Cluster held at"), "{shown}");

    // The branch moves: the next good commit deploys normally and ends the hold.
    let good = repo.commit(&[("docker-compose.yml", &stack("nginx:1.28", 2))], "good");
    assert!(
        eventually(WAIT, || watcher.status().synced_revision.as_deref()
            == Some(&*good))
        .await,
        "{:#?}",
        watcher.status()
    );
    assert_eq!(image(&dir).as_deref(), Some("nginx:1.28"));
    assert_eq!(label(&dir, "io.shoal.failed.revision"), None);
    assert_eq!(watcher.status().target.unwrap().kind, TargetKind::Tip);
    assert_eq!(watcher.status().history[0].result, PassResult::Applied);
    watcher.control().stop();
    assert_eq!(watcher.wait().await, 0);
}

#[test]
fn a_restarted_watcher_holds_and_hold_rolls_nothing_back() {
    let receiver = Receiver::start(&[Answer::Status(200)]);
    let repo = WorkRepo::new();
    let dir = repo.path();
    let once = |dir: &Path| {
        let out = shoal_in(dir, &["watch", "--once"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    repo.commit(
        &[
            ("machines.yml", &machines("hold", &receiver.url())),
            ("docker-compose.yml", &stack("nginx:1.27", 2)),
        ],
        "first",
    );
    assert_eq!(once(&dir).0, Some(0));
    repo.commit(
        &[("docker-compose.yml", &stack("missing/nginx:2", 2))],
        "bad",
    );
    let (code, log) = once(&dir);
    assert_eq!(code, Some(1), "{log}");
    assert_eq!(
        image(&dir).as_deref(),
        Some("missing/nginx:2"),
        "hold keeps it"
    );
    assert_eq!(receiver.events(), ["applied", "degraded"]);

    // Each `watch --once` is a new watcher: what it knows comes from the swarm's labels.
    repo.commit(
        &[
            ("machines.yml", &machines("rollback", &receiver.url())),
            ("docker-compose.yml", &stack("nginx:1.27", 2)),
        ],
        "rollback policy, good image",
    );
    assert_eq!(once(&dir).0, Some(0));
    let healthy = recorded_revision(&dir).unwrap();
    let bad = repo.commit(
        &[("docker-compose.yml", &stack("missing/nginx:3", 2))],
        "bad again",
    );
    let (code, log) = once(&dir);
    assert_eq!(code, Some(1), "the commit failed: {log}");
    assert!(log.contains("rolling back"), "{log}");
    assert_eq!(image(&dir).as_deref(), Some("nginx:1.27"));
    assert_eq!(recorded_revision(&dir).as_deref(), Some(&*healthy));
    let writes = sim_writes(&dir);
    let (code, log) = once(&dir);
    assert_eq!(code, Some(0), "held: {log}");
    assert_eq!(sim_writes(&dir), writes, "the failed commit is not retried");
    assert_eq!(
        label(&dir, "io.shoal.failed.revision").as_deref(),
        Some(&*bad)
    );
}
