//! The scenario suite through the `generic` driver, over TLS and over SSH, on real Docker hosts started as
//! containers (see generic_support): the tutorial (join, 5 then 10 replicas, `docker stack ps`
//! through `shoal env`), 1 → 3 managers and back, a host removed from the files, and a host
//! that stops answering (reported, not replaced). Also the time from nothing to converged,
//! against a plain script of docker commands doing the same over the same transport.

use crate::common;
use crate::generic_support;
use crate::watch_support;

use common::{count, crate_path, Repo, TUTORIAL_TASK_NODES};
use generic_support::{
    a_silent_manager_is_kept, copy_client_certs, hosts_turn, run, scale_tutorial_to_ten,
    tutorial_repo, wait_running, Hosts,
};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use watch_support::{get, wait_until, Spawned, WorkRepo};

/// Machines on the three hosts: (name, role, host index).
const ONE_MANAGER_TWO_WORKERS: [(&str, &str, usize); 3] = [
    ("mgr", "manager", 0),
    ("w1", "worker", 1),
    ("w2", "worker", 2),
];

/// A repository whose machines are the given hosts: (name, role, host index), reached over
/// SSH when the hosts answer SSH (the key and known_hosts copied under `ssh/`), else over TLS.
fn write_machines(repo: &Repo, cluster: &str, hosts: &Hosts, machines: &[(&str, &str, usize)]) {
    let ssh = if hosts.answers_ssh() {
        "    ssh: {key: ssh/id_ed25519, known_hosts: ssh/known_hosts}\n"
    } else {
        ""
    };
    let mut text = format!(
        "cluster: {cluster}\ndriver: generic\ndriver_options:\n  generic:\n    tls: certs\n{ssh}machines:\n"
    );
    for (name, role, i) in machines {
        let host = if hosts.answers_ssh() {
            hosts.ssh(*i)
        } else {
            hosts.tcp(*i)
        };
        text.push_str(&format!("  {name}:\n    role: {role}\n    host: {host}\n"));
    }
    text.push_str("stacks:\n  dataapp: docker-compose.yml\n");
    std::fs::write(repo.path().join("machines.yml"), text).unwrap();
}

fn machine<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in status: {status:#}"))
}

/// The same first deployment as a plain script of docker commands over TLS; returns seconds.
fn script_baseline(hosts: &Hosts, compose: &std::path::Path, ssh: bool) -> f64 {
    let cli = |i: usize| {
        if ssh {
            hosts.docker_ssh(i)
        } else {
            hosts.docker_cli(i)
        }
    };
    let start = Instant::now();
    run(cli(0).args([
        "swarm",
        "init",
        "--advertise-addr",
        &hosts.ips[0],
        "--listen-addr",
        "0.0.0.0:2377",
        "--default-addr-pool",
        "10.201.0.0/16",
    ]));
    let token = run(hosts
        .docker_cli(0)
        .args(["swarm", "join-token", "-q", "worker"]));
    for i in 1..hosts.ips.len() {
        run(cli(i).args([
            "swarm",
            "join",
            "--advertise-addr",
            &hosts.ips[i],
            "--token",
            token.trim(),
            &format!("{}:2377", hosts.ips[0]),
        ]));
    }
    run(cli(0).args([
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        compose.to_str().unwrap(),
        "dataapp",
    ]));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let replicas =
            run(hosts
                .docker_cli(0)
                .args(["service", "ls", "--format", "{{.Replicas}}"]));
        if replicas.trim() == "5/5" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "script deploy did not converge: {replicas}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let seconds = start.elapsed().as_secs_f64();
    for i in (0..hosts.ips.len()).rev() {
        let _ = hosts
            .docker_cli(i)
            .args(["swarm", "leave", "--force"])
            .output();
    }
    seconds
}

#[test]
fn generic_over_tls() {
    let _turn = hosts_turn("the generic host tests");
    scenario(false);
}

