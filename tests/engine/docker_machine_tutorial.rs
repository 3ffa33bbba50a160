//! The scenario suite through the `docker-machine` driver, with the stand-in `docker-machine`
//! (tests/support/docker-machine) first on PATH: the tutorial on engines registered with
//! `--driver none --url` (1 manager, 2 workers, 5 then 10 replicas, a second apply sends 0
//! writes), a machine dropped from the files (drained, removed, `rm -y`'d), machines that the
//! test driver provisions and that are stopped and started again, and failing creates, which are
//! reported with the machine named and leave nothing half-made.

use crate::common;
use crate::generic_support;

use common::{count, crate_path, Repo, TUTORIAL_TASK_NODES};
use generic_support::{
    a_silent_manager_is_kept, copy_client_certs, docker_via_env, hosts_turn, run,
    scale_tutorial_to_ten, tutorial_repo, wait_running, Hosts,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Puts the stand-in first on PATH, for this test process and the shoal it runs. The engine
/// tier is one process: the variables are set while no engine test runs beside (they read the
/// environment in process), so call this before taking a turn ([`hosts_turn`]).
fn stand_in_on_path() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _alone = crate::common::engine_lock();
        let dir = crate_path("tests/support");
        let path = std::env::var("PATH").unwrap_or_default();
        std::env::set_var("PATH", format!("{}:{path}", dir.display()));
        std::env::set_var("SHOAL_TEST_DM_LOG", "1");
    });
}

/// The stand-in run on `store`.
fn docker_machine(store: &Path) -> Command {
    let mut command = Command::new(crate_path("tests/support/docker-machine"));
    command
        .arg("--storage-path")
        .arg(store)
        .env("MACHINE_BUGSNAG_API_TOKEN", "no-report");
    command
}

/// A docker-machine store whose `certs/` holds the engines' CA and a client certificate.
fn store_with_certs(client: &Path) -> tempfile::TempDir {
    let store = tempfile::tempdir().expect("temp dir");
    copy_client_certs(client, &store.path().join("certs"));
    store
}

/// machines.yml for the docker-machine driver: `options` under `driver_options.docker-machine`,
/// machines as (name, role, per-machine flags).
fn write_machines(repo: &Repo, cluster: &str, options: &str, machines: &[(&str, &str, String)]) {
    let mut text = format!(
        "cluster: {cluster}\ndriver: docker-machine\ndriver_options:\n  docker-machine:\n{options}machines:\n"
    );
    for (name, role, flags) in machines {
        text.push_str(&format!("  {name}:\n    role: {role}\n"));
        if !flags.is_empty() {
            text.push_str(&format!("    flags: {flags}\n"));
        }
    }
    text.push_str("stacks:\n  dataapp: docker-compose.yml\n");
    std::fs::write(repo.path().join("machines.yml"), text).unwrap();
}

fn machine_state(repo: &Repo, name: &str) -> String {
    let status = repo.json(&["status", "--json"]);
    status["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .map(|m| m["machine_state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| format!("absent: {status:#}"))
}

/// Every docker-machine call made on a store (`stand-in-calls.log`); each must have had crash
/// reports turned off (the test's own calls have no machine-side effects worth reporting, and
/// go through [`docker_machine`], which sets it too).
fn calls(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines() {
        assert!(
            line.starts_with("no-report "),
            "a docker-machine call without MACHINE_BUGSNAG_API_TOKEN=no-report: {line}"
        );
    }
    text.lines().map(str::to_string).collect()
}

#[test]
fn tutorial_on_registered_engines() {
    stand_in_on_path();
    let _turn = hosts_turn("the docker-machine tests");
    registered_engines_tutorial(&Hosts::start("dm", 3, &["dataservice:1"]));
}

/// The tutorial on engines of each version of the engine matrix (Docker 28.5: hosts running
/// the matrix's node image), registered with `docker-machine create --driver none`.
#[test]
fn tutorial_on_registered_engines_of_the_matrix() {
    stand_in_on_path();
    let _turn = hosts_turn("the docker-machine tests");
    for engine in common::MATRIX_ENGINES {
        let hosts = Hosts::start_engine(engine, &format!("dm{engine}"), 3, &["dataservice:1"]);
        registered_engines_tutorial(&hosts);
    }
}

