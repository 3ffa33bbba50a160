//! The `notify:` block of `machines.yml` (DESIGN §9): the webhooks told what happened, read as
//! written ([`NotifySpec`], `${VAR}` left in) and then resolved against the environment into
//! [`NotifyTarget`]s, so URLs and secrets never need to be stored in git.
//!
//! Pure: the environment arrives as [`Vars`].

use crate::diag::Diagnostic;
use crate::yaml::decode::{Ctx, Fields};
use crate::yaml::env::{interpolate, Vars};
use crate::yaml::{Node, Pos};
use std::collections::BTreeSet;

pub use crate::model::notifications::{
    shown_url, NotifyEvent, NotifyFormat, NotifySecret, NotifyTarget,
};

use super::MACHINES_FILE;

/// The keys of one `notify:` entry.
const NOTIFY_KEYS: &[&str] = &["url", "format", "events", "secret", "link"];
/// The formats a webhook takes.
const FORMATS: &[&str] = &["json", "slack"];

/// One `notify:` entry as written: `url`, `secret` and `link` still hold their `${VAR}`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifySpec {
    /// The URL as written.
    pub url: String,
    /// Where the URL is written.
    pub url_pos: Pos,
    /// The body's format.
    pub format: NotifyFormat,
    /// The events this webhook wants (all when `events:` is absent).
    pub events: BTreeSet<NotifyEvent>,
    /// The HMAC secret as written, if any.
    pub secret: Option<String>,
    /// Where the secret is written.
    pub secret_pos: Pos,
    /// An optional link put in every notification (the status page, a dashboard), as written.
    pub link: Option<String>,
}

/// Reads the `notify:` list. A URL written without `${...}` must be http(s); a secret written
/// literally is a warning (it would be stored in git).
pub fn read(ctx: &mut Ctx, node: &Node) -> Vec<NotifySpec> {
    let Some(items) = ctx.list(node, "notify") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("notify[{i}]");
        let Some(fields) = ctx.fields(item, &path, NOTIFY_KEYS, false) else {
            continue;
        };
        if let Some(spec) = read_one(ctx, &fields, item, &path) {
            out.push(spec);
        }
    }
    out
}

fn read_one(ctx: &mut Ctx, fields: &Fields<'_>, item: &Node, path: &str) -> Option<NotifySpec> {
    let Some(url_node) = fields.get("url") else {
        ctx.error_help(
            item.pos,
            format!("`{path}` has no `url`"),
            "add `url: ${SOME_WEBHOOK_URL}` (an http or https URL, from the environment)",
        );
        return None;
    };
    let url = ctx.string(url_node, &format!("{path}.url"))?;
    if !url.contains('$') {
        if let Some(problem) = url_problem(&url) {
            ctx.error_help(
                url_node.pos,
                format!("`{path}.url` {problem}"),
                "write an http:// or https:// URL, or `${VAR}` to take it from the environment",
            );
        }
    }
    let format = match fields.get("format") {
        Some(node) => match ctx
            .one_of(node, &format!("{path}.format"), FORMATS)
            .as_deref()
        {
            Some("slack") => NotifyFormat::Slack,
            _ => NotifyFormat::Json,
        },
        None => NotifyFormat::Json,
    };
    let events = match fields.get("events") {
        None => NotifyEvent::ALL.into_iter().collect(),
        Some(node) => read_events(ctx, node, &format!("{path}.events")),
    };
    let mut secret_pos = Pos::default();
    let secret = match fields.get("secret") {
        None => None,
        Some(node) => {
            secret_pos = node.pos;
            let secret = ctx.string(node, &format!("{path}.secret"))?;
            if !secret.contains("${") {
                ctx.warn_help(
                    node.pos,
                    format!("`{path}.secret` is written in the file, so it is stored in git"),
                    "write `secret: ${NOTIFY_SECRET}` and set NOTIFY_SECRET in the environment of `shoal watch` and `shoal apply`",
                );
            }
            Some(secret)
        }
    };
    let link = fields
        .get("link")
        .and_then(|node| ctx.string(node, &format!("{path}.link")));
    Some(NotifySpec {
        url,
        url_pos: url_node.pos,
        format,
        events,
        secret,
        secret_pos,
        link,
    })
}