#[test]
fn generic_over_ssh() {
    let _turn = hosts_turn("the generic host tests");
    scenario(true);
}

/// The suite over TLS on hosts running each engine of the matrix (Docker 28.5: sid's dockerd,
/// built into a node image from Debian's packages) instead of this machine's own.
#[test]
fn generic_over_tls_on_the_matrix_engines() {
    let _turn = hosts_turn("the generic host tests");
    for engine in common::MATRIX_ENGINES {
        let hosts = Hosts::start_engine(engine, &format!("e{engine}"), 3, &["dataservice:1"]);
        scenario_on(hosts, false);
    }
}

/// The suite over TLS, or over SSH (`ssh`).
fn scenario(ssh: bool) {
    let transport = if ssh { "ssh" } else { "tls" };
    scenario_on(
        Hosts::start_with(transport, 3, &["dataservice:1"], ssh),
        ssh,
    );
}

/// The suite on `hosts`, reached over SSH (`ssh`) or TLS.
fn scenario_on(hosts: Hosts, ssh: bool) {
    let transport = if ssh { "ssh" } else { "tls" };
    let repo = tutorial_repo();
    let cluster = format!("g{transport}{}", std::process::id() % 10_000);
    copy_client_certs(&hosts.client_certs(), &repo.path().join("certs"));
    if ssh {
        let to = repo.path().join("ssh");
        std::fs::create_dir_all(&to).unwrap();
        for file in ["id_ed25519", "known_hosts"] {
            std::fs::copy(hosts.ssh_dir().join(file), to.join(file)).unwrap();
        }
    }
    let baseline = script_baseline(&hosts, &repo.path().join("docker-compose.yml"), ssh);

    // Acceptance: three existing hosts → 1 manager, 2 workers, the tutorial stack, then 0 writes.
    write_machines(&repo, &cluster, &hosts, &ONE_MANAGER_TWO_WORKERS);
    repo.ok(&["validate"]);
    let first = repo.steps();
    assert_eq!(count(&first, "create_machine"), 0, "{first:?}");
    assert_eq!(count(&first, "init_swarm"), 1, "{first:?}");
    assert_eq!(count(&first, "join_swarm"), 2, "{first:?}");
    let start = Instant::now();
    repo.apply();
    wait_running(&repo);
    let shoal_seconds = start.elapsed().as_secs_f64();
    assert!(repo.steps().is_empty(), "plan not empty after apply");
    let again = repo.apply();
    assert_eq!(
        again["writes"], 0,
        "a converged apply sent writes: {again:#}"
    );
    // `eval $(shoal env mgr)`, typed as the README shows it, points the docker CLI at the
    // manager: over TLS with the certificates, over SSH through a forward shoal leaves running
    // (the configured key and known_hosts, nothing of the user's ~/.ssh), which
    // `shoal env --unset mgr` ends.
    let home = tempfile::tempdir().unwrap();
    let env_forward = EnvForward {
        repo: &repo,
        home: home.path(),
    };
    let ps = env_forward.docker(&TUTORIAL_TASK_NODES);
    assert_eq!(ps.lines().count(), 5, "{ps}");
    if ssh {
        let socket = env_forward.socket();
        assert!(socket.exists(), "the forward's socket {}", socket.display());
        env_forward.unset();
        assert!(!socket.exists(), "--unset ends the forward");
    }
    drop(env_forward);
    eprintln!(
        "[generic {transport}] 3 hosts from nothing to converged: shoal {shoal_seconds:.1}s, docker script {baseline:.1}s, ratio {:.2}",
        shoal_seconds / baseline
    );

    scale_tutorial_to_ten(&repo);

    // A host removed from the files: drained, leaves, its node removed; never destroyed.
    write_machines(
        &repo,
        &cluster,
        &hosts,
        &[("mgr", "manager", 0), ("w1", "worker", 1)],
    );
    let shrink = repo.steps();
    assert!(shrink.contains(&"drain_node w2".to_string()), "{shrink:?}");
    assert!(shrink.contains(&"remove_node w2".to_string()), "{shrink:?}");
    assert_eq!(count(&shrink, "destroy_machine"), 0, "{shrink:?}");
    repo.apply();
    assert!(repo.steps().is_empty(), "plan not empty after the removal");
    assert_eq!(
        hosts.swarm_state(2),
        "inactive",
        "the dropped host left the swarm"
    );

    // 1 → 3 managers and back.
    write_machines(
        &repo,
        &cluster,
        &hosts,
        &[
            ("mgr", "manager", 0),
            ("w1", "manager", 1),
            ("w2", "manager", 2),
        ],
    );
    let up = repo.steps();
    assert_eq!(
        count(&up, "promote_node") + count(&up, "join_swarm"),
        2,
        "{up:?}"
    );
    repo.apply();
    assert!(repo.steps().is_empty());
    a_silent_manager_is_kept(&repo, &hosts, 2, "w2");
    one_lock_whichever_manager_is_reached(&repo, &hosts);
    another_clusters_swarm_is_refused(&hosts);
    a_wrong_ca_is_unseen_not_in_sync(&cluster, &hosts);
    if ssh {
        one_host_under_two_names_is_refused(&cluster, &hosts);
    }
    write_machines(&repo, &cluster, &hosts, &ONE_MANAGER_TWO_WORKERS);
    let down = repo.steps();
    assert_eq!(count(&down, "demote_node"), 2, "{down:?}");
    repo.apply();
    assert!(repo.steps().is_empty());

    // A host that stops answering is reported, never replaced.
    hosts.pause(2);
    let status = repo.json(&["status", "--json"]);
    assert_eq!(
        machine(&status, "w2")["machine_state"],
        "unreachable",
        "{status:#}"
    );
    let lost = repo.plan();
    let steps = common::steps_of(&lost);
    assert!(
        steps.iter().all(|s| !s.contains("machine")),
        "an unreachable host is not replaced: {steps:?}"
    );
    hosts.unpause(2);

    repo.ok(&["destroy", "--yes"]);
    for i in 0..3 {
        assert_eq!(
            hosts.swarm_state(i),
            "inactive",
            "destroy makes every host leave"
        );
    }
}

