//! What the CLI tests share: a cluster repository in a temporary folder, driven through the
//! `shoal` binary as a user would.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use serde_json::Value;
use shoal::docker::EngineDump;
use shoal::model::engine_api::ApiVersion;
use shoal::model::{Desired, Observed};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A cluster repository in a temporary folder.
pub struct Repo {
    /// The folder.
    pub dir: tempfile::TempDir,
    /// Arguments added to every command (e.g. `--driver sim`).
    pub extra_args: Vec<String>,
}

/// A path under the crate's root.
pub fn crate_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("folder entry");
        // `.shoal/` is the state a user's own `shoal apply` left in the example (the sim's
        // cluster, its lock): a test starts from the files alone.
        if entry.file_name() == ".shoal" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy file");
        }
    }
}

impl Repo {
    /// A copy of the files of `source` (a folder relative to the crate's root).
    pub fn copy_of(source: &str) -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&crate_path(source), dir.path());
        Repo {
            dir,
            extra_args: Vec::new(),
        }
    }

    /// An empty repository.
    pub fn empty() -> Repo {
        Repo {
            dir: tempfile::tempdir().expect("temp dir"),
            extra_args: Vec::new(),
        }
    }

    /// The folder.
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Runs `shoal ARGS --repo DIR` with no standard input and no DOCKER_HOST.
    pub fn shoal(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run shoal")
    }

    /// The command `shoal ARGS --repo DIR` with no standard input and no DOCKER_HOST, to run;
    /// what it makes on the host engine carries the test label (`.ci/run` removes only that).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
        command
            .args(args)
            .env(shoal::drivers::dind::TEST_LABEL_ENV, "1")
            .arg("--repo")
            .arg(self.path())
            .args(&self.extra_args)
            .env_remove("SHOAL_LOG")
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null());
        command
    }

    /// Standard output and standard error of a run that must succeed.
    pub fn ok_both(&self, args: &[&str]) -> (String, String) {
        let out = self.shoal(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "shoal {args:?} failed:\n{stdout}\n{stderr}"
        );
        (stdout, stderr)
    }

    /// Standard output of a run that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_both(args).0
    }

    /// Standard output of a run that must succeed, as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// `plan --json`.
    pub fn plan(&self) -> Value {
        self.json(&["plan", "--json"])
    }

    /// `action target` of each step of a fresh plan.
    pub fn steps(&self) -> Vec<String> {
        steps_of(&self.plan())
    }

    /// `apply --yes --json`, which must converge.
    pub fn apply(&self) -> Value {
        let report = self.json(&["apply", "--yes", "--json"]);
        assert_eq!(
            report["converged"], true,
            "apply did not converge: {report:#}"
        );
        report
    }

    /// Replaces `from` by `to` in a file of the repository.
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.path().join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replace(from, to)).expect("write");
    }

    /// The sim driver's state file, empty when there is none.
    pub fn sim_state(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(".shoal/sim.json")).unwrap_or_default()
    }
}

/// `action target` of each step of a plan.
pub fn steps_of(plan: &Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["action"].as_str().expect("action"),
                s["target"].as_str().expect("target")
            )
        })
        .collect()
}

/// Asserts that the plan retires each of `machines` in order: first `drain_node` (a worker) or
/// `demote_node` (a manager), then its node removed, then its machine destroyed.
pub fn assert_retired_in_order(steps: &[String], first: &str, machines: &[&str]) {
    for machine in machines {
        assert_in_order(
            steps,
            &[
                format!("{first} {machine}"),
                format!("remove_node {machine}"),
                format!("destroy_machine {machine}"),
            ],
        );
    }
}

