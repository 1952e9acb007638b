//! The daemon's change events: one receive task per store whose `secretsync.io/events`
//! annotation names a pulled source (`gcp-pubsub`, `aws-sqs`), and an HTTP server
//! (`--listen`) for pushed ones: Doppler's signed webhooks and an authenticated
//! `POST /refresh` for pipelines. Everything lands in one channel the daemon drains
//! between cycles ([`EventHub::recv`]); it syncs the readers of the changed keys and then
//! acknowledges ([`EventHub::ack`]), so a crash before the sync means redelivery.
//!
//! Routes (all answer 401 to a missing or wrong signature or token, and change nothing):
//!
//! - `POST /refresh?store=NAME[&namespace=NS][&kind=SecretStore|ClusterSecretStore][&key=K]`
//!   with `Authorization: Bearer <token>` (`--refresh-token-file` or
//!   `SECRETSYNC_REFRESH_TOKEN`; without a token configured every call is refused). Without
//!   `key`, every spec of the store syncs. `namespace` given means a SecretStore.
//! - `POST /events/doppler/{namespace}/{store}` (SecretStore) or
//!   `POST /events/doppler/{store}` (ClusterSecretStore): a Doppler webhook for a store
//!   annotated `secretsync.io/events: doppler-webhook`, signed with the secret named by
//!   `secretsync.io/events-secret`. A replayed delivery (same signature within 10 minutes)
//!   is refused.
//! - `GET /metrics`: `secretsync_events_total{source,store,outcome}`,
//!   `secretsync_events_lag_seconds`, `secretsync_events_up`.
//! - `GET /healthz`.
//!
//! What the routes do, the receive loop and the counters are core's
//! ([`secretsync_core::events::Intake`], [`receive_loop`]), shared with the operator; this
//! module mounts them in the daemon's server and drives them from its manifests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use secretsync_core::SecretValue;
use secretsync_core::engine::EventsDown;
use secretsync_core::events::{AckToken, Answer, EventAddress, EventSource, EventStats, Intake, receive_loop};
use secretsync_core::manifest::{Manifests, StoreId, StoreKind};
use secretsync_core::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The scheme of Doppler webhooks, served by [`EventHub::serve`].
pub use secretsync_core::events::DOPPLER_WEBHOOK;
/// A change for one store, from any source.
pub use secretsync_core::events::Incoming;

/// Where the daemon's HTTP server listens; after it started, the address it bound (port 0
/// picks a free one).
#[derive(Debug, Clone)]
pub struct ListenOn {
    addr: SocketAddr,
    bound: Arc<OnceLock<SocketAddr>>,
}

impl ListenOn {
    /// Listen on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            bound: Arc::new(OnceLock::new()),
        }
    }

    /// The address asked for.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address bound, once the server runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.bound.get().copied()
    }
}

struct Pulled {
    source: Arc<dyn EventSource>,
    task: JoinHandle<()>,
}

/// The daemon's event plumbing.
pub struct EventHub {
    intake: Arc<Intake>,
    rx: mpsc::Receiver<Incoming>,
    pulled: BTreeMap<StoreId, Pulled>,
    /// The HTTP server, when serving: stopped with the hub, so a daemon that returns (a
    /// stop, an embedding program's cancel) leaves no port open behind it.
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("pulled", &self.pulled.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        for p in self.pulled.values() {
            p.task.abort();
        }
        if let Some(s) = &self.server {
            s.abort();
        }
    }
}

impl EventHub {
    /// A hub; `refresh_token` guards `POST /refresh`.
    pub fn new(refresh_token: Option<SecretValue>) -> Self {
        let (intake, rx) = Intake::new(refresh_token);
        Self {
            intake,
            rx,
            pulled: BTreeMap::new(),
            server: None,
        }
    }