/// Issue 17: a second cluster whose only manager is a host of this cluster's swarm plans
/// nothing against it: the swarm records its cluster and is refused, naming both.
fn another_clusters_swarm_is_refused(hosts: &Hosts) {
    let other = common::Repo::empty();
    copy_client_certs(&hosts.client_certs(), &other.path().join("certs"));
    let host = hosts.tcp(0);
    std::fs::write(
        other.path().join("machines.yml"),
        format!(
            "cluster: intruder\ndriver: generic\ndriver_options:\n  generic:\n    tls: certs\nmachines:\n  only:\n    role: manager\n    host: {host}\n"
        ),
    )
    .unwrap();
    let refused = other.shoal(&["plan", "--detailed-exitcode"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("belongs to cluster") && stderr.contains("not to cluster intruder"),
        "{stderr}"
    );
}

/// Issue 18: the apply lock lives in the swarm's Raft store. A lock taken through host 2 (as a
/// process on another host whose machines.yml lists that manager first would) is honoured by
/// this repository, which reaches the swarm through `mgr` first: apply is refused naming the
/// holder, writes nothing, and `shoal unlock` removes it.
fn one_lock_whichever_manager_is_reached(repo: &Repo, hosts: &Hosts) {
    use shoal::docker::{Access, DockerEngine};
    use shoal::drivers::lock::LockHolder;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut elsewhere = LockHolder::this_process("shoal apply");
    elsewhere.host = "another-operator.example".into();
    let access = Access {
        tls: Some(hosts.client_certs()),
        ssh: None,
    };
    runtime.block_on(async {
        let w2 = DockerEngine::connect_remote("w2", &hosts.tcp(2), &access, None)
            .await
            .expect("connect to host 2");
        shoal::drivers::swarm_lock::lock(&w2, &elsewhere, shoal::clock::unix_now(), 600)
            .await
            .expect("lock through host 2");
    });
    repo.edit("docker-compose.yml", "replicas: 10", "replicas: 9");
    let refused = repo.shoal(&["apply", "--yes"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another-operator.example")
            && stderr.contains(&format!("shoal unlock {}", elsewhere.id)),
        "{stderr}"
    );
    let unlocked = repo.ok(&["unlock", &elsewhere.id]);
    assert!(unlocked.contains(&elsewhere.id), "{unlocked}");
    repo.edit("docker-compose.yml", "replicas: 9", "replicas: 10");
    assert!(repo.steps().is_empty());
}

/// A watcher at `--interval 10m` on a TLS generic cluster follows the manager's events over
/// the machine's own TLS connection, so a hand scale through the host's TLS endpoint is healed
/// at once, not at the next resync.
#[test]
fn a_watcher_on_tls_heals_a_hand_scale_by_events() {
    let _turn = hosts_turn("the generic host tests");
    let hosts = Hosts::start("gev", 1, &["dataservice:1"]);
    let repo = WorkRepo::new();
    let cluster = format!("gev{}", std::process::id() % 10_000);
    let machines = format!(
        "cluster: {cluster}\ndriver: generic\nmachines:\n  mgr:\n    role: manager\n    host: {}\n    tls: {}\nstacks:\n  dataapp: docker-compose.yml\n",
        hosts.tcp(0),
        hosts.client_certs().display()
    );
    let compose =
        std::fs::read_to_string(crate_path("examples/dataapp/docker-compose.yml")).unwrap();
    repo.commit(
        &[
            ("machines.yml", &machines),
            ("docker-compose.yml", &compose),
        ],
        "the cluster",
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command
        .args([
            "watch",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "10m",
            "--repo",
        ])
        .arg(repo.path())
        .env("SHOAL_LOG", "shoal=debug")
        .env_remove("DOCKER_HOST");
    let mut watcher = Spawned::spawn(command);
    let addr = watcher.listening(Duration::from_secs(30));
    let replicas = || {
        hosts
            .docker_cli(0)
            .args([
                "service",
                "inspect",
                "--format",
                "{{.Spec.Mode.Replicated.Replicas}}",
                "dataapp_dataservice",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let synced = || {
        let status: Value = serde_json::from_str(&get(addr, "/status").body).unwrap_or_default();
        status["last_reconcile"]["ok"] == true
    };
    assert!(
        wait_until(Duration::from_secs(180), || synced() && replicas() == "5"),
        "the watcher did not deploy the stack: {:?}",
        watcher.seen
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut following = false;
    while !following {
        let Some(line) = watcher.line(deadline.saturating_duration_since(Instant::now())) else {
            break;
        };
        following = line.contains("following the engine events of mgr");
    }
    assert!(
        following,
        "the watcher never followed the manager's events: {:?}",
        watcher.seen
    );

    // A hand scale through the host's own TLS endpoint, as an operator would do it.
    run(hosts
        .docker_cli(0)
        .args(["service", "scale", "--detach", "dataapp_dataservice=2"]));
    let scaled = Instant::now();
    let healed = wait_until(Duration::from_secs(60), || replicas() == "5");
    let latency = scaled.elapsed().as_secs_f64();
    watcher.terminate(Duration::from_secs(60));
    assert!(
        healed,
        "a hand scale was not healed by events within 60 s at --interval 10m: {:?}",
        watcher.seen
    );
    eprintln!("[generic tls] a hand scale healed by the watcher's events in {latency:.1}s");
}

/// Issue 17: a client certificate from another CA is refused by the host; `plan` says what it
/// could not see and why (the TLS error's own words), never "the cluster matches", and
/// `--detailed-exitcode` exits 1.
fn a_wrong_ca_is_unseen_not_in_sync(cluster: &str, hosts: &Hosts) {
    let stranger = tempfile::tempdir().unwrap();
    generic_support::make_pki(stranger.path(), &["127.0.0.1".to_string()]);
    let repo = common::Repo::empty();
    copy_client_certs(&stranger.path().join("client"), &repo.path().join("certs"));
    std::fs::write(
        repo.path().join("machines.yml"),
        format!(
            "cluster: {cluster}\ndriver: generic\ndriver_options:\n  generic:\n    tls: certs\nmachines:\n  mgr:\n    role: manager\n    host: {}\n",
            hosts.tcp(0)
        ),
    )
    .unwrap();
    let out = repo.shoal(&["plan", "--detailed-exitcode"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("Not everything could be seen"), "{text}");
    assert!(!text.contains("The cluster matches"), "{text}");
    assert!(
        text.to_lowercase().contains("certificate"),
        "the TLS error keeps its cause: {text}"
    );
}

/// Issue 17: one host reached over TLS and over SSH is one engine: two machines for it are
/// refused, naming both, before anything is written.
fn one_host_under_two_names_is_refused(cluster: &str, hosts: &Hosts) {
    let repo = common::Repo::empty();
    copy_client_certs(&hosts.client_certs(), &repo.path().join("certs"));
    let to = repo.path().join("ssh");
    std::fs::create_dir_all(&to).unwrap();
    for file in ["id_ed25519", "known_hosts"] {
        std::fs::copy(hosts.ssh_dir().join(file), to.join(file)).unwrap();
    }
    std::fs::write(
        repo.path().join("machines.yml"),
        format!(
            "cluster: {cluster}\ndriver: generic\ndriver_options:\n  generic:\n    tls: certs\n    ssh: {{key: ssh/id_ed25519, known_hosts: ssh/known_hosts}}\nmachines:\n  mgr:\n    role: manager\n    host: {}\n  again:\n    role: manager\n    host: {}\n",
            hosts.tcp(0),
            hosts.ssh(0)
        ),
    )
    .unwrap();
    let out = repo.shoal(&["plan"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("again and mgr reach the same Docker engine"),
        "{stderr}"
    );
}

/// `shoal env` run as a user types it, with its own HOME (where an ssh forward keeps its socket);
/// `shoal env --unset mgr` on drop, so no forward outlives the test.
struct EnvForward<'a> {
    repo: &'a Repo,
    home: &'a std::path::Path,
}

impl EnvForward<'_> {
    /// `bash -c 'eval $(shoal env --repo R mgr); docker ARGS'`, unquoted as the README shows it.
    fn docker(&self, args: &[&str]) -> String {
        let shoal = env!("CARGO_BIN_EXE_shoal");
        let script = format!(
            "eval $({shoal} env --repo {} mgr) && docker \"$@\"",
            self.repo.path().display()
        );
        let mut command = Command::new("bash");
        command
            .args(["-c", &script, "bash"])
            .args(args)
            .env("HOME", self.home)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        run(&mut command)
    }

    /// Where an ssh forward's socket is.
    fn socket(&self) -> std::path::PathBuf {
        let clusters = self.home.join(".cache/shoal/env");
        let dir = std::fs::read_dir(&clusters)
            .unwrap_or_else(|e| panic!("{}: {e}", clusters.display()))
            .filter_map(Result::ok)
            .find(|entry| entry.file_name().to_string_lossy().ends_with("-mgr"))
            .expect("a forward folder for mgr");
        dir.path().join("docker.sock")
    }

    fn unset(&self) {
        let out = self
            .repo
            .command(&["env", "--unset", "mgr"])
            .env("HOME", self.home)
            .output()
            .expect("shoal env --unset");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for EnvForward<'_> {
    fn drop(&mut self) {
        let _ = self
            .repo
            .command(&["env", "--unset", "mgr"])
            .env("HOME", self.home)
            .output();
    }
}
