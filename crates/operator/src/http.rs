//! `/metrics`, `/healthz`, `/readyz` and the change-event routes over HTTP (axum).
//!
//! Change events (see `docs/events.md`), answered only by the leader (a follower answers
//! 503 so the sender retries; put the routes behind a Service that selects the leader, or
//! retry):
//!
//! - `POST /refresh?store=NAME[&namespace=NS][&kind=SecretStore|ClusterSecretStore][&key=K]`
//!   with `Authorization: Bearer <token>` ([`ControllerConfig::refresh_token`](crate::ControllerConfig::refresh_token);
//!   none configured: every call is refused). 401 without the right token, 404 for an
//!   unknown store, 202 when queued.
//! - `POST /events/doppler/{namespace}/{store}` (SecretStore) or
//!   `POST /events/doppler/{store}` (ClusterSecretStore): a Doppler webhook, signed with
//!   the key named by the store's `secretsync.io/events-secret`. 401 for an unsigned,
//!   forged or replayed delivery and for an unknown store; nothing changes.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use secretsync_core::events::Answer;
use secretsync_core::manifest::{StoreId, StoreKind};

use crate::ControllerHandle;

/// The routes: `/metrics` (Prometheus text format), `/healthz` (the process serves),
/// `/readyz` (every watch has listed its objects once, so this replica can lead),
/// `POST /refresh` and `POST /events/doppler/…` (change events).
pub fn router(handle: ControllerHandle) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/refresh", post(refresh))
        .route("/events/doppler/{store}", post(doppler_cluster))
        .route("/events/doppler/{namespace}/{store}", post(doppler_namespaced))
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

fn answer(a: Answer) -> (StatusCode, String) {
    (
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        a.body,
    )
}

fn not_leading() -> (StatusCode, String) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "not the leader: try again\n".to_string(),
    )
}

async fn refresh(
    State(h): State<ControllerHandle>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let intake = &h.shared.events.intake;
    if !h.is_leader() {
        // Authenticated first: a follower tells nothing to a caller without the token.
        let a = intake.refresh(&BTreeMap::new(), auth).await;
        return if a.status == 401 { answer(a) } else { not_leading() };
    }
    answer(intake.refresh(&q, auth).await)
}

async fn doppler(h: &ControllerHandle, store: StoreId, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String) {
    if !h.is_leader() {
        return not_leading();
    }
    let signature = headers.get("x-doppler-signature").and_then(|v| v.to_str().ok());
    answer(h.shared.events.intake.doppler(store, signature, body).await)
}

async fn doppler_cluster(
    State(h): State<ControllerHandle>,
    Path(store): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let id = StoreId {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: store,
    };
    doppler(&h, id, &headers, &body).await
}

async fn doppler_namespaced(
    State(h): State<ControllerHandle>,
    Path((namespace, store)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let id = StoreId {
        kind: StoreKind::SecretStore,
        namespace: Some(namespace),
        name: store,
    };
    doppler(&h, id, &headers, &body).await
}
