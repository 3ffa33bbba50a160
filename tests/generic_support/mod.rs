//! Real Docker hosts for the generic driver's tests: containers running dockerd with TLS on 2376
//! (and sshd on 22 for the SSH runs), on their own bridge network with fixed addresses, built
//! from the dind node image (the host's own engine binaries, no registry). Certificates are made
//! here with openssl. Everything is removed on drop, failed test or not.

#![allow(dead_code)]

use crate::common::{crate_path, Repo};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

/// Runs a command that must succeed; returns its standard output.
pub fn run(command: &mut Command) -> String {
    let out = command.output().expect("run a command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

/// The turn of a test on real hosts (`what` names it): a failure when no Docker Engine answers,
/// else the engine tier's turn ([`crate::common::engine_turn`]: one such test at a time, 2
/// cores, and each starts engines), with the demo image built.
pub fn hosts_turn(what: &str) -> MutexGuard<'static, ()> {
    let guard = crate::common::engine_turn(what);
    crate::common::build_demo_image();
    guard
}

/// A repository with the tutorial stack (`examples/dataapp/docker-compose.yml`) and no
/// machines.yml yet.
pub fn tutorial_repo() -> Repo {
    let repo = Repo::empty();
    std::fs::copy(
        crate_path("examples/dataapp/docker-compose.yml"),
        repo.path().join("docker-compose.yml"),
    )
    .unwrap();
    repo
}

/// The docker CLI with the exports of `shoal env MACHINE` in its environment.
pub fn docker_via_env(repo: &Repo, machine: &str) -> Command {
    let mut command = Command::new("docker");
    command.envs(crate::common::env_exports(&repo.ok(&["env", machine])));
    command
}

/// Waits until the repository's cluster runs at least one service and every service all its
/// tasks; returns that status.
pub fn wait_running(repo: &Repo) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = repo.json(&["status", "--json"]);
        let services = status["services"].as_array().unwrap();
        if !services.is_empty() && services.iter().all(|s| s["running"] == s["replicas"]) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "tasks did not all start: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The tutorial stack scaled from 5 to 10 replicas: one `scale_service`, applied, every task
/// running.
pub fn scale_tutorial_to_ten(repo: &Repo) {
    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 10");
    assert_eq!(repo.steps(), ["scale_service dataapp_dataservice"]);
    repo.apply();
    wait_running(repo);
}

/// Copies the client certificates (`ca.pem`, `cert.pem`, `key.pem`) from `from` into `to`.
pub fn copy_client_certs(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

/// The dind node image, built from this machine's engine binaries (reused while it exists).
pub fn node_image() -> String {
    node_image_of("host")
}

/// The dind node image of `engine` (`host`, or a version built from Debian's packages; reused
/// while it exists).
pub fn node_image_of(engine: &str) -> String {
    let engine = shoal::drivers::dind::Engine::parse(engine).expect("a known engine");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let host = shoal::drivers::dind::connect_host()
            .await
            .expect("local engine");
        shoal::drivers::dind::ensure_node_image(&host, engine, None)
            .await
            .expect("node image")
            .tag
    })
}

/// Test hosts, their network and their certificates.
pub struct Hosts {
    /// Prefix of every container and network name.
    pub prefix: String,
    /// The hosts' addresses, in order.
    pub ips: Vec<String>,
    /// Folder of the certificates: `ca.pem`, `client/{ca,cert,key}.pem`, per host `<i>/`.
    pub pki: tempfile::TempDir,
    network: String,
    with_ssh: bool,
}

