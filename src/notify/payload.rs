//! What a notification says (pure): the [`Notice`] built from an apply's outcome, its JSON and
//! Slack bodies, and the `X-Shoal-Signature` header that signs them.

use crate::config::notifications::{NotifyEvent, NotifyFormat, NotifyTarget};
use crate::health::Health;
use crate::plan::mask::{mask_text, MASKED};
use crate::plan::report::ApplyReport;
use crate::plan::Summary;
use serde::Serialize;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Shoal-Signature";

/// A service that is not healthy, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailingService {
    /// The swarm service name (`stack_service`).
    pub service: String,
    /// Its health state (`degraded`, `progressing`, ...).
    pub state: String,
    /// Why (the task error, "rolled back", ...), masked.
    pub reason: String,
}

/// One thing that happened to the cluster, as every webhook is told it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// The cluster's name.
    pub cluster: String,
    /// The commit concerned, when known.
    pub revision: Option<String>,
    /// What happened.
    pub event: NotifyEvent,
    /// One line for people, masked.
    pub message: String,
    /// The plan's counts.
    pub summary: Summary,
    /// Each failing service with its health reason.
    pub failing: Vec<FailingService>,
    /// Who sent it: `watch` or `apply`.
    pub source: String,
}

impl Notice {
    /// A notice of `event`; `message` is masked (a step error can quote a command line).
    pub fn new(
        cluster: &str,
        revision: Option<&str>,
        event: NotifyEvent,
        message: &str,
        summary: Summary,
        source: &str,
    ) -> Notice {
        Notice {
            cluster: cluster.to_string(),
            revision: revision.map(str::to_string),
            event,
            message: mask(message),
            summary,
            failing: Vec::new(),
            source: source.to_string(),
        }
    }

    /// Adds the services of `unhealthy` (name, health), reasons masked.
    pub fn with_failing<'a>(
        mut self,
        unhealthy: impl IntoIterator<Item = (&'a str, &'a Health)>,
    ) -> Notice {
        self.failing
            .extend(unhealthy.into_iter().map(|(name, health)| {
                FailingService {
                    service: name.to_string(),
                    state: serde_json::to_value(health.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    reason: mask(&health.reason),
                }
            }));
        self
    }
}

fn mask(text: &str) -> String {
    mask_text(text, &[], MASKED)
}

/// The event an apply's report amounts to: `failed` when a step failed, `degraded` when a
/// service it changed is not healthy, else `applied`; with the line telling it.
pub fn outcome(report: &ApplyReport) -> (NotifyEvent, String) {
    let short = report
        .revision
        .as_deref()
        .map(|r| r.chars().take(12).collect::<String>())
        .unwrap_or_else(|| "the working tree".to_string());
    let failed = report.failed_steps();
    let unhealthy = report.unhealthy();
    if !failed.is_empty() {
        (
            NotifyEvent::Failed,
            format!(
                "applying {short}: {} step(s) failed: {}",
                failed.len(),
                failed.join("; ")
            ),
        )
    } else if !unhealthy.is_empty() {
        let lines: Vec<String> = unhealthy
            .iter()
            .map(|(name, health)| format!("{name}: {}", health.line()))
            .collect();
        (
            NotifyEvent::Degraded,
            format!(
                "applied {short}, but {} service(s) are not healthy: {}",
                lines.len(),
                lines.join("; ")
            ),
        )
    } else {
        (
            NotifyEvent::Applied,
            format!(
                "applied {short}: {} write(s) in {:.1}s",
                report.writes, report.seconds
            ),
        )
    }
}

/// The notice of an apply's report, from `source` (`watch`, `apply`).
pub fn notice_of_report(
    cluster: &str,
    summary: Summary,
    report: &ApplyReport,
    source: &str,
) -> Notice {
    let (event, message) = outcome(report);
    Notice::new(
        cluster,
        report.revision.as_deref(),
        event,
        &message,
        summary,
        source,
    )
    .with_failing(report.unhealthy())
}