fn read_events(ctx: &mut Ctx, node: &Node, path: &str) -> BTreeSet<NotifyEvent> {
    let mut events = BTreeSet::new();
    let Some(items) = ctx.list(node, path) else {
        return events;
    };
    let names = NotifyEvent::names();
    for item in items {
        if let Some(name) = ctx.one_of(item, path, &names) {
            if let Some(event) = NotifyEvent::ALL.into_iter().find(|e| e.as_str() == name) {
                events.insert(event);
            }
        }
    }
    events
}

/// Why `url` cannot be sent to, if it cannot.
fn url_problem(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("is not an http(s) URL (it has no `http://` or `https://`)".to_string());
    };
    if scheme != "http" && scheme != "https" {
        return Some(format!(
            "uses `{scheme}://`; only http:// and https:// are sent to"
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Some(format!("`{scheme}://` has no host"));
    }
    None
}

/// The webhooks to send to: each spec with `${VAR}` replaced from `vars`. A URL whose variables
/// are unset is skipped with a warning (a CI job planning a pull request has no webhook); one
/// that resolves to something other than http(s) is an error naming the file and line.
pub fn resolve(specs: &[NotifySpec], vars: &Vars) -> (Vec<NotifyTarget>, Vec<Diagnostic>) {
    let mut ctx = Ctx::new(MACHINES_FILE);
    let targets = specs
        .iter()
        .filter_map(|spec| resolve_one(&mut ctx, spec, vars))
        .collect();
    (targets, ctx.diags)
}

/// `help`, told too when a variable is one of shoal's own, which interpolation never sees.
fn set_help(unset: &[String], help: &str) -> String {
    match unset.iter().find(|name| name.starts_with(super::OWN_VAR_PREFIX)) {
        Some(name) => format!(
            "{help}; `{name}` is one of shoal's own variables (SHOAL_*), which are never interpolated: use another name"
        ),
        None => help.to_string(),
    }
}

fn resolve_one(ctx: &mut Ctx, spec: &NotifySpec, vars: &Vars) -> Option<NotifyTarget> {
    let pos = spec.url_pos;
    let url = match interpolate(&spec.url, vars) {
        Err(message) => {
            ctx.error(pos, format!("notify url: {message}"));
            return None;
        }
        Ok(url) if !url.unset.is_empty() => {
            ctx.warn_help(
                pos,
                format!(
                    "notifications to this webhook are off: {} is not set",
                    url.unset.join(", ")
                ),
                set_help(
                    &url.unset,
                    "set it in the environment of `shoal watch` and `shoal apply`",
                ),
            );
            return None;
        }
        Ok(url) => url.text,
    };
    if let Some(problem) = url_problem(&url) {
        ctx.error_help(
            pos,
            format!("the notify url {problem}"),
            "set the variable to an http:// or https:// URL",
        );
        return None;
    }
    let secret = match &spec.secret {
        None => None,
        Some(written) => match interpolate(written, vars) {
            Ok(s) if s.unset.is_empty() && !s.text.is_empty() => Some(NotifySecret(s.text)),
            Ok(s) => {
                let why = if s.unset.is_empty() {
                    "the notify secret is empty".to_string()
                } else {
                    format!(
                        "the notify secret is empty: {} is not set",
                        s.unset.join(", ")
                    )
                };
                ctx.error_help(
                    spec.secret_pos,
                    why,
                    set_help(
                        &s.unset,
                        "set it in the environment, or remove `secret:` to send unsigned notifications",
                    ),
                );
                return None;
            }
            Err(message) => {
                ctx.error(spec.secret_pos, format!("notify secret: {message}"));
                return None;
            }
        },
    };
    let link = (spec.link.as_ref())
        .and_then(|l| interpolate(l, vars).ok())
        .map(|l| l.text)
        .filter(|l| !l.is_empty());
    Some(NotifyTarget {
        url,
        format: spec.format,
        events: spec.events.clone(),
        secret,
        link,
        origin: format!("{MACHINES_FILE}:{}", pos.line),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::machines;
    use crate::config::MemSource;
    use crate::diag::Severity;
    use std::collections::BTreeMap;

    fn specs(text: &str) -> (Vec<NotifySpec>, Vec<Diagnostic>) {
        let source = MemSource::new("repo", vec![("machines.yml", text)]);
        let mut diags = Vec::new();
        let out = machines::load(&source, &mut diags);
        (out.notify, diags)
    }

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars {
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dotenv: BTreeMap::new(),
        }
    }

    fn shown(diags: &[Diagnostic]) -> String {
        diags
            .iter()
            .map(|d| format!("{d}\n"))
            .collect::<Vec<_>>()
            .join("")
    }

    #[test]
    fn reads_entries_with_defaults() {
        let (specs, diags) = specs(
            "cluster: c\nnotify:\n  - url: ${HOOK}\n    format: slack\n    events: [failed, rolled_back]\n    secret: ${SECRET}\n  - url: http://127.0.0.1:9/x\n    link: https://status.example/\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].format, NotifyFormat::Slack);
        assert_eq!(
            specs[0]
                .events
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>(),
            ["failed", "rolled_back"]
        );
        assert_eq!(specs[0].url_pos.line, 3);
        assert_eq!(specs[1].format, NotifyFormat::Json);
        assert_eq!(specs[1].events.len(), 6);
        assert_eq!(specs[1].link.as_deref(), Some("https://status.example/"));
    }

    #[test]
    fn problems_name_the_line() {
        let (_, diags) = specs(
            "cluster: c\nnotify:\n  - url: ftp://example.com/x\n    formt: json\n    events: [failed, aplied]\n    secret: hunter2\n  - format: xml\n",
        );
        insta::assert_snapshot!(shown(&diags));
        let errors = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        assert_eq!(errors, 4, "{diags:?}");
    }

    #[test]
    fn resolves_from_the_environment() {
        let (specs, _) = specs(
            "notify:\n  - url: ${HOOK}\n    secret: ${SECRET}\n  - url: ${UNSET_HOOK}\n  - url: ${BAD}\n",
        );
        let (targets, diags) = resolve(
            &specs,
            &vars(&[
                ("HOOK", "https://hooks.example/T0/secret-token"),
                ("SECRET", "s3cr3t"),
                ("BAD", "mailto:ops@example.com"),
            ]),
        );
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].url, "https://hooks.example/T0/secret-token");
        assert_eq!(targets[0].shown_url(), "https://hooks.example/…");
        assert_eq!(targets[0].secret, Some(NotifySecret("s3cr3t".to_string())));
        assert_eq!(targets[0].origin, "machines.yml:2");
        assert!(!format!("{:?}", targets[0]).contains("s3cr3t"));
        insta::assert_snapshot!(shown(&diags));
    }

    #[test]
    fn shoal_variables_are_never_interpolated() {
        let (specs, _) = specs("notify:\n  - url: ${SHOAL_HOOK}\n");
        let (targets, diags) = resolve(&specs, &vars(&[]));
        assert!(targets.is_empty());
        assert!(
            diags[0]
                .help
                .as_deref()
                .unwrap()
                .contains("never interpolated"),
            "{diags:?}"
        );
    }

    #[test]
    fn an_unset_secret_is_an_error() {
        let (specs, _) = specs("notify:\n  - url: http://127.0.0.1:1/\n    secret: ${S}\n");
        let (targets, diags) = resolve(&specs, &vars(&[]));
        assert!(targets.is_empty());
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].severity, Severity::Error);
        assert_eq!(diags[0].line, 3);
    }
}
