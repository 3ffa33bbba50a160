//! Images from registries (issue 12), against a real registry: Debian's `docker-registry`
//! binary, started by the test on 127.0.0.1 (plain and with basic auth), filled with
//! `docker push` from the host engine. The registry API client resolves tags to the digests the
//! docker CLI records; a tag that moves resolves anew; a registry with basic auth answers with
//! the credentials of a docker config. Through the CLI on a dind cluster with its own registry,
//! where nodes really pull: `tests/registry_dind.rs`.
//!
//! Fails, naming what is missing, when `docker-registry` or a Docker Engine is missing
//! (`.ci/test` installs Debian's `docker-registry`).

use crate::common;

use common::{build_demo_image, engine_turn, host_docker, require_docker_registry};
use shoal::model::reference::Reference;
use shoal::registry::auth::DockerConfig;
use shoal::registry::client::resolve_digest;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "shoaltest";
const PASSWORD: &str = "pw-never-printed-913";

/// A `docker-registry` process on 127.0.0.1, stopped on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(basic_auth: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let mut config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if basic_auth {
            std::fs::write(
                dir.path().join("htpasswd"),
                common::htpasswd_line(USER, PASSWORD),
            )
            .unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: shoal-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    fn image(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        common::remove_host_tags_of(&format!("127.0.0.1:{}", self.port));
    }
}

/// Pushes an image with label `version` as `image`; returns the digest the engine recorded.
fn push(config: Option<&Path>, image: &str, version: &str) -> String {
    common::build_labelled(image, version);
    host_docker(config, &["push", "-q", image], "");
    let digests = host_docker(
        None,
        &[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            image,
        ],
        "",
    );
    let digests: Vec<String> = serde_json::from_str(&digests).unwrap();
    let (repo, _) = image.rsplit_once(':').unwrap();
    digests
        .iter()
        .find_map(|d| d.strip_prefix(&format!("{repo}@")).map(str::to_string))
        .unwrap_or_else(|| panic!("no digest of {image} in {digests:?}"))
}

/// A docker config folder logged in to `registry`.
fn logged_in(registry: &Registry) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    host_docker(
        Some(dir.path()),
        &[
            "login",
            "-u",
            USER,
            "--password-stdin",
            &format!("127.0.0.1:{}", registry.port),
        ],
        PASSWORD,
    );
    dir
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn tags_resolve_to_the_digests_docker_records_with_and_without_basic_auth() {
    let _turn = engine_turn("the registry tests");
    require_docker_registry("the registry tests");
    build_demo_image();
    let rt = runtime();

    let open = Registry::start(false);
    let image = open.image("app:1");
    let first = push(None, &image, "1");
    let reference = Reference::parse(&image).unwrap();
    assert_eq!(
        rt.block_on(resolve_digest(&reference, None)).unwrap(),
        first
    );
    let moved = push(None, &image, "2");
    assert_ne!(first, moved);
    assert_eq!(
        rt.block_on(resolve_digest(&reference, None)).unwrap(),
        moved
    );
    let missing = Reference::parse(&open.image("nothing:1")).unwrap();
    assert!(rt.block_on(resolve_digest(&missing, None)).is_err());

    let guarded = Registry::start(true);
    let config = logged_in(&guarded);
    let image = guarded.image("app:1");
    let digest = push(Some(config.path()), &image, "3");
    let reference = Reference::parse(&image).unwrap();
    let refused = rt.block_on(resolve_digest(&reference, None)).unwrap_err();
    assert!(refused.to_string().contains("docker login"), "{refused}");
    let text = std::fs::read_to_string(config.path().join("config.json")).unwrap();
    let credentials = serde_json::from_str::<DockerConfig>(&text)
        .unwrap()
        .credentials(&reference)
        .expect("docker login stored the credentials");
    assert_eq!(
        rt.block_on(resolve_digest(&reference, Some(&credentials)))
            .unwrap(),
        digest
    );
}
