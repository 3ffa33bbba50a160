//! Health on a real dind cluster (one manager, one worker), tried as a new user would, through
//! the `shoal` binary: a service whose image no node has, `--no-wait`, an update swarm rolls
//! back (and the forced update that makes it healthy once the files match it again), and the
//! watcher healing drift and a lost machine from engine events (with a resync
//! interval of ten minutes, so only events can explain the speed). Prints the figures.
//!
//! Needs Docker: fails, saying so, when no engine answers. One cluster for the
//! whole file, destroyed even when the test fails.

use crate::common;
use crate::watch_support;

use crate::dind_cluster::{shoal, text, watch_command, Cluster};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use watch_support::{get, wait_until, Spawned, WorkRepo};

const SERVICE: &str = "dataapp_dataservice";
const GHOST: &str = "dataapp_ghost";

impl Cluster {
    fn replicas(&self) -> String {
        self.docker(&[
            "service",
            "inspect",
            "-f",
            "{{.Spec.Mode.Replicated.Replicas}}",
            SERVICE,
        ])
        .trim()
        .to_string()
    }

    fn status(&self) -> Value {
        let out = shoal(&self.dir, &["status", "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    fn health(&self, service: &str) -> Value {
        let status = self.status();
        status["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == service)
            .unwrap_or_else(|| panic!("{service} not in {status:#}"))["health"]
            .clone()
    }
}

fn compose(ghost: Option<u32>, healthcheck: bool) -> String {
    let mut text =
        String::from("version: \"3.8\"\nservices:\n  dataservice:\n    image: dataservice:1\n");
    if healthcheck {
        text.push_str(
            "    healthcheck:\n      test: [\"CMD\", \"false\"]\n      interval: 1s\n      retries: 1\n",
        );
    }
    text.push_str(
        "    deploy:\n      replicas: 2\n      update_config:\n        failure_action: rollback\n        monitor: 5s\n",
    );
    if let Some(replicas) = ghost {
        text.push_str(&format!(
            "  ghost:\n    image: nosuch/ghost:1\n    deploy:\n      replicas: {replicas}\n"
        ));
    }
    text
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

#[test]
fn health_on_dind() {
    let _turn = crate::common::engine_turn("the dind health test");
    let image = Command::new("docker")
        .args(["image", "inspect", "dataservice:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !image {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/dataservice/build.sh");
        let out = Command::new("bash").arg(script).output().expect("build.sh");
        assert!(out.status.success(), "build.sh: {}", text(&out));
    }
    let name = format!("health{}", std::process::id() % 10_000);
    let repo = WorkRepo::new();
    let machines = format!(
        "cluster: {name}\ndriver: dind\ndriver_options:\n  preload_images: [dataservice:1]\nmachines:\n  vm-manager:\n    role: manager\n  vm-worker:\n    role: worker\n    count: 1\nstacks:\n  dataapp: docker-compose.yml\n"
    );
    repo.commit(
        &[
            ("machines.yml", &machines),
            ("docker-compose.yml", &compose(None, false)),
        ],
        "a healthy stack",
    );
    let dir = repo.path();
    let mut cluster = Cluster {
        dir: dir.clone(),
        docker_host: String::new(),
    };
    let out = shoal(&dir, &["apply", "--yes"]);
    assert!(out.status.success(), "first apply: {}", text(&out));
    assert!(
        text(&out).contains("Healthy: dataapp_dataservice"),
        "{}",
        text(&out)
    );
    let env = String::from_utf8_lossy(&shoal(&dir, &["env", "vm-manager"]).stdout).into_owned();
    cluster.docker_host = common::env_exports(&env)
        .remove("DOCKER_HOST")
        .expect("DOCKER_HOST set");

    // A service whose image no node has: exit 1 after the timeout, naming it and the error.
    repo.write("docker-compose.yml", &compose(Some(1), false));
    let started = Instant::now();
    let out = shoal(&dir, &["apply", "--yes", "--timeout", "8s"]);
    let waited = started.elapsed();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(waited >= Duration::from_secs(8), "{waited:?}: {said}");
    assert!(
        said.contains(&format!("Unhealthy: {GHOST}: degraded")) && said.contains("No such image"),
        "{said}"
    );
    let health = cluster.health(GHOST);
    assert_eq!(health["state"], "degraded", "{health}");
    assert!(
        health["reason"]
            .as_str()
            .unwrap_or("")
            .contains("No such image: nosuch/ghost:1"),
        "{health}"
    );

    // With --no-wait, apply ends with the steps and exits 0; status still tells.
    repo.write("docker-compose.yml", &compose(Some(2), false));
    let out = shoal(&dir, &["apply", "--yes", "--no-wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(cluster.health(GHOST)["state"], "degraded");
    let table = String::from_utf8_lossy(&shoal(&dir, &["status"]).stdout).into_owned();
    assert!(
        table.contains("degraded") && table.contains("No such image"),
        "{table}"
    );

    // An update whose new tasks fail their health check, rolled back by swarm: a failure.
    repo.write("docker-compose.yml", &compose(None, true));
    let out = shoal(&dir, &["apply", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let health = &report["health"][SERVICE];
    assert_eq!(health["state"], "degraded", "{report:#}");
    assert!(
        health["reason"]
            .as_str()
            .unwrap_or("")
            .contains("rolled back"),
        "{report:#}"
    );

    // The files match the rolled-back spec again (issue 18): the plan shows a forced update
    // with its reason, and apply makes the service healthy (it stayed degraded before).
    repo.write("docker-compose.yml", &compose(None, false));
    let out = shoal(&dir, &["plan", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(
        common::steps_of(&plan),
        [format!("rebalance_service {SERVICE}")],
        "{plan:#}"
    );
    assert!(
        plan["steps"][0]["reason"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("swarm rolled its last update back"),
        "{plan:#}"
    );
    let out = shoal(&dir, &["apply", "--yes", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(report["health"][SERVICE]["state"], "healthy", "{report:#}");
    let out = shoal(&dir, &["plan", "--json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert!(common::steps_of(&plan).is_empty(), "{plan:#}");

    // The watcher: drift and a lost machine, woken by events (the resync is 10 minutes away).
    repo.commit(
        &[("docker-compose.yml", &compose(None, false))],
        "back to healthy",
    );
    let command = watch_command(&dir);
    let mut watcher = Spawned::spawn(command);
    let addr = watcher.listening(Duration::from_secs(30));
    let synced = |addr| {
        let status: Value = serde_json::from_str(&get(addr, "/status").body).unwrap_or_default();
        status["last_reconcile"]["ok"] == true && status["synced_revision"].is_string()
    };
    assert!(
        wait_until(Duration::from_secs(90), || synced(addr)),
        "the watcher did not sync: {:?}",
        watcher.seen
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut healed = Vec::new();
    for _ in 0..10 {
        // The watcher may be writing the service at the same moment ("update out of sequence").
        let scaled = wait_until(Duration::from_secs(10), || {
            Command::new("docker")
                .args(["service", "scale", "--detach", &format!("{SERVICE}=1")])
                .env("DOCKER_HOST", &cluster.docker_host)
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(scaled, "docker service scale kept failing");
        let start = Instant::now();
        assert!(
            wait_until(Duration::from_secs(10), || cluster.replicas() == "2"),
            "a hand scale was not reverted"
        );
        healed.push(start.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_secs(1));
    }
    healed.sort_by(f64::total_cmp);
    let p50 = percentile(&healed, 0.5);
    eprintln!(
        "figure: drift -> healed: p50 {p50:.2}s, max {:.2}s over {} hand scales",
        healed[healed.len() - 1],
        healed.len()
    );
    assert!(p50 < 5.0, "{healed:?}");

    let old = cluster.docker(&["node", "ls", "-q", "--filter", "name=vm-worker1"]);
    let start = Instant::now();
    let out = Command::new("docker")
        .args(["rm", "-f", &format!("{name}-vm-worker1")])
        .env_remove("DOCKER_HOST")
        .output()
        .expect("docker rm");
    assert!(out.status.success(), "{}", text(&out));
    let replaced = wait_until(Duration::from_secs(60), || {
        cluster
            .docker(&[
                "node",
                "ls",
                "--format",
                "{{.ID}} {{.Hostname}} {{.Status}}",
            ])
            .lines()
            .any(|l| {
                l.contains("vm-worker1 Ready")
                    && !old.trim().is_empty()
                    && !l.starts_with(old.trim())
            })
    });
    let took = start.elapsed().as_secs_f64();
    eprintln!("figure: node lost -> replaced: {took:.2}s");
    assert!(replaced && took < 15.0, "{took:.2}s: {:?}", watcher.seen);

    // A commit whose update swarm rolls back counts as failed in the watcher.
    repo.commit(
        &[("docker-compose.yml", &compose(None, true))],
        "a failing health check",
    );
    let failed = wait_until(Duration::from_secs(120), || {
        let status: Value = serde_json::from_str(&get(addr, "/status").body).unwrap_or_default();
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rolled back"))
    });
    assert!(
        failed,
        "the watcher did not fail the commit: {:?}",
        watcher.seen
    );
    let metrics = get(addr, "/metrics").body;
    assert!(
        metrics.contains(&format!(
            "shoal_service_health{{service=\"{SERVICE}\",state=\"degraded\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("shoal_events_total{type=\"service\"}"),
        "{metrics}"
    );
    watcher.terminate(Duration::from_secs(60));
    drop(cluster);
}