/// Three hosts registered as machines: the tutorial, ten replicas, three managers with one
/// frozen, a machine dropped, one that stops answering, and destroy.
fn registered_engines_tutorial(hosts: &Hosts) {
    let store = store_with_certs(&hosts.client_certs());
    let log = store.path().join("stand-in-calls.log");
    let repo = tutorial_repo();
    let cluster = format!("dm{}", std::process::id() % 10_000);
    let options = format!(
        "    driver: none\n    storage_path: {}\n",
        store.path().display()
    );
    let url = |i: usize| format!("[\"--url\", \"{}\"]", hosts.tcp(i));
    write_machines(
        &repo,
        &cluster,
        &options,
        &[
            ("mgr", "manager", url(0)),
            ("w1", "worker", url(1)),
            ("w2", "worker", url(2)),
        ],
    );
    repo.ok(&["validate"]);

    // Acceptance: 1 manager, 2 workers, the tutorial stack, then a second apply sends 0 writes.
    let first = repo.steps();
    assert_eq!(count(&first, "create_machine"), 3, "{first:?}");
    assert_eq!(count(&first, "init_swarm"), 1, "{first:?}");
    assert_eq!(count(&first, "join_swarm"), 2, "{first:?}");
    repo.apply();
    wait_running(&repo);
    assert!(repo.steps().is_empty(), "plan not empty after apply");
    let again = repo.apply();
    assert_eq!(
        again["writes"], 0,
        "a converged apply sent writes: {again:#}"
    );
    let made = calls(&log);
    assert_eq!(
        made.iter()
            .filter(|c| c.contains(&format!(
                "create --driver none --engine-label io.shoal.cluster={cluster} --url {}",
                hosts.tcp(1)
            )))
            .count(),
        1,
        "{made:#?}"
    );
    assert!(
        !made.iter().any(|c| c.contains(" status ")),
        "status is only asked of machines whose engine does not answer: {made:#?}"
    );
    let listed = run(docker_machine(store.path()).args(["ls", "-q"]));
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [
            format!("{cluster}-mgr"),
            format!("{cluster}-w1"),
            format!("{cluster}-w2")
        ]
    );

    // `shoal env` prints docker-machine env's four exports; the docker CLI reaches the stack.
    let env = repo.ok(&["env", "mgr"]);
    assert!(
        env.contains(&format!("DOCKER_MACHINE_NAME='{cluster}-mgr'"))
            || env.contains(&format!("DOCKER_MACHINE_NAME={cluster}-mgr")),
        "{env}"
    );
    let ps = run(docker_via_env(&repo, "mgr").args(TUTORIAL_TASK_NODES));
    assert_eq!(ps.lines().count(), 5, "{ps}");

    scale_tutorial_to_ten(&repo);

    // Issue 17, on docker-machine: three managers, one of which freezes and then reboots, is
    // waited for and keeps its node; then back to one manager.
    let managers = |role: &'static str| {
        [
            ("mgr", "manager", url(0)),
            ("w1", role, url(1)),
            ("w2", role, url(2)),
        ]
    };
    write_machines(&repo, &cluster, &options, &managers("manager"));
    repo.apply();
    assert!(
        repo.steps().is_empty(),
        "plan not empty with three managers"
    );
    a_silent_manager_is_kept(&repo, hosts, 2, "w2");
    write_machines(&repo, &cluster, &options, &managers("worker"));
    repo.apply();
    assert!(
        repo.steps().is_empty(),
        "plan not empty back at one manager"
    );

    // A machine dropped from the files: drained, its node removed, then `rm -y`.
    write_machines(
        &repo,
        &cluster,
        &options,
        &[("mgr", "manager", url(0)), ("w1", "worker", url(1))],
    );
    let shrink = repo.steps();
    assert_eq!(
        shrink,
        ["drain_node w2", "remove_node w2", "destroy_machine w2"],
        "{shrink:?}"
    );
    repo.apply();
    assert!(repo.steps().is_empty(), "plan not empty after the removal");
    assert!(calls(&log)
        .iter()
        .any(|c| c.ends_with(&format!("rm -y {cluster}-w2"))));
    let listed = run(docker_machine(store.path()).args(["ls", "-q"]));
    assert!(!listed.contains(&format!("{cluster}-w2")), "{listed}");
    assert_eq!(
        hosts.swarm_state(2),
        "inactive",
        "the dropped machine left the swarm"
    );

    // A machine whose engine stops answering: `none` says Running, so it is unreachable.
    hosts.pause(1);
    assert_eq!(machine_state(&repo, "w1"), "unreachable");
    let lost = common::steps_of(&repo.plan());
    assert!(
        lost.iter().all(|s| !s.contains("machine")),
        "an unreachable machine is not replaced: {lost:?}"
    );
    hosts.unpause(1);

    // destroy: every engine leaves its swarm and every machine is removed.
    repo.ok(&["destroy", "--yes"]);
    assert_eq!(run(docker_machine(store.path()).args(["ls", "-q"])), "");
    for i in 0..2 {
        assert_eq!(
            hosts.swarm_state(i),
            "inactive",
            "destroy makes every engine leave"
        );
    }
}

