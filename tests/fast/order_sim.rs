//! Ordered rollouts and migration jobs on the sim, through the `shoal` binary (DESIGN §9):
//! db (health check) ← migrate (replicated-job) ← web. A first apply runs them in that order,
//! each waited for; a failing migration (the sim's `failing/` job images exit 1) leaves web
//! untouched and apply exits 1 with the job's error; an unchanged second apply runs nothing;
//! a `depends_on` cycle is a validate error that spells it out.

use crate::common;

use common::{steps_of, Repo};
use serde_json::Value;

const MACHINES: &str = "cluster: shop\ndriver: sim\nmachines:\n  m1:\n    role: manager\nstacks:\n  shop: docker-compose.yml\n";

const COMPOSE: &str = r#"services:
  db:
    image: db:16
    healthcheck:
      test: ["CMD", "pg_isready"]
      interval: 2s
  migrate:
    image: app:1
    command: ["app", "migrate"]
    deploy:
      mode: replicated-job
      restart_policy: {condition: none}
    depends_on:
      db: {condition: service_healthy}
  web:
    image: app:1
    deploy: {replicas: 2}
    depends_on:
      migrate: {condition: service_completed_successfully}
"#;

fn shop() -> Repo {
    let repo = Repo::empty();
    std::fs::write(repo.path().join("machines.yml"), MACHINES).unwrap();
    std::fs::write(repo.path().join("docker-compose.yml"), COMPOSE).unwrap();
    repo
}

/// The report's `(action target, status)` per step.
fn statuses(report: &Value) -> Vec<(String, String)> {
    (report["steps"].as_array().expect("steps").iter())
        .map(|s| {
            (
                format!(
                    "{} {}",
                    s["action"].as_str().unwrap(),
                    s["target"].as_str().unwrap()
                ),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn status_of<'a>(status: &'a Value, name: &str) -> &'a Value {
    (status["services"].as_array().expect("services").iter())
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {status:#}"))
}

#[test]
fn a_first_apply_runs_db_then_the_migration_then_web_each_waited_for() {
    let repo = shop();
    let plan = repo.plan();
    let steps = steps_of(&plan);
    assert_eq!(
        steps[3..],
        [
            "create_service shop_db",
            "run_job shop_migrate",
            "create_service shop_web",
        ]
    );
    let text = repo.ok(&["plan"]);
    assert!(text.contains("(after #3, #4 is healthy)"), "{text}");
    assert!(text.contains("(after #3, #5 completed)"), "{text}");
    assert_eq!(
        plan["steps"][5]["waits"][0]["condition"],
        "service_completed_successfully"
    );

    let report = repo.apply();
    assert!(common::all_steps_done(&report), "{report:#}");
    assert_eq!(
        report["health"]["shop_migrate"]["state"], "completed",
        "{report:#}"
    );
    assert_eq!(report["health"]["shop_web"]["state"], "healthy");
    let status = repo.json(&["status", "--json"]);
    assert_eq!(
        status_of(&status, "shop_migrate")["health"]["state"],
        "completed"
    );

    // Unchanged: nothing runs again, nothing is written.
    assert!(repo.steps().is_empty());
    let again = repo.apply();
    assert_eq!(again["writes"], 0, "{again:#}");
    assert!(again["steps"].as_array().unwrap().is_empty());
}

#[test]
fn a_failing_migration_leaves_web_untouched_and_fails_the_apply() {
    let repo = shop();
    repo.apply();
    repo.edit(
        "docker-compose.yml",
        "image: app:1\n    command",
        "image: failing/app:2\n    command",
    );
    repo.edit(
        "docker-compose.yml",
        "image: app:1\n    deploy: {replicas",
        "image: app:2\n    deploy: {replicas",
    );
    assert_eq!(
        repo.steps(),
        ["run_job shop_migrate", "update_service shop_web"]
    );
    let out = repo.shoal(&["apply", "--yes", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(
        statuses(&report),
        [
            ("run_job shop_migrate".to_string(), "failed".to_string()),
            ("update_service shop_web".to_string(), "skipped".to_string()),
        ]
    );
    let job_error = report["steps"][0]["error"].as_str().unwrap();
    assert!(job_error.contains("non-zero exit (1)"), "{job_error}");
    let skipped = report["steps"][1]["error"].as_str().unwrap();
    assert!(
        skipped.contains("#1 (run_job shop_migrate), which failed")
            && skipped.contains("non-zero exit (1)"),
        "{skipped}"
    );
    let status = repo.json(&["status", "--json"]);
    assert_eq!(
        status_of(&status, "shop_web")["image"],
        "app:1",
        "web is untouched"
    );
    assert_eq!(
        status_of(&status, "shop_migrate")["health"]["state"],
        "failed"
    );

    // Applied again unchanged, the failed job does not run again, and web still waits for it.
    assert_eq!(repo.steps(), ["update_service shop_web"]);
    let out = repo.shoal(&["apply", "--yes", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["steps"][0]["status"], "skipped", "{report:#}");
    let held = report["steps"][0]["error"].as_str().unwrap();
    assert!(
        held.contains("it waits for shop_migrate to complete successfully, but it is failed")
            && held.contains("non-zero exit (1)"),
        "{held}"
    );
    assert_eq!(report["writes"], 0, "{report:#}");

    // The text report says which step failed and which was skipped, and why.
    repo.edit("docker-compose.yml", "failing/app:2", "failing/app:3");
    let out = repo.shoal(&["apply", "--yes"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("Failed: run_job shop_migrate: job shop_migrate failed"),
        "{said}"
    );
    assert!(
        said.contains("Skipped: update_service shop_web: it waits for #1"),
        "{said}"
    );

    // Fixed: the migration runs again, then web rolls out.
    repo.edit("docker-compose.yml", "failing/app:3", "app:2");
    let report = repo.apply();
    assert!(common::all_steps_done(&report), "{report:#}");
    assert!(repo.steps().is_empty());
}

#[test]
fn a_depends_on_cycle_is_a_validate_error_spelled_out() {
    let repo = shop();
    repo.edit(
        "docker-compose.yml",
        "    healthcheck:",
        "    depends_on: [web]\n    healthcheck:",
    );
    let out = repo.shoal(&["validate"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("docker-compose.yml:4:18:")
            && said
                .contains("forms a cycle: db (line 4) -> web (line 20) -> migrate (line 15) -> db"),
        "{said}"
    );
}

#[test]
fn ignored_keys_warn_at_validate_and_plan_with_their_line() {
    let repo = shop();
    repo.edit(
        "docker-compose.yml",
        "    image: db:16\n",
        "    image: db:16\n    privileged: true\n",
    );
    let (out, err) = repo.ok_both(&["validate"]);
    let said = format!("{out}{err}");
    assert!(
        said.contains("docker-compose.yml:4:5") && said.contains("`privileged`"),
        "{said}"
    );
    let plan = repo.plan();
    let warnings = plan["warnings"].to_string();
    assert!(
        warnings.contains("docker-compose.yml:4:5") && warnings.contains("`privileged`"),
        "{warnings}"
    );
}
