//! The watcher's HTTP endpoints: `/healthz`, `/readyz`, `/metrics`, `/status`, `/` and
//! `POST /hooks/git`, and the server that answers them without letting clients starve the
//! reconcile loop.
//!
//! The server is a plain accept loop over hyper's HTTP/1 connections, bounded on every side:
//! at most [`MAX_CONNECTIONS`] connections (fewer when `ulimit -n` is low, so that the loop
//! keeps file handles for git, the driver and notify), request headers within
//! [`HEADER_TIMEOUT`] (which also bounds an idle keep-alive connection), a connection for at
//! most [`CONNECTION_LIFETIME`], and a webhook body of at most [`BODY_LIMIT`] within
//! [`BODY_TIMEOUT`]. When every connection is taken, a new one closes the oldest connection
//! that has no request in progress (a stalled or idle client) to make room, so `/healthz`
//! still answers under a flood of half-open connections; when none is idle, the new one is
//! closed at once. When accepting fails for want of file handles, the loop waits instead of
//! spinning.

use super::metrics::CONTENT_TYPE;
use super::page;
use super::trigger::{send, Trigger};
use super::webhook::{self, Forge};
use super::Shared;
use crate::clock::unix_now;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// The most connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's headers, or stay idle between requests.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may stay open, keep-alive included.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// The largest webhook body read (the forges send a few KiB, GitHub at most 25 MiB of which
/// nothing past the signature matters, so larger pushes are refused rather than buffered).
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;
/// How long a client may take to send a webhook's body.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long accepting waits after it failed (out of file handles, most likely).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);
/// How long a stop waits for requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The routes, over the watcher's shared state.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/hooks/git", post(hook))
        .with_state(shared)
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.alive.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop has stopped\n",
        )
            .into_response()
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the first reconcile pass has not finished yet\n",
        )
            .into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        shared.metrics.encode(),
    )
        .into_response()
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.report()).into_response()
}

async fn index(State(shared): State<Arc<Shared>>) -> Html<String> {
    Html(page::render(&shared.report(), unix_now()))
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let Some(secret) = shared.webhook_secret.as_deref() else {
        shared.metrics.count_webhook("disabled");
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({
                "error": "webhooks are off: start shoal watch with SHOAL_WEBHOOK_SECRET set"
            })),
        )
            .into_response();
    };
    let body = match read_body(&headers, body).await {
        Ok(body) => body,
        Err((status, error)) => {
            shared.metrics.count_webhook("refused");
            tracing::warn!("webhook refused: {error}");
            return (status, Json(serde_json::json!({ "error": error }))).into_response();
        }
    };
    let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match webhook::verify(secret.as_bytes(), lookup, &body) {
        Ok(forge) => {
            shared.metrics.count_webhook("accepted");
            let forge = match forge {
                Forge::GitHub => "github",
                Forge::Gitea => "gitea",
                Forge::GitLab => "gitlab",
            };
            tracing::info!("webhook from {forge}: reconciling");
            send(&shared.triggers, Trigger::Webhook);
            (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({"accepted": true, "forge": forge})),
            )
                .into_response()
        }
        Err(e) => {
            shared.metrics.count_webhook("unauthorized");
            tracing::warn!("webhook refused: {e}");
            (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": e.to_string()})),
            )
                .into_response()
        }
    }
}

/// Reads a webhook's body: at most [`BODY_LIMIT`] bytes (a larger `Content-Length` is refused
/// before reading) within [`BODY_TIMEOUT`].
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {BODY_LIMIT} bytes: send the forge's push event only"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => {
            let cause = e.into_inner();
            if cause.is::<http_body_util::LengthLimitError>() {
                Err(too_large())
            } else {
                Err((
                    StatusCode::BAD_REQUEST,
                    format!("the body could not be read ({cause}): send it again"),
                ))
            }
        }
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {BODY_TIMEOUT:?}"),
        )),
    }
}

/// The connections being served, oldest first.
#[derive(Default)]
struct Connections {
    next: u64,
    open: BTreeMap<u64, Arc<Slot>>,
}

/// One connection being served.
#[derive(Default)]
struct Slot {
    /// Requests in progress on it.
    in_flight: AtomicUsize,
    /// Closes it at once.
    evict: Notify,
}

/// Counts a request in progress on its connection while alive.
struct InFlight(Arc<Slot>);

