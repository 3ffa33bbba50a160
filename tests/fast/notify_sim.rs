//! Notifications on the sim (DESIGN §9): `shoal apply` tells the `notify:` webhooks of
//! machines.yml what happened, signed with the secret from the environment; a webhook that
//! answers 500 is tried again, one that never answers does not hold the apply up nor change its
//! exit code; events are filtered per webhook; `--no-notify` sends nothing.

use crate::common;
use crate::watch_support::receiver::{Answer, Receiver};

use common::Repo;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::net::TcpListener;
use std::time::Duration;

/// The tutorial with `notify:` appended to machines.yml.
fn repo_notifying(block: &str) -> Repo {
    let repo = Repo::copy_of("examples/dataapp");
    let path = repo.path().join("machines.yml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(block);
    std::fs::write(&path, text).unwrap();
    repo
}

fn apply_with(repo: &Repo, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = repo.command(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run shoal")
}

fn hex_hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A test certificate authority (`ca.pem` in `dir`) and a server certificate and key it signed
/// for 127.0.0.1 (PEM), made by the openssl CLI.
fn test_authority(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=shoal test CA",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    ]);
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    (read("cert.pem"), read("key.pem"))
}

#[test]
fn https_webhooks_are_sent_only_to_a_trusted_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = test_authority(certs.path());
    let receiver = Receiver::start_tls(&[Answer::Status(200)], &cert, &key);
    let repo = repo_notifying("notify:\n  - url: ${HOOK_URL}\n    secret: ${HOOK_SECRET}\n");
    let url = receiver.url();
    assert!(url.starts_with("https://"), "{url}");
    let bundle = certs.path().join("ca.pem").display().to_string();
    let env = [
        ("HOOK_URL", url.as_str()),
        ("HOOK_SECRET", "s3cr3t"),
        ("SSL_CERT_FILE", bundle.as_str()),
    ];
    let out = apply_with(&repo, &["apply", "--yes"], &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receiver.got();
    assert_eq!(got.len(), 1, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(got[0].json()["event"], "applied");
    assert_eq!(
        got[0].header("x-shoal-signature"),
        Some(format!("sha256={}", hex_hmac("s3cr3t", &got[0].body)).as_str())
    );

    // A certificate nobody vouches for: the handshake fails, nothing is told, apply goes on.
    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 4");
    let out = apply_with(&repo, &["apply", "--yes"], &env[..2]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        receiver.got().len(),
        1,
        "nothing reaches an untrusted webhook"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not notify")
            && stderr.contains("127.0.0.1")
            && stderr.contains("invalid peer certificate: UnknownIssuer"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("token123"),
        "the URL's path is not shown: {stderr}"
    );
}

#[test]
fn apply_sends_signed_json_and_retries_after_a_500() {
    let receiver = Receiver::start(&[Answer::Status(500), Answer::Status(204)]);
    let repo = repo_notifying(
        "notify:\n  - url: ${HOOK_URL}\n    secret: ${HOOK_SECRET}\n    link: http://status.example/\n",
    );
    let env = [
        ("HOOK_URL", receiver.url()),
        ("HOOK_SECRET", "s3cr3t".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let out = apply_with(&repo, &["apply", "--yes"], &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receiver.got();
    assert_eq!(got.len(), 2, "one 500, then the retry: {got:?}");
    assert_eq!(got[0].body, got[1].body, "the retry sends the same body");
    let request = &got[1];
    assert_eq!(
        request.header("x-shoal-signature"),
        Some(format!("sha256={}", hex_hmac("s3cr3t", &request.body)).as_str())
    );
    assert_eq!(request.header("x-shoal-event"), Some("applied"));
    let body = request.json();
    assert_eq!(body["event"], "applied");
    assert_eq!(body["cluster"], "dataapp");
    assert_eq!(body["source"], "apply");
    assert_eq!(body["link"], "http://status.example/");
    assert!(body["summary"]["add"].as_u64().unwrap() > 0, "{body}");
    assert_eq!(body["failing"], serde_json::json!([]));
    assert!(!String::from_utf8_lossy(&request.body).contains("s3cr3t"));

    // Nothing to do: nothing is told.
    let again = apply_with(&repo, &["apply", "--yes"], &env);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(receiver.got().len(), 2);
}

#[test]
fn a_degraded_apply_tells_the_failing_service_in_slack_format_and_filters_events() {
    let slack = Receiver::start(&[Answer::Status(200)]);
    let only_applied = Receiver::start(&[Answer::Status(200)]);
    let repo = repo_notifying(&format!(
        "notify:\n  - url: {}\n    format: slack\n    events: [failed, degraded]\n  - url: {}\n    events: [applied]\n",
        slack.url(),
        only_applied.url()
    ));
    let first = apply_with(&repo, &["apply", "--yes"], &[]);
    assert_eq!(first.status.code(), Some(0));
    assert!(slack.got().is_empty(), "slack wants no `applied`");
    assert_eq!(only_applied.got().len(), 1);

    repo.edit(
        "docker-compose.yml",
        "image: dataservice:1",
        "image: missing/dataservice:2",
    );
    let out = apply_with(&repo, &["apply", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(only_applied.got().len(), 1, "it wants no `degraded`");
    let got = slack.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].header("x-shoal-signature").is_none());
    let body = got[0].json();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("dataapp") && text.contains("degraded"),
        "{body}"
    );
    let blocks = body["blocks"].to_string();
    assert!(
        blocks.contains("dataapp_dataservice") && blocks.contains("No such image"),
        "{body:#}"
    );
}

#[test]
fn a_webhook_that_never_answers_does_not_change_the_apply() {
    let receiver = Receiver::start(&[Answer::Hang]);
    let repo = repo_notifying(&format!("notify:\n  - url: {}\n", receiver.url()));
    let out = apply_with(&repo, &["apply", "--yes", "--json"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report");
    assert_eq!(report["converged"], true);
    // Bounded: the apply waits for its notifications at most 12 s (a 10 s try, a pause, the
    // start of a second), never for the three tries.
    let tries = receiver.got().len();
    assert!((1..=2).contains(&tries), "{tries} tries");
    assert!(
        stderr.contains("still notifying http://127.0.0.1:")
            && stderr.contains("(machines.yml:18)")
            && stderr.contains("given up"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("token123"),
        "the URL's path is not shown: {stderr}"
    );
}

#[test]
fn no_notify_sends_nothing_and_an_unset_url_only_warns() {
    let receiver = Receiver::start(&[Answer::Status(200)]);
    let repo = repo_notifying("notify:\n  - url: ${HOOK_URL}\n");
    let url = receiver.url();
    let out = apply_with(
        &repo,
        &["apply", "--yes", "--no-notify"],
        &[("HOOK_URL", &url)],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(receiver.got().is_empty());

    let validated = apply_with(&repo, &["validate"], &[]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
    assert_eq!(validated.status.code(), Some(0), "{said}");
    assert!(said.contains("HOOK_URL is not set"), "{said}");

    let bad = apply_with(&repo, &["validate"], &[("HOOK_URL", "ftp://example.com/")]);
    let said = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{said}");
    assert!(said.contains("machines.yml:18"), "{said}");
}

fn git(repo: &Repo, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=shoal", "-c", "user.email=shoal@localhost"])
        .args(args)
        .current_dir(repo.path())
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}");
}

/// The tutorial notifying `url`, committed (the watcher reads commits).
fn committed_notifying(url: &str) -> Repo {
    let repo = repo_notifying(&format!("notify:\n  - url: {url}\n"));
    std::fs::write(repo.path().join(".gitignore"), ".shoal/\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "tutorial"]);
    repo
}

#[test]
fn the_watcher_tells_applied_drift_healed_and_paused() {
    let receiver = Receiver::start(&[Answer::Status(200)]);
    let repo = committed_notifying(&receiver.url());
    repo.ok(&["watch", "--once"]);
    assert_eq!(receiver.events(), ["applied"]);
    let applied = receiver.got()[0].json();
    assert_eq!(applied["source"], "watch");
    assert_eq!(applied["revision"].as_str().unwrap().len(), 40);

    // Nothing to do: nothing told.
    repo.ok(&["watch", "--once"]);
    assert_eq!(receiver.events(), ["applied"]);

    repo.ok(&["sim", "set-replicas", "dataapp_dataservice", "2"]);
    repo.ok(&["watch", "--once"]);
    assert_eq!(receiver.events(), ["applied", "drift_healed"]);
    let healed = receiver.got()[1].json();
    assert!(
        healed["message"]
            .as_str()
            .unwrap()
            .contains("scale_service dataapp_dataservice"),
        "{healed}"
    );

    repo.ok(&["pause", "--reason", "incident 7"]);
    repo.ok(&["sim", "set-replicas", "dataapp_dataservice", "2"]);
    repo.ok(&["watch", "--once"]);
    assert_eq!(receiver.events(), ["applied", "drift_healed", "paused"]);
    let paused = receiver.got()[2].json();
    assert!(
        paused["message"].as_str().unwrap().contains("incident 7"),
        "{paused}"
    );
}

#[test]
fn the_watcher_counts_and_shows_its_notifications() {
    use crate::watch_support::{get, metric, wait_until, Spawned};
    let receiver = Receiver::start(&[Answer::Status(500), Answer::Status(200)]);
    let unreachable = {
        // A port nobody listens on: every try is refused.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("http://127.0.0.1:{port}/")
    };
    let repo = repo_notifying(&format!(
        "notify:\n  - url: {}\n  - url: {unreachable}\n    events: [applied]\n",
        receiver.url()
    ));
    std::fs::write(repo.path().join(".gitignore"), ".shoal/\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "tutorial"]);
    let mut watcher = Spawned::spawn(repo.command(&["watch", "--listen", "127.0.0.1:0"]));
    let addr = watcher.listening(Duration::from_secs(30));
    let counted = |event: &str, result: &str| {
        let text = get(addr, "/metrics").body;
        metric(
            &text,
            &format!("shoal_notifications_total{{event=\"{event}\",result=\"{result}\"}}"),
        )
    };
    assert!(
        wait_until(Duration::from_secs(30), || counted("applied", "sent")
            == 1.0
            && counted("applied", "failed") == 1.0),
        "{}",
        get(addr, "/metrics").body
    );
    let status: Value = serde_json::from_str(&get(addr, "/status").body).unwrap();
    let shown = status["notifications"].as_array().expect("notifications");
    assert_eq!(shown.len(), 2, "{status:#}");
    let sent = shown.iter().find(|n| n["ok"] == true).expect("a sent one");
    assert_eq!(sent["tries"], 2, "one 500, then sent: {sent}");
    let failed = shown
        .iter()
        .find(|n| n["ok"] == false)
        .expect("a failed one");
    assert_eq!(failed["tries"], 3, "{failed}");
    assert!(!status.to_string().contains("token123"), "{status:#}");

    // A commit that does not load: the cluster stays at the last good commit, and its webhooks
    // are told `failed`, once.
    std::fs::write(repo.path().join("docker-compose.yml"), "services: [\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "broken"]);
    assert!(
        wait_until(Duration::from_secs(30), || counted("failed", "sent") == 1.0),
        "{}",
        get(addr, "/metrics").body
    );
    let failed = receiver.got().last().unwrap().json();
    assert_eq!(failed["event"], "failed");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("docker-compose.yml"),
        "{failed}"
    );
    watcher.terminate(Duration::from_secs(20));
}

#[test]
fn the_watcher_warns_of_an_unset_webhook_once() {
    use crate::watch_support::{get, wait_until, Spawned};
    let repo = committed_notifying("${NOPE_HOOK_URL}");
    let mut command = repo.command(&["watch", "--interval", "1s", "--listen", "127.0.0.1:0"]);
    command
        .env("SHOAL_LOG", "shoal=info")
        .env_remove("NOPE_HOOK_URL");
    let mut watcher = Spawned::spawn(command);
    let addr = watcher.listening(Duration::from_secs(30));
    let passes = || {
        let status: Value = serde_json::from_str(&get(addr, "/status").body).unwrap_or_default();
        status["reconciles"].as_u64().unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(30), || passes() >= 3));
    watcher.terminate(Duration::from_secs(20));
    let told = (watcher.seen.iter())
        .filter(|line| line.contains("NOPE_HOOK_URL is not set"))
        .count();
    assert_eq!(told, 1, "{:#?}", watcher.seen);
}
