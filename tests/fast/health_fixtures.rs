//! Health computed from task lists captured from a real engine (Docker 20.10, a dind cluster of
//! one manager and one worker): `fixtures/health/<case>/{services,tasks,nodes}.json` are the
//! engine's `GET /services?status=true`, `GET /tasks` and `GET /nodes`, and `expected.json`
//! the health of each service (its state, and a text its reason contains).

use serde_json::Value;
use shoal::docker::{tasks_from_engine, EngineDump};
use shoal::health::{self, HealthState};
use shoal::model::{Availability, NodeState, Observed, ObservedNode, Role};
use std::collections::BTreeMap;
use std::path::Path;

fn read(case: &Path, name: &str) -> Value {
    let path = case.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("expected a list, got {other}"),
    }
}

/// The observation shoal makes of the captured engine. Services created by hand carry no stack
/// label: the label is added, as `docker stack deploy` would have.
fn observed_of(case: &Path) -> Observed {
    let mut services = array(read(case, "services.json"));
    for service in &mut services {
        let labels = service
            .pointer_mut("/Spec")
            .and_then(Value::as_object_mut)
            .expect("spec")
            .entry("Labels")
            .or_insert_with(|| serde_json::json!({}));
        if labels.is_null() {
            *labels = serde_json::json!({});
        }
        labels
            .as_object_mut()
            .expect("labels")
            .entry("com.docker.stack.namespace")
            .or_insert_with(|| "captured".into());
    }
    let dump = EngineDump {
        services,
        ..EngineDump::default()
    };
    let objects = dump.stack_objects().expect("services read");
    let mut observed = Observed::default();
    for service in objects.services {
        observed.services.insert(service.spec.name.clone(), service);
    }
    observed.tasks = tasks_from_engine(array(read(case, "tasks.json"))).expect("tasks read");
    for node in array(read(case, "nodes.json")) {
        let id = node["ID"].as_str().expect("node ID").to_string();
        let hostname = node["Description"]["Hostname"]
            .as_str()
            .unwrap_or("")
            .to_string();
        observed.nodes.insert(
            id.clone(),
            ObservedNode {
                id,
                machine: Some(hostname.clone()),
                hostname,
                role: Role::Worker,
                availability: Availability::Active,
                labels: BTreeMap::new(),
                state: NodeState::Ready,
                leader: false,
                reachability: None,
                version: 1,
                down_for_seconds: None,
            },
        );
    }
    observed
}

#[test]
fn captured_task_lists_give_the_expected_health() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/health");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("fixtures/health")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let observed = observed_of(&case);
        let got = health::all(&observed);
        let expected: BTreeMap<String, (HealthState, String)> =
            serde_json::from_value(read(&case, "expected.json")).expect("expected.json");
        for (name, health) in &got {
            println!("{} {name}: {}", case.display(), health.line());
        }
        for (name, (state, reason)) in &expected {
            let health = got
                .get(name)
                .cloned()
                .unwrap_or_else(health::Health::missing);
            if health.state != *state || !health.reason.contains(reason.as_str()) {
                failures.push(format!(
                    "{}: {name}: got {}, expected {state} with a reason containing {reason:?}",
                    case.display(),
                    health.line()
                ));
            }
        }
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{}: every service has an expectation",
            case.display()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
