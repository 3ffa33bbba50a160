//! The tutorial on local VMs with real kernels (`driver: qemu`), the acceptance: the
//! dataapp example with one manager and two workers from nothing to five replicas; port 4000 of
//! every VM answers through the routing mesh and spreads 20 requests over at least two tasks; a
//! worker's qemu process killed with SIGKILL is planned as exactly one `start_machine` and comes
//! back as the same node; `shoal destroy` leaves no VM, device, firewall rule or file behind.
//!
//! Under emulation (this machine's KVM cannot boot a standard kernel) the VMs boot in about a
//! minute each; the test prints its timings. It needs root (a bridge and tap devices), qemu and
//! Debian's archive (the kernel package); `.ci/deps` installs the programs.

use crate::common::{self, build_demo_image, engine_turn, Repo};
use serde_json::Value;
use shoal::drivers::qemu::vm;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The cluster's name: unique to this test, so that its VMs' folder and devices are its own.
const CLUSTER: &str = "shoal-test-qemu";

/// The repository and the VMs' state folder; `shoal destroy --yes` when dropped, pass or fail,
/// then any qemu process left running on a disk of that folder is killed.
struct QemuCluster {
    repo: Repo,
    state: tempfile::TempDir,
}

impl Drop for QemuCluster {
    fn drop(&mut self) {
        let _ = self.repo.shoal(&["destroy", "--yes"]);
        for pid in running_vms(self.state.path()) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// The pids of the qemu processes running a VM disk under `state`: checked against each
/// process's command line as the driver does, so a reused pid is never taken for a VM.
fn running_vms(state: &Path) -> Vec<i32> {
    let machines = state.join(CLUSTER).join("machines");
    std::fs::read_dir(machines)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let dir = e.path();
                    vm::running_pid(&dir.join("qemu.pid"), &dir.join("disk.qcow2"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Fails, naming what to install, when what the qemu driver needs is missing.
fn require_qemu() {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "the qemu driver's test needs qemu-system-x86_64: apt-get install qemu-system-x86 qemu-utils (.ci/deps does)"
    );
    assert!(
        rustix::process::getuid().is_root(),
        "the qemu driver's test needs root (a bridge and tap devices)"
    );
}

/// The machines' entries of `status --json`, by name.
fn machines(repo: &Repo) -> Vec<Value> {
    repo.json(&["status", "--json"])["machines"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The address `shoal env MACHINE` points DOCKER_HOST at.
fn address_of(repo: &Repo, machine: &str) -> String {
    let exports = common::env_exports(&repo.ok(&["env", machine]));
    let host = exports.get("DOCKER_HOST").cloned().unwrap_or_default();
    host.trim_start_matches("tcp://")
        .rsplit_once(':')
        .map(|(address, _)| address.to_string())
        .unwrap_or_else(|| panic!("shoal env {machine}: no tcp:// DOCKER_HOST in {exports:?}"))
}

/// One HTTP GET of `http://ADDRESS:4000/`: the task's `<id>` (its hostname), if it answered.
fn task_answering(address: &str) -> Option<String> {
    use std::io::{Read, Write};
    let target: std::net::SocketAddr = format!("{address}:4000").parse().ok()?;
    let mut stream = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(3)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET / HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let start = answer.find("<id>")? + 4;
    let end = answer[start..].find("</id>")? + start;
    Some(answer[start..end].to_string())
}

/// Waits (up to `within`) until port 4000 of `address` answers, as the mesh converges.
fn wait_for_mesh(address: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if task_answering(address).is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    false
}

#[test]
fn the_tutorial_runs_on_qemu_vms_with_the_routing_mesh() {
    require_qemu();
    build_demo_image();
    let _turn = engine_turn("qemu tutorial");
    let state = tempfile::tempdir().expect("temp dir");
    let repo = Repo::copy_of("examples/dataapp");
    std::fs::write(
        repo.path().join("machines.yml"),
        format!(
            "cluster: {CLUSTER}\ndriver: qemu\ndriver_options:\n  qemu:\n    preload_images: [dataservice:1]\n    state_dir: {}\nmachines:\n  vm-manager:\n    role: manager\n  vm-worker:\n    role: worker\n    count: 2\nstacks:\n  dataapp: docker-compose.yml\n",
            state.path().display()
        ),
    )
    .unwrap();
    let cluster = QemuCluster { repo, state };
    let repo = &cluster.repo;

    // From nothing to five replicas.
    let started = Instant::now();
    let report = repo.json(&["apply", "--yes", "--json", "--timeout", "15m"]);
    assert_eq!(
        report["converged"], true,
        "the tutorial did not converge: {report:#}"
    );
    println!(
        "qemu tutorial: from nothing to 5 replicas in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let status = repo.json(&["status", "--json"]);
    let service = &status["services"][0];
    assert_eq!(service["health"]["state"], "healthy", "{status:#}");

    // The routing mesh: port 4000 of every VM answers, and one VM spreads requests.
    let names = ["vm-manager", "vm-worker1", "vm-worker2"];
    let addresses: Vec<String> = names.iter().map(|m| address_of(repo, m)).collect();
    for (machine, address) in names.iter().zip(&addresses) {
        assert!(
            wait_for_mesh(address, Duration::from_secs(180)),
            "port 4000 of {machine} ({address}) does not answer: the routing mesh does not work"
        );
    }
    let answered: Vec<String> = (0..20)
        .filter_map(|_| task_answering(&addresses[1]))
        .collect();
    let tasks: BTreeSet<&String> = answered.iter().collect();
    assert!(
        answered.len() >= 18,
        "only {} of 20 requests answered",
        answered.len()
    );
    assert!(
        tasks.len() >= 2,
        "20 requests to one VM reached only {tasks:?}"
    );

    // A worker's qemu process killed: exactly one start_machine, then the same node, Ready.
    let node_of = |repo: &Repo, machine: &str| {
        machines(repo)
            .into_iter()
            .find(|m| m["name"] == machine)
            .map(|m| (m["node_id"].as_str().unwrap_or_default().to_string(), m))
            .unwrap_or_else(|| panic!("no machine {machine} in status"))
    };
    let (node_before, _) = node_of(repo, "vm-worker1");
    assert!(!node_before.is_empty());
    let pidfile = cluster
        .state
        .path()
        .join(CLUSTER)
        .join("machines/vm-worker1/qemu.pid");
    let pid = std::fs::read_to_string(&pidfile).expect("the worker's pid file");
    let killed = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_secs(1));
    let steps = repo.steps();
    assert_eq!(
        steps,
        ["start_machine vm-worker1"],
        "after kill -9 of the worker's qemu"
    );
    let started = Instant::now();
    repo.apply();
    println!(
        "qemu tutorial: a killed worker started again in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let (node_after, entry) = node_of(repo, "vm-worker1");
    assert_eq!(
        node_after, node_before,
        "the worker came back as another node: {entry:#}"
    );
    assert_eq!(entry["node_state"], "ready", "{entry:#}");

    // destroy: no VM, device, firewall rule or file is left.
    let bridge_and_taps: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("shq") || n.starts_with("sqt"))
        .collect();
    assert!(bridge_and_taps.len() >= 4, "{bridge_and_taps:?}");
    repo.ok(&["destroy", "--yes"]);
    assert!(
        !cluster.state.path().join(CLUSTER).exists(),
        "the cluster's folder is left"
    );
    for device in &bridge_and_taps {
        assert!(
            !Path::new("/sys/class/net").join(device).exists(),
            "{device} is left"
        );
    }
    let rules = Command::new("iptables")
        .args(["-S", "FORWARD"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    for device in &bridge_and_taps {
        assert!(
            !rules.contains(device.as_str()),
            "a firewall rule for {device} is left:\n{rules}"
        );
    }
    assert!(running_vms(cluster.state.path()).is_empty());
}
