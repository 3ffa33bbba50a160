//! The tutorial, driven through the CLI only, on the sim driver: what a new user would try.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A copy of examples/dataapp in a temporary folder.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn tutorial() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dataapp");
        for file in ["machines.yml", "docker-compose.yml"] {
            std::fs::copy(example.join(file), dir.path().join(file)).expect("copy example");
        }
        Repo { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn shoal(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(args)
            .arg("--repo")
            .arg(self.path())
            .env_remove("SHOAL_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("run shoal")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.shoal(args);
        assert!(
            out.status.success(),
            "shoal {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    fn plan(&self) -> Value {
        self.json(&["plan", "--json"])
    }

    fn apply(&self) -> Value {
        let report = self.json(&["apply", "--yes", "--json"]);
        assert_eq!(
            report["converged"], true,
            "apply did not converge: {report:#}"
        );
        report
    }

    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.path().join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replace(from, to)).expect("write");
    }

    fn sim_state(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(".shoal/sim.json")).unwrap_or_default()
    }
}

/// `action target` of each step.
fn steps(plan: &Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["action"].as_str().unwrap(),
                s["target"].as_str().unwrap()
            )
        })
        .collect()
}

fn count(plan: &Value, action: &str) -> usize {
    steps(plan)
        .iter()
        .filter(|s| s.starts_with(&format!("{action} ")))
        .count()
}

/// Position of a step in the plan.
fn position(plan: &Value, step: &str) -> usize {
    steps(plan)
        .iter()
        .position(|s| s == step)
        .unwrap_or_else(|| panic!("no step {step} in {:?}", steps(plan)))
}

#[test]
fn the_tutorial_from_nothing_to_scaled_and_back() {
    let repo = Repo::tutorial();
    let first = repo.plan();
    assert_eq!(
        steps(&first),
        [
            "create_machine vm-manager",
            "create_machine vm-worker1",
            "init_swarm swarm",
            "join_swarm vm-worker1",
            "create_network dataapp_default",
            "create_service dataapp_dataservice",
        ]
    );
    assert_eq!(
        first["summary"],
        serde_json::json!({"add": 6, "change": 0, "destroy": 0})
    );

    let report = repo.apply();
    assert!(report["writes"].as_u64().unwrap() >= 6);
    assert!(steps(&repo.plan()).is_empty());
    let second = repo.apply();
    assert_eq!(second["writes"], 0, "a converged apply must send nothing");

    let status = repo.json(&["status", "--json"]);
    assert_eq!(status["cluster"], "dataapp");
    assert_eq!(status["machines"].as_array().unwrap().len(), 2);
    assert_eq!(status["services"][0]["replicas"], 5);
    assert_eq!(status["services"][0]["running"], 5);

    repo.edit("machines.yml", "count: 1", "count: 3");
    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 10");
    let scale = repo.plan();
    assert_eq!(count(&scale, "create_machine"), 2);
    assert_eq!(count(&scale, "join_swarm"), 2);
    assert_eq!(count(&scale, "scale_service"), 1);
    assert_eq!(steps(&scale).len(), 5, "{:?}", steps(&scale));
    repo.apply();

    repo.ok(&["sim", "kill-machine", "vm-worker2"]);
    let heal = repo.plan();
    assert_eq!(
        steps(&heal),
        [
            "remove_node vm-worker2",
            "create_machine vm-worker2",
            "join_swarm vm-worker2"
        ]
    );
    repo.apply();

    repo.edit("machines.yml", "count: 3", "count: 1");
    let shrink = repo.plan();
    for worker in ["vm-worker2", "vm-worker3"] {
        let drain = position(&shrink, &format!("drain_node {worker}"));
        let remove = position(&shrink, &format!("remove_node {worker}"));
        let destroy = position(&shrink, &format!("destroy_machine {worker}"));
        assert!(drain < remove && remove < destroy, "{:?}", steps(&shrink));
    }
    assert_eq!(steps(&shrink).len(), 6);
    let before = repo.sim_state();
    let dry = repo.json(&["apply", "--dry-run", "--json"]);
    let writes: Vec<&str> = dry["dry_run_writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        writes.iter().any(|w| w.contains("leave swarm")),
        "{writes:?}"
    );
    assert!(
        writes
            .iter()
            .any(|w| w.contains("destroy machine vm-worker3")),
        "{writes:?}"
    );
    assert_eq!(
        repo.sim_state(),
        before,
        "a dry run must not change the cluster"
    );
    repo.apply();

    repo.ok(&["sim", "set-replicas", "dataapp_dataservice", "3"]);
    let drift = repo.plan();
    assert_eq!(steps(&drift), ["scale_service dataapp_dataservice"]);
    let before = repo.sim_state();
    let dry = repo.json(&["apply", "--dry-run", "--json"]);
    assert_eq!(
        dry["dry_run_writes"].as_array().unwrap().len(),
        1,
        "{dry:#}"
    );
    assert_eq!(
        repo.sim_state(),
        before,
        "a dry run must not change the cluster"
    );
    assert_eq!(steps(&repo.plan()), ["scale_service dataapp_dataservice"]);
    repo.apply();
    assert!(steps(&repo.plan()).is_empty());
}

