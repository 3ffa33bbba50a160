//! examples/selfhost runs: the cluster repository manages itself. Two real Docker hosts
//! (generic driver, over SSH) are set up the way the example's README says (the image built by
//! its build-image.sh and loaded on the manager, the first applies by hand from that image with
//! the ssh login mounted where machines.yml reads it, the secrets created), then a commit pushed
//! to the followed repository is applied by the watcher running as a service on the manager.

use crate::common;
use crate::generic_support;

use common::crate_path;
use generic_support::{run, Hosts};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The image built for this run on the local engine, removed on drop.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args))
}

/// The example's files with the test's hosts in place of the example's.
fn cluster_files(work: &Path, hosts: &Hosts, with_stack: bool) {
    let example = std::fs::read_to_string(crate_path("examples/selfhost/machines.yml")).unwrap();
    let machines_start = example.find("machines:\n").expect("machines:");
    let stacks_start = example.find("stacks:\n").expect("stacks:");
    let mut text = example[..machines_start].to_string();
    text.push_str(&format!(
        "machines:\n  mgr1:\n    role: manager\n    host: {}\n  worker1:\n    role: worker\n    host: {}\n",
        hosts.ssh(0),
        hosts.ssh(1)
    ));
    if with_stack {
        text.push_str(&example[stacks_start..]);
    } else {
        text.push_str("stacks: {}\n");
    }
    std::fs::write(work.join("machines.yml"), text).unwrap();
    // The followed repository is a bare one on the manager; the watcher passes every 2s.
    let shoal = std::fs::read_to_string(crate_path("examples/selfhost/shoal.yml")).unwrap();
    let shoal = shoal
        .replace("https://git.example.com/ops/cluster.git", "/srv/cluster.git")
        .replace("      - 60s\n", "      - 2s\n")
        .replace(
            "      # The clone of the repository survives restarts.\n",
            "      - type: bind\n        source: /srv/cluster.git\n        target: /srv/cluster.git\n        read_only: true\n      # The clone of the repository survives restarts.\n",
        );
    std::fs::write(work.join("shoal.yml"), shoal).unwrap();
}

#[test]
fn the_cluster_repository_manages_itself() {
    let _turn = generic_support::hosts_turn("the selfhost example test");
    let hosts = Hosts::start_with("self", 2, &["dataservice:1"], true);
    let image = Image(format!("shoal:selfhost-test-{}", std::process::id()));
    run(Command::new("bash")
        .arg(crate_path("examples/selfhost/build-image.sh"))
        .env("BINARY", env!("CARGO_BIN_EXE_shoal"))
        .env("IMAGE", &image.0));
    // docker save | docker load on the manager, as shoal:local.
    let mut save = Command::new("docker")
        .args(["save", &image.0])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let loaded = hosts
        .docker_cli(0)
        .arg("load")
        .stdin(save.stdout.take().unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(save.wait().unwrap().success() && loaded.success());
    run(hosts.docker_cli(0).args(["tag", &image.0, "shoal:local"]));

    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("cluster");
    std::fs::create_dir_all(&work).unwrap();
    let ssh = hosts.ssh_dir();
    // `shoal` by hand, from the image, with the login where machines.yml reads it.
    let shoal_by_hand = |args: &[&str]| {
        let mut command = Command::new("docker");
        command
            .args(["run", "--rm", "--network", &format!("{}-net", hosts.prefix)])
            .arg("-v")
            .arg(format!("{}:/repo", work.display()))
            .arg("-v")
            .arg(format!(
                "{}:/run/secrets/shoal_ssh_key:ro",
                ssh.join("id_ed25519").display()
            ))
            .arg("-v")
            .arg(format!(
                "{}:/run/secrets/shoal_known_hosts:ro",
                ssh.join("known_hosts").display()
            ))
            .arg(&image.0)
            .args(args)
            .args(["--repo", "/repo"]);
        run(&mut command)
    };

    // 1. The machines first: the shoal stack's secrets need a swarm.
    cluster_files(&work, &hosts, false);
    shoal_by_hand(&["apply", "--yes"]);
    let secrets = [
        ("shoal_webhook_secret", "webhook-secret".to_string()),
        ("shoal_git_token", "unused".to_string()),
        (
            "shoal_ssh_key",
            std::fs::read_to_string(ssh.join("id_ed25519")).unwrap(),
        ),
        (
            "shoal_known_hosts",
            std::fs::read_to_string(ssh.join("known_hosts")).unwrap(),
        ),
    ];
    for (name, value) in &secrets {
        let mut create = hosts
            .docker_cli(0)
            .args(["secret", "create", name, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        create
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        assert!(create.wait().unwrap().success(), "secret {name}");
    }

    // 2. The repository with the shoal stack, committed and pushed to the manager.
    cluster_files(&work, &hosts, true);
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(
        &work,
        &["commit", "-q", "-m", "the cluster and its reconciler"],
    );
    let bare = dir.path().join("cluster.git");
    run(Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&bare));
    let push = || {
        git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
        run(Command::new("docker").args([
            "cp",
            &format!("{}/.", bare.display()),
            &format!("{}:/srv/cluster.git", hosts.container(0)),
        ]));
    };
    run(Command::new("docker").args([
        "exec",
        &hosts.container(0),
        "mkdir",
        "-p",
        "/srv/cluster.git",
    ]));
    push();
    shoal_by_hand(&["apply", "--yes"]);
    let services = |hosts: &Hosts| {
        run(hosts
            .docker_cli(0)
            .args(["service", "ls", "--format", "{{.Name}} {{.Replicas}}"]))
    };
    wait_for(
        &hosts,
        "the watcher runs",
        |s| s.contains("shoal_watch 1/1"),
        services,
    );

    // 3. A commit pushed to the followed branch is applied by the watcher in the cluster.
    std::fs::copy(
        crate_path("examples/dataapp/docker-compose.yml"),
        work.join("dataapp.yml"),
    )
    .unwrap();
    let machines = std::fs::read_to_string(work.join("machines.yml")).unwrap();
    std::fs::write(
        work.join("machines.yml"),
        machines.replace(
            "  shoal: shoal.yml\n",
            "  shoal: shoal.yml\n  dataapp: dataapp.yml\n",
        ),
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "deploy dataapp"]);
    push();
    wait_for(
        &hosts,
        "the watcher deploys the pushed stack",
        |s| s.contains("dataapp_dataservice 5/5"),
        services,
    );
    let revision = git(&work, &["rev-parse", "HEAD"]);
    let labels =
        run(hosts
            .docker_cli(0)
            .args(["info", "--format", "{{json .Swarm.Cluster.Spec.Labels}}"]));
    assert!(
        labels.contains(revision.trim()),
        "the swarm records the pushed revision: {labels}"
    );
}

/// Polls `read` until `done` holds, for up to 3 minutes.
fn wait_for(
    hosts: &Hosts,
    what: &str,
    done: impl Fn(&str) -> bool,
    read: impl Fn(&Hosts) -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let seen = read(hosts);
        if done(&seen) {
            return;
        }
        if Instant::now() > deadline {
            let logs = Command::new("docker")
                .env("DOCKER_HOST", hosts.tcp(0))
                .env("DOCKER_TLS_VERIFY", "1")
                .env("DOCKER_CERT_PATH", hosts.client_certs())
                .args(["service", "logs", "--tail", "40", "shoal_watch"])
                .output()
                .map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .unwrap_or_default();
            panic!("{what}: not within 3 minutes; services:\n{seen}\nwatcher:\n{logs}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
