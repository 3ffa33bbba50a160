//! A dind cluster with its own registry (`driver_options.registry`, issue 12), through the CLI
//! as a user would, where the nodes really pull:
//!
//! - `preload_images` go into the registry, not into each node: a service of
//!   `localhost:<port>/app:1` is pinned to its digest and runs on nodes that never had the
//!   image, and `dataservice:1` (a Docker Hub name, preloaded as `docker.io/dataservice:1`,
//!   which is pushed as Docker Hub's `library/dataservice`: issue 18) reaches them through the
//!   registry as their Docker Hub mirror, nodes created later included;
//! - a tag re-pushed by hand plans exactly one `update_service` showing both digests, and apply
//!   rolls it out and waits for it;
//! - adding basic authentication to the registry (an htpasswd file) shows in the plan (issue
//!   18); with it and credentials in a docker config, the same works, the credentials appear in no output, and without them the plan
//!   says how to log in;
//! - `shoal destroy` removes the registry with the machines.
//!
//! Needs Docker and Debian's docker-registry: fails, naming what is missing, without them
//! (`.ci/test` installs docker-registry). The cluster is destroyed when the test ends, failed or not.

use crate::common;

use common::{
    build_demo_image, build_labelled, engine_turn, free_port, host_docker, require_docker_registry,
    steps_of, DindCluster, Repo,
};
use std::path::Path;

const USER: &str = "shoaltest";
const PASSWORD: &str = "pw-cluster-registry-never-printed-27";

/// Removes the host's tags of the registry's images when the test ends.
struct HostTags(u16);

impl Drop for HostTags {
    fn drop(&mut self) {
        common::remove_host_tags_of(&format!("localhost:{}", self.0));
    }
}

fn machines(name: &str, registry: &str, port: u16, workers: u32) -> String {
    format!(
        "cluster: {name}\ndriver: dind\ndriver_options:\n  registry: {registry}\n  preload_images: [docker.io/dataservice:1, localhost:{port}/app:1]\nmachines:\n  m:\n    role: manager\n  w:\n    role: worker\n    count: {workers}\nstacks:\n  app: docker-compose.yml\n"
    )
}

/// What each run printed, to check no credential ever shows.
struct Runs<'a> {
    cluster: &'a DindCluster,
    printed: std::cell::RefCell<String>,
}

