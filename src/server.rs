//! The local HTTP endpoint: `/healthz` (the process answers), `/metrics` (Prometheus
//! text) and, when `approvals.token` is configured, the approval API:
//!
//! - `GET /actions/held`: held and unknown actions, as JSON;
//! - `POST /actions/{id}/approve`, `POST /actions/{id}/reject`: a decision, recorded
//!   with the name in the `X-Nightdesk-User` header (default `http`).
//!
//! Every approval call needs `Authorization: Bearer <token>`; without a configured
//! token those routes do not exist. Nothing here exposes buyer data beyond what the
//! audit log shows an operator.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::outbox::approvals;
use crate::store::{Decide, Store, StoreError};
use crate::telemetry;

/// What the approval routes need.
#[derive(Clone)]
pub struct ApprovalApi {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub token: SecretString,
}

pub fn router(approvals: Option<ApprovalApi>) -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|| async {
                match telemetry::metrics_handle() {
                    Some(handle) => (StatusCode::OK, handle.render()),
                    None => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "metrics recorder unavailable\n".to_owned(),
                    ),
                }
            }),
        );
    match approvals {
        Some(api) => router.merge(
            Router::new()
                .route("/actions/held", get(held))
                .route("/actions/{id}/approve", post(approve))
                .route("/actions/{id}/reject", post(reject))
                .with_state(api),
        ),
        None => router,
    }
}

/// Serve on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    approvals: Option<ApprovalApi>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(approvals))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Compares digests, so the time taken says nothing about the token.
fn authorised(api: &ApprovalApi, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let a = Sha256::digest(given.trim().as_bytes());
    let b = Sha256::digest(api.token.expose_secret().as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({ "error": "a valid bearer token is required" })),
    )
        .into_response()
}

async fn held(State(api): State<ApprovalApi>, headers: HeaderMap) -> Response {
    if !authorised(&api, &headers) {
        return refused();
    }
    match api.store.outbox_changed_since(api.clock.now()).await {
        Ok(rows) => {
            let waiting: Vec<_> = rows
                .into_iter()
                .filter(|r| r.state == "held" || r.state == "unknown")
                .collect();
            axum::Json(waiting).into_response()
        }
        Err(e) => error(e),
    }
}

async fn approve(
    State(api): State<ApprovalApi>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    decide(api, id, Decide::Approve, headers).await
}

async fn reject(
    State(api): State<ApprovalApi>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    decide(api, id, Decide::Reject, headers).await
}

async fn decide(api: ApprovalApi, id: i64, decision: Decide, headers: HeaderMap) -> Response {
    if !authorised(&api, &headers) {
        return refused();
    }
    let who = headers
        .get("x-nightdesk-user")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "http".to_owned());
    let who = format!("{who} (http)");
    match approvals::decide(api.store.as_ref(), id, decision, &who, api.clock.now()).await {
        Ok(row) => axum::Json(row).into_response(),
        Err(e) => error(e),
    }
}

fn error(e: StoreError) -> Response {
    let status = match e {
        StoreError::NoSuchAction(_) => StatusCode::NOT_FOUND,
        StoreError::NotDecidable { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        axum::Json(serde_json::json!({ "error": e.to_string() })),
    )
        .into_response()
}
