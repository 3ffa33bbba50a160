//! Content versions keyed per cluster (issue 18), through the CLI on the sim: the first apply
//! writes a random key into the swarm (`io.shoal.content-key`), two clusters holding one
//! content show unrelated versions, none of them the content's sha256 prefix, the key is stable
//! across plans, and a saved plan of a cluster that has no key yet is applied with the names
//! it showed.

use crate::common;

use common::Repo;
use serde_json::Value;
use sha2::{Digest, Sha256};

const WEAK: &str = "password1";

/// A sim cluster of one manager whose stack `app` has the service `web` using the secret `db`
/// (holding [`WEAK`]) and the config `conf`.
fn cluster(name: &str) -> Repo {
    let repo = Repo::empty();
    let write = |path: &str, text: &str| std::fs::write(repo.path().join(path), text).unwrap();
    write(
        "machines.yml",
        &format!("cluster: {name}\ndriver: sim\nmachines:\n  m1:\n    role: manager\nstacks:\n  app: docker-compose.yml\n"),
    );
    write(
        "docker-compose.yml",
        "services:\n  web:\n    image: nginx:1\n    secrets: [db]\n    configs: [conf]\nsecrets:\n  db: {file: db.txt}\nconfigs:\n  conf: {file: conf.txt}\n",
    );
    write("db.txt", WEAK);
    write("conf.txt", "port = 80\n");
    repo
}

/// The swarm's labels and objects, as the sim's state file holds them.
fn state(repo: &Repo) -> Value {
    serde_json::from_str(&repo.sim_state()).expect("a sim state")
}

fn swarm(state: &Value) -> &Value {
    let swarms = state["swarms"].as_object().expect("swarms");
    swarms.values().next().expect("a swarm")
}

/// Name → labels of the swarm's secrets.
fn secrets(state: &Value) -> Vec<(String, Value)> {
    swarm(state)["secrets"]
        .as_object()
        .expect("secrets")
        .values()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["labels"].clone()))
        .collect()
}

fn key_of(state: &Value) -> String {
    swarm(state)["labels"]["io.shoal.content-key"]
        .as_str()
        .expect("the swarm holds a content key")
        .to_string()
}

#[test]
fn two_clusters_version_one_content_apart_and_never_by_its_sha256() {
    let (one, two) = (cluster("keyone"), cluster("keytwo"));
    one.apply();
    two.apply();
    let (a, b) = (state(&one), state(&two));
    let (key_a, key_b) = (key_of(&a), key_of(&b));
    assert_eq!(key_a.len(), 64);
    assert_ne!(key_a, key_b, "each cluster has its own key");
    let version = |state: &Value| {
        let (name, labels) = &secrets(state)[0];
        assert_eq!(name, "app_db", "a new secret gets the CLI's name");
        labels["io.shoal.content-version"]
            .as_str()
            .expect("a version label")
            .to_string()
    };
    let (va, vb) = (version(&a), version(&b));
    assert_ne!(va, vb, "one content, two clusters: unrelated versions");
    let sha = hex::encode(Sha256::digest(WEAK.as_bytes()));
    for v in [&va, &vb] {
        assert_ne!(*v, sha[..8], "a version is not the sha256 prefix");
    }
    assert!(!one.sim_state().contains(&sha[..8]));

    // Stable: plans after the apply are empty and alike; a changed content gets a keyed
    // suffix, the same in every plan.
    assert!(one.steps().is_empty(), "{:?}", one.steps());
    std::fs::write(one.path().join("db.txt"), "password2").unwrap();
    let first = one.steps();
    assert_eq!(first, one.steps(), "the key is stable across plans");
    let created = first
        .iter()
        .find(|s| s.starts_with("create_secret app_db-"))
        .expect("a new version");
    let sha2 = hex::encode(Sha256::digest(b"password2"));
    assert!(!created.ends_with(&sha2[..8]), "{created}");
    one.apply();
    assert_eq!(key_of(&state(&one)), key_a, "apply never replaces the key");
    assert!(one.steps().is_empty());
}

#[test]
fn a_saved_plan_of_a_cluster_without_a_key_applies_with_the_names_it_showed() {
    let repo = cluster("keysaved");
    let saved = repo.path().join("plan.json");
    repo.ok(&["plan", "--out", saved.to_str().unwrap()]);
    let text = std::fs::read_to_string(&saved).unwrap();
    let plan: Value = serde_json::from_str(&text).unwrap();
    let key = plan["content_key"]
        .as_str()
        .expect("the saved plan carries the key");
    let shown_version = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["action"] == "create_secret")
        .map(|s| s["detail"]["object"]["labels"]["io.shoal.content-version"].clone())
        .expect("a create_secret step");
    // `plan --json` never shows it.
    assert!(!repo.ok(&["plan", "--json"]).contains(key));
    // A while later, another plan would make another key; the saved one is applied as shown.
    let report = repo.json(&["apply", "--yes", "--json", saved.to_str().unwrap()]);
    assert!(common::all_steps_done(&report), "{report:#}");
    let after = state(&repo);
    assert_eq!(key_of(&after), key);
    assert_eq!(
        secrets(&after)[0].1["io.shoal.content-version"],
        shown_version
    );
    assert!(repo.steps().is_empty());

    // `plan --json`'s output of a new cluster is refused as a plan file: it holds no key.
    let other = cluster("keyjson");
    let printed = other.path().join("printed.json");
    std::fs::write(&printed, other.ok(&["plan", "--json"])).unwrap();
    let out = other.shoal(&["apply", "--yes", printed.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("shoal plan --out FILE"), "{said}");
    assert!(other.sim_state().is_empty() || !other.sim_state().contains("app_db"));
}
