//! The watcher's HTTP endpoints: `/healthz`, `/readyz`, `/metrics`, `/status`, `/` and
//! `POST /hooks/git`.

use super::metrics::CONTENT_TYPE;
use super::page;
use super::trigger::{send, Trigger};
use super::webhook::{self, Forge};
use super::Shared;
use crate::apply::unix_now;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::atomic::Ordering;
use std::sync::Arc;

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

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
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