/// The two notices of an apply rolled back, from `source`: `failed` for the commit (with its
/// failing services), then `rolled_back` telling what was applied instead and how it went.
pub fn notices_of_rollback(
    cluster: &str,
    summary: Summary,
    failed: &ApplyReport,
    failing: &str,
    rollback: &ApplyReport,
    source: &str,
) -> [Notice; 2] {
    let short = |r: Option<&str>| {
        r.map(|r| r.chars().take(12).collect::<String>())
            .unwrap_or_else(|| "the working tree".to_string())
    };
    let (from, to) = (
        short(failed.revision.as_deref()),
        short(rollback.revision.as_deref()),
    );
    let failed_notice = Notice::new(
        cluster,
        failed.revision.as_deref(),
        NotifyEvent::Failed,
        &format!("applied {from}, but it left {failing}; rolling back to {to}"),
        summary,
        source,
    )
    .with_failing(failed.unhealthy());
    let (event, outcome) = outcome(rollback);
    let how = match event {
        NotifyEvent::Applied => format!(
            "{} step(s), {} write(s)",
            rollback.steps.len(),
            rollback.writes
        ),
        _ => format!("but the rollback did not end well: {outcome}"),
    };
    let rolled_back = Notice::new(
        cluster,
        failed.revision.as_deref(),
        NotifyEvent::RolledBack,
        &format!("{from} failed ({failing}); rolled back to the last healthy revision {to}: {how}"),
        summary,
        source,
    )
    .with_failing(failed.unhealthy());
    [failed_notice, rolled_back]
}

/// The notice of an apply that left `failing` and whose rollback could not be carried out
/// (`error`): `failed`, with the failing services.
pub fn notice_of_failed_rollback(
    cluster: &str,
    summary: Summary,
    failed: &ApplyReport,
    failing: &str,
    error: &str,
    source: &str,
) -> Notice {
    Notice::new(
        cluster,
        failed.revision.as_deref(),
        NotifyEvent::Failed,
        &format!("{failing}; {error}"),
        summary,
        source,
    )
    .with_failing(failed.unhealthy())
}

#[derive(Serialize)]
struct JsonBody<'a> {
    #[serde(flatten)]
    notice: &'a Notice,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<&'a str>,
}

/// The body sent to `target`, in its format.
pub fn body(notice: &Notice, target: &NotifyTarget) -> Vec<u8> {
    let link = target.link.as_deref();
    let value = match target.format {
        NotifyFormat::Json => serde_json::to_value(JsonBody { notice, link }),
        NotifyFormat::Slack => Ok(slack(notice, link)),
    };
    serde_json::to_vec(&value.unwrap_or_default()).unwrap_or_default()
}

/// A Slack incoming-webhook message: `text` (the notification line, for clients without
/// blocks) and blocks with the failing services and the link.
fn slack(notice: &Notice, link: Option<&str>) -> serde_json::Value {
    let icon = match notice.event {
        NotifyEvent::Applied | NotifyEvent::DriftHealed => ":white_check_mark:",
        NotifyEvent::Failed | NotifyEvent::Degraded | NotifyEvent::RolledBack => ":x:",
        NotifyEvent::Paused => ":double_vertical_bar:",
    };
    let revision = notice
        .revision
        .as_deref()
        .map(|r| format!(" `{}`", r.chars().take(12).collect::<String>()))
        .unwrap_or_default();
    let text = format!(
        "{icon} *{}* {}{revision}: {}",
        notice.cluster, notice.event, notice.message
    );
    let s = notice.summary;
    let mut context = format!(
        "Plan: {} to add, {} to change, {} to destroy · from shoal {}",
        s.add, s.change, s.destroy, notice.source
    );
    if let Some(link) = link {
        context.push_str(&format!(" · <{link}|status>"));
    }
    let mut blocks = vec![serde_json::json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": text},
    })];
    if !notice.failing.is_empty() {
        let lines: Vec<String> = (notice.failing.iter())
            .map(|f| format!("• `{}` {}: {}", f.service, f.state, f.reason))
            .collect();
        blocks.push(serde_json::json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": lines.join("\n")},
        }));
    }
    blocks.push(serde_json::json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": context}],
    }));
    serde_json::json!({"text": text, "blocks": blocks})
}