/// Issue 18's prune scenario, the same on the sim and on dind: stacks `app` and `extra` (whose
/// service is `web`) were applied with `prune: false`; `machines(stacks, prune)` writes
/// machines.yml with these `stacks:` lines. `extra` dropped: nothing is removed, the plan warns
/// and `status` lists it as dropped; `prune: true` then: the destroy guard asks first, and
/// `--allow-destroy-all` removes its service.
pub fn drop_a_stack_then_prune(repo: &Repo, machines: &dyn Fn(&str, bool)) {
    machines("  app: app.yml\n", false);
    let kept = repo.plan();
    assert!(steps_of(&kept).is_empty(), "{kept:#}");
    assert!(
        kept["warnings"]
            .to_string()
            .contains("stack extra is no longer in machines.yml"),
        "{kept:#}"
    );
    repo.apply();
    let status = repo.json(&["status", "--json"]);
    assert_eq!(
        status["dropped_stacks"],
        serde_json::json!(["extra"]),
        "{status:#}"
    );
    assert!(status["services"].to_string().contains("extra_web"));

    machines("  app: app.yml\n", true);
    let guarded = repo.shoal(&["plan"]);
    assert_eq!(
        guarded.status.code(),
        Some(1),
        "the destroy guard asks first"
    );
    assert!(String::from_utf8_lossy(&guarded.stderr).contains("--allow-destroy-all"));
    let pruned = steps_of(&repo.json(&["plan", "--json", "--allow-destroy-all"]));
    assert!(
        pruned.contains(&"remove_service extra_web".to_string()),
        "{pruned:?}"
    );
    repo.ok(&["apply", "--yes", "--allow-destroy-all"]);
    let status = repo.json(&["status", "--json"]);
    assert!(
        !status["services"].to_string().contains("extra_web"),
        "{status:#}"
    );
    assert!(status.get("dropped_stacks").is_none(), "{status:#}");
    assert!(repo.steps().is_empty(), "{:?}", repo.steps());
}

/// What the captured engine output `dump` shows, beside machines that are all ready members of
/// the swarm ([`Observed::with_members_of`]): what a plan against captured output compares.
pub fn observed_from_dump(desired: &Desired, dump: &EngineDump) -> Observed {
    let objects = dump.stack_objects().expect("engine output reads");
    Observed {
        services: objects
            .services
            .into_iter()
            .map(|s| (s.spec.name.clone(), s))
            .collect(),
        networks: objects.networks,
        secrets: objects.secrets,
        configs: objects.configs,
        // Dumps without a version were all captured on Docker 20.10.
        api_version: dump.api_version.or(ApiVersion::parse("1.41")),
        ..Observed::with_members_of(desired)
    }
}

/// Whether every step of an apply report (`apply --json`) is done.
pub fn all_steps_done(report: &Value) -> bool {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .all(|s| s["status"] == "done")
}

/// How many steps have this action.
pub fn count(steps: &[String], action: &str) -> usize {
    steps
        .iter()
        .filter(|s| s.starts_with(&format!("{action} ")))
        .count()
}

/// The position of a step, which must be there.
pub fn position(steps: &[String], step: &str) -> usize {
    steps
        .iter()
        .position(|s| s == step)
        .unwrap_or_else(|| panic!("no step {step} in {steps:?}"))
}

/// Asserts that these steps are all in the plan, in this order.
pub fn assert_in_order(steps: &[String], expected: &[String]) {
    let positions: Vec<usize> = expected.iter().map(|step| position(steps, step)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "expected {expected:?} in this order: {steps:?}"
    );
}

/// The turn of a test that needs the Docker Engine (`what` names it): fails the test, saying
/// what is missing, when no engine answers (in and out of CI: a test never reports `ok`
/// unrun); else a guard that runs one such test at a time in this test binary (2 cores, each
/// starts clusters or hosts, and they share fixed names, subnets and the demo image). Take it
/// once per test, first: the guard is not reentrant.
pub fn engine_turn(what: &str) -> std::sync::MutexGuard<'static, ()> {
    let answers = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        answers,
        "{what}: no Docker Engine answers (`docker version` fails), and this test needs one: \
         install the docker CLI and start an engine this user may use (the local socket), then \
         run the engine tier again (`cargo test --test engine`)"
    );
    engine_lock()
}

/// The lock behind [`engine_turn`], taken without asking for an engine: for what must not run
/// beside an engine test (a process-wide `std::env::set_var`). Not reentrant either.
pub fn engine_lock() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails the test (`what` names it) when Debian's `docker-registry` is missing, in and out of
/// CI: `.ci/test` installs it.
pub fn require_docker_registry(what: &str) {
    let found = Command::new("docker-registry")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{what}: Debian's docker-registry is missing, and this test needs it: run `.ci/test` \
         (it installs the tests' packages) or `apt-get install docker-registry`"
    );
}

