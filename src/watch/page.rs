//! `GET /`: the watcher's status as a small HTML page for people. Every value is escaped.

use super::state::{PassResult, StatusReport, TargetKind};
use crate::render::Status;
use std::fmt::Write;

/// `text` with the characters HTML gives meaning to replaced by entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn short(commit: Option<&str>) -> String {
    commit
        .map(|c| escape(c.get(..12).unwrap_or(c)))
        .unwrap_or_else(|| "none".to_string())
}

fn time(at: Option<u64>, now: u64) -> String {
    match at {
        None => "never".to_string(),
        Some(at) => format!("{}s ago (unix {at})", now.saturating_sub(at)),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
td,th{border-bottom:1px solid #ddd;padding:.25em .8em;text-align:left}\
.bad{color:#b00020}.ok{color:#1b5e20}pre{background:#f6f6f6;padding:.8em;white-space:pre-wrap}\
code{background:#f6f6f6}";

/// The page for `report` at Unix time `now`.
pub fn render(report: &StatusReport, now: u64) -> String {
    let mut out = String::new();
    let cluster = report
        .cluster
        .as_ref()
        .map(|c| c.cluster.as_str())
        .unwrap_or("cluster");
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
         <title>shoal: {}</title><style>{STYLE}</style></head><body>\n",
        escape(cluster)
    );
    let _ = writeln!(out, "<h1>shoal watch: {}</h1>", escape(cluster));
    let source = &report.source;
    let _ = writeln!(
        out,
        "<p>Following {} <code>{}</code>, branch <code>{}</code>.</p>",
        escape(&source.kind),
        escape(&source.location),
        escape(
            source
                .branch
                .as_deref()
                .unwrap_or("(default, not fetched yet)")
        )
    );
    held(&mut out, report);
    summary(&mut out, report, now);
    errors(&mut out, report, now);
    pending_plan(&mut out, report);
    last_plan(&mut out, report);
    history(&mut out, report, now);
    notifications(&mut out, report, now);
    if let Some(cluster) = &report.cluster {
        nodes_and_services(&mut out, cluster);
    }
    let _ = writeln!(
        out,
        "<p><a href=\"/status\">/status</a> (JSON) · <a href=\"/metrics\">/metrics</a></p></body></html>"
    );
    out
}

/// "Held at A, B failed: reason", while the cluster is held after a rollback.
fn held(out: &mut String, report: &StatusReport) {
    if let Some(held) = report.cluster.as_ref().and_then(|c| c.held.as_ref()) {
        let _ = writeln!(
            out,
            "<h2 class=\"bad\">Rolled back: {}</h2><p>The failed commit is applied again only when the branch moves.</p>",
            escape(&held.line())
        );
    }
}

/// A plan's summary line (`after` added before its full stop) and its steps, one item each.
fn summary_and_steps(out: &mut String, plan: &crate::watch::PlanInfo, after: &str) {
    let _ = writeln!(
        out,
        "<p>Commit {}: {} to add, {} to change, {} to destroy{after}.</p><ol>",
        short(plan.revision.as_deref()),
        plan.summary.add,
        plan.summary.change,
        plan.summary.destroy
    );
    for step in &plan.steps {
        let _ = writeln!(out, "<li><code>{}</code></li>", escape(step));
    }
    let _ = writeln!(out, "</ol>");
}

/// The plan not carried out while paused or failing.
fn pending_plan(out: &mut String, report: &StatusReport) {
    let Some(plan) = &report.pending_plan else {
        return;
    };
    out.push_str("<h2 class=\"bad\">Pending plan</h2>");
    summary_and_steps(out, plan, ", not carried out");
}

/// The last passes: commit, result, duration, writes.
fn history(out: &mut String, report: &StatusReport, now: u64) {
    if report.history.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<h2>Revision history</h2>\n<table><tr><th>when</th><th>commit</th><th>result</th><th>duration</th><th>writes</th></tr>"
    );
    for entry in &report.history {
        let result = serde_json::to_value(entry.result)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let class = match entry.result {
            PassResult::Failed | PassResult::RolledBack | PassResult::BrokenTip => "bad",
            PassResult::Paused => "",
            _ => "ok",
        };
        let times = if entry.passes > 1 {
            format!(" (×{})", entry.passes)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"{class}\">{}{times}</td><td>{:.2}s</td><td>{}</td></tr>",
            time(Some(entry.at), now),
            short(entry.commit.as_deref()),
            escape(&result),
            entry.seconds,
            entry.writes
        );
    }
    let _ = writeln!(out, "</table>");
}

/// The table of revisions and passes.
fn summary(out: &mut String, report: &StatusReport, now: u64) {
    let health = match &report.last_reconcile {
        None => "<span>no pass yet</span>".to_string(),
        Some(pass) if pass.ok => format!(
            "<span class=\"ok\">ok</span>, {} in {:.2}s",
            time(Some(pass.at), now),
            pass.seconds
        ),
        Some(pass) => format!(
            "<span class=\"bad\">failed</span>, {} in {:.2}s",
            time(Some(pass.at), now),
            pass.seconds
        ),
    };
    let _ = writeln!(out, "<table>");
    let rows = [
        (
            "Applied revision (in the swarm)",
            short(report.revision.as_deref()),
        ),
        ("In sync with", short(report.synced_revision.as_deref())),
        (
            "Branch tip",
            report
                .tip
                .as_ref()
                .map(|t| format!("{} {}", short(Some(&t.commit)), escape(&t.summary)))
                .unwrap_or_else(|| "not read yet".to_string()),
        ),
        (
            "Cluster held to",
            report
                .target
                .as_ref()
                .map(|t| {
                    format!(
                        "{} {}{}",
                        short(Some(&t.revision)),
                        escape(&t.summary),
                        match t.kind {
                            TargetKind::Tip => " (the tip)",
                            TargetKind::LastGood =>
                                " (<span class=\"bad\">the last good commit: the tip is broken</span>)",
                            TargetKind::Held =>
                                " (<span class=\"bad\">the last healthy revision: the tip failed and was rolled back</span>)",
                        }
                    )
                })
                .unwrap_or_else(|| "nothing yet".to_string()),
        ),
        ("Cluster observed", time(report.observed_at, now)),
        ("Last pass", health),
        ("Last success", time(report.last_success_at, now)),
        (
            "Passes / failures",
            format!("{} / {}", report.reconciles, report.errors),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    let _ = writeln!(out, "</table>");
}

/// The broken tip, the last error, and a failing fetch.
fn errors(out: &mut String, report: &StatusReport, now: u64) {
    if let Some(error) = &report.tip_error {
        let same = report
            .last_error
            .as_ref()
            .is_some_and(|last| last.message == error.message);
        let _ = writeln!(
            out,
            "<h2 class=\"bad\">The branch tip is broken</h2><p>Commit {} is not applied ({}).{}</p>",
            short(error.revision.as_deref()),
            time(Some(error.at), now),
            if same {
                " Why: the last error, below."
            } else {
                ""
            }
        );
        if !same {
            let _ = writeln!(out, "<pre>{}</pre>", escape(&error.message));
        }
    }
    if let Some(error) = &report.last_error {
        let resolved = report.last_success_at.is_some_and(|ok| ok > error.at)
            || report.last_reconcile.as_ref().is_some_and(|p| p.ok);
        let _ = writeln!(
            out,
            "<h2 class=\"{}\">Last error{}</h2><p>{}, commit {}</p><pre>{}</pre>",
            if resolved { "" } else { "bad" },
            if resolved {
                " (passes succeed again since)"
            } else {
                ""
            },
            time(Some(error.at), now),
            short(error.revision.as_deref()),
            escape(&error.message)
        );
    }
    if let Some(error) = &report.fetch_error {
        let _ = writeln!(
            out,
            "<h2 class=\"bad\">Fetch failing</h2><pre>{}</pre>",
            escape(error)
        );
    }
}

/// The last plan's steps and warnings.
fn last_plan(out: &mut String, report: &StatusReport) {
    let _ = writeln!(out, "<h2>Last plan</h2>");
    match &report.last_plan {
        None => {
            let _ = writeln!(out, "<p>None yet.</p>");
        }
        Some(plan) if plan.steps.is_empty() && plan.unseen.is_empty() => {
            let _ = writeln!(
                out,
                "<p>No changes: the cluster matched commit {}.</p>",
                short(plan.revision.as_deref())
            );
        }
        Some(plan) if plan.steps.is_empty() => {
            let _ = writeln!(
                out,
                "<p>No changes to what could be seen of commit {}; the rest is unknown.</p>",
                short(plan.revision.as_deref())
            );
        }
        Some(plan) => summary_and_steps(out, plan, ""),
    }
    if let Some(plan) = &report.last_plan {
        for part in &plan.unseen {
            let _ = writeln!(out, "<p class=\"bad\">Not seen: {}</p>", escape(part));
        }
        for warning in &plan.warnings {
            let _ = writeln!(out, "<p class=\"bad\">Warning: {}</p>", escape(warning));
        }
    }
}

/// The last notifications and how each went (none: no section).
fn notifications(out: &mut String, report: &StatusReport, now: u64) {
    if report.notifications.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<h2>Notifications</h2>\n<table><tr><th>when</th><th>event</th><th>webhook</th><th>result</th></tr>"
    );
    for sent in &report.notifications {
        let result = match &sent.error {
            None => format!(
                "sent ({} tr{})",
                sent.tries,
                if sent.tries == 1 { "y" } else { "ies" }
            ),
            Some(error) => format!(
                "<span class=\"bad\">failed after {} tries: {}</span>",
                sent.tries,
                escape(error)
            ),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code> ({})</td><td>{result}</td></tr>",
            time(Some(sent.at), now),
            escape(sent.event.as_str()),
            escape(&sent.url),
            escape(&sent.origin),
        );
    }
    let _ = writeln!(out, "</table>");
}

/// The cluster's nodes and services.
fn nodes_and_services(out: &mut String, cluster: &Status) {
    let _ = writeln!(
        out,
        "<h2>Nodes</h2><table><tr><th>Machine</th><th>Role</th><th>Machine state</th>\
             <th>Node</th><th>Availability</th><th>Leader</th></tr>"
    );
    for m in &cluster.machines {
        let class = if m.machine_state == "running" && m.node_state == "ready" {
            "ok"
        } else {
            "bad"
        };
        let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(&m.name),
                escape(&m.role.to_string()),
                escape(&m.machine_state),
                escape(&m.node_state),
                escape(&m.availability),
                if m.leader { "*" } else { "" }
            );
    }
    let _ = writeln!(
        out,
        "</table><h2>Services</h2><table><tr><th>Service</th><th>Stack</th><th>Mode</th>\
             <th>Running / desired</th><th>Health</th><th>Image</th></tr>"
    );
    for s in &cluster.services {
        let class = if s.running >= s.replicas { "ok" } else { "bad" };
        let health_class = if s.health.is_healthy() { "ok" } else { "bad" };
        let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{} / {}</td><td class=\"{health_class}\">{}</td><td><code>{}</code></td></tr>",
                escape(&s.name),
                escape(&s.stack),
                escape(&s.mode),
                s.running,
                s.replicas,
                escape(&s.health.line()),
                escape(&s.image)
            );
    }
    let _ = writeln!(out, "</table>");
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::state::ErrorInfo;

    #[test]
    fn everything_from_outside_is_escaped() {
        let report = StatusReport {
            last_error: Some(ErrorInfo {
                at: 5,
                revision: Some("<script>alert(1)</script>".into()),
                message: "bad key `<img src=x onerror=alert(1)>` & \"quotes\"".into(),
            }),
            ..StatusReport::default()
        };
        let page = render(&report, 10);
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;` &amp; &quot;quotes&quot;"));
        assert!(page.contains("5s ago"));
    }

    #[test]
    fn a_broken_tip_shows_with_the_commit_held_to_and_the_observation_time() {
        let report = StatusReport {
            observed_at: Some(90),
            target: Some(crate::watch::state::TargetInfo {
                revision: "aaaaaaaaaaaaaaaa".into(),
                summary: "four replicas".into(),
                kind: TargetKind::LastGood,
            }),
            tip_error: Some(ErrorInfo {
                at: 95,
                revision: Some("bbbbbbbbbbbbbbbb".into()),
                message: "commit bbbbbbbbbbbb (broken) is not valid.".into(),
            }),
            last_error: Some(ErrorInfo {
                at: 95,
                revision: Some("bbbbbbbbbbbbbbbb".into()),
                message: "commit bbbbbbbbbbbb (broken) is not valid.".into(),
            }),
            ..StatusReport::default()
        };
        let page = render(&report, 100);
        assert!(page.contains("The branch tip is broken"), "{page}");
        assert!(page.contains("aaaaaaaaaaaa four replicas"), "{page}");
        assert!(page.contains("the last good commit"), "{page}");
        assert!(page.contains("10s ago (unix 90)"), "{page}");
        assert_eq!(page.matches("is not valid").count(), 1, "{page}");
    }

    #[test]
    fn a_hold_the_history_and_the_pending_plan_are_shown() {
        use crate::model::rollback::Held;
        use crate::watch::state::{HistoryEntry, PlanInfo};
        let report = StatusReport {
            cluster: Some(Status {
                held: Some(Held {
                    at: "a".repeat(40),
                    failed: "b".repeat(40),
                    reason: "app_web: degraded: <exit 1>".into(),
                }),
                ..Status::default()
            }),
            history: vec![HistoryEntry {
                at: 95,
                commit: Some("b".repeat(40)),
                result: PassResult::RolledBack,
                seconds: 3.25,
                writes: 7,
                passes: 1,
            }],
            pending_plan: Some(PlanInfo {
                revision: Some("c".repeat(40)),
                summary: crate::plan::Summary {
                    add: 0,
                    change: 1,
                    destroy: 0,
                },
                steps: vec!["scale_service app_web".into()],
                warnings: Vec::new(),
                unseen: Vec::new(),
            }),
            ..StatusReport::default()
        };
        let page = render(&report, 100);
        assert!(
            page.contains("Rolled back: held at aaaaaaaaaaaa, bbbbbbbbbbbb failed: app_web: degraded: &lt;exit 1&gt;"),
            "{page}"
        );
        assert!(page.contains("<h2>Revision history</h2>"), "{page}");
        assert!(page.contains("rolled_back"), "{page}");
        assert!(page.contains("3.25s</td><td>7</td>"), "{page}");
        assert!(page.contains("Pending plan"), "{page}");
        assert!(
            page.contains("<code>scale_service app_web</code>"),
            "{page}"
        );
        let quiet = render(&StatusReport::default(), 100);
        assert!(!quiet.contains("Revision history") && !quiet.contains("Pending plan"));
    }

    #[test]
    fn the_last_notifications_are_listed() {
        let delivery = |ok: bool| crate::notify::Delivery {
            event: crate::config::notifications::NotifyEvent::Failed,
            url: "https://hooks.example/…".into(),
            origin: "machines.yml:12".into(),
            ok,
            tries: if ok { 1 } else { 3 },
            error: (!ok).then(|| "HTTP 500 <b>".to_string()),
            at: 90,
        };
        let report = StatusReport {
            notifications: vec![delivery(false), delivery(true)],
            ..StatusReport::default()
        };
        let page = render(&report, 100);
        assert!(page.contains("<h2>Notifications</h2>"), "{page}");
        assert!(
            page.contains("failed after 3 tries: HTTP 500 &lt;b&gt;"),
            "{page}"
        );
        assert!(page.contains("sent (1 try)"), "{page}");
        assert!(page.contains("machines.yml:12"), "{page}");
        assert!(!render(&StatusReport::default(), 100).contains("Notifications"));
    }
}
