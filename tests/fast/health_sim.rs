//! Health on the sim, through the `shoal` binary: apply reports each service's health and
//! waits for nothing when all is healthy; an image no node has (the sim's `missing/` images)
//! fails the apply at once with the reason; `--no-wait` does not; status shows it.

use crate::common;

use common::Repo;
use serde_json::Value;
use std::time::{Duration, Instant};

const SERVICE: &str = "dataapp_dataservice";

fn service<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {status:#}"))
}

#[test]
fn status_shows_a_service_not_created_yet_as_missing() {
    let repo = Repo::copy_of("examples/dataapp");
    let status = repo.json(&["status", "--json"]);
    assert_eq!(service(&status, SERVICE)["health"]["state"], "missing");
}

#[test]
fn apply_reports_health_and_does_not_wait_on_a_healthy_sim() {
    let repo = Repo::copy_of("examples/dataapp");
    let started = Instant::now();
    let report = repo.apply();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(report["health"][SERVICE]["state"], "healthy", "{report:#}");
    assert_eq!(report["waited_for"], serde_json::json!([SERVICE]));
    let status = repo.json(&["status", "--json"]);
    assert_eq!(
        service(&status, SERVICE)["health"],
        serde_json::json!({"state": "healthy"})
    );
}

#[test]
fn an_image_no_node_has_fails_the_apply_with_the_reason() {
    let repo = Repo::copy_of("examples/dataapp");
    repo.apply();
    repo.edit(
        "docker-compose.yml",
        "image: dataservice:1",
        "image: missing/dataservice:2",
    );
    let started = Instant::now();
    let out = repo.shoal(&["apply", "--yes"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the sim settles at once"
    );
    assert!(
        said.contains("Unhealthy: dataapp_dataservice: degraded")
            && said.contains("No such image: missing/dataservice:2"),
        "{said}"
    );
    let status = repo.json(&["status", "--json"]);
    let health = &service(&status, SERVICE)["health"];
    assert_eq!(health["state"], "degraded");
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("rejected: No such image"),
        "{health}"
    );
    assert!(!service(&status, SERVICE)["errors"]
        .as_array()
        .expect("errors")
        .is_empty());
    let table = repo.ok(&["status"]);
    assert!(table.contains("degraded"), "{table}");

    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 2");
    let out = repo.shoal(&["apply", "--yes", "--no-wait", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["health"][SERVICE]["state"], "degraded", "{report:#}");
}
