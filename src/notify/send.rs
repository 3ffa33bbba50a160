//! Sending notifications (the edge): one background task per webhook, each try bounded by
//! [`TRY_TIMEOUT`], [`TRIES`] tries with a growing pause between them. Nothing here fails its
//! caller: every outcome is a [`Delivery`].

use super::payload::{body, signature, Notice, SIGNATURE_HEADER};
use crate::config::notifications::{NotifyEvent, NotifyTarget};
use bytes::Bytes;
use serde::Serialize;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long one try may take.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many tries a notification gets.
pub const TRIES: u32 = 3;
/// The pause before the second try; it doubles for each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// How one notification to one webhook went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The event told.
    pub event: NotifyEvent,
    /// The webhook, without its path (which often holds a token).
    pub url: String,
    /// Where machines.yml names the webhook (`machines.yml:LINE`).
    pub origin: String,
    /// Whether the webhook answered 2xx.
    pub ok: bool,
    /// The tries made.
    pub tries: u32,
    /// The last answer (`HTTP 500`) or error, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it ended, in seconds since the epoch.
    pub at: u64,
}

impl Delivery {
    /// `sent` or `failed`, the metric's `result` label.
    pub fn result(&self) -> &'static str {
        if self.ok {
            "sent"
        } else {
            "failed"
        }
    }
}

/// How sending is paced (the constants above, shorter in tests).
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    /// Per try.
    pub timeout: Duration,
    /// Tries.
    pub tries: u32,
    /// The first pause between tries.
    pub backoff: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            timeout: TRY_TIMEOUT,
            tries: TRIES,
            backoff: FIRST_BACKOFF,
        }
    }
}

/// A notification being sent to one webhook.
#[derive(Debug)]
pub struct Sending {
    /// The webhook without its path, and where machines.yml names it, for messages.
    pub label: String,
    /// The task; it ends with the [`Delivery`].
    pub handle: JoinHandle<Delivery>,
}

/// Starts sending `notice` to each of `targets` that wants its event, in the background.
/// Needs a tokio runtime.
pub fn spawn(targets: &[NotifyTarget], notice: &Notice, pacing: Pacing) -> Vec<Sending> {
    spawn_in_order(targets, std::slice::from_ref(notice), pacing)
}

/// Starts sending `notices` to each of `targets` that wants their events, in the background:
/// the webhooks side by side, but each one told the notices in the order given (a `failed`
/// arrives before the `rolled_back` that follows it), one after the other's last try.
pub fn spawn_in_order(
    targets: &[NotifyTarget],
    notices: &[Notice],
    pacing: Pacing,
) -> Vec<Sending> {
    let mut sending = Vec::new();
    for target in targets {
        let mut previous: Option<tokio::sync::oneshot::Receiver<()>> = None;
        for notice in notices.iter().filter(|n| target.wants(n.event)) {
            let (done, next) = tokio::sync::oneshot::channel();
            let before = previous.replace(next);
            let target = target.clone();
            let payload = body(notice, &target);
            let event = notice.event;
            sending.push(Sending {
                label: format!("{} ({})", target.shown_url(), target.origin),
                handle: tokio::spawn(async move {
                    if let Some(before) = before {
                        // Ends when the previous delivery ends, however it ends.
                        let _ = before.await;
                    }
                    let delivery = deliver(&target, event, payload, pacing).await;
                    let _ = done.send(());
                    delivery
                }),
            });
        }
    }
    sending
}

/// Waits for the `sending` until `deadline` has passed; the deliveries that ended by then, in the
/// order they ended. Those still trying are left to run (and are lost when the process exits).
pub async fn wait(sending: Vec<Sending>, deadline: Duration) -> Vec<Delivery> {
    use futures::StreamExt;
    let mut labels: Vec<Option<String>> = sending.iter().map(|s| Some(s.label.clone())).collect();
    let mut running: futures::stream::FuturesUnordered<_> = (sending.into_iter().enumerate())
        .map(|(i, s)| async move { (i, s.handle.await) })
        .collect();
    let mut ended = Vec::new();
    let until = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(until, running.next()).await {
            Ok(Some((i, delivery))) => {
                labels[i] = None;
                ended.extend(delivery.ok());
            }
            Ok(None) => break,
            Err(_) => {
                let left: Vec<String> = labels.into_iter().flatten().collect();
                tracing::warn!(
                    "still notifying {} after {} s: given up",
                    left.join(", "),
                    deadline.as_secs()
                );
                break;
            }
        }
    }
    ended
}

async fn deliver(
    target: &NotifyTarget,
    event: NotifyEvent,
    payload: Vec<u8>,
    pacing: Pacing,
) -> Delivery {
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-shoal-event", event.as_str().to_string()),
    ];
    if let Some(secret) = &target.secret {
        headers.push((SIGNATURE_HEADER, signature(&secret.0, &payload)));
    }
    let payload = Bytes::from(payload);
    let mut tries = 0;
    let mut pause = pacing.backoff;
    let error = loop {
        tries += 1;
        let attempt =
            crate::registry::client::send_body("POST", &target.url, &headers, payload.clone());
        let (error, again) = match tokio::time::timeout(pacing.timeout, attempt).await {
            Ok(Ok(answer)) if (200..300).contains(&answer.status) => break None,
            Ok(Ok(answer)) => (
                format!("HTTP {}", answer.status),
                answer.status >= 500 || answer.status == 429 || answer.status == 408,
            ),
            Ok(Err(crate::registry::client::RegistryError::Unreachable { message, .. })) => {
                (format!("cannot reach it: {message}"), true)
            }
            Ok(Err(e)) => (e.to_string(), false),
            Err(_) => (
                format!("no answer within {} s", pacing.timeout.as_secs_f64()),
                true,
            ),
        };
        if !again || tries >= pacing.tries {
            break Some(error);
        }
        tracing::debug!(
            "notification {event} to {} failed ({error}); trying again in {:?}",
            target.shown_url(),
            pause
        );
        tokio::time::sleep(pause).await;
        pause *= 2;
    };
    if let Some(error) = &error {
        tracing::warn!(
            "could not notify {} ({}) of {event} after {tries} tr{}: {error}",
            target.shown_url(),
            target.origin,
            if tries == 1 { "y" } else { "ies" }
        );
    } else {
        tracing::info!("notified {} of {event}", target.shown_url());
    }
    Delivery {
        event,
        url: target.shown_url(),
        origin: target.origin.clone(),
        ok: error.is_none(),
        tries,
        error: error.map(|e| crate::plan::mask::mask_text(&e, &[], crate::plan::mask::MASKED)),
        at: crate::clock::unix_now(),
    }
}
