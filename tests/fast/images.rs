//! Image policies (DESIGN §9): `shoal images`, `shoal images update --commit --push` and
//! `watch --remote --images-every` on the sim, against a registry faked on 127.0.0.1 in the
//! test (its tag list paged with `Link`, as the registry API pages) and a bare repository
//! standing for the forge.

use crate::watch_support::{eventually, options, sim, BareRepo, WorkRepo, CLUSTER};
use shoal::watch::{WatchSource, Watcher};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A registry on 127.0.0.1 that serves `app`'s tags in two pages; its port. It lives as long
/// as the test process (a thread blocked in `accept`).
fn fake_registry(tags: &'static [&'static str]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let read = stream.read(&mut buffer).unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..read]).to_string();
            let line = request.lines().next().unwrap_or("").to_string();
            let half = tags.len() / 2;
            let (page, link) = if line.contains("last=") {
                (&tags[half..], String::new())
            } else {
                (
                    &tags[..half],
                    format!(
                        "Link: </v2/app/tags/list?n={half}&last={}>; rel=\"next\"\r\n",
                        tags[half - 1]
                    ),
                )
            };
            let answer = if line.starts_with("GET /v2/app/tags/list") {
                let body = serde_json::json!({"name": "app", "tags": page}).to_string();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{link}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

fn machines(port: u16) -> String {
    format!(
        "cluster: {CLUSTER}\ndriver: sim\nmachines:\n  mgr:\n    role: manager\nstacks:\n  app: docker-compose.yml\nimages:\n  localhost:{port}/app:\n    semver: \"^1.2\"\n"
    )
}

fn compose(port: u16, version: &str) -> String {
    format!(
        "# the app stack\nx-image: &image \"localhost:{port}/app:{version}\"  # followed by shoal\nservices:\n  app:\n    image: *image\n    environment:\n      VERSION: \"{version}\"\n  worker:\n    image: *image\n  web:\n    image: ${{WEB_IMAGE:-nginx:1.27}}\n"
    )
}

fn shoal(repo: &std::path::Path, args: &[&str]) -> Output {
    let config = tempfile::tempdir().expect("docker config dir");
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .arg("--repo")
        .arg(repo)
        .env("DOCKER_CONFIG", config.path())
        .env_remove("SHOAL_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run shoal")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn images_lists_what_the_files_name_and_the_registry_offers() {
    let port = fake_registry(&["1.2.0", "latest", "1.3.0", "2.0.0", "1.3.0-rc.1", "main"]);
    let repo = WorkRepo::new();
    repo.commit(
        &[
            ("machines.yml", &machines(port)),
            ("docker-compose.yml", &compose(port, "1.2.0")),
        ],
        "first",
    );
    let out = shoal(&repo.path(), &["images"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("localhost:{port}/app (semver ^1.2)")),
        "{stdout}"
    );
    assert!(stdout.contains("registry offers: 1.3.0"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "docker-compose.yml:2 app: localhost:{port}/app:1.2.0  → localhost:{port}/app:1.3.0"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("not rewritten"),
        "the ${{VAR}} image is told: {stderr}"
    );
    let out = shoal(&repo.path(), &["images", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json[0]["newest"], "1.3.0");
    assert_eq!(json[0]["written"].as_array().map(Vec::len), Some(2));
    assert_eq!(json[0]["error"], serde_json::Value::Null);
}

#[test]
fn update_commits_only_the_tag_and_pushes_it() {
    let port = fake_registry(&["1.2.0", "latest", "1.3.0", "2.0.0"]);
    let forge = BareRepo::new();
    let repo = WorkRepo::new();
    let before = compose(port, "1.2.0");
    let first = repo.commit(
        &[
            ("machines.yml", &machines(port)),
            ("docker-compose.yml", &before),
        ],
        "first",
    );
    let git = git2::Repository::open(repo.path()).expect("open");
    git.remote("origin", &forge.url()).expect("remote");
    let out = shoal(&repo.path(), &["images", "update", "--push"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let forge_git = git2::Repository::open_bare(forge.dir.path()).expect("forge");
    let pushed = forge_git
        .find_reference("refs/heads/main")
        .and_then(|r| r.peel_to_commit())
        .expect("main pushed");
    assert_eq!(pushed.author().name(), Some("shoal"));
    assert_eq!(
        pushed.message(),
        Some(format!("images: localhost:{port}/app 1.2.0 → 1.3.0").as_str())
    );
    assert_eq!(pushed.parent_id(0).expect("parent").to_string(), first);
    let blob = pushed
        .tree()
        .and_then(|t| t.get_path(std::path::Path::new("docker-compose.yml")))
        .and_then(|e| e.to_object(&forge_git))
        .expect("file");
    let after = String::from_utf8(blob.as_blob().expect("blob").content().to_vec()).expect("utf8");
    assert_eq!(after, before.replacen("app:1.2.0", "app:1.3.0", 1));
    assert_eq!(
        std::fs::read_to_string(repo.path().join("docker-compose.yml")).expect("read"),
        after
    );
    let status = git.statuses(None).expect("status");
    assert!(
        status
            .iter()
            .all(|s| s.status() == git2::Status::CURRENT || s.status() == git2::Status::IGNORED),
        "the working tree is clean after the commit"
    );
    // Up to date now: a second update changes nothing.
    let out = shoal(&repo.path(), &["images", "update", "--commit"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("up to date"), "{stdout}");
    assert_eq!(
        git.head()
            .and_then(|h| h.peel_to_commit())
            .expect("head")
            .id(),
        pushed.id()
    );
}

#[test]
fn update_refuses_to_commit_over_local_edits() {
    let port = fake_registry(&["1.2.0", "1.3.0"]);
    let repo = WorkRepo::new();
    let head = repo.commit(
        &[
            ("machines.yml", &machines(port)),
            ("docker-compose.yml", &compose(port, "1.2.0")),
        ],
        "first",
    );
    let edited = compose(port, "1.2.0").replace("# the app stack", "# edited, not committed");
    repo.write("docker-compose.yml", &edited);
    let out = shoal(&repo.path(), &["images", "update", "--commit"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("not committed"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(repo.path().join("docker-compose.yml")).expect("read"),
        edited
    );
    let git = git2::Repository::open(repo.path()).expect("open");
    assert_eq!(
        git.head()
            .and_then(|h| h.peel_to_commit())
            .expect("head")
            .id()
            .to_string(),
        head
    );
}

#[test]
fn an_unreachable_registry_is_exit_1_and_changes_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let repo = WorkRepo::new();
    repo.commit(
        &[
            ("machines.yml", &machines(port)),
            ("docker-compose.yml", &compose(port, "1.2.0")),
        ],
        "first",
    );
    let out = shoal(&repo.path(), &["images", "update", "--commit"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("could not be asked"), "{stderr}");
}

/// The image the sim runs for `service` in the cluster kept under `dir`.
fn sim_image(dir: &std::path::Path, service: &str) -> Option<String> {
    sim(dir)
        .swarms
        .values()
        .flat_map(|s| s.services.values())
        .find(|s| s.spec.name == service)
        .map(|s| s.spec.task_template.container_spec.image.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_pushes_the_new_tag_and_deploys_it() {
    let port = fake_registry(&["1.2.0", "latest", "1.3.0", "2.0.0"]);
    let forge = BareRepo::new();
    let before = compose(port, "1.2.0");
    let first = forge.commit(
        &[
            ("machines.yml", &machines(port)),
            ("docker-compose.yml", &before),
        ],
        "first",
    );
    let cache = tempfile::tempdir().expect("cache");
    let mut watch = options(WatchSource::Remote {
        url: forge.url(),
        cache: Some(cache.path().to_path_buf()),
        path: String::new(),
    });
    watch.images_every = Some(Duration::from_secs(1));
    let watcher = Watcher::start(watch).await.expect("start");
    let forge_git = git2::Repository::open_bare(forge.dir.path()).expect("forge");
    let tip = || {
        forge_git
            .find_reference("refs/heads/main")
            .and_then(|r| r.peel_to_commit())
            .expect("main")
    };
    assert!(
        eventually(Duration::from_secs(20), || tip().id().to_string() != first).await,
        "a commit lands on the followed branch: {:?}",
        watcher.status()
    );
    let pushed = tip();
    assert_eq!(pushed.author().name(), Some("shoal"));
    assert_eq!(
        pushed.message(),
        Some(format!("images: localhost:{port}/app 1.2.0 → 1.3.0").as_str())
    );
    assert_eq!(pushed.parent_id(0).expect("parent").to_string(), first);
    let wanted = format!("localhost:{port}/app:1.3.0");
    assert!(
        eventually(Duration::from_secs(20), || {
            sim_image(cache.path(), "app_app").is_some_and(|image| image.starts_with(&wanted))
        })
        .await,
        "the service runs 1.3.0: {:?} {:?}",
        sim_image(cache.path(), "app_app"),
        watcher.status()
    );
    // 2.0.0 and latest stay ignored: no further commit.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(tip().id(), pushed.id(), "nothing more to change");
    watcher.control().stop();
    watcher.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_watcher_commits_on_its_branch_and_the_work_tree_follows() {
    let port = fake_registry(&["1.2.0", "1.3.0", "2.0.0"]);
    let repo = WorkRepo::new();
    let before = compose(port, "1.2.0");
    let first = repo.commit(
        &[
            ("machines.yml", &machines(port)),
            ("docker-compose.yml", &before),
        ],
        "first",
    );
    let mut watch = options(WatchSource::Local(repo.path()));
    watch.images_every = Some(Duration::from_secs(1));
    let watcher = Watcher::start(watch).await.expect("start");
    let git = git2::Repository::open(repo.path()).expect("open");
    let head = || git.head().and_then(|h| h.peel_to_commit()).expect("head");
    assert!(
        eventually(Duration::from_secs(20), || head().id().to_string() != first).await,
        "a commit lands on main: {:?}",
        watcher.status()
    );
    let made = head();
    assert_eq!(made.author().name(), Some("shoal"));
    assert_eq!(made.parent_id(0).expect("parent").to_string(), first);
    let after = before.replacen("app:1.2.0", "app:1.3.0", 1);
    // The branch moves first, then the work tree is checked out: wait for both.
    let dirty = || -> Vec<String> {
        git.statuses(None)
            .expect("status")
            .iter()
            .filter(|s| s.status() != git2::Status::CURRENT && s.status() != git2::Status::IGNORED)
            .filter_map(|s| s.path().map(str::to_string))
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(20), || dirty().is_empty()).await,
        "the work tree follows the commit: {:?}",
        dirty()
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("docker-compose.yml")).expect("read"),
        after
    );
    let wanted = format!("localhost:{port}/app:1.3.0");
    assert!(
        eventually(Duration::from_secs(20), || {
            sim_image(&repo.path(), "app_app").is_some_and(|image| image.starts_with(&wanted))
        })
        .await,
        "the service runs 1.3.0: {:?}",
        sim_image(&repo.path(), "app_app")
    );
    watcher.control().stop();
    watcher.wait().await;
}
