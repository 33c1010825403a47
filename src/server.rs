//! The local HTTP endpoint ops tools read: `/healthz` (the process answers) and
//! `/metrics` (Prometheus text). It exposes no data about orders or buyers.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry;

pub fn router() -> Router {
    Router::new()
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
        )
}

/// Serve on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
