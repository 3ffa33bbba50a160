//! The GitOps loop of issue 22 on a real dind cluster (one manager), through the `shoal`
//! binary and `shoal watch`:
//! - under `policy.on_failure: rollback`, a commit whose image crashes (built locally from the
//!   demo image, no registry) is rolled back: the previous image runs again within the health
//!   timeout, the webhook receiver gets `failed` then `rolled_back` with the task error,
//!   `/status` shows the held revision, and the next good commit deploys normally;
//! - paused, a hand scale (`docker service scale`, the API) is shown as drift and pending plan
//!   and not healed; after `shoal resume` it is, and the webhooks were told `paused` then
//!   `drift_healed`;
//! - `plan --format markdown` of a change of replicas and an environment variable.
//!
//! Needs Docker: fails, saying so, when no engine answers. The cluster is destroyed and the
//! watcher killed even when the test fails. Prints the figures.

use crate::common;
use crate::watch_support;

use serde_json::Value;
use std::net::SocketAddr;

use crate::dind_cluster::{shoal, text, watch_command, Cluster};
use std::process::Command;
use std::time::{Duration, Instant};
use watch_support::receiver::{Answer, Receiver};
use watch_support::{get, wait_until, Spawned, WorkRepo};

const SERVICE: &str = "app_web";
/// The image whose tasks crash: the demo image with an entrypoint that does not exist.
const CRASHING: &str = "shoal-test-crash:1";

impl Cluster {
    fn inspect(&self, format: &str) -> String {
        self.try_docker(&["service", "inspect", "-f", format, SERVICE])
            .unwrap_or_default()
    }

    fn image(&self) -> String {
        self.inspect("{{.Spec.TaskTemplate.ContainerSpec.Image}}")
    }

    fn web_replicas(&self) -> String {
        self.inspect("{{.Spec.Mode.Replicated.Replicas}}")
    }

    /// Tasks running the image `image`.
    fn running(&self, image: &str) -> usize {
        let tasks = self
            .try_docker(&[
                "service",
                "ps",
                SERVICE,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Image}} {{.CurrentState}}",
            ])
            .unwrap_or_default();
        tasks
            .lines()
            .filter(|l| l.starts_with(image) && l.contains("Running"))
            .count()
    }
}

fn machines(name: &str, url: &str) -> String {
    format!(
        "cluster: {name}\ndriver: dind\ndriver_options:\n  preload_images: [dataservice:1, {CRASHING}]\nmachines:\n  vm-manager:\n    role: manager\nstacks:\n  app: docker-compose.yml\npolicy:\n  on_failure: rollback\nnotify:\n  - url: {url}\n"
    )
}

fn compose(image: &str, replicas: u64, mode: &str) -> String {
    format!(
        "version: \"3.8\"\nservices:\n  web:\n    image: {image}\n    environment:\n      MODE: {mode}\n    deploy:\n      replicas: {replicas}\n"
    )
}

fn status(addr: SocketAddr) -> Value {
    serde_json::from_str(&get(addr, "/status").body).unwrap_or_default()
}

fn synced_to(addr: SocketAddr, commit: &str) -> bool {
    let status = status(addr);
    status["synced_revision"] == commit && status["last_reconcile"]["ok"] == true
}

/// Sends the watcher SIGHUP: it plans at once.
fn wake(watcher: &Spawned) {
    let sent = Command::new("kill")
        .args(["-HUP", &watcher.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
}

/// Removes the crashing image this test built when dropped, however the test ends.
struct CrashingImage;

impl Drop for CrashingImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", CRASHING]).output();
    }
}

