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

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use secretsync_core::SecretValue;
use secretsync_core::engine::EventsDown;
use secretsync_core::events::{
    AckToken, ChangeEvent, Delivery, EventAddress, EventSource, EventStats, ReplayGuard, check_bearer, doppler_event,
    retry_delay, verify_doppler_signature,
};
use secretsync_core::manifest::{Manifests, StoreId, StoreKind};
use secretsync_core::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The scheme of Doppler webhooks, served by [`serve`].
pub const DOPPLER_WEBHOOK: &str = "doppler-webhook";

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

/// A change for one store, from any source.
#[derive(Debug)]
pub struct Incoming {
    /// The store.
    pub store: StoreId,
    /// What changed and how to acknowledge it.
    pub delivery: Delivery,
}

struct Pulled {
    source: Arc<dyn EventSource>,
    task: JoinHandle<()>,
}

/// Shared by the receive tasks, the HTTP server and the daemon.
struct Shared {
    tx: mpsc::Sender<Incoming>,
    /// Stores by id; webhook stores with their signing secret.
    stores: RwLock<BTreeSet<StoreId>>,
    webhooks: RwLock<BTreeMap<StoreId, SecretValue>>,
    stats: RwLock<BTreeMap<StoreId, (String, Arc<EventStats>)>>,
    /// Refusals of `/refresh` (no store to count them under).
    refresh: Arc<EventStats>,
    refresh_token: Option<SecretValue>,
    replay: ReplayGuard,
}

/// The daemon's event plumbing.
pub struct EventHub {
    shared: Arc<Shared>,
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
        let (tx, rx) = mpsc::channel(1024);
        Self {
            shared: Arc::new(Shared {
                tx,
                stores: Default::default(),
                webhooks: Default::default(),
                stats: Default::default(),
                refresh: Default::default(),
                refresh_token,
                replay: ReplayGuard::new(Duration::from_secs(600)),
            }),
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
                        self.shared.tx.clone(),
                    ));
                    self.pulled.insert(store.id.clone(), Pulled { source, task });
                }
            }
        }
        *self.shared.stores.write().expect("lock") = manifests.stores.iter().map(|s| s.id.clone()).collect();
        *self.shared.webhooks.write().expect("lock") = webhooks;
        *self.shared.stats.write().expect("lock") = stats;
        problems
    }

    /// The next change, when one arrives.
    pub async fn recv(&mut self) -> Option<Incoming> {
        self.rx.recv().await
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
        if let Some((_, s)) = self.shared.stats.read().expect("lock").get(store) {
            let c = if synced { &s.synced } else { &s.ignored };
            EventStats::count(c, events);
            if synced {
                s.handled(published);
            }
        }
    }

    /// Event sources not flowing, for the cycle report.
    pub fn down(&self) -> Vec<EventsDown> {
        self.shared
            .stats
            .read()
            .expect("lock")
            .iter()
            .filter_map(|(id, (scheme, s))| {
                s.problem().map(|problem| EventsDown {
                    store: id.to_string(),
                    source: scheme.clone(),
                    problem,
                })
            })
            .collect()
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
            .with_state(self.shared.clone());
        self.server = Some(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "event server stopped");
            }
        }));
        Ok(bound)
    }
}

