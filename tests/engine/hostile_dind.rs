//! On a real dind cluster: a stack whose port another stack holds and whose external network
//! does not exist is refused by plan and by apply, and nothing is written; the engine's own
//! refusals read as the sim's (the sim is its test double).
//!
//! Needs Docker: fails, saying so, when no engine answers. The cluster is destroyed when the test ends, failed or not.
//! No image is pulled: the services made by hand have no replicas and an unresolved image.

use crate::common;

use common::Repo;
use std::process::{Command, Stdio};

/// A cluster repository destroyed on drop.
struct Cluster(Repo);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.0.shoal(&["destroy", "--yes"]);
    }
}

impl Cluster {
    /// Runs the docker CLI against the manager's engine: (success, stdout + stderr).
    fn docker(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        let env = common::env_exports(&self.0.ok(&["env", "vm-manager"]));
        let mut child = Command::new("docker")
            .args(args)
            .envs(&env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker");
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn must(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, text) = self.docker(args, stdin);
        assert!(ok, "docker {args:?}: {text}");
        text
    }
}

/// `docker service create` of a service that never runs a task (no pull, no scheduling).
const IDLE: [&str; 6] = [
    "service",
    "create",
    "--detach",
    "--no-resolve-image",
    "--replicas",
    "0",
];

#[test]
fn a_held_port_and_a_missing_network_are_refused_on_dind_before_any_write() {
    let _turn = common::engine_turn("the dind hostile-input test");
    let repo = Repo::empty();
    let name = format!("hst{}", std::process::id() % 10_000);
    std::fs::write(
        repo.path().join("machines.yml"),
        format!("cluster: {name}\ndriver: dind\nmachines:\n  vm-manager:\n    role: manager\nstacks: {{}}\n"),
    )
    .unwrap();
    let cluster = Cluster(repo);
    cluster.0.apply();

    // Another stack holds port 4000; the engine's own texts, which the sim repeats.
    let mut squatter = IDLE.to_vec();
    squatter.extend([
        "--name",
        "other_squatter",
        "--label",
        "com.docker.stack.namespace=other",
        "--publish",
        "4000:80",
        "nginx:1",
    ]);
    cluster.must(&squatter, None);
    let mut taker = IDLE.to_vec();
    taker.extend(["--name", "taker", "--publish", "4000:81", "nginx:1"]);
    let (ok, said) = cluster.docker(&taker, None);
    assert!(!ok, "{said}");
    assert!(
        said.contains("port '4000' is already in use by service 'other_squatter'")
            && said.contains("as an ingress port"),
        "{said}"
    );
    // The repository now wants the held port and a network nobody created.
    cluster.0.edit(
        "machines.yml",
        "stacks: {}",
        "stacks:\n  app: docker-compose.yml",
    );
    std::fs::write(
        cluster.0.path().join("docker-compose.yml"),
        "services:\n  web:\n    image: nginx:1\n    ports: [\"4000:80\"]\n    networks: [edge]\nnetworks:\n  edge: {external: true}\n",
    )
    .unwrap();
    cluster.0.ok(&["validate"]);
    let services_before = cluster.must(&["service", "ls", "--format", "{{.Name}}"], None);
    let networks_before = cluster.must(
        &[
            "network",
            "ls",
            "--filter",
            "scope=swarm",
            "--format",
            "{{.Name}}",
        ],
        None,
    );
    for args in [&["plan"][..], &["apply", "--yes"]] {
        let out = cluster.0.shoal(args);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains("external network edge, which does not exist"),
            "{said}"
        );
        assert!(
            said.contains("port 4000/tcp, which service other_squatter already publishes"),
            "{said}"
        );
    }
    assert_eq!(
        cluster.must(&["service", "ls", "--format", "{{.Name}}"], None),
        services_before,
        "a refused apply created a service"
    );
    assert_eq!(
        cluster.must(
            &[
                "network",
                "ls",
                "--filter",
                "scope=swarm",
                "--format",
                "{{.Name}}"
            ],
            None
        ),
        networks_before,
        "a refused apply created a network"
    );
}
