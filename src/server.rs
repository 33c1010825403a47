//! The local HTTP endpoint: `/healthz` (the process answers), `/readyz` (the daemon
//! does its job: store reachable, rules loaded, every source polled within its expected
//! interval), `/metrics` (Prometheus text; the gauges of stored state are refreshed from
//! the store at each scrape) and, when `approvals.token` is configured, the approval API:
//!
//! - `GET /actions/held`: held and unknown actions, as JSON;
//! - `POST /actions/{id}/approve`, `POST /actions/{id}/reject`: a decision, recorded
//!   with the name in the `X-Nightdesk-User` header (default `http`).
//!
//! Every approval call needs `Authorization: Bearer <token>`; without a configured
//! token those routes do not exist. Nothing here exposes buyer data beyond what the
//! audit log shows an operator, and nothing here changes what the daemon does: the
//! probes and the scrape only read.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

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
use arc_swap::ArcSwap;

use crate::daemon::Daemon;
use crate::outbox::approvals;
use crate::schedule::Schedule;
use crate::store::{Decide, SourceHealth, Store, StoreError};
use crate::telemetry;

/// What the approval routes need.
#[derive(Clone)]
pub struct ApprovalApi {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub token: SecretString,
}

/// What the endpoint serves: `/healthz` and `/metrics` always; with a daemon, `/readyz`
/// and the gauges of stored state; with an approval API, its routes.
#[derive(Clone, Default)]
pub struct Served {
    pub approvals: Option<ApprovalApi>,
    /// The daemon in force, swapped by a reload (so readiness follows the new one).
    pub daemon: Option<Arc<ArcSwap<Daemon>>>,
}

impl From<Option<ApprovalApi>> for Served {
    fn from(approvals: Option<ApprovalApi>) -> Self {
        Served {
            approvals,
            daemon: None,
        }
    }
}

impl From<Arc<Daemon>> for Served {
    /// Everything the daemon offers: its readiness, its state, its approval API.
    fn from(daemon: Arc<Daemon>) -> Self {
        Served::from(Arc::new(ArcSwap::new(daemon)))
    }
}

impl From<Arc<ArcSwap<Daemon>>> for Served {
    /// The daemon a supervisor keeps in force, whichever it is at each request.
    fn from(current: Arc<ArcSwap<Daemon>>) -> Self {
        Served {
            approvals: current.load().approval_api(),
            daemon: Some(current),
        }
    }
}

pub fn router(served: impl Into<Served>) -> Router {
    let Served { approvals, daemon } = served.into();
    // Installed now, so every event from here on is counted (not only after a scrape).
    let _ = telemetry::metrics_handle();
    let scraped = daemon.clone();
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let daemon = scraped.clone();
                async move {
                    if let Some(daemon) = &daemon {
                        observe(&daemon.load_full()).await;
                    }
                    match telemetry::metrics_handle() {
                        Some(handle) => (StatusCode::OK, handle.render()),
                        None => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "metrics recorder unavailable\n".to_owned(),
                        ),
                    }
                }
            }),
        );
    let router = match daemon {
        Some(daemon) => router.route(
            "/readyz",
            get(move || {
                let daemon = daemon.clone();
                async move {
                    let readiness = readiness(&daemon.load_full()).await;
                    let status = if readiness.ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, axum::Json(readiness))
                }
            }),
        ),
        None => router,
    };
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
    served: impl Into<Served>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(served))
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

/// How long past its second missed fire a source still counts as ready: a poll that
/// takes a while (a long window, retries) is not an outage.
pub const READY_GRACE: Duration = Duration::seconds(60);

/// One readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `store`, `rules` or `source:<key>`.
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The `/readyz` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// The names of the failing checks.
    pub failing: Vec<String>,
    pub checks: Vec<Check>,
}

