//! `shoal watch` following a local repository on the sim driver, in process: commits apply,
//! uncommitted edits do not, a broken commit leaves the cluster alone, drift is healed, a held
//! lock is waited for, and the HTTP endpoints answer.

use crate::watch_support;

use shoal::drivers::lock::LockHolder;
use shoal::drivers::sim::SimDriver;
use shoal::drivers::Driver;
use shoal::model::{MachineSpec, Role};
use shoal::watch::{WatchSource, Watcher};
use std::time::Duration;
use watch_support::*;

const WAIT: Duration = Duration::from_secs(20);

async fn start(repo: &WorkRepo) -> Watcher {
    Watcher::start(options(WatchSource::Local(repo.path())))
        .await
        .expect("start the watcher")
}

fn reconciles(watcher: &Watcher) -> u64 {
    watcher.status().reconciles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_apply_and_uncommitted_edits_do_not() {
    let (repo, first) = WorkRepo::with_cluster(2);
    let dir = repo.path();
    let watcher = start(&repo).await;
    let addr = watcher.local_addr().expect("listening");

    assert!(
        eventually(WAIT, || recorded_revision(&dir).as_deref() == Some(&first)).await,
        "the first commit converges: {:?}",
        watcher.status()
    );
    assert_eq!(replicas(&dir, SERVICE), Some(2));
    let state = sim(&dir);
    assert_eq!(state.machines.len(), 2);
    assert!(
        eventually(WAIT, || watcher.status().synced_revision.as_deref()
            == Some(&*first))
        .await,
        "the watcher knows it is in sync"
    );

    // An edit that is not committed is never applied, whatever wakes the loop.
    repo.write("docker-compose.yml", &compose(5));
    let before = reconciles(&watcher);
    watcher.control().trigger();
    assert!(eventually(WAIT, || reconciles(&watcher) > before).await);
    assert_eq!(replicas(&dir, SERVICE), Some(2), "uncommitted edit applied");
    assert_eq!(
        watcher.status().last_plan.map(|p| p.steps.len()),
        Some(0),
        "the plan of the tip commit is empty"
    );

    // Committing it is what applies it: notify sees the branch move.
    let second = repo.commit(&[("docker-compose.yml", &compose(3))], "three replicas");
    assert!(
        eventually(WAIT, || replicas(&dir, SERVICE) == Some(3)).await,
        "the commit changing replicas is applied: {:?}",
        watcher.status()
    );
    assert!(eventually(WAIT, || recorded_revision(&dir).as_deref() == Some(&second)).await);
    assert!(
        eventually(WAIT, || watcher.status().synced_revision.as_deref()
            == Some(&*second))
        .await
    );

    let health = get(addr, "/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(get(addr, "/readyz").status, 200);
    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metric(&metrics.body, "shoal_reconciles_total") >= 3.0);
    assert_eq!(metric(&metrics.body, "shoal_reconcile_errors_total"), 0.0);
    assert_eq!(metric(&metrics.body, "shoal_last_reconcile_success"), 1.0);
    assert_eq!(
        metric(
            &metrics.body,
            "shoal_steps_applied_total{action=\"scale_service\"}"
        ),
        1.0
    );
    assert!(metric(&metrics.body, "shoal_triggers_total{source=\"git\"}") >= 1.0);
    assert_eq!(
        metric(
            &metrics.body,
            &format!("shoal_applied_revision_info{{revision=\"{second}\"}}")
        ),
        1.0
    );
    assert!(metrics
        .body
        .contains("shoal_reconcile_duration_seconds_bucket"));

    let status = get(addr, "/status");
    assert_eq!(status.status, 200);
    let json: serde_json::Value = serde_json::from_str(&status.body).expect("status JSON");
    assert_eq!(json["revision"], second.as_str());
    assert_eq!(json["ready"], true);
    assert_eq!(json["source"]["branch"], "main");
    assert_eq!(json["cluster"]["cluster"], CLUSTER);
    assert_eq!(json["cluster"]["services"][0]["running"], 3);
    assert_eq!(json["last_plan"]["steps"][0], "scale_service web_api");

    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("web_api"));
    assert!(page.body.contains(&second[..12]));

    watcher.control().stop();
    assert_eq!(watcher.wait().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_commit_is_not_applied_and_the_next_good_one_is() {
    let (repo, first) = WorkRepo::with_cluster(2);
    let dir = repo.path();
    let watcher = start(&repo).await;
    let addr = watcher.local_addr().expect("listening");
    assert!(eventually(WAIT, || recorded_revision(&dir).as_deref() == Some(&first)).await);
    let writes = sim_writes(&dir);

    // Bad YAML: nothing is written, the watcher lives on, the error shows.
    let broken = repo.commit(
        &[("docker-compose.yml", "services:\n  api: [unclosed\n")],
        "broken",
    );
    assert!(
        eventually(WAIT, || watcher.status().errors >= 1).await,
        "the broken commit is reported"
    );
    let status = watcher.status();
    let error = status.last_error.expect("last error");
    assert_eq!(error.revision.as_deref(), Some(&*broken));
    assert!(error.message.contains("not valid"), "{}", error.message);
    assert!(
        error.message.contains("docker-compose.yml"),
        "{}",
        error.message
    );
    assert_eq!(sim_writes(&dir), writes, "a broken commit caused a write");
    assert_eq!(replicas(&dir, SERVICE), Some(2));
    assert_eq!(recorded_revision(&dir).as_deref(), Some(&*first));
    assert_eq!(get(addr, "/healthz").status, 200, "the watcher stays alive");
    let metrics = get(addr, "/metrics").body;
    assert!(metric(&metrics, "shoal_reconcile_errors_total") >= 1.0);
    assert_eq!(metric(&metrics, "shoal_last_reconcile_success"), 0.0);
    let page = get(addr, "/").body;
    assert!(page.contains("Last error"));

    // A commit that would remove every machine is refused by the destroy-all guard.
    let wipe = repo.commit(
        &[
            (
                "machines.yml",
                "cluster: wapp\ndriver: sim\nmachines: {}\nstacks:\n  web: docker-compose.yml\n",
            ),
            ("docker-compose.yml", &compose(2)),
        ],
        "wipe",
    );
    assert!(
        eventually(WAIT, || watcher
            .status()
            .last_error
            .is_some_and(|e| e.revision.as_deref() == Some(&*wipe)))
        .await
    );
    let message = watcher.status().last_error.expect("error").message;
    assert!(message.contains("refusing"), "{message}");
    assert_eq!(sim_writes(&dir), writes, "the guard let a write through");
    assert_eq!(sim(&dir).machines.len(), 2);

    // The next good commit applies.
    let good = repo.commit(
        &[
            ("machines.yml", MACHINES),
            ("docker-compose.yml", &compose(4)),
        ],
        "four replicas",
    );
    assert!(
        eventually(WAIT, || recorded_revision(&dir).as_deref() == Some(&good)).await,
        "{:?}",
        watcher.status()
    );
    assert_eq!(replicas(&dir, SERVICE), Some(4));
    assert!(
        eventually(WAIT, || watcher.status().synced_revision.as_deref()
            == Some(&*good))
        .await
    );
    let metrics = get(addr, "/metrics").body;
    assert_eq!(metric(&metrics, "shoal_last_reconcile_success"), 1.0);

    watcher.control().stop();
    assert_eq!(watcher.wait().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_healed_on_the_resync_timer() {
    let (repo, first) = WorkRepo::with_cluster(3);
    let dir = repo.path();
    let mut options = options(WatchSource::Local(repo.path()));
    options.interval = Duration::from_secs(1);
    let watcher = Watcher::start(options).await.expect("start");
    assert!(
        eventually(WAIT, || watcher.status().synced_revision.as_deref()
            == Some(&*first))
        .await
    );

    // Someone scales the service by hand.
    SimDriver::open(&dir, CLUSTER)
        .expect("sim")
        .set_replicas(SERVICE, 1)
        .expect("scale by hand");
    assert_eq!(replicas(&dir, SERVICE), Some(1));
    assert!(
        eventually(WAIT, || replicas(&dir, SERVICE) == Some(3)).await,
        "drift is healed"
    );
    assert!(
        eventually(WAIT, || metric(
            &watcher.metrics(),
            "shoal_drift_steps_total"
        ) >= 1.0)
        .await
    );
    assert!(metric(&watcher.metrics(), "shoal_triggers_total{source=\"timer\"}") >= 1.0);
    watcher.control().stop();
    assert_eq!(watcher.wait().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_finds_the_lock_held_backs_off_and_retries() {
    let (repo, first) = WorkRepo::with_cluster(2);
    let dir = repo.path();
    let other = SimDriver::open(&dir, CLUSTER).expect("sim");
    let now = shoal::clock::unix_now();
    let another = LockHolder::this_process("another-watcher");
    other.lock(&another, now, 600).await.expect("take the lock");

    let watcher = start(&repo).await;
    assert!(
        eventually(WAIT, || watcher.status().errors >= 2).await,
        "it retries while the lock is held"
    );
    let message = watcher.status().last_error.expect("error").message;
    assert!(message.contains("locked by another-watcher"), "{message}");
    assert!(
        message.contains(&format!("shoal unlock {}", another.id)),
        "{message}"
    );
    assert_eq!(
        sim(&dir).machines.len(),
        0,
        "nothing applied under another's lock"
    );

    other.unlock(&another).await.expect("unlock");
    assert!(
        eventually(WAIT, || recorded_revision(&dir).as_deref() == Some(&first)).await,
        "it applies once the lock is free"
    );
    assert!(
        eventually(WAIT, || sim(&dir).lock.is_none()).await,
        "the watcher released the lock"
    );
    watcher.control().stop();
    assert_eq!(watcher.wait().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_restarted_after_a_crash_mid_apply_converges() {
    let (repo, first) = WorkRepo::with_cluster(2);
    let dir = repo.path();
    // What a watcher killed in the middle of its first apply leaves: some machines made, no
    // swarm yet, and its lock, which has expired since.
    let crashed = SimDriver::open(&dir, CLUSTER).expect("sim");
    for (name, role) in [("mgr", Role::Manager), ("wrk1", Role::Worker)] {
        crashed
            .create(&MachineSpec {
                name: name.to_string(),
                role,
                labels: Default::default(),
                host: None,
            })
            .await
            .expect("create machine");
    }
    let long_ago = shoal::clock::unix_now() - 3600;
    let mut gone = LockHolder::this_process("shoal watch");
    gone.host = "gone".into();
    gone.pid = 4242;
    crashed
        .lock(&gone, long_ago, 600)
        .await
        .expect("the crashed watcher's lock");

    let watcher = start(&repo).await;
    assert!(
        eventually(WAIT, || watcher.status().synced_revision.as_deref()
            == Some(&*first))
        .await,
        "{:?}",
        watcher.status()
    );
    assert_eq!(
        watcher.status().errors,
        0,
        "the steps already done were no obstacle"
    );
    assert_eq!(sim(&dir).machines.len(), 2);
    assert_eq!(replicas(&dir, SERVICE), Some(2));
    let plan = watcher.status().last_plan.expect("plan");
    assert!(
        !plan.steps.iter().any(|s| s.starts_with("create_machine")),
        "the machines made before the crash are kept: {:?}",
        plan.steps
    );
    watcher.control().stop();
    assert_eq!(watcher.wait().await, 0);
}