impl Runs<'_> {
    /// `shoal ARGS` with `DOCKER_CONFIG` set to `config`, logging at trace level; must succeed;
    /// returns standard output.
    fn ok(&self, config: &Path, args: &[&str]) -> String {
        let out = self
            .cluster
            .repo
            .command(args)
            .env("DOCKER_CONFIG", config)
            // Everything shoal can log, so that a credential would show if any did.
            .env("SHOAL_LOG", "trace")
            .output()
            .expect("run shoal");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        self.printed.borrow_mut().push_str(&stdout);
        self.printed.borrow_mut().push_str(&stderr);
        assert!(
            out.status.success(),
            "shoal {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    }

    fn json(&self, config: &Path, args: &[&str]) -> serde_json::Value {
        let text = self.ok(config, args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    fn apply(&self, config: &Path) -> serde_json::Value {
        let report = self.json(config, &["apply", "--yes", "--json", "--timeout", "2m"]);
        assert_eq!(report["converged"], true, "{report:#}");
        report
    }
}

/// The digests (`repo@sha256:…`) of the images on a machine's engine: only pulled images have
/// one; images loaded from the host have none.
fn pulled_images(cluster: &DindCluster, machine: &str) -> Vec<String> {
    cluster
        .docker(
            machine,
            &[
                "image",
                "ls",
                "--digests",
                "--format",
                "{{.Repository}}@{{.Digest}}",
            ],
        )
        .lines()
        .filter(|l| l.contains("@sha256:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn nodes_pull_from_the_cluster_registry_and_a_moved_tag_rolls_out_with_and_without_auth() {
    let _turn = engine_turn("the cluster registry test");
    require_docker_registry("the cluster registry test");
    build_demo_image();
    let port = free_port();
    let _tags = HostTags(port);
    let app = format!("localhost:{port}/app:1");
    build_labelled(&app, "1");

    let cluster = DindCluster::new(Repo::empty(), "reg");
    let repo = cluster.repo.path();
    std::fs::write(
        repo.join("machines.yml"),
        machines(&cluster.name, &port.to_string(), port, 1),
    )
    .unwrap();
    std::fs::write(
        repo.join("docker-compose.yml"),
        format!("services:\n  web:\n    image: {app}\n    deploy:\n      mode: global\n  base:\n    image: dataservice:1\n    deploy:\n      mode: global\n"),
    )
    .unwrap();
    let no_credentials = tempfile::tempdir().unwrap();
    let runs = Runs {
        cluster: &cluster,
        printed: Default::default(),
    };

    // The preloaded images go into the registry; every node pulls them, by digest.
    runs.apply(no_credentials.path());
    let first = cluster.service_image("m", "app_web");
    assert!(
        first.starts_with(&format!("{app}@sha256:")),
        "the service is pinned to the registry's digest: {first}"
    );
    let digest = first.split_once('@').unwrap().1.to_string();
    for machine in ["m", "w1"] {
        let pulled = pulled_images(&cluster, machine);
        assert!(
            pulled.contains(&format!("localhost:{port}/app@{digest}")),
            "{machine} pulled the app from the registry: {pulled:?}"
        );
        assert!(
            pulled.iter().any(|p| p.starts_with("dataservice@sha256:")),
            "{machine} pulled dataservice:1 through its mirror: {pulled:?}"
        );
    }
    assert!(steps_of(&runs.json(no_credentials.path(), &["plan", "--json"])).is_empty());

    // A node created later pulls from it too.
    std::fs::write(
        repo.join("machines.yml"),
        machines(&cluster.name, &port.to_string(), port, 2),
    )
    .unwrap();
    runs.apply(no_credentials.path());
    // The global services start their tasks on the new node once it is ready.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let pulled = pulled_images(&cluster, "w2");
        let both = pulled.iter().any(|p| p.starts_with("dataservice@sha256:"))
            && pulled.contains(&format!("localhost:{port}/app@{digest}"));
        if both {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new worker pulled both images: {pulled:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // The tag re-pushed by hand: one update_service with both digests, rolled out.
    build_labelled(&app, "2");
    host_docker(None, &["push", "-q", &app], "");
    let plan = runs.json(no_credentials.path(), &["plan", "--json"]);
    assert_eq!(steps_of(&plan), ["update_service app_web"], "{plan:#}");
    let text = runs.ok(no_credentials.path(), &["plan"]);
    let moved = service_image_after(&runs, no_credentials.path(), &cluster);
    let moved_digest = moved.split_once('@').unwrap().1.to_string();
    assert_ne!(moved_digest, digest);
    assert!(
        text.contains(&digest) && text.contains(&moved_digest),
        "the plan shows both digests: {text}"
    );

    // Basic authentication: an htpasswd file in the repository, credentials in a docker config.
    std::fs::write(
        repo.join("registry.htpasswd"),
        common::htpasswd_line(USER, PASSWORD),
    )
    .unwrap();
    std::fs::write(
        repo.join("machines.yml"),
        machines(
            &cluster.name,
            &format!("{{port: {port}, htpasswd: registry.htpasswd}}"),
            port,
            2,
        ),
    )
    .unwrap();
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(
        credentials.path().join("config.json"),
        serde_json::json!({"auths": {format!("localhost:{port}"): {"auth": base64_of(&format!("{USER}:{PASSWORD}"))}}}).to_string(),
    )
    .unwrap();
    let plan = runs.json(credentials.path(), &["plan", "--json"]);
    assert!(
        plan["warnings"].to_string().contains(
            "driver_options.registry changed (htpasswd authentication added): apply replaces"
        ),
        "the plan shows the registry option change: {plan:#}"
    );
    runs.apply(credentials.path());
    assert!(steps_of(&runs.json(credentials.path(), &["plan", "--json"])).is_empty());
    let refused = runs.json(no_credentials.path(), &["plan", "--json"]);
    assert!(
        refused.to_string().contains("docker login"),
        "without credentials the plan says how to log in: {refused:#}"
    );
    assert!(steps_of(&refused).is_empty(), "{refused:#}");

    build_labelled(&app, "3");
    host_docker(Some(credentials.path()), &["push", "-q", &app], "");
    let plan = runs.json(credentials.path(), &["plan", "--json"]);
    assert_eq!(steps_of(&plan), ["update_service app_web"], "{plan:#}");
    // The watcher rolls the moved tag out too: the repository as a git branch, one pass.
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "cluster",
        ],
    ] {
        let done = std::process::Command::new("git")
            .args(args)
            .current_dir(repo.as_path())
            .status()
            .expect("git");
        assert!(done.success(), "git {args:?}");
    }
    runs.ok(credentials.path(), &["watch", "--once"]);
    let third = cluster.service_image("m", "app_web");
    assert!(third.starts_with(&format!("{app}@sha256:")), "{third}");
    assert_ne!(third, moved, "the watcher rolled the new digest out");
    for machine in ["m", "w1", "w2"] {
        let pulled = pulled_images(&cluster, machine);
        assert!(
            pulled.contains(&format!(
                "localhost:{port}/app@{}",
                third.split_once('@').unwrap().1
            )),
            "{machine} pulled the new image with the credentials: {pulled:?}"
        );
    }
    assert!(
        !runs.printed.borrow().contains(PASSWORD)
            && !runs
                .printed
                .borrow()
                .contains(&base64_of(&format!("{USER}:{PASSWORD}"))),
        "a credential was printed"
    );

    // A registry container removed by hand: plan warns and changes nothing, apply brings it
    // back with its images (they live on its volume).
    host_docker(
        None,
        &["rm", "-f", &format!("{}-registry", cluster.name)],
        "",
    );
    let plan = runs.json(credentials.path(), &["plan", "--json"]);
    assert!(steps_of(&plan).is_empty(), "{plan:#}");
    assert!(
        plan.to_string().contains("could not be accessed"),
        "{plan:#}"
    );
    runs.apply(credentials.path());
    assert!(steps_of(&runs.json(credentials.path(), &["plan", "--json"])).is_empty());

    // destroy removes the registry with the machines.
    runs.ok(credentials.path(), &["destroy", "--yes"]);
    let left = common::left_of(&cluster.name, &["container", "volume"]);
    assert!(left.trim().is_empty(), "left behind: {left}");
}

/// Applies the pending change and returns the service's image afterwards.
fn service_image_after(runs: &Runs<'_>, config: &Path, cluster: &DindCluster) -> String {
    let report = runs.apply(config);
    assert_eq!(
        report["health"]["app_web"]["state"], "healthy",
        "{report:#}"
    );
    cluster.service_image("m", "app_web")
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn a_registry_port_held_by_another_program_is_refused_with_what_to_do() {
    let _turn = engine_turn("the cluster registry test");
    require_docker_registry("the cluster registry test");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let cluster = DindCluster::new(Repo::empty(), "regport");
    std::fs::write(
        cluster.repo.path().join("machines.yml"),
        format!(
            "cluster: {}\ndriver: dind\ndriver_options:\n  registry: {port}\nmachines:\n  m:\n    role: manager\n",
            cluster.name
        ),
    )
    .unwrap();
    let out = cluster.repo.shoal(&["apply", "--yes"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}"))
            && text.contains("driver_options.registry.port"),
        "{text}"
    );
    assert_eq!(
        text.matches("something else holds").count(),
        1,
        "said once: {text}"
    );
    // Nothing was planned or made: no machine exists.
    let status = cluster.repo.json(&["status", "--json"]);
    assert!(
        status["machines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["machine_state"] == "gone"),
        "{status:#}"
    );
    // destroy removes what the failed apply made (the network, the registry's container).
    cluster.repo.ok(&["destroy", "--yes"]);
    let left = common::left_of(&cluster.name, &["container", "network", "volume"]);
    assert!(left.trim().is_empty(), "left behind: {left}");
}

#[test]
fn machines_made_before_the_registry_are_named_in_a_warning() {
    let _turn = engine_turn("the cluster registry test");
    require_docker_registry("the cluster registry test");
    let port = free_port();
    let cluster = DindCluster::new(Repo::empty(), "regold");
    let machines = |registry: &str| {
        std::fs::write(
            cluster.repo.path().join("machines.yml"),
            format!(
                "cluster: {}\ndriver: dind\ndriver_options:\n  registry: {registry}\nmachines:\n  m:\n    role: manager\n",
                cluster.name
            ),
        )
        .unwrap();
    };
    machines("false");
    cluster.repo.apply();
    machines(&port.to_string());
    let (_, stderr) = cluster.repo.ok_both(&["apply", "--yes"]);
    assert!(
        stderr.contains("machine m was created before driver_options.registry was set"),
        "{stderr}"
    );
}