/// The test host image with sshd (images/host/build.sh over the node image).
pub fn ssh_host_image() -> String {
    let base = node_image();
    let tag = format!(
        "shoal-test-host:{}",
        base.rsplit(':').next().unwrap_or("latest")
    );
    let exists = Command::new("docker")
        .args(["image", "inspect", &tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        run(Command::new("bash")
            .arg(crate_path("images/host/build.sh"))
            .args([&base, &tag]));
    }
    tag
}

impl Hosts {
    /// Starts `count` hosts answering over TLS on 2376, with `images` loaded into each.
    pub fn start(tag: &str, count: usize, images: &[&str]) -> Hosts {
        Hosts::start_with(tag, count, images, false)
    }

    /// Starts `count` hosts answering over TLS on 2376 and, with `ssh`, over SSH on 22 (root,
    /// the key `ssh/id_ed25519`, host keys listed in `ssh/known_hosts`).
    pub fn start_with(tag: &str, count: usize, images: &[&str], ssh: bool) -> Hosts {
        let image = if ssh { ssh_host_image() } else { node_image() };
        Hosts::start_image(&image, tag, count, images, ssh)
    }

    /// Starts `count` hosts of the dind node image of `engine` (e.g. `"28"`, built from
    /// Debian's packages), answering over TLS on 2376, with `images` loaded into each.
    /// Checks that the first host's engine is of that version.
    pub fn start_engine(engine: &str, tag: &str, count: usize, images: &[&str]) -> Hosts {
        let hosts = Hosts::start_image(&node_image_of(engine), tag, count, images, false);
        let version = run(hosts
            .docker_cli(0)
            .args(["version", "--format", "{{.Server.Version}}"]));
        assert!(
            version.starts_with(&format!("{engine}.")),
            "host 1 runs Docker {version}, not {engine}.x"
        );
        hosts
    }

    fn start_image(image: &str, tag: &str, count: usize, images: &[&str], ssh: bool) -> Hosts {
        let prefix = format!("shoal-gt-{tag}{}", std::process::id() % 10_000);
        let third = 100 + (std::process::id() + u32::from(ssh)) % 100;
        let subnet = format!("172.28.{third}.0/24");
        let ips: Vec<String> = (0..count)
            .map(|i| format!("172.28.{third}.{}", 10 + i))
            .collect();
        let pki = tempfile::tempdir().expect("temp dir");
        let hosts = Hosts {
            prefix: prefix.clone(),
            ips: ips.clone(),
            pki,
            network: format!("{prefix}-net"),
            with_ssh: ssh,
        };
        docker(&["network", "create", "--subnet", &subnet, &hosts.network]);
        make_pki(hosts.pki.path(), &ips);
        if ssh {
            make_ssh_keys(hosts.pki.path(), &ips);
        }
        for (i, ip) in ips.iter().enumerate() {
            hosts.run_host(image, i, ip);
        }
        for i in 0..count {
            hosts.wait_tls(i);
        }
        if !images.is_empty() {
            for i in 0..count {
                hosts.load_images(i, images);
            }
        }
        hosts
    }

    /// The container of host `i`.
    pub fn container(&self, i: usize) -> String {
        format!("{}-h{}", self.prefix, i + 1)
    }

    /// The client cert folder (ca.pem, cert.pem, key.pem).
    pub fn client_certs(&self) -> PathBuf {
        self.pki.path().join("client")
    }

    /// The folder with the client key `id_ed25519` and `known_hosts`.
    pub fn ssh_dir(&self) -> PathBuf {
        self.pki.path().join("ssh")
    }

    /// `ssh://root@IP` of host `i`.
    pub fn ssh(&self, i: usize) -> String {
        format!("ssh://root@{}", self.ips[i])
    }

    /// Whether the hosts answer over SSH too (started with `ssh`).
    pub fn answers_ssh(&self) -> bool {
        self.with_ssh
    }

    /// `tcp://IP:2376` of host `i`.
    pub fn tcp(&self, i: usize) -> String {
        format!("tcp://{}:2376", self.ips[i])
    }

    fn run_host(&self, image: &str, i: usize, ip: &str) {
        let certs = self.pki.path().join(i.to_string());
        let name = self.container(i);
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            name.clone(),
            "--hostname".into(),
            format!("h{}", i + 1),
            "--network".into(),
            self.network.clone(),
            "--ip".into(),
            ip.into(),
            "--label".into(),
            "io.shoal.test=generic".into(),
            "--cap-add".into(),
            "ALL".into(),
            "--cap-drop".into(),
            "SYS_RESOURCE".into(),
            "--security-opt".into(),
            "seccomp=unconfined".into(),
            "--security-opt".into(),
            "apparmor=unconfined".into(),
            "--security-opt".into(),
            "systempaths=unconfined".into(),
            "--device-cgroup-rule".into(),
            "a *:* rwm".into(),
            "--cgroupns".into(),
            "private".into(),
            "--tmpfs".into(),
            "/run:rw,exec,nosuid,nodev,mode=755".into(),
            "--tmpfs".into(),
            "/tmp:rw,exec,nosuid,nodev,mode=1777".into(),
            "-v".into(),
            "/var/lib/docker".into(),
            "-v".into(),
            format!("{}:/certs:ro", certs.display()),
            "-e".into(),
            "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1".into(),
        ];
        if Path::new("/lib/modules").is_dir() {
            args.extend(["-v".into(), "/lib/modules:/lib/modules:ro".into()]);
        }
        if self.with_ssh {
            let keys = self.ssh_dir();
            args.extend([
                "-v".into(),
                format!(
                    "{}:/etc/ssh/ssh_host_ed25519_key:ro",
                    keys.join(format!("host{i}")).display()
                ),
                "-v".into(),
                format!(
                    "{}:/root/.ssh/authorized_keys:ro",
                    keys.join("id_ed25519.pub").display()
                ),
            ]);
        }
        args.extend([
            image.to_string(),
            "-H".into(),
            "tcp://0.0.0.0:2376".into(),
            "--tlsverify".into(),
            "--tlscacert".into(),
            "/certs/ca.pem".into(),
            "--tlscert".into(),
            "/certs/server.pem".into(),
            "--tlskey".into(),
            "/certs/server-key.pem".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args);
    }

    /// The docker CLI pointed at host `i` over SSH, with an `ssh` first on PATH that uses the
    /// test key and known_hosts (ssh reads `~/.ssh` of the passwd entry, not of `$HOME`).
    pub fn docker_ssh(&self, i: usize) -> Command {
        let mut command = Command::new("docker");
        command.env("DOCKER_HOST", self.ssh(i));
        self.with_test_ssh(&mut command);
        command
    }

    /// Puts the test's `ssh` wrapper first on the command's PATH.
    pub fn with_test_ssh(&self, command: &mut Command) {
        use std::os::unix::fs::PermissionsExt;
        let bin = self.pki.path().join("bin");
        let config = self.pki.path().join("ssh_config");
        if !bin.exists() {
            std::fs::create_dir_all(&bin).unwrap();
            let wrapper = bin.join("ssh");
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
                    config.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(
                &config,
                format!(
                    "Host *\n  IdentityFile {}\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  IdentitiesOnly yes\n",
                    self.ssh_dir().join("id_ed25519").display(),
                    self.ssh_dir().join("known_hosts").display()
                ),
            )
            .unwrap();
        }
        let path = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{path}", bin.display()));
    }

    /// The docker CLI pointed at host `i` over TLS.
    pub fn docker_cli(&self, i: usize) -> Command {
        let mut command = Command::new("docker");
        command
            .env("DOCKER_HOST", self.tcp(i))
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", self.client_certs());
        command
    }

    /// Waits until host `i` answers over TLS again (after a `docker start`).
    pub fn wait_answering(&self, i: usize) {
        self.wait_tls(i);
    }

    fn wait_tls(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self
                .docker_cli(i)
                .args(["version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if Instant::now() > deadline {
                let logs = Command::new("docker")
                    .args(["logs", "--tail", "30", &self.container(i)])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default();
                panic!(
                    "host {} never answered over TLS:\n{logs}",
                    self.container(i)
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn load_images(&self, i: usize, images: &[&str]) {
        let mut save = Command::new("docker")
            .arg("save")
            .args(images)
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker save");
        let stdout = save.stdout.take().expect("pipe");
        let loaded = self
            .docker_cli(i)
            .arg("load")
            .stdin(stdout)
            .stdout(Stdio::null())
            .status()
            .expect("docker load");
        assert!(save.wait().expect("save").success() && loaded.success());
    }

    /// Host `i`'s swarm state as its engine reports it (`inactive` once it left its swarm).
    pub fn swarm_state(&self, i: usize) -> String {
        run(self
            .docker_cli(i)
            .args(["info", "--format", "{{.Swarm.LocalNodeState}}"]))
        .trim()
        .to_string()
    }

    /// Stops host `i` answering (its container paused).
    pub fn pause(&self, i: usize) {
        docker(&["pause", &self.container(i)]);
    }

    /// Lets host `i` answer again.
    pub fn unpause(&self, i: usize) {
        docker(&["unpause", &self.container(i)]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 0..self.ips.len() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &self.container(i)])
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

/// A client key and one host key per host, with the known_hosts file listing them.
pub fn make_ssh_keys(dir: &Path, ips: &[String]) {
    let ssh = dir.join("ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let keygen = |file: &str| {
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "shoal-test", "-f"])
            .arg(ssh.join(file)));
    };
    keygen("id_ed25519");
    let mut known = String::new();
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("host{i}");
        keygen(&name);
        let public = std::fs::read_to_string(ssh.join(format!("{name}.pub"))).unwrap();
        let mut words = public.split_whitespace();
        let (kind, key) = (words.next().unwrap(), words.next().unwrap());
        known.push_str(&format!("{ip} {kind} {key}\n"));
    }
    std::fs::write(ssh.join("known_hosts"), known).unwrap();
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA, a client certificate (`client/`) and a server certificate per host (`<i>/`).
pub fn make_pki(dir: &Path, ips: &[String]) {
    openssl(dir, &["genrsa", "-out", "ca-key.pem", "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-key",
            "ca-key.pem",
            "-sha256",
            "-subj",
            "/CN=shoal test CA",
            "-out",
            "ca.pem",
        ],
    );
    let client = dir.join("client");
    std::fs::create_dir_all(&client).unwrap();
    openssl(dir, &["genrsa", "-out", "client/key.pem", "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "client/key.pem",
            "-subj",
            "/CN=client",
            "-out",
            "client.csr",
        ],
    );
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    sign(dir, "client.csr", "client.ext", "client/cert.pem");
    std::fs::copy(dir.join("ca.pem"), client.join("ca.pem")).unwrap();
    for (i, ip) in ips.iter().enumerate() {
        let sub = i.to_string();
        std::fs::create_dir_all(dir.join(&sub)).unwrap();
        let key = format!("{sub}/server-key.pem");
        openssl(dir, &["genrsa", "-out", &key, "2048"]);
        let csr = format!("{sub}/server.csr");
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/CN=h{}", i + 1),
                "-out",
                &csr,
            ],
        );
        let ext = format!("{sub}/server.ext");
        std::fs::write(
            dir.join(&ext),
            format!(
                "subjectAltName=IP:{ip},IP:127.0.0.1,DNS:h{}\nextendedKeyUsage=serverAuth\n",
                i + 1
            ),
        )
        .unwrap();
        sign(dir, &csr, &ext, &format!("{sub}/server.pem"));
        std::fs::copy(dir.join("ca.pem"), dir.join(&sub).join("ca.pem")).unwrap();
    }
    run(Command::new("chmod").args(["-R", "a+rX"]).arg(dir));
}

fn sign(dir: &Path, csr: &str, ext: &str, out: &str) {
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-sha256",
            "-in",
            csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-extfile",
            ext,
            "-out",
            out,
        ],
    );
}

