//! Issue 18's policy and drift cases on one real dind cluster (a manager and a worker), through
//! the CLI as a user would, one after the other so that the cluster is made once:
//!
//! - a node-local network (`bridge`) is a valid external: the stack plans, applies and runs;
//! - `prune: false` keeps remembering a stack dropped from machines.yml (a warning, `status`
//!   lists it), and `prune: true` later removes its services, through the destroy guard;
//! - a label change of a secret nothing uses is planned as a replacement and applied; of a
//!   config or network a service uses, the plan is refused with the way out, and nothing is
//!   written;
//! - drift that arrives while apply waits for health (a hand scale during a rollout) ends the
//!   wait at once and is planned at once;
//! - `self_heal: false`: a stopped, then a removed machine is reported and nothing is done.
//!
//! The rolled-back service made healthy by a forced update is in `health_dind` (it has the
//! rollback already), the registry option change and the `docker.io/x` preload in
//! `registry_dind` (they need the cluster's registry): each case runs on a cluster that
//! exists anyway.
//!
//! Needs Docker: fails, saying so, when no engine answers. The cluster is destroyed when the
//! test ends, failed or not (its containers carry the test label).

use crate::common;

use common::{build_demo_image, engine_turn, steps_of, DindCluster, Repo};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn machines(name: &str, stacks: &str, prune: bool) -> String {
    format!(
        "cluster: {name}\ndriver: dind\ndriver_options:\n  preload_images: [dataservice:1]\nmachines:\n  vm-manager:\n    role: manager\n  vm-worker:\n    role: worker\n    count: 1\nstacks:\n{stacks}policy:\n  self_heal: false\n  prune: {prune}\n"
    )
}

const APP: &str = "services:
  web:
    image: dataservice:1
    deploy:
      replicas: 2
      update_config: {parallelism: 1, monitor: 10s}
    networks: [front]
    configs: [conf]
  local:
    image: dataservice:1
    networks: [outside]
networks:
  front: {driver: overlay}
  outside: {external: true, name: bridge}
configs:
  conf: {file: conf.txt, labels: {team: a}}
secrets:
  spare: {file: spare.txt, labels: {team: a}}
";

const EXTRA: &str = "services:
  web:
    image: dataservice:1
