//! `watch --images-every DUR` (DESIGN §9): on a timer, the image policies' pass over the
//! followed branch's tip (never the working tree); a change is committed as shoal on that tip
//! and pushed to the remote branch (remote mode) or put on the local branch (local mode), then
//! the loop is woken, so the usual commit → reconcile path deploys it and every deployed image
//! is a commit. A failure is logged and tried again at the next tick.

use super::reconcile::{blocking, Followed};
use super::trigger::{send, Trigger};
use crate::registry::policies::pass;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Runs the images pass now and then every `every`, waking the loop after each commit.
pub(crate) fn spawn(
    followed: Arc<Followed>,
    every: Duration,
    triggers: mpsc::Sender<Trigger>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if triggers.is_closed() {
                return;
            }
            match update(followed.clone()).await {
                Ok(Some((commit, message))) => {
                    tracing::info!(
                        "images: committed {} as shoal: {}",
                        &commit[..12.min(commit.len())],
                        message.replace('\n', "; ")
                    );
                    send(&triggers, Trigger::Signal);
                }
                Ok(None) => tracing::debug!("images: up to date"),
                Err(e) => tracing::warn!("images: {e}; tried again in {every:?}"),
            }
        }
    })
}

/// One pass over the branch tip: the commit made and its message, `None` when nothing changed.
async fn update(followed: Arc<Followed>) -> Result<Option<(String, String)>, String> {
    let source = followed.clone();
    let tip = blocking(move || {
        if let Followed::Remote(remote) = source.as_ref() {
            remote.fetch().map_err(|e| e.to_string())?;
        }
        source.tip().map_err(|e| e.to_string())
    })
    .await?;
    let files = followed.files(&tip.commit);
    let done = pass(files.files.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    for report in &done.report {
        if let Some(error) = &report.error {
            tracing::warn!(
                "images: {}: the registry could not be asked: {error}",
                report.repository
            );
        }
    }
    if done.changes.is_empty() {
        return Ok(None);
    }
    let message = done.message();
    let changed = done.files;
    let parent = tip.commit;
    let text = message.clone();
    let commit = blocking(move || {
        match followed.as_ref() {
            Followed::Local(local) => local.publish(&parent, &changed, &text),
            Followed::Remote(remote) => remote.publish(&parent, &changed, &text),
        }
        .map_err(|e| e.to_string())
    })
    .await?;
    Ok(Some((commit, message)))
}