    /// (Re)starts the event sources the manifests' stores name. Returns the problems
    /// (bad annotations, sources that cannot be built, webhook secrets that cannot be
    /// read); those stores keep polling.
    pub async fn configure(&mut self, manifests: &Manifests, registry: &Registry) -> Vec<String> {
        for (_, p) in std::mem::take(&mut self.pulled) {
            p.task.abort();
        }
        let mut problems = vec![];
        let mut webhooks = BTreeMap::new();
        let mut stats = BTreeMap::new();
        for store in &manifests.stores {
            let Some(address) = EventAddress::of(store) else {
                continue;
            };
            let address = match address {
                Ok(a) => a,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            let stat = Arc::new(EventStats::default());
            stats.insert(store.id.clone(), (address.scheme.clone(), stat.clone()));
            if address.scheme == DOPPLER_WEBHOOK {
                let Some(selector) = &address.secret else {
                    let problem = format!(
                        "{}: {DOPPLER_WEBHOOK} needs its signing secret in the annotation {} (<namespace>/<name>/<key>)",
                        store.origin.field("metadata.annotations"),
                        secretsync_core::events::EVENTS_SECRET_ANNOTATION
                    );
                    stat.failed(&problem);
                    problems.push(problem);
                    continue;
                };
                match registry
                    .credentials()
                    .resolve(selector, store.id.namespace.as_deref())
                    .await
                {
                    Ok(secret) => {
                        webhooks.insert(store.id.clone(), secret);
                    }
                    Err(e) => {
                        let problem = format!("{}: webhook signing secret: {e}", store.id);
                        stat.failed(&problem);
                        problems.push(problem);
                    }
                }
                continue;
            }
            match registry.build_events(store).await {
                None => {}
                Some(Err(e)) => {
                    stat.failed(&e.to_string());
                    problems.push(e.to_string());
                }
                Some(Ok(source)) => {
                    let task = tokio::spawn(receive_loop(
                        store.id.clone(),
                        source.clone(),
                        stat,
                        self.intake.sender(),
                    ));
                    self.pulled.insert(store.id.clone(), Pulled { source, task });
                }
            }
        }
        self.intake
            .replace(manifests.stores.iter().map(|s| s.id.clone()).collect(), webhooks, stats);
        problems
    }

    /// The next change, when one arrives.
    pub async fn recv(&mut self) -> Option<Incoming> {
        self.rx.recv().await
    }

    /// Gathers the rest of a burst into `pending` (core's
    /// [`collect_burst`](secretsync_core::events::collect_burst): until 250 ms pass without
    /// an event, at most 1 s).
    pub async fn collect_burst(&mut self, pending: &mut secretsync_core::events::Pending) {
        secretsync_core::events::collect_burst(&mut self.rx, pending).await;
    }

    /// A change already waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Incoming> {
        self.rx.try_recv().ok()
    }

    /// Acknowledges a store's handled deliveries at their source.
    pub async fn ack(&self, store: &StoreId, tokens: &[AckToken]) {
        if tokens.is_empty() {
            return;
        }
        if let Some(p) = self.pulled.get(store)
            && let Err(e) = p.source.ack(tokens).await
        {
            // Not acknowledged: delivered again later, synced again (an unchanged
            // target costs a read, no write).
            tracing::warn!(store = %store, error = %e, "acknowledging change events failed");
        }
    }

    /// Counts handled events of a store: `synced` ones led to a sync, the others were
    /// about keys nobody reads.
    pub fn handled(&self, store: &StoreId, synced: bool, events: u64, published: Option<std::time::SystemTime>) {
        self.intake.handled(store, synced, events, published);
    }

    /// Event sources not flowing, for the cycle report.
    pub fn down(&self) -> Vec<EventsDown> {
        self.intake.down()
    }

    /// Serves the HTTP routes on `listen` until the hub is dropped; the address bound.
    pub async fn serve(&mut self, listen: &ListenOn) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(listen.addr).await?;
        let bound = listener.local_addr()?;
        let _ = listen.bound.set(bound);
        let app = axum::Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(metrics))
            .route("/refresh", post(refresh))
            .route("/events/doppler/{store}", post(doppler_cluster))
            .route("/events/doppler/{namespace}/{store}", post(doppler_namespaced))
            .with_state(self.intake.clone());
        self.server = Some(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "event server stopped");
            }
        }));
        Ok(bound)
    }
}

fn answer(a: Answer) -> (StatusCode, String) {
    (
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        a.body,
    )
}

async fn refresh(
    State(intake): State<Arc<Intake>>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let auth = headers.get("authorization").and_then(|h| h.to_str().ok());
    answer(intake.refresh(&q, auth).await)
}

async fn doppler_cluster(
    State(intake): State<Arc<Intake>>,
    Path(store): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let id = StoreId {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: store,
    };
    let signature = headers.get("x-doppler-signature").and_then(|h| h.to_str().ok());
    answer(intake.doppler(id, signature, &body).await)
}

async fn doppler_namespaced(
    State(intake): State<Arc<Intake>>,
    Path((namespace, store)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let id = StoreId {
        kind: StoreKind::SecretStore,
        namespace: Some(namespace),
        name: store,
    };
    let signature = headers.get("x-doppler-signature").and_then(|h| h.to_str().ok());
    answer(intake.doppler(id, signature, &body).await)
}

async fn metrics(State(intake): State<Arc<Intake>>) -> String {
    intake.metrics_text()
}
