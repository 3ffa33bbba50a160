//! Ordered rollouts and migration jobs on a real dind cluster (one manager), through the
//! `shoal` binary as a user would (DESIGN §9, issue 23): db (a health check that asks its own
//! server) ← migrate (a `replicated-job` of the demo image, `dataservice exit CODE`) ← web.
//!
//! - a first apply creates db, waits until it is healthy, runs the migration and awaits it,
//!   then creates web: the engine's own timestamps prove the order;
//! - an unchanged second apply plans and writes nothing (the completed job does not run again);
//! - a failing migration (exit 3) fails the apply (exit 1) with the task's error and leaves
//!   web as it was;
//! - a stack with `depends_on` and a job deployed by `docker stack deploy` adopts with an empty
//!   plan.
//!
//! The image is built locally (`images/dataservice/build.sh`) and side-loaded: nothing is
//! pulled. Needs Docker: fails, saying so, when no engine answers. The cluster is destroyed when
//! the test ends, failed or not (its containers carry the test label).

use crate::common;

use common::{build_demo_image, engine_turn, DindCluster, Repo};
use serde_json::Value;
use std::process::Output;
use std::time::Instant;

const COMPOSE: &str = r#"services:
  db:
    image: dataservice:1
    healthcheck:
      test: ["CMD", "/dataservice", "get"]
      interval: 1s
      retries: 30
  migrate:
    image: dataservice:1
    command: ["exit", "0"]
    deploy:
      mode: replicated-job
      restart_policy: {condition: none}
    depends_on:
      db: {condition: service_healthy}
  web:
    image: dataservice:1
    depends_on:
      migrate: {condition: service_completed_successfully}
"#;

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A Go template value of the manager's engine, as a number (nanoseconds since the epoch).
fn nanos(cluster: &DindCluster, args: &[&str]) -> u128 {
    let text = cluster.docker("vm-manager", args);
    text.trim()
        .lines()
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|e| panic!("docker {args:?} gave {text:?}: {e}"))
}

#[test]
fn db_then_migration_then_web_each_waited_for_and_a_failing_migration_stops_web() {
    let _turn = engine_turn("order_dind");
    build_demo_image();
    let repo = Repo::empty();
    let cluster = DindCluster::new(repo, "ord");
    let machines = format!(
        "cluster: {}\ndriver: dind\ndriver_options:\n  preload_images: [dataservice:1]\nmachines:\n  vm-manager:\n    role: manager\nstacks:\n  shop: docker-compose.yml\n",
        cluster.name
    );
    std::fs::write(cluster.repo.path().join("machines.yml"), machines).unwrap();
    std::fs::write(cluster.repo.path().join("docker-compose.yml"), COMPOSE).unwrap();

    let started = Instant::now();
    let out = cluster.repo.shoal(&["apply", "--yes", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", said(&out)));
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(common::all_steps_done(&report), "{report:#}");
    println!(
        "first apply with ordered rollout: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        report["health"]["shop_migrate"]["state"], "completed",
        "{report:#}"
    );
    assert_eq!(
        report["health"]["shop_web"]["state"], "healthy",
        "{report:#}"
    );

    // The engine's clock: db ran (healthy) before the job was created, the job's task
    // completed before web was created.
    let task_time = |service: &str| -> u128 {
        let ids = cluster.docker("vm-manager", &["service", "ps", "-q", service]);
        let id = ids.lines().next().expect("a task").to_string();
        nanos(
            &cluster,
            &["inspect", "--format", "{{.Status.Timestamp.UnixNano}}", &id],
        )
    };
    let created = |service: &str| -> u128 {
        nanos(
            &cluster,
            &[
                "service",
                "inspect",
                "--format",
                "{{.CreatedAt.UnixNano}}",
                service,
            ],
        )
    };
    assert!(
        task_time("shop_db") <= created("shop_migrate"),
        "db was not running first"
    );
    assert!(
        task_time("shop_migrate") <= created("shop_web"),
        "web was created before the migration completed"
    );

    // Unchanged: nothing planned, nothing written, the job does not run again.
    let plan: Value = cluster.repo.json(&["plan", "--json"]);
    assert!(plan["steps"].as_array().unwrap().is_empty(), "{plan:#}");
    let again = cluster.repo.json(&["apply", "--yes", "--json"]);
    assert_eq!(again["writes"], 0, "{again:#}");
    let runs = cluster.docker("vm-manager", &["service", "ps", "-q", "shop_migrate"]);
    assert_eq!(runs.lines().count(), 1, "the job ran again: {runs}");

    // A failing migration: apply exits 1 with the task's error; web keeps its spec.
    let path = cluster.repo.path().join("docker-compose.yml");
    let failing = COMPOSE
        .replace(r#"command: ["exit", "0"]"#, r#"command: ["exit", "3"]"#)
        .replace(
            "  web:\n    image: dataservice:1\n",
            "  web:\n    image: dataservice:1\n    environment: {RELEASE: \"2\"}\n",
        );
    std::fs::write(&path, failing).unwrap();
    let out = cluster
        .repo
        .shoal(&["apply", "--yes", "--json", "--timeout", "2m"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", said(&out)));
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps[0]["action"], "run_job");
    assert_eq!(steps[0]["status"], "failed");
    let error = steps[0]["error"].as_str().unwrap();
    assert!(error.contains("exit") && error.contains('3'), "{error}");
    assert_eq!(steps[1]["target"], "shop_web");
    assert_eq!(steps[1]["status"], "skipped", "{report:#}");
    let env = cluster.docker(
        "vm-manager",
        &[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Env}}",
            "shop_web",
        ],
    );
    assert!(!env.contains("RELEASE"), "web was updated: {env}");

    // `docker stack deploy` ignores depends_on: a stack it deployed, with a job, adopts with
    // an empty plan.
    std::fs::write(cluster.repo.path().join("docker-compose.yml"), COMPOSE).unwrap();
    let cli = "services:\n  db:\n    image: dataservice:1\n  once:\n    image: dataservice:1\n    command: [\"exit\", \"0\"]\n    deploy: {mode: replicated-job, replicas: 2}\n    depends_on: [db]\n";
    std::fs::write(cluster.repo.path().join("cli.yml"), cli).unwrap();
    cluster.deploy_by_cli("vm-manager", &[], &["cli.yml"], "cli");
    let machines = std::fs::read_to_string(cluster.repo.path().join("machines.yml")).unwrap();
    std::fs::write(
        cluster.repo.path().join("machines.yml"),
        machines.replace("stacks:\n", "stacks:\n  cli: cli.yml\n"),
    )
    .unwrap();
    let plan: Value = cluster.repo.json(&["plan", "--json"]);
    let adopted: Vec<String> = common::steps_of(&plan)
        .into_iter()
        .filter(|s| s.contains("cli_"))
        .collect();
    assert!(adopted.is_empty(), "{plan:#}");
}
