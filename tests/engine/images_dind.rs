//! Image policies on a real dind cluster with its own registry (issue 23, acceptance): `app` at
//! `localhost:P/app:1.2.0` under `semver: "^1.2"`; `1.3.0`, `2.0.0` and `latest` are pushed to
//! the cluster registry; `shoal watch --remote --images-every` pushes the commit "images:
//! localhost:P/app 1.2.0 → 1.3.0" to the followed bare repository (the file changed only in
//! that tag) and the service then runs 1.3.0; 2.0.0 and latest stay ignored.
//!
//! Needs Docker and Debian's docker-registry (`.ci/test` installs it). The cluster is destroyed
//! and the host's tags removed when the test ends, failed or not; the watcher is killed.

use crate::common;
use crate::watch_support::{wait_until, BareRepo, Spawned};

use common::{
    build_demo_image, build_labelled, engine_turn, free_port, host_docker, require_docker_registry,
    DindCluster, Repo,
};
use std::time::Duration;

/// Removes the host's tags of the registry's images when the test ends.
struct HostTags(u16);

impl Drop for HostTags {
    fn drop(&mut self) {
        common::remove_host_tags_of(&format!("localhost:{}", self.0));
    }
}

#[test]
fn a_newer_tag_becomes_a_commit_on_the_followed_branch_and_runs() {
    let _turn = engine_turn("the image policy test");
    require_docker_registry("the image policy test");
    build_demo_image();
    let port = free_port();
    let _tags = HostTags(port);
    let app = format!("localhost:{port}/app");
    build_labelled(&format!("{app}:1.2.0"), "1.2.0");

    let cluster = DindCluster::new(Repo::empty(), "img");
    let machines = format!(
        "cluster: {}\ndriver: dind\ndriver_options:\n  registry: {port}\n  preload_images: [{app}:1.2.0]\nmachines:\n  m:\n    role: manager\nstacks:\n  app: docker-compose.yml\nimages:\n  {app}:\n    semver: \"^1.2\"\n",
        cluster.name
    );
    let compose = format!(
        "# the app, followed by shoal\nservices:\n  web:\n    image: \"{app}:1.2.0\"   # ^1.2\n    deploy:\n      replicas: 1\n"
    );
    let repo = cluster.repo.path();
    std::fs::write(repo.join("machines.yml"), &machines).unwrap();
    std::fs::write(repo.join("docker-compose.yml"), &compose).unwrap();
    let forge = BareRepo::new();
    let first = forge.commit(
        &[
            ("machines.yml", &machines),
            ("docker-compose.yml", &compose),
        ],
        "first",
    );
    // The cluster and its registry, running 1.2.0.
    let out = cluster.repo.shoal(&["apply", "--yes", "--timeout", "2m"]);
    assert!(
        out.status.success(),
        "first apply: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for tag in ["1.3.0", "2.0.0", "latest"] {
        let image = format!("{app}:{tag}");
        build_labelled(&image, tag);
        host_docker(None, &["push", "-q", &image], "");
    }

    let cache = tempfile::tempdir().unwrap();
    let mut command = cluster.repo.command(&[
        "watch",
        "--remote",
        &forge.url(),
        "--interval",
        "5s",
        "--images-every",
        "3s",
        "--listen",
        "127.0.0.1:0",
    ]);
    command
        .arg("--cache")
        .arg(cache.path())
        .env("SHOAL_LOG", "info");
    let mut watcher = Spawned::spawn(command);
    let forge_git = git2::Repository::open_bare(forge.dir.path()).unwrap();
    let tip = || {
        forge_git
            .find_reference("refs/heads/main")
            .and_then(|r| r.peel_to_commit())
            .unwrap()
    };
    let moved = wait_until(Duration::from_secs(90), || {
        watcher.drain();
        tip().id().to_string() != first
    });
    assert!(moved, "no commit on the forge: {:#?}", watcher.seen);
    let pushed = tip();
    assert_eq!(pushed.author().name(), Some("shoal"));
    assert_eq!(
        pushed.message(),
        Some(format!("images: {app} 1.2.0 → 1.3.0").as_str())
    );
    let blob = pushed
        .tree()
        .and_then(|t| t.get_path(std::path::Path::new("docker-compose.yml")))
        .and_then(|e| e.to_object(&forge_git))
        .unwrap();
    let after = String::from_utf8(blob.as_blob().unwrap().content().to_vec()).unwrap();
    assert_eq!(
        after,
        compose.replace(":1.2.0\"", ":1.3.0\""),
        "only the tag changed"
    );

    let runs = || cluster.service_image("m", "app_web");
    let deployed = wait_until(Duration::from_secs(180), || {
        watcher.drain();
        runs().starts_with(&format!("{app}:1.3.0@sha256:"))
    });
    assert!(deployed, "the service runs {}: {:#?}", runs(), watcher.seen);
    // 2.0.0 and latest stay ignored: no further commit after a few more periods.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        tip().id(),
        pushed.id(),
        "a second commit: {}",
        tip().message().unwrap_or("")
    );
    watcher.terminate(Duration::from_secs(30));
}