#[test]
fn three_managers_to_one_keeps_quorum() {
    let repo = Repo::tutorial();
    repo.edit(
        "machines.yml",
        "  vm-manager:\n    role: manager\n",
        "  vm-manager:\n    role: manager\n    count: 3\n",
    );
    let grow = repo.plan();
    assert_eq!(count(&grow, "join_swarm"), 3, "{:?}", steps(&grow));
    repo.apply();
    repo.edit("machines.yml", "    count: 3\n", "    count: 1\n");
    let shrink = repo.plan();
    let demotes: Vec<String> = steps(&shrink)
        .into_iter()
        .filter(|s| s.starts_with("demote_node"))
        .collect();
    assert_eq!(demotes.len(), 2, "{:?}", steps(&shrink));
    let chain: Vec<&Value> = shrink["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "demote_node")
        .collect();
    assert!(
        chain[1]["depends_on"]
            .as_array()
            .unwrap()
            .contains(&chain[0]["id"]),
        "demotions must run one at a time"
    );
    for manager in ["vm-manager2", "vm-manager3"] {
        let demote = position(&shrink, &format!("demote_node {manager}"));
        let remove = position(&shrink, &format!("remove_node {manager}"));
        let destroy = position(&shrink, &format!("destroy_machine {manager}"));
        assert!(demote < remove && remove < destroy);
    }
    repo.apply();
    let status = repo.json(&["status", "--json"]);
    let managers: Vec<&Value> = status["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "manager")
        .collect();
    assert_eq!(managers.len(), 1);
    assert_eq!(managers[0]["leader"], true);
}

#[test]
fn lost_quorum_is_refused_with_the_recovery() {
    let repo = Repo::tutorial();
    repo.edit(
        "machines.yml",
        "  vm-manager:\n    role: manager\n",
        "  vm-manager:\n    role: manager\n    count: 3\n",
    );
    repo.apply();
    repo.ok(&["sim", "kill-machine", "vm-manager2"]);
    repo.ok(&["sim", "kill-machine", "vm-manager3"]);
    let out = repo.shoal(&["plan"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--force-new-cluster"), "{stderr}");
}

#[test]
fn bad_input_is_refused_by_every_command_and_writes_nothing() {
    let repo = Repo::tutorial();
    repo.apply();
    let before = repo.sim_state();
    repo.edit(
        "docker-compose.yml",
        "replicas: 5",
        "replicas: 5\n      replicsa: 3",
    );
    for args in [
        vec!["validate"],
        vec!["plan"],
        vec!["apply", "--yes"],
        vec!["apply", "--dry-run"],
    ] {
        let out = repo.shoal(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("docker-compose.yml:"), "{args:?}: {stderr}");
    }
    assert_eq!(repo.sim_state(), before);
}

#[test]
fn apply_refuses_without_yes_when_not_on_a_terminal() {
    let repo = Repo::tutorial();
    let out = repo.shoal(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(repo.sim_state().is_empty() || !repo.sim_state().contains("vm-manager"));
}

#[test]
fn a_saved_plan_goes_stale_when_the_cluster_changes() {
    let repo = Repo::tutorial();
    let file = repo.path().join("plan.json");
    let file = file.to_str().unwrap();
    repo.ok(&["plan", "--out", file]);
    repo.ok(&["apply", file]);
    assert!(steps(&repo.plan()).is_empty());

    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 7");
    repo.ok(&["plan", "--out", file]);
    repo.ok(&["sim", "set-replicas", "dataapp_dataservice", "2"]);
    let out = repo.shoal(&["apply", file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale"));
}

#[test]
fn detailed_exitcode_tells_changes_apart() {
    let repo = Repo::tutorial();
    assert_eq!(
        repo.shoal(&["plan", "--detailed-exitcode"]).status.code(),
        Some(2)
    );
    repo.apply();
    assert_eq!(
        repo.shoal(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
}
