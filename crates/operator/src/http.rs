//! `/metrics`, `/healthz` and `/readyz` over HTTP (axum).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::ControllerHandle;

/// The routes: `/metrics` (Prometheus text format), `/healthz` (the process serves),
/// `/readyz` (every watch has listed its objects once, so this replica can lead).
pub fn router(handle: ControllerHandle) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(handle)
}

/// Serves [`router`] on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, handle: ControllerHandle) -> std::io::Result<()> {
    axum::serve(listener, router(handle)).await
}

async fn metrics(State(h): State<ControllerHandle>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.render_metrics(),
    )
}

async fn readyz(State(h): State<ControllerHandle>) -> impl IntoResponse {
    if h.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet\n")
    }
}