/// The `X-Shoal-Signature` value of `body` under `secret`: `sha256=<hex HMAC-SHA256>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        crate::signature::hmac_sha256_hex(secret.as_bytes(), body)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::notifications::NotifySecret;
    use crate::health::HealthState;

    fn target(format: NotifyFormat, link: Option<&str>) -> NotifyTarget {
        NotifyTarget {
            url: "http://127.0.0.1:1/hook".into(),
            format,
            events: NotifyEvent::ALL.into_iter().collect(),
            secret: Some(NotifySecret("k".into())),
            link: link.map(str::to_string),
            origin: "machines.yml:3".into(),
        }
    }

    fn notice() -> Notice {
        let health = Health::new(
            HealthState::Degraded,
            "task failed: exit 1 (postgres://app:hunter2@db/app)",
        );
        Notice::new(
            "dataapp",
            Some("3f2c1e0aa1b2c3d4e5f60718293a4b5c6d7e8f90"),
            NotifyEvent::Degraded,
            "applied 3f2c1e0aa1b2, but 1 service(s) are not healthy",
            Summary {
                add: 1,
                change: 2,
                destroy: 0,
            },
            "apply",
        )
        .with_failing([("dataapp_web", &health)])
    }

    #[test]
    fn json_body() {
        let body = body(
            &notice(),
            &target(NotifyFormat::Json, Some("http://status/")),
        );
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("hunter2"));
        insta::assert_json_snapshot!(value);
    }

    #[test]
    fn slack_body() {
        let body = body(&notice(), &target(NotifyFormat::Slack, None));
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("hunter2"));
        insta::assert_json_snapshot!(value);
    }

    #[test]
    fn signature_is_github_style_hmac() {
        // The published GitHub example: secret "It's a Secret to Everybody", body "Hello, World!".
        assert_eq!(
            signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    fn report(revision: &str, health: HealthState, writes: u64) -> ApplyReport {
        ApplyReport {
            revision: Some(revision.repeat(40)),
            steps: Vec::new(),
            writes,
            converged: true,
            seconds: 1.0,
            remaining: Vec::new(),
            dry_run_writes: Vec::new(),
            health: [("app_web".to_string(), Health::new(health, "task 1: exit 1"))].into(),
            waited_for: vec!["app_web".to_string()],
            drift: Vec::new(),
        }
    }

    #[test]
    fn a_rollback_tells_failed_then_rolled_back_with_the_task_error() {
        let failed = report("b", HealthState::Degraded, 2);
        let rollback = report("a", HealthState::Healthy, 3);
        let [first, second] = notices_of_rollback(
            "c",
            Summary::default(),
            &failed,
            "app_web: degraded: task 1: exit 1",
            &rollback,
            "watch",
        );
        assert_eq!(first.event, NotifyEvent::Failed);
        assert_eq!(second.event, NotifyEvent::RolledBack);
        assert_eq!(second.revision.as_deref(), Some("b".repeat(40).as_str()));
        assert_eq!(
            second.message,
            "bbbbbbbbbbbb failed (app_web: degraded: task 1: exit 1); rolled back to the last healthy revision aaaaaaaaaaaa: 0 step(s), 3 write(s)"
        );
        assert_eq!(second.failing[0].reason, "task 1: exit 1");
        let bad = report("a", HealthState::Degraded, 3);
        let [_, second] = notices_of_rollback("c", Summary::default(), &failed, "x", &bad, "apply");
        assert!(
            second.message.contains("but the rollback did not end well"),
            "{}",
            second.message
        );
    }
}