/// Pulls one source until aborted: failures are logged once per new problem and retried
/// with backoff; the store keeps polling meanwhile.
async fn receive_loop(
    store: StoreId,
    source: Arc<dyn EventSource>,
    stats: Arc<EventStats>,
    tx: mpsc::Sender<Incoming>,
) {
    let mut attempt = 0u32;
    loop {
        match source.receive().await {
            Ok(deliveries) => {
                attempt = 0;
                if stats.healthy() {
                    tracing::info!(store = %store, source = source.scheme(), "change events flowing again");
                }
                for delivery in deliveries {
                    if tx
                        .send(Incoming {
                            store: store.clone(),
                            delivery,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(e) => {
                let problem = e.to_string();
                if stats.failed(&problem) {
                    tracing::warn!(
                        store = %store,
                        source = source.scheme(),
                        error = %problem,
                        "change events not flowing; the store keeps polling at its refreshInterval"
                    );
                }
                tokio::time::sleep(retry_delay(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

type Answer = (StatusCode, String);

fn refused(stats: &EventStats, why: impl std::fmt::Display, what: &str) -> Answer {
    EventStats::count(&stats.refused, 1);
    tracing::warn!(request = what, reason = %why, "refused");
    (StatusCode::UNAUTHORIZED, "unauthorized\n".into())
}

async fn refresh(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let auth = headers.get("authorization").and_then(|h| h.to_str().ok());
    let expected = shared.refresh_token.as_ref().map(|t| t.expose()).unwrap_or_default();
    if let Err(why) = check_bearer(expected, auth) {
        return refused(&shared.refresh, why, "/refresh");
    }
    let Some(name) = q.get("store").filter(|s| !s.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "missing query parameter `store`\n".into());
    };
    let namespace = q.get("namespace").filter(|s| !s.is_empty()).cloned();
    let kind = match q.get("kind").map(String::as_str) {
        Some("ClusterSecretStore") => StoreKind::ClusterSecretStore,
        Some("SecretStore") => StoreKind::SecretStore,
        None if namespace.is_some() => StoreKind::SecretStore,
        None => StoreKind::ClusterSecretStore,
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "`kind` must be SecretStore or ClusterSecretStore\n".into(),
            );
        }
    };
    let store = StoreId {
        kind,
        namespace: if kind == StoreKind::SecretStore {
            namespace
        } else {
            None
        },
        name: name.clone(),
    };
    if !shared.stores.read().expect("lock").contains(&store) {
        return (StatusCode::NOT_FOUND, format!("no store {store}\n"));
    }
    let event = match q.get("key").filter(|k| !k.is_empty()) {
        Some(k) => ChangeEvent::key(k.clone(), "refresh"),
        None => ChangeEvent {
            kind: "refresh".into(),
            ..Default::default()
        },
    };
    enqueue(&shared, store, event).await
}

async fn enqueue(shared: &Shared, store: StoreId, event: ChangeEvent) -> Answer {
    let delivery = Delivery {
        events: vec![event],
        ack: None,
    };
    match shared.tx.send(Incoming { store, delivery }).await {
        Ok(()) => (StatusCode::ACCEPTED, "accepted\n".into()),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()),
    }
}

async fn doppler_cluster(
    State(shared): State<Arc<Shared>>,
    Path(store): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let id = StoreId {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: store,
    };
    doppler(&shared, id, &headers, &body).await
}

async fn doppler_namespaced(
    State(shared): State<Arc<Shared>>,
    Path((namespace, store)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let id = StoreId {
        kind: StoreKind::SecretStore,
        namespace: Some(namespace),
        name: store,
    };
    doppler(&shared, id, &headers, &body).await
}

async fn doppler(shared: &Shared, store: StoreId, headers: &HeaderMap, body: &[u8]) -> Answer {
    let stats = shared
        .stats
        .read()
        .expect("lock")
        .get(&store)
        .filter(|(scheme, _)| scheme == DOPPLER_WEBHOOK)
        .map(|(_, s)| s.clone());
    let secret = shared.webhooks.read().expect("lock").get(&store).cloned();
    // An unknown store answers as a bad signature does: nothing to learn by probing.
    let (Some(stats), Some(secret)) = (stats, secret) else {
        return refused(
            &shared.refresh,
            "no Doppler webhook store of that name",
            "doppler webhook",
        );
    };
    let signature = headers.get("x-doppler-signature").and_then(|h| h.to_str().ok());
    if let Err(why) = verify_doppler_signature(secret.expose(), body, signature) {
        return refused(&stats, why, "doppler webhook");
    }
    if let Err(why) = shared.replay.check(signature.unwrap_or_default()) {
        return refused(&stats, why, "doppler webhook");
    }
    match doppler_event(body) {
        Ok(event) => enqueue(shared, store, event).await,
        Err(why) => {
            EventStats::count(&stats.ignored, 1);
            (StatusCode::OK, format!("ignored: {why}\n"))
        }
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> String {
    let mut out = String::from(
        "# HELP secretsync_events_total Change events by outcome.\n# TYPE secretsync_events_total counter\n",
    );
    let stats = shared.stats.read().expect("lock");
    let line = |out: &mut String, source: &str, store: &str, outcome: &str, n: u64| {
        out.push_str(&format!(
            "secretsync_events_total{{source=\"{source}\",store=\"{store}\",outcome=\"{outcome}\"}} {n}\n"
        ));
    };
    for (id, (scheme, s)) in stats.iter() {
        let store = id.to_string();
        line(&mut out, scheme, &store, "synced", s.synced.load(Ordering::Relaxed));
        line(&mut out, scheme, &store, "ignored", s.ignored.load(Ordering::Relaxed));
        line(&mut out, scheme, &store, "error", s.errors.load(Ordering::Relaxed));
        line(&mut out, scheme, &store, "refused", s.refused.load(Ordering::Relaxed));
    }
    line(
        &mut out,
        "refresh",
        "",
        "refused",
        shared.refresh.refused.load(Ordering::Relaxed),
    );
    out.push_str("# HELP secretsync_events_lag_seconds Publish-to-synced lag of the latest handled event.\n# TYPE secretsync_events_lag_seconds gauge\n");
    for (id, (scheme, s)) in stats.iter() {
        out.push_str(&format!(
            "secretsync_events_lag_seconds{{source=\"{scheme}\",store=\"{id}\"}} {:.3}\n",
            s.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0
        ));
    }
    out.push_str(
        "# HELP secretsync_events_up Whether a store's event source is flowing.\n# TYPE secretsync_events_up gauge\n",
    );
    for (id, (scheme, s)) in stats.iter() {
        out.push_str(&format!(
            "secretsync_events_up{{source=\"{scheme}\",store=\"{id}\"}} {}\n",
            u8::from(s.problem().is_none())
        ));
    }
    out
}
