//! The webhooks told what happened (DESIGN §9), as plain data: the events, the body formats
//! and each resolved webhook ([`NotifyTarget`]); `config::notifications` reads them from machines.yml.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// What happened, as a notification names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A commit was applied and its services are healthy.
    Applied,
    /// An apply failed: a step failed or the files could not be applied.
    Failed,
    /// An apply left a service it changed not healthy.
    Degraded,
    /// The watcher brought back a cluster changed by hand.
    DriftHealed,
    /// A failed commit was rolled back to the last healthy revision.
    RolledBack,
    /// The cluster is paused: a pending plan was not written.
    Paused,
}

impl NotifyEvent {
    /// Every event, in the contract's order.
    pub const ALL: [NotifyEvent; 6] = [
        NotifyEvent::Applied,
        NotifyEvent::Failed,
        NotifyEvent::Degraded,
        NotifyEvent::DriftHealed,
        NotifyEvent::RolledBack,
        NotifyEvent::Paused,
    ];

    /// The contract name (`drift_healed`).
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Applied => "applied",
            NotifyEvent::Failed => "failed",
            NotifyEvent::Degraded => "degraded",
            NotifyEvent::DriftHealed => "drift_healed",
            NotifyEvent::RolledBack => "rolled_back",
            NotifyEvent::Paused => "paused",
        }
    }

    /// Every event's contract name.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|e| e.as_str()).collect()
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body a webhook takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyFormat {
    /// shoal's own JSON object (the default).
    #[default]
    Json,
    /// A Slack incoming-webhook message (`{"text", "blocks"}`), which Mattermost and others take too.
    Slack,
}

/// An HMAC secret: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct NotifySecret(pub String);

impl fmt::Debug for NotifySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NotifySecret(***)")
    }
}

/// A webhook ready to be sent to: the `notify:` entry with its variables replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyTarget {
    /// The http(s) URL.
    pub url: String,
    /// The body's format.
    pub format: NotifyFormat,
    /// The events this webhook wants.
    pub events: BTreeSet<NotifyEvent>,
    /// The HMAC-SHA256 secret signing the body, if any.
    pub secret: Option<NotifySecret>,
    /// The link put in every notification, if any.
    pub link: Option<String>,
    /// `machines.yml:LINE`, for messages and `/status`.
    pub origin: String,
}

impl NotifyTarget {
    /// Whether this webhook wants `event`.
    pub fn wants(&self, event: NotifyEvent) -> bool {
        self.events.contains(&event)
    }

    /// The URL without its path and query, which often hold a token (Slack's do): for
    /// messages, `/status` and logs.
    pub fn shown_url(&self) -> String {
        shown_url(&self.url)
    }
}

/// `scheme://host[:port]/…` of `url`: the path and query often carry a token.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "…".to_string();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    if rest.len() > host.len() {
        format!("{scheme}://{host}/…")
    } else {
        format!("{scheme}://{host}")
    }
}
