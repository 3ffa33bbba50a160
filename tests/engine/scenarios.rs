//! One scenario suite, run against the sim AND against real dind clusters on this machine's
//! Docker Engine, through the CLI as a user would: the tutorial sequence, a lost worker,
//! three managers down to one, drift, and adoption of a stack deployed with `docker stack deploy`.
//! The sim is a test double: these runs keep it true to the engine.
//!
//! The dind runs need Docker: they fail, saying so, when no engine answers. They run one at a time and every cluster is
//! destroyed when its scenario ends, failed or not.

use crate::common;

use common::{assert_retired_in_order, count, crate_path, DindCluster, Repo, TUTORIAL_TASK_NODES};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sim,
    Dind,
}

/// A cluster repository in a temporary folder on a backend, destroyed on drop (on the sim too:
/// `shoal destroy` is the same command).
struct Cluster {
    backend: Backend,
    dind: DindCluster,
}

/// The turn of a dind scenario: a failure when no Docker Engine answers, else the engine
/// tier's turn ([`common::engine_turn`]: one at a time, 2 cores), with the demo image built.
fn dind_turn() -> std::sync::MutexGuard<'static, ()> {
    let guard = common::engine_turn("the dind scenarios");
    common::build_demo_image();
    guard
}

impl Cluster {
    /// The tutorial repository (one manager, `workers` workers, five replicas) on `backend`.
    fn tutorial(backend: Backend, name: &str, managers: u32, workers: u32) -> Cluster {
        let dind = DindCluster::new(Repo::empty(), name);
        let (name, repo) = (&dind.name, &dind.repo);
        let (driver, options) = match backend {
            Backend::Sim => ("sim", String::new()),
            Backend::Dind => (
                "dind",
                "driver_options:\n  preload_images: [dataservice:1]\n".to_string(),
            ),
        };
        std::fs::write(
            repo.path().join("machines.yml"),
            format!(
                "cluster: {name}\ndriver: {driver}\n{options}machines:\n  vm-manager:\n    role: manager\n    count: {managers}\n  vm-worker:\n    role: worker\n    count: {workers}\nstacks:\n  dataapp: docker-compose.yml\n"
            ),
        )
        .unwrap();
        std::fs::copy(
            crate_path("examples/dataapp/docker-compose.yml"),
            repo.path().join("docker-compose.yml"),
        )
        .unwrap();
        Cluster { backend, dind }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.dind.repo.ok(args)
    }

    fn json(&self, args: &[&str]) -> Value {
        self.dind.repo.json(args)
    }

    fn steps(&self) -> Vec<String> {
        self.dind.repo.steps()
    }

    fn edit(&self, file: &str, from: &str, to: &str) {
        self.dind.repo.edit(file, from, to)
    }

    /// Applies and returns (report, seconds).
    fn apply(&self) -> (Value, f64) {
        let start = Instant::now();
        let report = self.dind.repo.apply();
        (report, start.elapsed().as_secs_f64())
    }

    /// The machine vanishes, as a VM deleted in a cloud console.
    fn kill_machine(&self, machine: &str) {
        match self.backend {
            Backend::Sim => {
                self.ok(&["sim", "kill-machine", machine]);
            }
            Backend::Dind => docker(&["rm", "-f", &format!("{}-{machine}", self.dind.name)]),
        }
    }

    /// Someone scales a service by hand.
    fn scale_by_hand(&self, service: &str, replicas: u32) {
        match self.backend {
            Backend::Sim => {
                self.ok(&["sim", "set-replicas", service, &replicas.to_string()]);
            }
            Backend::Dind => {
                self.dind.docker(
                    "vm-manager1",
                    &[
                        "service",
                        "scale",
                        "--detach",
                        &format!("{service}={replicas}"),
                    ],
                );
            }
        }
    }

