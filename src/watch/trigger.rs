//! What wakes the reconcile loop. Every source sends into one channel; a full channel means a
//! wake-up is pending already, so nothing is lost by dropping another.

use crate::source::follow::LocalBranch;
use notify::event::EventKind;
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Why the loop woke. Counted in the metrics; the pass itself never depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The watcher started.
    Start,
    /// The followed branch may have moved (a change under the local `.git`).
    Git,
    /// The resync timer: look for drift, fetch a remote.
    Timer,
    /// An authenticated webhook.
    Webhook,
    /// SIGHUP, or a caller of the library.
    Signal,
    /// A retry after a failed or unsettled pass.
    Retry,
    /// An event of the engine (a service or node changed, a container died).
    Event,
}

impl Trigger {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Git => "git",
            Trigger::Timer => "timer",
            Trigger::Webhook => "webhook",
            Trigger::Signal => "signal",
            Trigger::Retry => "retry",
            Trigger::Event => "event",
        }
    }
}

/// Hands a wake-up to the loop without waiting.
pub(crate) fn send(triggers: &mpsc::Sender<Trigger>, trigger: Trigger) {
    if let Err(mpsc::error::TrySendError::Closed(_)) = triggers.try_send(trigger) {
        tracing::debug!(
            "the reconcile loop has stopped; {} ignored",
            trigger.as_str()
        );
    }
}

/// Sends [`Trigger::Timer`] every `interval`, the first one an interval from now.
pub(crate) fn spawn_timer(triggers: mpsc::Sender<Trigger>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + interval;
        let mut ticks = tokio::time::interval_at(start, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if triggers.is_closed() {
                return;
            }
            send(&triggers, Trigger::Timer);
        }
    })
}

/// Watches the git folders of `local` and sends [`Trigger::Git`] when a branch may have moved.
/// The returned watcher stops when dropped.
pub(crate) fn watch_git(
    local: &LocalBranch,
    triggers: mpsc::Sender<Trigger>,
) -> notify::Result<RecommendedWatcher> {
    let branch = local.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                let relevant = matches!(
                    event.kind,
                    EventKind::Create(_)
                        | EventKind::Modify(_)
                        | EventKind::Remove(_)
                        | EventKind::Any
                ) && (event.need_rescan()
                    || event.paths.iter().any(|p| branch.moves_branch(p)));
                if relevant {
                    send(&triggers, Trigger::Git);
                }
            }
            Err(e) => tracing::warn!("watching the repository: {e}"),
        })?;
    for (path, recursive) in local.watched() {
        if !path.is_dir() {
            tracing::debug!("{} does not exist; not watched", path.display());
            continue;
        }
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher.watch(&path, mode)?;
    }
    Ok(watcher)
}