impl InFlight {
    fn new(slot: Arc<Slot>) -> InFlight {
        slot.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(slot)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connections {
    /// Makes room for a new connection under `cap`, closing the oldest idle one if need be;
    /// `None` when every connection has a request in progress.
    fn admit(&mut self, cap: usize) -> Option<(u64, Arc<Slot>)> {
        if self.open.len() >= cap {
            let idle = self
                .open
                .iter()
                .find(|(_, slot)| slot.in_flight.load(Ordering::SeqCst) == 0)
                .map(|(id, _)| *id)?;
            if let Some(slot) = self.open.remove(&idle) {
                slot.evict.notify_one();
            }
        }
        let id = self.next;
        self.next += 1;
        let slot = Arc::new(Slot::default());
        self.open.insert(id, slot.clone());
        Some((id, slot))
    }
}

/// The soft limit on open files of this process (`ulimit -n`), when known.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The connection cap under an open-files limit of `limit`: a quarter of it at most, so that
/// three quarters stay for the reconcile loop, and never more than [`MAX_CONNECTIONS`].
fn connection_cap(limit: Option<usize>) -> usize {
    limit.map_or(MAX_CONNECTIONS, |limit| {
        (limit / 4).clamp(4, MAX_CONNECTIONS)
    })
}

/// Whether accepting failed for want of a resource (file handles, memory), which waiting may
/// bring back, rather than because of the one connection.
fn out_of_resources(error: &std::io::Error) -> bool {
    !matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::WouldBlock
    )
}

/// Serves `router` on `listener` until `closed` turns true, then lets requests in progress
/// finish (for up to [`SHUTDOWN_GRACE`]) and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut closed: watch::Receiver<bool>,
) {
    let cap = connection_cap(open_files_limit());
    let connections = Arc::new(Mutex::new(Connections::default()));
    let mut tasks = JoinSet::new();
    let mut starved = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closed.wait_for(|closed| *closed) => break,
        };
        while tasks.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => {
                starved = false;
                stream
            }
            Err(e) if out_of_resources(&e) => {
                if !starved {
                    tracing::warn!(
                        "cannot accept HTTP connections ({e}); retrying every {ACCEPT_BACKOFF:?}"
                    );
                    starved = true;
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(e) => {
                tracing::debug!("an HTTP connection failed before it was accepted: {e}");
                continue;
            }
        };
        let admitted = connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .admit(cap);
        let Some((id, slot)) = admitted else {
            tracing::debug!("{cap} HTTP connections are busy: closing a new one");
            continue;
        };
        let router = router.clone();
        let closed = closed.clone();
        let connections = connections.clone();
        tasks.spawn(async move {
            connection(stream, router, slot, closed).await;
            connections
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .open
                .remove(&id);
        });
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("HTTP requests still running after {SHUTDOWN_GRACE:?} are cut off");
        tasks.shutdown().await;
    }
}

/// Serves one connection until the client is done, it is evicted, its lifetime is up, or the
/// server stops.
async fn connection(
    stream: TcpStream,
    router: Router,
    slot: Arc<Slot>,
    mut closed: watch::Receiver<bool>,
) {
    let router = TowerToHyperService::new(router);
    let busy = slot.clone();
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::new(busy.clone());
        let response = router.call(request);
        async move {
            let response = response.await;
            drop(in_flight);
            response
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    let stop = tokio::select! {
        result = served.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("HTTP connection closed: {e}");
            }
            return;
        }
        _ = slot.evict.notified() => return,
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => "its lifetime is up",
        _ = closed.wait_for(|closed| *closed) => "the watcher stops",
    };
    tracing::trace!("closing an HTTP connection: {stop}");
    served.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, served).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_most_file_handles_to_the_loop() {
        assert_eq!(connection_cap(None), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(1_048_576)), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(256)), 64);
        assert_eq!(connection_cap(Some(100)), 25);
        assert_eq!(connection_cap(Some(8)), 4);
    }

    #[test]
    fn a_full_server_closes_the_oldest_idle_connection() {
        let mut connections = Connections::default();
        let (first, first_slot) = connections.admit(2).expect("room");
        let (second, second_slot) = connections.admit(2).expect("room");
        let busy = InFlight::new(first_slot.clone());
        let (third, _) = connections.admit(2).expect("the idle one makes room");
        assert!(!connections.open.contains_key(&second));
        assert!(connections.open.contains_key(&first) && connections.open.contains_key(&third));
        drop(second_slot);
        let _also_busy = InFlight::new(connections.open[&third].clone());
        assert!(connections.admit(2).is_none(), "every connection is busy");
        drop(busy);
        assert!(connections.admit(2).is_some());
        assert!(!connections.open.contains_key(&first));
    }

    #[tokio::test]
    async fn webhook_bodies_are_bounded() {
        let small = read_body(&HeaderMap::new(), Body::from("{}")).await;
        assert_eq!(small.expect("read").as_ref(), b"{}");
        let large = read_body(&HeaderMap::new(), Body::from(vec![b' '; BODY_LIMIT + 1])).await;
        assert_eq!(
            large.expect_err("too large").0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, (BODY_LIMIT + 1).into());
        let refused = read_body(&declared, Body::empty()).await;
        assert_eq!(
            refused.expect_err("declared too large").0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn the_open_files_limit_is_read() {
        if std::path::Path::new("/proc/self/limits").exists() {
            assert!(open_files_limit().is_some_and(|n| n > 0));
        }
    }
}
