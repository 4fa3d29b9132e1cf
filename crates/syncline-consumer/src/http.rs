//! `/metrics` (OpenMetrics text), `/healthz` (the process serves requests) and `/readyz`
//! (partitions assigned and the sink not stuck in a retry loop for longer than
//! `unready_after_retrying`).
//!
//! [`serve_with`] is the server itself, for any binary: it takes what `/metrics` renders
//! and what `/readyz` answers as closures (the outbox relay serves its own metrics with it);
//! `render` must return OpenMetrics text (what a prometheus-client registry encodes), the
//! content type `/metrics` declares.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::metrics::{Metrics, CONTENT_TYPE};

/// Bind `addr` and serve the endpoints until `stop` is cancelled. Returns the bound
/// address (useful with port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
    unready_after: Duration,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    serve_with(
        addr,
        move || metrics.render(),
        move || health.readiness(unready_after).map(|()| "ready".to_owned()),
        stop,
    )
    .await
}

/// Bind `addr` and serve until `stop` is cancelled: `/metrics` answers `render()` as
/// OpenMetrics text ([`CONTENT_TYPE`]), `/healthz` answers `ok`, `/readyz` answers 200 with `ready()`'s `Ok`
/// text or 503 with `not ready: ` and its `Err` text (each followed by a newline).
/// Returns the bound address (useful with port 0) and the server task.
pub async fn serve_with<R, Q>(
    addr: SocketAddr,
    render: R,
    ready: Q,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)>
where
    R: Fn() -> String + Clone + Send + Sync + 'static,
    Q: Fn() -> Result<String, String> + Clone + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = render();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], body) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let answer = match ready() {
                    Ok(status) => (StatusCode::OK, format!("{status}\n")),
                    Err(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
                };
                async move { answer }
            }),
        );
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    Ok((bound, task))
}