/// Standard output of the docker CLI on the host engine, `stdin` on its standard input and
/// `config` as its docker config when given; the run must succeed.
pub fn host_docker(config: Option<&Path>, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut command = Command::new("docker");
    if let Some(dir) = config {
        command.arg("--config").arg(dir);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the host engine's tags of the images of a registry (`registry` as in the tags:
/// `localhost:5000`) that the tests built ([`build_labelled`] labels them), ignoring failures:
/// for cleanups. An image of that name someone else built is left alone.
pub fn remove_host_tags_of(registry: &str) {
    let filter = format!("reference={registry}/*");
    if let Ok(out) = Command::new("docker")
        .args(["image", "ls", "--format", "{{.ID}}"])
        .args(["--filter", &filter])
        .args(["--filter", &format!("label={BUILT_BY_TESTS}")])
        .output()
    {
        // By ID: a test-built image that lost its tag to a newer build keeps the registry's
        // name (with its pushed digest) but has no tag left to remove it by.
        let ids: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        for id in ids {
            let _ = Command::new("docker")
                .args(["rmi", "--force", &id])
                .output();
        }
    }
}

/// Builds the demo image `dataservice:1` on the host engine (`images/dataservice/build.sh`),
/// once per test binary however many of its tests ask.
pub fn build_demo_image() {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Command::new("bash")
            .arg(crate_path("images/dataservice/build.sh"))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    if let Err(e) = built {
        panic!("images/dataservice/build.sh failed: {e}");
    }
}

/// The variables that `eval $(shoal env …)`, unquoted as the README shows it, sets in bash, from
/// `output`, the standard output of `shoal env`.
pub fn env_exports(output: &str) -> std::collections::BTreeMap<String, String> {
    const VARIABLES: [&str; 4] = [
        "DOCKER_TLS_VERIFY",
        "DOCKER_HOST",
        "DOCKER_CERT_PATH",
        "DOCKER_MACHINE_NAME",
    ];
    let script = format!(
        r#"eval $(printf '%s' "$1") && for v in {}; do [ -z "${{!v+x}}" ] || printf '%s=%s\0' "$v" "${{!v}}"; done"#,
        VARIABLES.join(" ")
    );
    let mut command = Command::new("bash");
    command.args(["-c", &script, "bash", output]);
    for variable in VARIABLES {
        command.env_remove(variable);
    }
    let out = command.output().expect("bash");
    assert!(
        out.status.success(),
        "eval $(shoal env) failed: {}\n{output}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_terminator('\0')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// A dind cluster a test made from a repository, destroyed (`shoal destroy --yes`) when it is
/// dropped, whether the test passed or not.
pub struct DindCluster {
    /// The repository whose machines.yml names the cluster.
    pub repo: Repo,
    /// The cluster's name.
    pub name: String,
}

impl DindCluster {
    /// A cluster named `<prefix><pid % 10000>` (short: node socket paths are limited) over `repo`.
    pub fn new(repo: Repo, prefix: &str) -> DindCluster {
        DindCluster {
            repo,
            name: format!("{prefix}{}", std::process::id() % 10_000),
        }
    }

    /// Standard output of the docker CLI run against `machine`'s engine (through `shoal env`);
    /// the run must succeed.
    pub fn docker(&self, machine: &str, args: &[&str]) -> String {
        self.docker_with_env(machine, &[], args)
    }

    /// The image `service`'s spec names, as the engine on `machine` holds it.
    pub fn service_image(&self, machine: &str, service: &str) -> String {
        self.docker(
            machine,
            &[
                "service",
                "inspect",
                service,
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            ],
        )
        .trim()
        .to_string()
    }

    /// Deploys a stack as a user does with the docker CLI on `machine`: `docker stack deploy
    /// --detach=true --resolve-image never -c FILE… STACK`, relative files taken from the
    /// repository, `vars` added to the CLI's environment (for the ones the files interpolate).
    pub fn deploy_by_cli(
        &self,
        machine: &str,
        vars: &[(&str, &str)],
        compose_files: &[&str],
        stack: &str,
    ) {
        let mut args = vec![
            "stack",
            "deploy",
            "--detach=true",
            "--resolve-image",
            "never",
        ];
        for file in compose_files {
            args.extend(["-c", file]);
        }
        args.push(stack);
        self.docker_with_env(machine, vars, &args);
    }

    /// [`DindCluster::docker`] with these variables added to the docker CLI's environment.
    fn docker_with_env(&self, machine: &str, vars: &[(&str, &str)], args: &[&str]) -> String {
        let env = env_exports(&self.repo.ok(&["env", machine]));
        let out = Command::new("docker")
            .args(args)
            .current_dir(self.repo.path())
            .envs(&env)
            .envs(vars.iter().copied())
            .output()
            .expect("docker");
        assert!(
            out.status.success(),
            "docker {args:?} on {machine} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for DindCluster {
    fn drop(&mut self) {
        let _ = self.repo.shoal(&["destroy", "--yes"]);
    }
}

/// Docker CLI arguments that list the node of each running task of the tutorial stack
/// (`dataapp`, from `examples/dataapp`), one a line.
pub const TUTORIAL_TASK_NODES: [&str; 7] = [
    "stack",
    "ps",
    "dataapp",
    "--filter",
    "desired-state=running",
    "--format",
    "{{.Node}}",
];

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An htpasswd line `user:<bcrypt hash>` (the only kind docker-registry accepts), made by
/// Apache's `htpasswd -B` (Debian's apache2-utils, which `.ci/run` installs).
pub fn htpasswd_line(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-n", "-b", "-B", "-C", "5", user, password])
        .output()
        .expect("htpasswd is missing: run `.ci/test` (it installs the tests' packages) or `apt-get install apache2-utils`");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && line.starts_with(&format!("{user}:$2")),
        "htpasswd made no bcrypt line: {out:?}"
    );
    format!("{line}\n")
}

/// Builds `image` on the host engine from the demo image `dataservice:1`, told apart by the
/// label `io.shoal.test.version=<version>`.
pub fn build_labelled(image: &str, version: &str) {
    host_docker(
        None,
        &["build", "-q", "-t", image, "-"],
        &format!("FROM dataservice:1\nLABEL {BUILT_BY_TESTS}={version}\n"),
    );
}

/// The label of the images [`build_labelled`] builds (its value: the version).
pub const BUILT_BY_TESTS: &str = "io.shoal.test.version";

/// What the host engine still holds of `cluster`, of the given kinds (`container`, `network`,
/// `volume`): their IDs or names, one per line; empty when nothing is left.
pub fn left_of(cluster: &str, kinds: &[&str]) -> String {
    let label = format!("label=io.shoal.cluster={cluster}");
    kinds
        .iter()
        .map(|kind| {
            let list = if *kind == "container" {
                vec!["ps", "-a"]
            } else {
                vec![*kind, "ls"]
            };
            let args: Vec<&str> = list.into_iter().chain(["-q", "--filter", &label]).collect();
            host_docker(None, &args, "")
        })
        .collect()
}

/// The node engine versions the engine matrix runs the dind scenarios on, besides the host's
/// own (`driver_options.engine`).
pub const MATRIX_ENGINES: &[&str] = &["28"];

/// A dind `machines.yml` for cluster `name` with nodes of `engine` and the demo image preloaded,
/// its `machines` and `stacks` sections given as YAML text.
pub fn dind_machines_yml(name: &str, engine: &str, machines: &str, stacks: &str) -> String {
    format!(
        "cluster: {name}\ndriver: dind\ndriver_options:\n  preload_images: [dataservice:1]\n  engine: \"{engine}\"\nmachines:\n{machines}{stacks}"
    )
}

/// Runs the docker CLI inside the node container `container` (the node's own CLI, of its
/// engine's version) with `args`, in the node's folder `workdir`; returns its output, which
/// must be a success.
pub fn node_docker(container: &str, workdir: &str, args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(["exec", "-w", workdir, container, "docker"])
        .args(args)
        .output()
        .expect("docker exec");
    assert!(
        out.status.success(),
        "docker {args:?} inside {container} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies the host folder `from` into the node container `container` as `to`.
pub fn copy_into_node(container: &str, from: &Path, to: &str) {
    let parent = Path::new(to).parent().and_then(Path::to_str).unwrap_or("/");
    let made = Command::new("docker")
        .args(["exec", container, "mkdir", "-p", parent])
        .status()
        .expect("docker exec");
    assert!(made.success(), "mkdir {parent} in {container}");
    host_docker(
        None,
        &[
            "cp",
            &from.display().to_string(),
            &format!("{container}:{to}"),
        ],
        "",
    );
}