#[test]
fn gitops_loop_on_dind() {
    let _turn = common::engine_turn("the dind GitOps test");
    common::build_demo_image();
    common::host_docker(
        None,
        &["build", "-q", "-t", CRASHING, "-"],
        "FROM dataservice:1\nENTRYPOINT [\"/no-such-program\"]\nLABEL io.shoal.test=1\n",
    );
    // Declared first, dropped last: the image goes once the cluster is destroyed, failed or not.
    let _crashing = CrashingImage;
    let receiver = Receiver::start(&[Answer::Status(200)]);
    let name = format!("gitops{}", std::process::id() % 10_000);
    let repo = WorkRepo::new();
    let dir = repo.path();
    let first = repo.commit(
        &[
            ("machines.yml", &machines(&name, &receiver.url())),
            ("docker-compose.yml", &compose("dataservice:1", 2, "one")),
        ],
        "first",
    );
    let mut cluster = Cluster {
        dir: dir.clone(),
        docker_host: String::new(),
    };
    let command = watch_command(&dir);
    // Dropped before the cluster (declared after it): the watcher stops before the destroy.
    let mut watcher = Spawned::spawn(command);
    let addr = watcher.listening(Duration::from_secs(30));
    assert!(
        wait_until(Duration::from_secs(300), || synced_to(addr, &first)),
        "the watcher did not apply the first commit: {:?}",
        watcher.seen
    );
    let env = String::from_utf8_lossy(&shoal(&dir, &["env", "vm-manager"]).stdout).into_owned();
    cluster.docker_host = common::env_exports(&env)
        .remove("DOCKER_HOST")
        .expect("DOCKER_HOST set");
    let second = repo.commit(
        &[("docker-compose.yml", &compose("dataservice:1", 2, "two"))],
        "mode two",
    );
    assert!(
        wait_until(Duration::from_secs(120), || synced_to(addr, &second)),
        "{:?}",
        watcher.seen
    );

    // A crashing image: rolled back to the second commit's stack.
    let started = Instant::now();
    let crashing = repo.commit(
        &[("docker-compose.yml", &compose(CRASHING, 2, "two"))],
        "an image that crashes",
    );
    let told = wait_until(Duration::from_secs(300), || {
        receiver.events().contains(&"rolled_back".to_string())
    });
    assert!(told, "{:?} {:?}", receiver.events(), watcher.seen);
    let back = wait_until(Duration::from_secs(60), || {
        cluster.image().starts_with("dataservice:1") && cluster.running("dataservice:1") == 2
    });
    eprintln!(
        "figure: crashing commit -> previous image running again: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(back, "{} {:?}", cluster.image(), watcher.seen);
    assert!(
        cluster
            .inspect("{{json .Spec.TaskTemplate.ContainerSpec.Env}}")
            .contains("MODE=two"),
        "the second commit's environment"
    );
    let events = receiver.events();
    let at = events
        .iter()
        .position(|e| e == "failed")
        .expect("failed told");
    assert_eq!(&events[at..], ["failed", "rolled_back"], "{events:?}");
    let rolled_back = receiver.got()[at + 1].json();
    assert_eq!(
        rolled_back["revision"],
        crashing.as_str(),
        "{rolled_back:#}"
    );
    let reason = rolled_back["failing"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("no-such-program"),
        "the task error: {rolled_back:#}"
    );
    let shown = status(addr);
    assert_eq!(shown["cluster"]["held"]["at"], second.as_str(), "{shown:#}");
    assert_eq!(
        shown["cluster"]["held"]["failed"],
        crashing.as_str(),
        "{shown:#}"
    );
    assert_eq!(shown["target"]["kind"], "held", "{shown:#}");
    assert!(
        get(addr, "/").body.contains(&format!(
            "held at {}, {} failed",
            &second[..12],
            &crashing[..12]
        )),
        "the page shows the hold"
    );

    // The next good commit deploys normally.
    let good = repo.commit(
        &[("docker-compose.yml", &compose("dataservice:1", 3, "three"))],
        "three replicas",
    );
    assert!(
        wait_until(Duration::from_secs(120), || synced_to(addr, &good)),
        "{:?}",
        watcher.seen
    );
    assert_eq!(cluster.web_replicas(), "3");
    assert!(status(addr)["cluster"]["held"].is_null());

    // Paused: a hand scale is drift, shown and not healed; resumed, it is.
    let out = shoal(&dir, &["pause", "--reason", "gitops test"]);
    assert!(out.status.success(), "{}", text(&out));
    let scaled = wait_until(Duration::from_secs(20), || {
        cluster
            .try_docker(&["service", "scale", "--detach", &format!("{SERVICE}=1")])
            .is_some()
    });
    assert!(scaled, "docker service scale kept failing");
    let pending = wait_until(Duration::from_secs(60), || {
        status(addr)["pending_plan"]["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == &format!("scale_service {SERVICE}")))
    });
    assert!(pending, "{:#}", status(addr));
    assert!(wait_until(Duration::from_secs(30), || receiver
        .events()
        .contains(&"paused".to_string())));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(cluster.web_replicas(), "1", "paused: not healed");
    let out = shoal(&dir, &["resume"]);
    assert!(out.status.success(), "{}", text(&out));
    wake(&watcher);
    assert!(
        wait_until(Duration::from_secs(60), || cluster.web_replicas() == "3"),
        "resumed: healed {:?}",
        watcher.seen
    );
    assert!(wait_until(Duration::from_secs(30), || receiver
        .events()
        .contains(&"drift_healed".to_string())));
    let events = receiver.events();
    let paused = events.iter().rposition(|e| e == "paused").unwrap();
    let healed = events.iter().rposition(|e| e == "drift_healed").unwrap();
    assert!(paused < healed, "{events:?}");

    // A branch changing replicas and an environment variable, as a review comment.
    repo.write("docker-compose.yml", &compose("dataservice:1", 4, "four"));
    let out = shoal(&dir, &["plan", "--format", "markdown"]);
    assert!(out.status.success(), "{}", text(&out));
    let markdown = String::from_utf8_lossy(&out.stdout);
    assert!(markdown.contains("update_service"), "{markdown}");
    assert!(markdown.contains("<details>"), "{markdown}");
    assert!(markdown.contains("MODE"), "{markdown}");

    watcher.terminate(Duration::from_secs(60));
    drop(watcher);
    drop(cluster);
}