    /// The ids the running replicas answer with, asked from inside each task's container (the
    /// routing mesh may not work here), over every machine.
    fn replica_ids(&self, machines: &[&str]) -> Vec<String> {
        let mut ids = Vec::new();
        for machine in machines {
            let containers = self.dind.docker(
                machine,
                &[
                    "ps",
                    "-q",
                    "--filter",
                    "label=com.docker.swarm.service.name=dataapp_dataservice",
                ],
            );
            for container in containers.lines() {
                let answer = self
                    .dind
                    .docker(machine, &["exec", container, "/dataservice", "get"]);
                assert!(answer.contains("<name>hello</name>"), "{answer}");
                ids.push(answer.trim().to_string());
            }
        }
        ids.sort();
        ids.dedup();
        ids
    }

    /// Machines running at least one task of the service.
    fn task_nodes(&self) -> usize {
        let mut nodes: Vec<String> = self
            .dind
            .docker("vm-manager1", &TUTORIAL_TASK_NODES)
            .lines()
            .map(str::to_string)
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes.len()
    }

    fn status(&self) -> Value {
        self.json(&["status", "--json"])
    }

    /// Waits until every service runs all its tasks (the engine takes a moment).
    fn wait_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status();
            let services = status["services"].as_array().unwrap();
            if services.iter().all(|s| s["running"] == s["replicas"]) {
                return;
            }
            if Instant::now() >= deadline {
                let tasks = match self.backend {
                    Backend::Dind => self.dind.docker(
                        "vm-manager1",
                        &["service", "ps", "--no-trunc", "dataapp_dataservice"],
                    ),
                    Backend::Sim => String::new(),
                };
                panic!("tasks did not all start: {status:#}\n{tasks}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tutorial: create, converge, scale out by editing files, lose a worker, scale back in.
fn tutorial(backend: Backend) {
    let cluster = Cluster::tutorial(backend, "tut", 1, 1);
    let first = cluster.steps();
    assert_eq!(count(&first, "create_machine"), 2);
    assert_eq!(count(&first, "init_swarm"), 1);
    assert_eq!(count(&first, "join_swarm"), 1);
    assert_eq!(count(&first, "create_network"), 1);
    assert_eq!(count(&first, "create_service"), 1);
    let (_, create_seconds) = cluster.apply();
    cluster.wait_running();
    assert!(
        cluster.steps().is_empty(),
        "[{backend:?}] plan not empty after apply"
    );
    let (again, _) = cluster.apply();
    assert_eq!(
        again["writes"], 0,
        "[{backend:?}] a converged apply sent writes"
    );
    let status = cluster.status();
    assert_eq!(status["services"][0]["running"], 5);
    if backend == Backend::Dind {
        let ids = cluster.replica_ids(&["vm-manager1", "vm-worker1"]);
        assert_eq!(
            ids.len(),
            5,
            "5 replicas answer with 5 distinct ids: {ids:?}"
        );
    }

    cluster.edit("machines.yml", "count: 1\nstacks", "count: 3\nstacks");
    cluster.edit("docker-compose.yml", "replicas: 5", "replicas: 10");
    let scale = cluster.steps();
    assert_eq!(count(&scale, "create_machine"), 2, "{scale:?}");
    assert_eq!(count(&scale, "join_swarm"), 2, "{scale:?}");
    assert_eq!(count(&scale, "scale_service"), 1, "{scale:?}");
    assert_eq!(scale.len(), 5, "{scale:?}");
    let (_, scale_seconds) = cluster.apply();
    cluster.wait_running();
    assert!(cluster.steps().is_empty());
    if backend == Backend::Dind {
        assert!(
            cluster.task_nodes() >= 3,
            "10 tasks should spread over at least 3 nodes"
        );
    }

    cluster.kill_machine("vm-worker1");
    let heal = cluster.steps();
    assert!(
        heal.contains(&"create_machine vm-worker1".to_string()),
        "{heal:?}"
    );
    assert!(
        heal.contains(&"join_swarm vm-worker1".to_string()),
        "{heal:?}"
    );
    assert!(
        heal.iter().all(|s| !s.contains("service")),
        "services untouched: {heal:?}"
    );
    let (_, heal_seconds) = cluster.apply();
    cluster.wait_running();
    assert!(cluster.steps().is_empty());

    cluster.edit("machines.yml", "count: 3\nstacks", "count: 1\nstacks");
    let shrink = cluster.steps();
    assert_retired_in_order(&shrink, "drain_node", &["vm-worker2", "vm-worker3"]);
    cluster.apply();
    cluster.wait_running();
    assert!(cluster.steps().is_empty());
    eprintln!(
        "[{backend:?}] tutorial: from nothing {create_seconds:.1}s, scale-out {scale_seconds:.1}s, replacement {heal_seconds:.1}s"
    );
    if backend == Backend::Dind {
        cluster.ok(&["destroy", "--yes"]);
        let label = format!("label=io.shoal.cluster={}", cluster.dind.name);
        for kind in [
            &["ps", "-aq"][..],
            &["volume", "ls", "-q"],
            &["network", "ls", "-q"],
        ] {
            let mut args = kind.to_vec();
            args.extend(["--filter", &label]);
            let out = Command::new("docker").args(&args).output().expect("docker");
            let left = String::from_utf8_lossy(&out.stdout);
            assert!(left.trim().is_empty(), "destroy left {args:?}: {left}");
        }
    }
}

/// Three managers down to one: one demotion at a time, quorum kept, the leader kept.
fn managers_three_to_one(backend: Backend) {
    let cluster = Cluster::tutorial(backend, "mgr", 3, 0);
    cluster.apply();
    if backend == Backend::Dind {
        leaderless_is_refused_and_nothing_is_written(&cluster);
    }
    cluster.edit(
        "machines.yml",
        "count: 3\n  vm-worker",
        "count: 1\n  vm-worker",
    );
    let steps = cluster.steps();
    assert_eq!(count(&steps, "demote_node"), 2, "{steps:?}");
    assert_retired_in_order(&steps, "demote_node", &["vm-manager2", "vm-manager3"]);
    cluster.apply();
    let status = cluster.status();
    let managers: Vec<&Value> = status["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "manager")
        .collect();
    assert_eq!(managers.len(), 1, "{status:#}");
    assert_eq!(managers[0]["leader"], true);
    assert!(cluster.steps().is_empty());
}

/// A hand-made replica change is one scale_service; a dry run leaves it as it is.
fn drift(backend: Backend) {
    let cluster = Cluster::tutorial(backend, "dft", 1, 1);
    cluster.apply();
    cluster.scale_by_hand("dataapp_dataservice", 2);
    assert_eq!(cluster.steps(), ["scale_service dataapp_dataservice"]);
    let dry = cluster.json(&["apply", "--dry-run", "--json"]);
    assert_eq!(
        dry["dry_run_writes"].as_array().unwrap().len(),
        1,
        "{dry:#}"
    );
    assert_eq!(cluster.steps(), ["scale_service dataapp_dataservice"]);
    cluster.apply();
    assert!(cluster.steps().is_empty());
}

/// Re-deploying a shoal stack with `docker stack deploy --resolve-image never` restarts no
/// task, and what the CLI stored plans to nothing in shoal (the conversions agree).
fn redeploy_by_docker_cli(cluster: &Cluster) {
    let running = || {
        let mut ids: Vec<String> = cluster
            .dind
            .docker(
                "vm-manager1",
                &[
                    "stack",
                    "ps",
                    "dataapp",
                    "-q",
                    "--filter",
                    "desired-state=running",
                ],
            )
            .lines()
            .map(str::to_string)
            .collect();
        ids.sort();
        ids
    };
    let before = running();
    assert!(!before.is_empty());
    let compose = cluster.dind.repo.path().join("docker-compose.yml");
    let compose = compose.to_str().unwrap().to_string();
    cluster.dind.docker(
        "vm-manager1",
        &[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            &compose,
            "dataapp",
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        running(),
        before,
        "docker stack deploy restarted tasks of a shoal stack"
    );
    let steps = cluster.steps();
    assert!(
        steps.is_empty(),
        "a stack deployed by the docker CLI must plan to nothing: {steps:?}"
    );
}

#[test]
fn scenarios_on_sim() {
    tutorial(Backend::Sim);
    managers_three_to_one(Backend::Sim);
    drift(Backend::Sim);
}

#[test]
fn tutorial_on_dind() {
    let _serial = dind_turn();
    tutorial(Backend::Dind);
}

#[test]
fn managers_three_to_one_on_dind() {
    let _serial = dind_turn();
    managers_three_to_one(Backend::Dind);
}

#[test]
fn drift_and_adoption_on_dind() {
    let _serial = dind_turn();
    drift(Backend::Dind);

    let cluster = Cluster::tutorial(Backend::Dind, "adp", 1, 0);
    cluster.edit("docker-compose.yml", "replicas: 5", "replicas: 2");
    cluster.apply();
    cluster.wait_running();
    redeploy_by_docker_cli(&cluster);
}

impl Cluster {
    /// A machine stops, as `docker stop` or a host shutdown does; it keeps its disk.
    fn stop_machine(&self, machine: &str) {
        match self.backend {
            Backend::Sim => {
                self.ok(&["sim", "down-node", machine]);
            }
            Backend::Dind => docker(&["stop", "-t", "2", &format!("{}-{machine}", self.dind.name)]),
        }
    }

    /// What must survive everything below: the swarm's ID, a hand-made secret, the service.
    fn keepsakes(&self) -> (String, String) {
        match self.backend {
            Backend::Sim => {
                let state: Value = serde_json::from_str(&self.dind.repo.sim_state()).unwrap();
                let swarms = state["swarms"].as_object().unwrap();
                (swarms.keys().cloned().collect(), String::new())
            }
            Backend::Dind => (
                self.dind
                    .docker(
                        "vm-manager1",
                        &["info", "--format", "{{.Swarm.Cluster.ID}}"],
                    )
                    .trim()
                    .to_string(),
                self.dind
                    .docker("vm-manager1", &["secret", "ls", "--format", "{{.Name}}"]),
            ),
        }
    }
}

/// Never lose a cluster: stopped machines are started (no destroy, no init) and the swarm, its
/// services and a hand-made secret survive; a machine killed half-way through its creation is
/// finished by re-creating it; on dind, a restart of every node container brings the cluster
/// back by itself.
fn never_lose(backend: Backend) {
    let cluster = Cluster::tutorial(backend, "nvr", 1, 1);
    // Swarm restarts a task that a node's shutdown stopped only under `condition: any` (its
    // default): with `on-failure` the task exited 0 and stays complete. Services that must come
    // back after a host reboot use `any`.
    cluster.edit(
        "docker-compose.yml",
        "condition: on-failure",
        "condition: any",
    );
    cluster.apply();
    if backend == Backend::Dind {
        let secret = cluster.dind.repo.path().join("handmade.txt");
        std::fs::write(&secret, "made by hand").unwrap();
        cluster.dind.docker(
            "vm-manager1",
            &["secret", "create", "handmade", secret.to_str().unwrap()],
        );
    }
    let kept = cluster.keepsakes();

    cluster.stop_machine("vm-manager1");
    assert_eq!(cluster.steps(), ["start_machine vm-manager1"]);
    cluster.apply();
    cluster.wait_running();
    assert_eq!(
        cluster.keepsakes(),
        kept,
        "the swarm survives a stopped manager"
    );

    cluster.stop_machine("vm-manager1");
    cluster.stop_machine("vm-worker1");
    assert_eq!(
        cluster.steps(),
        ["start_machine vm-manager1", "start_machine vm-worker1"]
    );
    let report = cluster.json(&["apply", "--yes", "--json"]);
    assert!(common::all_steps_done(&report), "{report:#}");
    settle_empty(&cluster);
    cluster.wait_running();
    assert_eq!(
        cluster.keepsakes(),
        kept,
        "the swarm survives every machine stopped"
    );

    if backend == Backend::Dind {
        let containers = format!(
            "{}-vm-manager1 {}-vm-worker1",
            cluster.dind.name, cluster.dind.name
        );
        let mut args = vec!["restart", "-t", "2"];
        args.extend(containers.split(' '));
        docker(&args);
        settle_empty(&cluster);
        cluster.wait_running();
        assert_eq!(
            cluster.keepsakes(),
            kept,
            "a restart of every node keeps the swarm"
        );
    }

    cluster.edit("machines.yml", "count: 1\nstacks", "count: 2\nstacks");
    let crashed = cluster
        .dind
        .repo
        .command(&["apply", "--yes"])
        .env(
            "SHOAL_CRASH_AT",
            match backend {
                Backend::Dind => "dind-before-preload",
                Backend::Sim => "after-step-1",
            },
        )
        .output()
        .expect("run shoal");
    assert!(!crashed.status.success(), "the apply was to be killed");
    let heal = cluster.steps();
    if backend == Backend::Dind {
        assert_eq!(
            heal,
            [
                "destroy_machine vm-worker2",
                "create_machine vm-worker2",
                "join_swarm vm-worker2"
            ],
            "a machine killed before its images were loaded is made again"
        );
    }
    cluster.apply();
    cluster.wait_running();
    assert!(cluster.steps().is_empty());
    assert_eq!(cluster.keepsakes(), kept);
}

/// Plans until the plan is empty (the engine elects its leader and reports nodes ready a moment
/// after the machines are back).
fn settle_empty(cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cluster.dind.repo.shoal(&["plan", "--json"]);
        if out.status.success() {
            let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
            if plan["steps"].as_array().is_some_and(Vec::is_empty) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not come back: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Two of three managers frozen (`docker pause`: their engines do not answer, nothing can start
/// them): the swarm has no leader; plan and apply refuse with the recovery and write nothing.
fn leaderless_is_refused_and_nothing_is_written(cluster: &Cluster) {
    let frozen = [
        format!("{}-vm-manager2", cluster.dind.name),
        format!("{}-vm-manager3", cluster.dind.name),
    ];
    let services = || {
        cluster.dind.docker(
            "vm-manager1",
            &[
                "service",
                "inspect",
                "--format",
                "{{.ID}} {{.Version.Index}}",
                "dataapp_dataservice",
            ],
        )
    };
    let before = services();
    for container in &frozen {
        docker(&["pause", container]);
    }
    let refused = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = cluster.dind.repo.shoal(&["plan"]);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.code() == Some(1) && stderr.contains("--force-new-cluster") {
                return stderr;
            }
            assert!(Instant::now() < deadline, "plan did not refuse: {stderr}");
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let stderr = refused();
    assert!(stderr.contains("quorum"), "{stderr}");
    let apply = cluster.dind.repo.shoal(&["apply", "--yes"]);
    assert_eq!(apply.status.code(), Some(1));
    for container in &frozen {
        docker(&["unpause", container]);
    }
    settle_empty(cluster);
    assert_eq!(
        services(),
        before,
        "nothing was written while the swarm had no leader"
    );
}

#[test]
fn never_lose_on_sim() {
    never_lose(Backend::Sim);
}

#[test]
fn never_lose_on_dind() {
    let _serial = dind_turn();
    never_lose(Backend::Dind);
}

/// An apply killed by SIGKILL after each step of building the tutorial cluster from nothing,
/// then run again with no manual step: it converges and every replica runs.
fn crash_at_every_step(backend: Backend) -> (usize, usize) {
    let cluster = Cluster::tutorial(backend, "crs", 1, 1);
    let steps = cluster.steps().len();
    let (mut runs, mut converged) = (0, 0);
    for after in 1..=steps {
        let crashed = cluster
            .dind
            .repo
            .command(&["apply", "--yes"])
            .env("SHOAL_CRASH_AT", format!("after-step-{after}"))
            .output()
            .expect("run shoal");
        assert!(
            !crashed.status.success(),
            "the apply was to be killed after step {after}"
        );
        runs += 1;
        // A node killed right after `swarm init` may report `pending` for a moment, which the
        // plan refuses (it never touches a node in that state): plan again until it answers.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cluster.dind.repo.shoal(&["plan"]).status.success() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
        }
        cluster.apply();
        cluster.wait_running();
        assert!(cluster.steps().is_empty(), "killed after step {after}");
        converged += 1;
        cluster.ok(&["destroy", "--yes"]);
    }
    eprintln!("{backend:?}: {runs} applies killed at a step boundary, {converged} converged with a plain re-run");
    (runs, converged)
}

#[test]
fn crash_at_every_step_on_sim() {
    crash_at_every_step(Backend::Sim);
}

#[test]
fn crash_at_every_step_on_dind() {
    let _serial = dind_turn();
    crash_at_every_step(Backend::Dind);
}