/// Whether the daemon does its job now: the store answers, a rule set is loaded, and
/// every source was polled successfully within its expected interval.
pub async fn readiness(daemon: &Daemon) -> Readiness {
    let now = daemon.clock().now();
    let mut checks = Vec::new();
    let store = daemon.store();
    let health = match store.ping().await {
        Ok(()) => store.source_health().await,
        Err(e) => Err(e),
    };
    checks.push(Check {
        name: "store".to_owned(),
        ok: health.is_ok(),
        detail: match &health {
            Ok(_) => format!("{} answers", store.backend()),
            Err(e) => e.to_string(),
        },
    });
    let rules = daemon.loaded_rules().len();
    checks.push(Check {
        name: "rules".to_owned(),
        ok: rules > 0,
        detail: format!("{rules} rules loaded"),
    });
    for (source, schedule) in daemon.source_schedules() {
        let check = match &health {
            Ok(health) => source_check(
                &source,
                &schedule,
                health.iter().find(|h| h.source == source),
                daemon.started_at(),
                now,
            ),
            Err(_) => Check {
                name: format!("source:{source}"),
                ok: false,
                detail: "unknown: the store does not answer".to_owned(),
            },
        };
        checks.push(check);
    }
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.clone())
        .collect();
    Readiness {
        ready: failing.is_empty(),
        failing,
        checks,
    }
}

/// A source is ready while its last good poll is at most two of its schedule's fires
/// (plus [`READY_GRACE`]) ago; one not polled successfully since start is ready only
/// until its first fire after start (plus the grace).
pub fn source_check(
    source: &str,
    schedule: &Schedule,
    health: Option<&SourceHealth>,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Check {
    let two_fires_after = |t: DateTime<Utc>| {
        schedule
            .next_after(t)
            .and_then(|first| schedule.next_after(first))
    };
    let last_good = health.and_then(|h| h.last_good_at);
    let fresh = last_good
        .and_then(two_fires_after)
        .is_some_and(|due| now <= due + READY_GRACE);
    let starting = last_good.is_none_or(|good| good < started)
        && schedule
            .next_after(started)
            .is_some_and(|first| now <= first + READY_GRACE);
    let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let detail = match (last_good, fresh, starting) {
        (Some(good), true, _) => {
            format!("last good poll {} s ago", (now - good).num_seconds().max(0))
        }
        (_, false, true) => "starting: not polled successfully since start yet".to_owned(),
        (good, ..) => {
            let since = match good {
                Some(good) => format!("no good poll since {}", rfc3339(good)),
                None => "never polled successfully".to_owned(),
            };
            match health.and_then(|h| h.last_error.as_deref().map(|e| (e, h.consecutive_failures)))
            {
                Some((error, failures)) if failures > 0 => {
                    format!("{since}; consecutive failures: {failures}; last error: {error}")
                }
                _ => since,
            }
        }
    };
    Check {
        name: format!("source:{source}"),
        ok: fresh || starting,
        detail,
    }
}

/// Refresh the gauges of stored state before a scrape renders them.
async fn observe(daemon: &Daemon) {
    let now = daemon.clock().now();
    let store = daemon.store();
    telemetry::instance_observed(daemon.leases_held().len(), &daemon.quarantined_rules());
    let read = async {
        telemetry::outbox_observed(&store.outbox_states().await?, now);
        telemetry::mail_clocks_observed(&store.open_mail_clocks().await?, now);
        let health = store.source_health().await?;
        let checkpoints = store.checkpoints().await?;
        let sources: Vec<telemetry::SourceObservation> = daemon
            .source_schedules()
            .into_iter()
            .map(|(source, schedule)| {
                let row = health.iter().find(|h| h.source == source);
                let ready = source_check(&source, &schedule, row, daemon.started_at(), now).ok;
                telemetry::SourceObservation {
                    last_good: row.and_then(|h| h.last_good_at),
                    consecutive_failures: row.map_or(0, |h| h.consecutive_failures),
                    watermark: checkpoints
                        .iter()
                        .find(|(key, ..)| *key == source)
                        .map(|(_, watermark, _)| *watermark),
                    ready,
                    source,
                }
            })
            .collect();
        telemetry::sources_observed(&sources, now);
        Ok::<(), StoreError>(())
    };
    telemetry::store_observed(read.await.as_ref().err());
}