";

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the docker CLI on the host engine (for the cluster's own containers only).
fn host(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(out.status.success(), "docker {args:?}: {}", said(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `plan` must fail with exit 1 saying each of `words`; what it says.
fn refused(cluster: &DindCluster, words: &[&str]) -> String {
    let out = cluster.repo.shoal(&["plan"]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for word in words {
        assert!(text.contains(word), "{word}: {text}");
    }
    text
}

#[test]
fn policies_and_drift_on_dind() {
    let _turn = engine_turn("the dind policies test");
    build_demo_image();
    let cluster = DindCluster::new(Repo::empty(), "pol");
    let name = cluster.name.clone();
    let repo = &cluster.repo;
    let write = |file: &str, text: &str| std::fs::write(repo.path().join(file), text).unwrap();
    let both = "  app: app.yml\n  extra: extra.yml\n";
    write("machines.yml", &machines(&name, both, false));
    write("app.yml", APP);
    write("extra.yml", EXTRA);
    write("conf.txt", "port = 80\n");
    write("spare.txt", "spare-value");

    // A node-local external network (`bridge`): planned, applied and running.
    let report = repo.apply();
    assert_eq!(
        report["health"]["app_local"]["state"], "healthy",
        "{report:#}"
    );
    assert!(repo.steps().is_empty(), "false drift after apply");

    // prune: false, a stack dropped: remembered, nothing removed, status lists it; prune: true
    // later removes it, through the destroy guard (the sim's scenario, on the engine).
    common::drop_a_stack_then_prune(repo, &|stacks: &str, prune: bool| {
        write("machines.yml", &machines(&name, stacks, prune))
    });

    // Settings swarm cannot update: an unused secret is replaced; a used config or network
    // is refused with the way out, and nothing is written.
    repo.edit(
        "app.yml",
        "spare.txt, labels: {team: a}",
        "spare.txt, labels: {team: b}",
    );
    let replaced = repo.plan();
    assert_eq!(
        steps_of(&replaced),
        ["remove_secret app_spare", "create_secret app_spare"],
        "{replaced:#}"
    );
    repo.apply();
    assert!(repo.steps().is_empty(), "the new labels are kept");
    let labels = cluster.docker(
        "vm-manager",
        &[
            "secret",
            "inspect",
            "app_spare",
            "--format",
            "{{.Spec.Labels.team}}",
        ],
    );
    assert_eq!(labels.trim(), "b");
    let configs_before = cluster.docker("vm-manager", &["config", "ls", "-q"]);
    repo.edit(
        "app.yml",
        "conf.txt, labels: {team: a}",
        "conf.txt, labels: {team: b}",
    );
    refused(
        &cluster,
        &["config app_conf", "labels", "app_web", "new name"],
    );
    repo.edit(
        "app.yml",
        "conf.txt, labels: {team: b}",
        "conf.txt, labels: {team: a}",
    );
    repo.edit(
        "app.yml",
        "{driver: overlay}",
        "{driver: overlay, attachable: true}",
    );
    refused(
        &cluster,
        &["network app_front", "attachable", "app_web", "new name"],
    );
    let out = repo.shoal(&["apply", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    repo.edit(
        "app.yml",
        "{driver: overlay, attachable: true}",
        "{driver: overlay}",
    );
    assert_eq!(
        cluster.docker("vm-manager", &["config", "ls", "-q"]),
        configs_before,
        "a refused plan wrote nothing"
    );
    assert!(repo.steps().is_empty());

    // Drift during the health wait: a hand scale while the rollout is monitored ends the
    // wait at once, and the next plan has it.
    repo.edit(
        "app.yml",
        "    networks: [front]\n",
        "    environment: [PHASE=2]\n    networks: [front]\n",
    );
    let apply = repo
        .command(&["apply", "--yes", "--timeout", "3m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shoal apply");
    let updating = || {
        cluster
            .docker(
                "vm-manager",
                &[
                    "service",
                    "inspect",
                    "app_web",
                    "--format",
                    "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
                ],
            )
            .contains("updating")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !updating() {
        assert!(Instant::now() < deadline, "the rollout did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.docker("vm-manager", &["service", "scale", "--detach", "app_web=3"]);
    let scaled = Instant::now();
    let out = apply.wait_with_output().expect("apply ends");
    let waited = scaled.elapsed();
    let text = said(&out);
    assert!(
        text.contains("changed while waiting: scale_service app_web"),
        "{text}"
    );
    // The rollout monitors each of 2 tasks for 10 s: apply did not wait for it.
    assert!(waited < Duration::from_secs(10), "{waited:?}: {text}");
    eprintln!(
        "figure: hand scale during the health wait -> apply ended: {:.2}s",
        waited.as_secs_f64()
    );
    assert_eq!(repo.steps(), ["scale_service app_web"]);
    repo.apply();
    assert!(repo.steps().is_empty());

    // self_heal: false: a stopped machine, then a removed one, are reported; nothing is done.
    let worker = format!("{name}-vm-worker1");
    host(&["stop", "-t", "1", &worker]);
    let stopped = repo.plan();
    assert!(steps_of(&stopped).is_empty(), "{stopped:#}");
    assert!(
        stopped["warnings"]
            .to_string()
            .contains("vm-worker1 is stopped and self-heal is off"),
        "{stopped:#}"
    );
    let report = repo.json(&["apply", "--yes", "--json", "--no-wait"]);
    assert_eq!(report["writes"], 0, "{report:#}");
    assert_eq!(
        host(&["inspect", "-f", "{{.State.Running}}", &worker]).trim(),
        "false",
        "the stopped machine is left as it is"
    );
    host(&["rm", "-f", &worker]);
    let gone = repo.plan();
    assert!(steps_of(&gone).is_empty(), "{gone:#}");
    assert!(
        gone["warnings"]
            .to_string()
            .contains("vm-worker1 is gone (its node is still in the swarm) and self-heal is off"),
        "{gone:#}"
    );
    let report = repo.json(&["apply", "--yes", "--json", "--no-wait"]);
    assert_eq!(report["writes"], 0, "{report:#}");
    let left = host(&["ps", "-aq", "--filter", &format!("name=^{worker}$")]);
    assert!(
        left.trim().is_empty(),
        "self-heal is off: not created again"
    );
    drop(cluster);
}