/// `ID` of each node as host 0 (a manager) lists them, by hostname.
pub fn node_ids(hosts: &Hosts) -> Vec<String> {
    let out = run(hosts
        .docker_cli(0)
        .args(["node", "ls", "--format", "{{.Hostname}} {{.ID}}"]));
    let mut ids: Vec<String> = out.lines().map(str::to_string).collect();
    ids.sort();
    ids
}

/// Waits until host 0 lists `count` managers that are the leader or reachable.
pub fn wait_managers_reachable(hosts: &Hosts, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let listed = hosts
            .docker_cli(0)
            .args(["node", "ls", "--format", "{{.ManagerStatus}}"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let reachable = listed
            .lines()
            .filter(|l| matches!(l.trim(), "Leader" | "Reachable"))
            .count();
        if reachable >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "host 1 never listed {count} reachable managers:\n{listed}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until host 0 sees the node of host `i` in `state` (`down`, `ready`).
pub fn wait_node_state(hosts: &Hosts, i: usize, state: &str) {
    let hostname = format!("h{}", i + 1);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let seen = hosts
            .docker_cli(0)
            .args([
                "node",
                "inspect",
                &hostname,
                "--format",
                "{{.Status.State}}",
            ])
            .output()
            .map(|o| {
                let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if out.is_empty() {
                    String::from_utf8_lossy(&o.stderr).trim().to_string()
                } else {
                    out
                }
            })
            .unwrap_or_default();
        if seen == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {hostname} never became {state} (last: {seen:?})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Issue 17: a manager (machine `machine` on host `i`) whose host freezes (paused) or reboots (stopped, then started) is
/// waited for, never demoted or removed, by plan and by apply; `plan --detailed-exitcode`
/// exits 1 while it cannot be seen; when it returns, the plan is empty and every node ID is
/// unchanged. The hosts' hostnames (h1..h3) are not their machine names, as on real hosts.
pub fn a_silent_manager_is_kept(repo: &Repo, hosts: &Hosts, i: usize, machine: &str) {
    // Silencing one of three managers keeps quorum only once all three are Raft members: a
    // node just promoted or joined as manager is one a moment after swarm says so.
    wait_managers_reachable(hosts, 3);
    let before = node_ids(hosts);
    let container = hosts.container(i);
    let silences: [(&str, &str); 2] = [("pause", "unpause"), ("stop", "start")];
    for (silence, revive) in silences {
        run(Command::new("docker").args([silence, &container]));
        wait_node_state(hosts, i, "down");
        let plan = repo.plan();
        let steps = crate::common::steps_of(&plan);
        assert!(
            steps
                .iter()
                .all(|s| !s.contains("_node") && !s.contains("machine")),
            "a silent manager ({silence}) must be waited for: {steps:?}"
        );
        let unseen = plan["unseen"].as_array().cloned().unwrap_or_default();
        assert!(
            unseen
                .iter()
                .any(|u| u["what"] == format!("machine {machine}")),
            "the silent host is listed as unseen: {plan:#}"
        );
        let detailed = repo.shoal(&["plan", "--detailed-exitcode"]);
        assert_eq!(
            detailed.status.code(),
            Some(1),
            "an unseen machine is not in sync: {}",
            String::from_utf8_lossy(&detailed.stdout)
        );
        let applied = repo.shoal(&["apply", "--yes", "--json"]);
        let report: Value = serde_json::from_slice(&applied.stdout).unwrap_or_else(|e| {
            panic!(
                "apply --json printed no report ({e}) while {machine} was silent ({silence}): {}",
                String::from_utf8_lossy(&applied.stderr)
            )
        });
        assert_eq!(
            report["writes"], 0,
            "apply wrote while a manager was silent: {report:#}"
        );
        assert_eq!(report["converged"], false, "{report:#}");
        run(Command::new("docker").args([revive, &container]));
        if revive == "start" {
            hosts.wait_answering(i);
        }
        wait_node_state(hosts, i, "ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !repo.steps().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the plan stays non-empty after the manager returned: {:?}",
                repo.steps()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    assert_eq!(node_ids(hosts), before, "node IDs changed");
}