/// The containers the stand-in's test driver started for `store`, removed on drop.
struct ProvisionedHosts {
    store: tempfile::TempDir,
    network: String,
}

impl Drop for ProvisionedHosts {
    fn drop(&mut self) {
        let label = format!(
            "label=io.shoal.test.dm-store={}",
            self.store.path().display()
        );
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
            }
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

#[test]
fn provisioned_machines_are_created_stopped_and_started() {
    stand_in_on_path();
    let _turn = hosts_turn("the docker-machine tests");
    let image = generic_support::node_image();
    let id = std::process::id() % 10_000;
    let third = 100 + (id + 50) % 100;
    let hosts = ProvisionedHosts {
        store: tempfile::tempdir().expect("temp dir"),
        network: format!("shoal-dmt{id}-net"),
    };
    run(Command::new("docker").args([
        "network",
        "create",
        "--subnet",
        &format!("172.29.{third}.0/24"),
        &hosts.network,
    ]));
    let log = hosts.store.path().join("stand-in-calls.log");
    let repo = tutorial_repo();
    let cluster = format!("dmt{id}");
    let options = format!(
        "    driver: shoaltest\n    storage_path: {}\n    flags: [\"--shoaltest-network={}\", \"--shoaltest-image={image}\", \"--shoaltest-preload=dataservice:1\"]\n",
        hosts.store.path().display(),
        hosts.network
    );
    let ip = |i: u32| format!("[\"--shoaltest-ip=172.29.{third}.{}\"]", 10 + i);
    write_machines(
        &repo,
        &cluster,
        &options,
        &[("mgr", "manager", ip(0)), ("w1", "worker", ip(1))],
    );
    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 2");
    repo.apply();
    wait_running(&repo);
    assert!(repo.steps().is_empty(), "plan not empty after apply");
    // The provisioned TLS files are docker-machine's own: no copying was needed.
    let dir = hosts.store.path().join(format!("machines/{cluster}-w1"));
    assert!(dir.join("server.pem").is_file() && dir.join("cert.pem").is_file());

    // A stopped machine is started with `docker-machine start`, never replaced.
    run(docker_machine(hosts.store.path()).args(["stop", &format!("{cluster}-w1")]));
    assert_eq!(machine_state(&repo, "w1"), "stopped");
    let heal = repo.steps();
    assert_eq!(
        heal.first().map(String::as_str),
        Some("start_machine w1"),
        "{heal:?}"
    );
    assert_eq!(
        count(&heal, "create_machine") + count(&heal, "destroy_machine"),
        0,
        "{heal:?}"
    );
    repo.apply();
    assert_eq!(machine_state(&repo, "w1"), "running");
    assert!(calls(&log)
        .iter()
        .any(|c| c.ends_with(&format!("start {cluster}-w1"))));

    // A machine gone behind shoal's back (removed from docker-machine) is created again.
    run(docker_machine(hosts.store.path()).args(["rm", "-y", &format!("{cluster}-w1")]));
    let again = repo.steps();
    assert!(
        again.contains(&"create_machine w1".to_string()),
        "{again:?}"
    );

    repo.ok(&["destroy", "--yes"]);
    assert_eq!(
        run(docker_machine(hosts.store.path()).args(["ls", "-q"])),
        ""
    );
}

#[test]
fn failing_creates_are_reported_with_the_machine_named() {
    stand_in_on_path();
    let store = tempfile::tempdir().expect("temp dir");
    let log = store.path().join("stand-in-calls.log");
    let repo = tutorial_repo();
    for (driver, said, code) in [
        (
            "kvm",
            "Driver \"kvm\" not found. Do you have the plugin binary \"docker-machine-driver-kvm\" accessible in your PATH?",
            1,
        ),
        (
            "virtualbox",
            "Error with pre-create check: \"VBoxManage not found. Make sure VirtualBox is installed and VBoxManage is in the path\"",
            3,
        ),
    ] {
        let options = format!(
            "    driver: {driver}\n    storage_path: {}\n",
            store.path().display()
        );
        write_machines(
            &repo,
            "fail",
            &options,
            &[
                ("mgr", "manager", String::new()),
                ("w1", "worker", String::new()),
            ],
        );
        let out = repo.shoal(&["apply", "--yes"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{text}");
        for machine in ["mgr", "w1"] {
            let expected = format!(
                "machine {machine}: `docker-machine create` failed (exit {code}): {said}"
            );
            assert!(text.contains(&expected), "{expected}\nnot in:\n{text}");
        }
        assert!(!text.contains("init_swarm") || text.contains("skipped"), "{text}");
        assert_eq!(run(docker_machine(store.path()).args(["ls", "-q"])), "");
        assert_eq!(
            std::fs::read_dir(store.path().join("machines"))
                .map(|d| d.count())
                .unwrap_or(0),
            0,
            "nothing is half-made"
        );
    }
    let made = calls(&log);
    assert!(
        made.iter().any(
            |c| c.contains("create --driver kvm --engine-label io.shoal.cluster=fail fail-mgr")
        ),
        "{made:#?}"
    );
}

#[test]
fn a_machine_without_its_tls_files_is_incomplete_and_replaced() {
    stand_in_on_path();
    let store = tempfile::tempdir().expect("temp dir");
    let repo = tutorial_repo();
    let options = format!(
        "    driver: none\n    storage_path: {}\n",
        store.path().display()
    );
    let url = "[\"--url\", \"tcp://127.0.0.1:9\"]".to_string();
    write_machines(&repo, "half", &options, &[("mgr", "manager", url)]);
    // Registered with the cluster's label, but docker-machine wrote no TLS files into the
    // machine's folder.
    run(docker_machine(store.path()).args([
        "create",
        "--driver",
        "none",
        "--url",
        "tcp://127.0.0.1:9",
        "--engine-label",
        "io.shoal.cluster=half",
        "half-mgr",
    ]));
    assert_eq!(machine_state(&repo, "mgr"), "incomplete");
    let steps = repo.steps();
    assert_eq!(
        &steps[..2],
        ["destroy_machine mgr", "create_machine mgr"],
        "{steps:?}"
    );
}

/// The stand-in's own contract, as notes/realmachines.md §3 records docker-machine's.
#[test]
fn the_stand_in_follows_the_transcripts() {
    let store = tempfile::tempdir().expect("temp dir");
    let dm = |args: &[&str]| {
        let out = docker_machine(store.path()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let register = [
        "create",
        "--driver",
        "none",
        "--url",
        "tcp://10.9.0.2:2376",
        "c-m",
    ];
    let (code, _, err) = dm(&["create", "--driver", "none", "c-m"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--url option is required when no driver is selected"));
    let (code, out, _) = dm(&register);
    assert_eq!(code, Some(0), "{out}");
    for file in ["ca.pem", "ca-key.pem", "cert.pem", "key.pem"] {
        assert!(
            store.path().join("certs").join(file).is_file(),
            "certs/{file}"
        );
    }
    let machine: PathBuf = store.path().join("machines/c-m");
    assert!(machine.join("config.json").is_file());
    assert!(!machine.join("ca.pem").exists(), "none skips provisioning");
    let (_, inspect, _) = dm(&["inspect", "c-m"]);
    let json: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(json["Driver"]["URL"], "tcp://10.9.0.2:2376");
    assert_eq!(json["DriverName"], "none");
    assert_eq!(
        json["HostOptions"]["AuthOptions"]["StorePath"],
        machine.display().to_string()
    );
    assert_eq!(dm(&["url", "c-m"]).1, "tcp://10.9.0.2:2376\n");
    assert_eq!(dm(&["ip", "c-m"]).1, "10.9.0.2:2376\n");
    assert_eq!(dm(&["status", "c-m"]).1, "Running\n");
    assert_eq!(dm(&["ls", "-q"]).1, "c-m\n");
    let (code, _, err) = dm(&register);
    assert_eq!(
        (code, err.trim()),
        (Some(1), "Docker machine \"c-m\" already exists")
    );
    let (code, out, _) = dm(&["rm", "-y", "c-m"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "About to remove c-m\nWARNING: This action will delete both local reference and remote instance.\nSuccessfully removed c-m\n"
    );
    let (code, _, err) = dm(&["inspect", "c-m"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err.trim(),
        "Docker machine \"c-m\" does not exist. Use \"docker-machine ls\" to list machines. Use \"docker-machine create\" to add a new one."
    );
}

/// Text of both output streams.
fn both(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn listed_names(repo: &Repo) -> Vec<String> {
    let status = repo.json(&["status", "--json"]);
    let mut names: Vec<String> = status["machines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn a_cluster_never_touches_a_machine_its_label_does_not_name() {
    stand_in_on_path();
    let store = tempfile::tempdir().unwrap();
    let log = store.path().join("stand-in-calls.log");
    let create = |name: &str, label: Option<&str>| {
        let mut command = docker_machine(store.path());
        command.args(["create", "--driver", "none", "--url", "tcp://127.0.0.1:9"]);
        if let Some(label) = label {
            command.args(["--engine-label", label]);
        }
        run(command.arg(name));
    };
    // Made by hand in the same store: `web-staging` (no label) is not machine `staging` of web;
    // `web-prod-m1` is machine `m1` of cluster web-prod, not `prod-m1` of web; `web-x` carries
    // the label of a cluster whose name extends web's.
    create("web-staging", None);
    create("web-prod-m1", Some("io.shoal.cluster=web-prod"));
    create("web-x", Some("io.shoal.cluster=webx"));
    create("web-m3", Some("io.shoal.cluster=web"));
    std::fs::remove_file(&log).unwrap();
    let repo = Repo::empty();
    let options = format!(
        "    driver: none\n    storage_path: {}\n",
        store.path().display()
    );
    let url = "[\"--url\", \"tcp://127.0.0.1:9\"]".to_string();
    write_machines(&repo, "web", &options, &[("m3", "manager", url.clone())]);
    std::fs::write(repo.path().join("docker-compose.yml"), "services: {}\n").unwrap();
    assert_eq!(listed_names(&repo), ["m3"]);

    let plan = repo.shoal(&["plan"]);
    let text = both(&plan);
    assert!(
        text.contains("web-staging") && text.contains("adopt: [web-staging]"),
        "the unlabelled machine is named with the way to adopt it:\n{text}"
    );
    assert!(
        !text.contains("dind driver option"),
        "docker-machine's options are not read as dind's:\n{text}"
    );
    let steps = repo.steps();
    assert!(
        steps
            .iter()
            .all(|s| !s.contains("staging") && !s.contains("prod") && !s.contains(" x")),
        "{steps:?}"
    );
    let _ = repo.shoal(&["apply", "--yes"]);
    let _ = repo.shoal(&["destroy", "--yes"]);
    let touched: Vec<String> = calls(&log)
        .into_iter()
        .filter(|c| {
            [" rm ", " start ", " create "]
                .iter()
                .any(|verb| c.contains(verb))
        })
        .collect();
    assert!(
        !touched.is_empty() && touched.iter().all(|c| c.ends_with(" web-m3")),
        "only web's own machine is created, started or removed: {touched:#?}"
    );
    assert_eq!(
        run(docker_machine(store.path()).args(["ls", "-q"])),
        "web-prod-m1\nweb-staging\nweb-x\n"
    );

    // Asked for by name, it is still not created over, started or joined.
    write_machines(
        &repo,
        "web",
        &options,
        &[("staging", "manager", url.clone())],
    );
    let out = repo.shoal(&["apply", "--yes"]);
    let text = both(&out);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("web-staging has no io.shoal.cluster=web engine label, so shoal does not create over it"),
        "{text}"
    );
    assert!(
        calls(&log)
            .iter()
            .all(|c| !c.ends_with(" web-staging") || c.contains(" inspect ")),
        "{:#?}",
        calls(&log)
    );

    // Adopted explicitly, the hand-made machine is web's.
    let adopt = format!("{options}    adopt: [web-staging]\n");
    write_machines(&repo, "web", &adopt, &[("m3", "manager", url)]);
    repo.ok(&["validate"]);
    let status = repo.json(&["status", "--json"]);
    let staging = status["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "staging");
    assert!(
        staging.is_some_and(|m| m["machine_state"] == "incomplete"),
        "adopted, web-staging is machine `staging` of web: {status:#}"
    );
}

#[test]
fn a_create_that_fails_halfway_is_rolled_back_or_recreated() {
    stand_in_on_path();
    let store = tempfile::tempdir().expect("temp dir");
    let log = store.path().join("stand-in-calls.log");
    let repo = tutorial_repo();
    let options = format!(
        "    driver: none\n    storage_path: {}\n",
        store.path().display()
    );
    let url = "[\"--url\", \"tcp://127.0.0.1:9\"]".to_string();
    write_machines(&repo, "half", &options, &[("mgr", "manager", url)]);
    let apply = |env: &[(&str, &str)]| {
        let mut command = repo.command(&["apply", "--yes"]);
        command.envs(env.iter().copied());
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", both(&out));
        both(&out)
    };

    // Registered, then failed: what the create made is removed (forced: the driver cannot).
    let text = apply(&[("SHOAL_TEST_DM_CREATE_FAILS", "1")]);
    assert!(text.contains("Error running provisioning"), "{text}");
    assert_eq!(run(docker_machine(store.path()).args(["ls", "-q"])), "");
    assert!(calls(&log).iter().any(|c| c.ends_with("rm -f -y half-mgr")));
    assert_eq!(
        repo.steps().first().map(String::as_str),
        Some("create_machine mgr")
    );

    // When even that fails, the machine is incomplete (never "waited for") and re-created.
    apply(&[
        ("SHOAL_TEST_DM_CREATE_FAILS", "1"),
        ("SHOAL_TEST_DM_RM_FAILS", "1"),
    ]);
    assert_eq!(machine_state(&repo, "mgr"), "incomplete");
    let steps = repo.steps();
    assert_eq!(
        &steps[..2],
        ["destroy_machine mgr", "create_machine mgr"],
        "{steps:?}"
    );
    apply(&[("SHOAL_TEST_DM_CREATE_FAILS", "1")]);
    assert_eq!(run(docker_machine(store.path()).args(["ls", "-q"])), "");
    assert_eq!(
        repo.steps().first().map(String::as_str),
        Some("create_machine mgr")
    );
}
