//! `shoal watch --remote` on the sim driver, in process, with a bare repository on this machine
//! standing for the forge: the clone converges, and webhooks are authenticated before they
//! trigger a fetch and an apply.

use crate::watch_support;

use shoal::signature::hmac_sha256_hex as sign;
use shoal::watch::{WatchSource, Watcher};
use std::path::Path;
use std::time::Duration;
use watch_support::*;

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "webhook-s3cret";

struct Remote {
    forge: BareRepo,
    cache: tempfile::TempDir,
    watcher: Watcher,
}

impl Remote {
    async fn start(url: impl FnOnce(&BareRepo) -> String, secret: Option<&str>) -> Remote {
        let forge = BareRepo::new();
        forge.commit(
            &[
                ("machines.yml", MACHINES),
                ("docker-compose.yml", &compose(2)),
            ],
            "first",
        );
        let cache = tempfile::tempdir().expect("cache dir");
        let mut options = options(WatchSource::Remote {
            url: url(&forge),
            cache: Some(cache.path().to_path_buf()),
            path: String::new(),
        });
        options.webhook_secret = secret.map(str::to_string);
        let watcher = Watcher::start(options).await.expect("start");
        Remote {
            forge,
            cache,
            watcher,
        }
    }

    fn state_dir(&self) -> &Path {
        self.cache.path()
    }

    fn webhook(&self, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let addr = self.watcher.local_addr().expect("listening");
        http(addr, "POST", "/hooks/git", headers, body)
    }

    fn metric(&self, name: &str) -> f64 {
        metric(&self.watcher.metrics(), name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_authenticated_then_fetch_and_apply() {
    let remote = Remote::start(BareRepo::url, Some(SECRET)).await;
    let dir = remote.state_dir().to_path_buf();
    assert!(
        eventually(WAIT, || remote.watcher.status().synced_revision.is_some()).await,
        "the clone converges: {:?}",
        remote.watcher.status()
    );
    assert_eq!(replicas(&dir, SERVICE), Some(2));
    let status = remote.watcher.status();
    assert_eq!(status.source.kind, "remote");
    assert_eq!(
        status.source.branch.as_deref(),
        Some("main"),
        "learnt from the remote"
    );

    // A push the watcher has not been told about.
    let pushed = remote.forge.commit(
        &[
            ("machines.yml", MACHINES),
            ("docker-compose.yml", &compose(4)),
        ],
        "four replicas",
    );
    let body = br#"{"ref":"refs/heads/main","after":"0000"}"#;
    let passes = remote.watcher.status().reconciles;

    let forged = format!("sha256={}", sign(b"not the secret", body));
    let refused = remote.webhook(&[("X-Hub-Signature-256", &forged)], body);
    assert_eq!(refused.status, 401, "{}", refused.body);
    let missing = remote.webhook(&[("Content-Type", "application/json")], body);
    assert_eq!(missing.status, 401);
    let wrong_token = remote.webhook(&[("X-Gitlab-Token", "guess")], body);
    assert_eq!(wrong_token.status, 401);
    // Signed right, but for another body.
    let replayed = format!("sha256={}", sign(SECRET.as_bytes(), b"{}"));
    assert_eq!(
        remote
            .webhook(&[("X-Hub-Signature-256", &replayed)], body)
            .status,
        401
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        remote.watcher.status().reconciles,
        passes,
        "a refused webhook triggered a pass"
    );
    assert_eq!(
        remote.metric("shoal_triggers_total{source=\"webhook\"}"),
        0.0
    );
    assert_eq!(
        remote.metric("shoal_webhook_requests_total{outcome=\"unauthorized\"}"),
        4.0
    );
    assert_eq!(replicas(&dir, SERVICE), Some(2));

    // GitHub's signature: fetch, then apply.
    let signed = format!("sha256={}", sign(SECRET.as_bytes(), body));
    let accepted = remote.webhook(
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &signed)],
        body,
    );
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert!(
        eventually(WAIT, || recorded_revision(&dir).as_deref() == Some(&pushed)).await,
        "the pushed commit is fetched and applied: {:?}",
        remote.watcher.status()
    );
    assert_eq!(replicas(&dir, SERVICE), Some(4));
    assert_eq!(
        remote.metric("shoal_triggers_total{source=\"webhook\"}"),
        1.0
    );

    // Gitea's and GitLab's ways are accepted too.
    let next = remote.forge.commit(
        &[
            ("machines.yml", MACHINES),
            ("docker-compose.yml", &compose(1)),
        ],
        "one replica",
    );
    let gitea = remote.webhook(
        &[("X-Gitea-Signature", &sign(SECRET.as_bytes(), body))],
        body,
    );
    assert_eq!(gitea.status, 202);
    assert!(eventually(WAIT, || recorded_revision(&dir).as_deref() == Some(&next)).await);
    assert_eq!(replicas(&dir, SERVICE), Some(1));
    let gitlab = remote.webhook(&[("X-Gitlab-Token", SECRET)], body);
    assert_eq!(gitlab.status, 202);

    remote.watcher.control().stop();
    assert_eq!(remote.watcher.wait().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_url_is_cloned_and_webhooks_are_off_without_a_secret() {
    let remote = Remote::start(|forge| format!("file://{}", forge.url()), None).await;
    let dir = remote.state_dir().to_path_buf();
    assert!(
        eventually(WAIT, || remote.watcher.status().synced_revision.is_some()).await,
        "{:?}",
        remote.watcher.status()
    );
    assert_eq!(replicas(&dir, SERVICE), Some(2));
    assert!(
        dir.join("repo.git").is_dir(),
        "the clone is kept in the cache"
    );
    let off = remote.webhook(&[("X-Gitlab-Token", "")], b"{}");
    assert_eq!(off.status, 403);
    assert!(off.body.contains("SHOAL_WEBHOOK_SECRET"), "{}", off.body);

    // A broken push is not applied; the previous commit stays.
    let before = recorded_revision(&dir);
    remote
        .forge
        .commit(&[("machines.yml", "machines: [\n")], "broken");
    remote.watcher.control().trigger();
    assert!(eventually(WAIT, || remote.watcher.status().errors >= 1).await);
    assert_eq!(recorded_revision(&dir), before);
    assert_eq!(replicas(&dir, SERVICE), Some(2));

    remote.watcher.control().stop();
    assert_eq!(remote.watcher.wait().await, 0);
}
