//! The tutorial, driven through the CLI only, on the sim driver: what a new user would try.

use crate::common;

use common::{assert_retired_in_order, count, steps_of, Repo};
use serde_json::Value;

fn tutorial() -> Repo {
    Repo::copy_of("examples/dataapp")
}

#[test]
fn the_tutorial_from_nothing_to_scaled_and_back() {
    let repo = tutorial();
    let first = repo.plan();
    assert_eq!(
        steps_of(&first),
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
    assert!(repo.steps().is_empty());
    let second = repo.apply();
    assert_eq!(second["writes"], 0, "a converged apply must send nothing");

    let status = repo.json(&["status", "--json"]);
    assert_eq!(status["cluster"], "dataapp");
    assert_eq!(status["machines"].as_array().unwrap().len(), 2);
    assert_eq!(status["services"][0]["replicas"], 5);
    assert_eq!(status["services"][0]["running"], 5);

    repo.edit("machines.yml", "count: 1", "count: 3");
    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 10");
    let scale = repo.steps();
    assert_eq!(count(&scale, "create_machine"), 2);
    assert_eq!(count(&scale, "join_swarm"), 2);
    assert_eq!(count(&scale, "scale_service"), 1);
    assert_eq!(scale.len(), 5, "{:?}", scale);
    repo.apply();

    repo.ok(&["sim", "kill-machine", "vm-worker2"]);
    let heal = repo.steps();
    assert_eq!(
        heal,
        [
            "remove_node vm-worker2",
            "create_machine vm-worker2",
            "join_swarm vm-worker2"
        ]
    );
    repo.apply();

    repo.edit("machines.yml", "count: 3", "count: 1");
    let shrink = repo.steps();
    assert_retired_in_order(&shrink, "drain_node", &["vm-worker2", "vm-worker3"]);
    assert_eq!(shrink.len(), 6);
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
    let drift = repo.steps();
    assert_eq!(drift, ["scale_service dataapp_dataservice"]);
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
    assert_eq!(repo.steps(), ["scale_service dataapp_dataservice"]);
    repo.apply();
    assert!(repo.steps().is_empty());
}

#[test]
fn three_managers_to_one_keeps_quorum() {
    let repo = tutorial();
    repo.edit(
        "machines.yml",
        "  vm-manager:\n    role: manager\n",
        "  vm-manager:\n    role: manager\n    count: 3\n",
    );
    let grow = repo.steps();
    assert_eq!(count(&grow, "join_swarm"), 3, "{:?}", grow);
    repo.apply();
    repo.edit("machines.yml", "    count: 3\n", "    count: 1\n");
    let plan = repo.plan();
    let shrink = steps_of(&plan);
    assert_eq!(count(&shrink, "demote_node"), 2, "{shrink:?}");
    let chain: Vec<&Value> = plan["steps"]
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
    assert_retired_in_order(&shrink, "demote_node", &["vm-manager2", "vm-manager3"]);
    let before = repo.sim_state();
    let dry = repo.json(&["apply", "--dry-run", "--json"]);
    assert!(
        common::all_steps_done(&dry),
        "a dry run walks every step: {dry:#}"
    );
    assert_eq!(
        repo.sim_state(),
        before,
        "a dry run must not change the cluster"
    );
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
    let repo = tutorial();
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
    let repo = tutorial();
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
    let repo = tutorial();
    let out = repo.shoal(&["apply"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(repo.sim_state().is_empty() || !repo.sim_state().contains("vm-manager"));
}

#[test]
fn a_saved_plan_goes_stale_when_the_cluster_changes() {
    let repo = tutorial();
    let file = repo.path().join("plan.json");
    let file = file.to_str().unwrap();
    repo.ok(&["plan", "--out", file]);
    repo.ok(&["apply", file]);
    assert!(repo.steps().is_empty());

    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 7");
    repo.ok(&["plan", "--out", file]);
    repo.ok(&["sim", "set-replicas", "dataapp_dataservice", "2"]);
    let out = repo.shoal(&["apply", file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale"));
}

#[test]
fn detailed_exitcode_tells_changes_apart() {
    let repo = tutorial();
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

/// `eval $(shoal env M)` as typed (unquoted) and `eval "$(shoal env M)"` both set the variables
/// in bash, and `--unset` clears them, both ways. The repository's path holds a space.
#[test]
fn shoal_env_works_as_typed_quoted_or_not() {
    let repo = tutorial();
    repo.apply();
    let spaced = repo.path().join("my cluster");
    std::fs::create_dir(&spaced).unwrap();
    for file in ["machines.yml", "docker-compose.yml"] {
        std::fs::copy(repo.path().join(file), spaced.join(file)).unwrap();
    }
    std::fs::rename(repo.path().join(".shoal"), spaced.join(".shoal")).unwrap();
    let bash = |script: &str| {
        let out = std::process::Command::new("bash")
            .args(["-c", script, "bash", env!("CARGO_BIN_EXE_shoal")])
            .arg(&spaced)
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", "/old")
            .env_remove("DOCKER_HOST")
            .output()
            .expect("bash");
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let show = r#"printf '%s|%s|%s' "${DOCKER_HOST-unset}" "${DOCKER_TLS_VERIFY-unset}" "${DOCKER_CERT_PATH-unset}""#;
    for eval in [
        r#"eval $("$1" env --repo "$2" vm-manager)"#,
        r#"eval "$("$1" env --repo "$2" vm-manager)""#,
    ] {
        assert_eq!(
            bash(&format!("{eval}; {show}")),
            "sim://dataapp/vm-manager|unset|unset",
            "{eval}"
        );
    }
    for eval in [
        r#"eval $("$1" env --repo "$2" --unset)"#,
        r#"eval "$("$1" env --repo "$2" --unset)""#,
    ] {
        assert_eq!(
            bash(&format!("export DOCKER_HOST=x; {eval}; {show}")),
            "unset|unset|unset",
            "{eval}"
        );
    }
    // The hint in the output, run as it is written, works too.
    let printed = bash(r#""$1" env --repo "$2" vm-manager"#);
    let hint = printed
        .lines()
        .find_map(|l| l.strip_prefix("# eval "))
        .expect("the hint");
    let hint = hint.replacen("shoal", "\"$1\"", 1);
    assert_eq!(
        bash(&format!("eval {hint}; {show}")),
        "sim://dataapp/vm-manager|unset|unset",
        "{printed}"
    );
}
