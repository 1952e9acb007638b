//! The framework-free half of change events that the `sync` daemon and the operator share:
//! the receive loop of a pulled source (backoff, "down" reporting), the handling of pushed
//! events (`POST /refresh`, Doppler webhooks) as plain functions from headers and body to
//! an [`Answer`], and the per-store counters behind `/metrics`. Each program mounts the
//! HTTP routes in its own server and drains [`Incoming`] changes its own way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::EventsDown;
use super::{
    ChangeEvent, Delivery, EventSource, EventStats, Pending, ReplayGuard, check_bearer, doppler_event, retry_delay,
    verify_doppler_signature,
};
use crate::SecretValue;
use crate::manifest::{StoreId, StoreKind};

/// The scheme of Doppler webhooks (`secretsync.io/events: doppler-webhook`), served over
/// HTTP by [`Intake::doppler`] rather than pulled.
pub const DOPPLER_WEBHOOK: &str = "doppler-webhook";

/// A change for one store, from any source.
#[derive(Debug)]
pub struct Incoming {
    /// The store.
    pub store: StoreId,
    /// What changed and how to acknowledge it.
    pub delivery: Delivery,
}

/// What an HTTP route answers: a status code and a short plain-text body (never a value,
/// never why an authentication failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body.
    pub body: String,
}

impl Answer {
    fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
        }
    }
}

/// One store's event counters, as `/metrics` shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSample {
    /// The scheme (`gcp-pubsub`, `doppler-webhook`).
    pub source: String,
    /// The store, as it prints (`SecretStore ns/name`).
    pub store: String,
    /// Events that led to a sync.
    pub synced: u64,
    /// Events about keys nobody reads.
    pub ignored: u64,
    /// Failed receives.
    pub errors: u64,
    /// Refused requests.
    pub refused: u64,
    /// Publish-to-synced lag of the latest handled event, in seconds.
    pub lag_seconds: f64,
    /// Whether events are flowing.
    pub up: bool,
}

/// Where pushed and pulled events enter: the stores that can receive them, their counters,
/// the webhook signing secrets, the refresh token and the replay guard, and the channel the
/// program drains. Shared (in an `Arc`) by the receive tasks and the HTTP routes.
#[derive(Debug)]
pub struct Intake {
    tx: mpsc::Sender<Incoming>,
    /// Every known store (`/refresh` answers 404 for others).
    stores: RwLock<BTreeSet<StoreId>>,
    /// Doppler webhook stores with their signing secret.
    webhooks: RwLock<BTreeMap<StoreId, SecretValue>>,
    /// Stores with an event source: scheme and counters.
    stats: RwLock<BTreeMap<StoreId, (String, Arc<EventStats>)>>,
    /// Refusals of `/refresh` and of unknown webhook stores (no store to count them under).
    refresh: Arc<EventStats>,
    refresh_token: Option<SecretValue>,
    replay: ReplayGuard,
}

impl Intake {
    /// An intake whose `POST /refresh` needs `refresh_token` (none: every call is refused),
    /// and the receiving end of its channel.
    pub fn new(refresh_token: Option<SecretValue>) -> (Arc<Self>, mpsc::Receiver<Incoming>) {
        let (tx, rx) = mpsc::channel(1024);
        let intake = Arc::new(Self {
            tx,
            stores: Default::default(),
            webhooks: Default::default(),
            stats: Default::default(),
            refresh: Default::default(),
            refresh_token,
            replay: ReplayGuard::new(Duration::from_secs(600)),
        });
        (intake, rx)
    }

    /// A sender into the channel (for receive tasks).
    pub fn sender(&self) -> mpsc::Sender<Incoming> {
        self.tx.clone()
    }

    /// Replaces everything known about stores at once (the daemon, after loading manifests).
    pub fn replace(
        &self,
        stores: BTreeSet<StoreId>,
        webhooks: BTreeMap<StoreId, SecretValue>,
        stats: BTreeMap<StoreId, (String, Arc<EventStats>)>,
    ) {
        *self.stores.write().expect("lock") = stores;
        *self.webhooks.write().expect("lock") = webhooks;
        *self.stats.write().expect("lock") = stats;
    }

    /// Sets the stores that exist (`/refresh` can name them), keeping counters and secrets.
    pub fn set_stores(&self, stores: BTreeSet<StoreId>) {
        *self.stores.write().expect("lock") = stores;
    }

    /// Records that `store` exists (`/refresh` can name it).
    pub fn add_store(&self, store: &StoreId) {
        self.stores.write().expect("lock").insert(store.clone());
    }

    /// Forgets `store`: its counters, its webhook secret, and that it exists.
    pub fn remove_store(&self, store: &StoreId) {
        self.stores.write().expect("lock").remove(store);
        self.untrack(store);
    }

    /// The counters of `store`'s event source of `scheme`: kept when the scheme is the
    /// same, fresh when it changed.
    pub fn track(&self, store: &StoreId, scheme: &str) -> Arc<EventStats> {
        let mut stats = self.stats.write().expect("lock");
        match stats.get(store) {
            Some((s, st)) if s == scheme => st.clone(),
            _ => {
                let st = Arc::new(EventStats::default());
                stats.insert(store.clone(), (scheme.to_string(), st.clone()));
                if scheme != DOPPLER_WEBHOOK {
                    self.webhooks.write().expect("lock").remove(store);
                }
                st
            }
        }
    }

    /// Stops counting events of `store` (its annotation went away) and forgets its webhook
    /// secret.
    pub fn untrack(&self, store: &StoreId) {
        self.stats.write().expect("lock").remove(store);
        self.webhooks.write().expect("lock").remove(store);
    }

    /// Sets (or, with `None`, removes) the signing secret of a Doppler webhook store.
    pub fn set_webhook_secret(&self, store: &StoreId, secret: Option<SecretValue>) {
        let mut w = self.webhooks.write().expect("lock");
        match secret {
            Some(s) => {
                w.insert(store.clone(), s);
            }
            None => {
                w.remove(store);
            }
        }
    }

    /// The counters of a store's event source, if it has one.
    pub fn stats_of(&self, store: &StoreId) -> Option<(String, Arc<EventStats>)> {
        self.stats.read().expect("lock").get(store).cloned()
    }

    /// Counts handled events of a store: `synced` ones led to a sync, the others were
    /// about keys nobody reads.
    pub fn handled(&self, store: &StoreId, synced: bool, events: u64, published: Option<SystemTime>) {
        if let Some((_, s)) = self.stats.read().expect("lock").get(store) {
            let c = if synced { &s.synced } else { &s.ignored };
            EventStats::count(c, events);
            if synced {
                s.handled(published);
            }
        }
    }

    /// Event sources not flowing, and why.
    pub fn down(&self) -> Vec<EventsDown> {
        self.stats
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

    /// `POST /refresh?store=NAME[&namespace=NS][&kind=…][&key=K]` with its
    /// `Authorization` header: 401 without the right bearer token, 400 for a bad query,
    /// 404 for an unknown store, else 202 and the change is queued.
    pub async fn refresh(&self, query: &BTreeMap<String, String>, authorization: Option<&str>) -> Answer {
        let expected = self.refresh_token.as_ref().map(|t| t.expose()).unwrap_or_default();
        if let Err(why) = check_bearer(expected, authorization) {
            return refused(&self.refresh, why, "/refresh");
        }
        let Some(name) = query.get("store").filter(|s| !s.is_empty()) else {
            return Answer::new(400, "missing query parameter `store`\n");
        };
        let namespace = query.get("namespace").filter(|s| !s.is_empty()).cloned();
        let kind = match query.get("kind").map(String::as_str) {
            Some("ClusterSecretStore") => StoreKind::ClusterSecretStore,
            Some("SecretStore") => StoreKind::SecretStore,
            None if namespace.is_some() => StoreKind::SecretStore,
            None => StoreKind::ClusterSecretStore,
            Some(_) => return Answer::new(400, "`kind` must be SecretStore or ClusterSecretStore\n"),
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
        if !self.stores.read().expect("lock").contains(&store) {
            return Answer::new(404, format!("no store {store}\n"));
        }
        let event = match query.get("key").filter(|k| !k.is_empty()) {
            Some(k) => ChangeEvent::key(k.clone(), "refresh"),
            None => ChangeEvent {
                kind: "refresh".into(),
                ..Default::default()
            },
        };
        self.enqueue(store, event).await
    }

    /// `POST /events/doppler/…` for `store` with its `X-Doppler-Signature` header and body:
    /// 401 for an unknown store, a missing, wrong or replayed signature; 200 (ignored) for
    /// a signed payload that is not a secrets update; else 202 and the change is queued.
    pub async fn doppler(&self, store: StoreId, signature: Option<&str>, body: &[u8]) -> Answer {
        let stats = self
            .stats
            .read()
            .expect("lock")
            .get(&store)
            .filter(|(scheme, _)| scheme == DOPPLER_WEBHOOK)
            .map(|(_, s)| s.clone());
        let secret = self.webhooks.read().expect("lock").get(&store).cloned();
        // An unknown store answers as a bad signature does: nothing to learn by probing.
        let (Some(stats), Some(secret)) = (stats, secret) else {
            return refused(
                &self.refresh,
                "no Doppler webhook store of that name",
                "doppler webhook",
            );
        };
        if let Err(why) = verify_doppler_signature(secret.expose(), body, signature) {
            return refused(&stats, why, "doppler webhook");
        }
        if let Err(why) = self.replay.check(signature.unwrap_or_default()) {
            return refused(&stats, why, "doppler webhook");
        }
        match doppler_event(body) {
            Ok(event) => self.enqueue(store, event).await,
            Err(why) => {
                EventStats::count(&stats.ignored, 1);
                Answer::new(200, format!("ignored: {why}\n"))
            }
        }
    }

    async fn enqueue(&self, store: StoreId, event: ChangeEvent) -> Answer {
        let delivery = Delivery {
            events: vec![event],
            ack: None,
        };
        match self.tx.send(Incoming { store, delivery }).await {
            Ok(()) => Answer::new(202, "accepted\n"),
            Err(_) => Answer::new(503, "shutting down\n"),
        }
    }

    /// Every store's counters (sorted by store), and the refusals counted under no store.
    pub fn samples(&self) -> (Vec<SourceSample>, u64) {
        let rows = self
            .stats
            .read()
            .expect("lock")
            .iter()
            .map(|(id, (scheme, s))| SourceSample {
                source: scheme.clone(),
                store: id.to_string(),
                synced: s.synced.load(Ordering::Relaxed),
                ignored: s.ignored.load(Ordering::Relaxed),
                errors: s.errors.load(Ordering::Relaxed),
                refused: s.refused.load(Ordering::Relaxed),
                lag_seconds: s.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
                up: s.problem().is_none(),
            })
            .collect();
        (rows, self.refresh.refused.load(Ordering::Relaxed))
    }

    /// The counters in Prometheus' text format: `secretsync_events_total{source,store,outcome}`,
    /// `secretsync_events_lag_seconds`, `secretsync_events_up`.
    pub fn metrics_text(&self) -> String {
        let (rows, refresh_refused) = self.samples();
        let mut out = String::from(
            "# HELP secretsync_events_total Change events by outcome.\n# TYPE secretsync_events_total counter\n",
        );
        let line = |out: &mut String, source: &str, store: &str, outcome: &str, n: u64| {
            out.push_str(&format!(
                "secretsync_events_total{{source=\"{source}\",store=\"{store}\",outcome=\"{outcome}\"}} {n}\n"
            ));
        };
        for r in &rows {
            line(&mut out, &r.source, &r.store, "synced", r.synced);
            line(&mut out, &r.source, &r.store, "ignored", r.ignored);
            line(&mut out, &r.source, &r.store, "error", r.errors);
            line(&mut out, &r.source, &r.store, "refused", r.refused);
        }
        line(&mut out, "refresh", "", "refused", refresh_refused);
        out.push_str("# HELP secretsync_events_lag_seconds Publish-to-synced lag of the latest handled event.\n# TYPE secretsync_events_lag_seconds gauge\n");
        for r in &rows {
            out.push_str(&format!(
                "secretsync_events_lag_seconds{{source=\"{}\",store=\"{}\"}} {:.3}\n",
                r.source, r.store, r.lag_seconds
            ));
        }
        out.push_str(
            "# HELP secretsync_events_up Whether a store's event source is flowing.\n# TYPE secretsync_events_up gauge\n",
        );
        for r in &rows {
            out.push_str(&format!(
                "secretsync_events_up{{source=\"{}\",store=\"{}\"}} {}\n",
                r.source,
                r.store,
                u8::from(r.up)
            ));
        }
        out
    }
}

fn refused(stats: &EventStats, why: impl std::fmt::Display, what: &str) -> Answer {
    EventStats::count(&stats.refused, 1);
    tracing::warn!(request = what, reason = %why, "refused");
    Answer::new(401, "unauthorized\n")
}

/// Pulls one source until aborted (or until nobody drains `tx`): failures are logged once
/// per new problem and retried with backoff; the store keeps polling meanwhile.
pub async fn receive_loop(
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

/// Waits for the rest of a burst: until no event arrived for 250 ms, at most 1 s after the
/// first, so a burst of events for one key causes one sync.
pub async fn collect_burst(rx: &mut mpsc::Receiver<Incoming>, pending: &mut Pending) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Some(i) => pending.add(&i.store, i.delivery),
                None => return,
            },
            _ = tokio::time::sleep(Duration::from_millis(250)) => return,
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> StoreId {
        StoreId {
            kind: StoreKind::SecretStore,
            namespace: Some("dev".into()),
            name: "local".into(),
        }
    }

    #[tokio::test]
    async fn refresh_needs_the_token_and_a_known_store() {
        let (intake, mut rx) = Intake::new(Some(SecretValue::from("t0k")));
        intake.add_store(&store());
        let q: BTreeMap<String, String> = [("store", "local"), ("namespace", "dev"), ("key", "db")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(intake.refresh(&q, None).await.status, 401);
        assert_eq!(intake.refresh(&q, Some("Bearer nope")).await.status, 401);
        assert!(rx.try_recv().is_err(), "refused calls queue nothing");
        assert_eq!(intake.refresh(&q, Some("Bearer t0k")).await.status, 202);
        let got = rx.try_recv().unwrap();
        assert_eq!(got.store, store());
        assert_eq!(got.delivery.events[0].keys, vec!["db".to_string()]);
        let mut other = q.clone();
        other.insert("store".into(), "nope".into());
        assert_eq!(intake.refresh(&other, Some("Bearer t0k")).await.status, 404);
        let (rows, refused) = intake.samples();
        assert!(rows.is_empty());
        assert_eq!(refused, 2);
    }

    #[tokio::test]
    async fn no_token_configured_refuses_everything() {
        let (intake, _rx) = Intake::new(None);
        intake.add_store(&store());
        let q: BTreeMap<String, String> = [("store".to_string(), "local".to_string())].into_iter().collect();
        assert_eq!(intake.refresh(&q, Some("Bearer ")).await.status, 401);
        assert_eq!(intake.refresh(&q, Some("Bearer x")).await.status, 401);
    }

    #[tokio::test]
    async fn webhooks_are_verified_against_the_stores_secret() {
        use hmac::{Hmac, Mac};
        let (intake, mut rx) = Intake::new(None);
        let s = store();
        intake.add_store(&s);
        let stats = intake.track(&s, DOPPLER_WEBHOOK);
        let body = br#"{"type":"config.secrets.update","diff":{"updated":["DB"]}}"#;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec").unwrap();
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            intake.doppler(s.clone(), Some(&sig), body).await.status,
            401,
            "no secret yet"
        );
        intake.set_webhook_secret(&s, Some(SecretValue::from("whsec")));
        assert_eq!(intake.doppler(s.clone(), None, body).await.status, 401);
        assert_eq!(intake.doppler(s.clone(), Some(&sig), b"{}").await.status, 401);
        assert_eq!(intake.doppler(s.clone(), Some(&sig), body).await.status, 202);
        assert_eq!(intake.doppler(s.clone(), Some(&sig), body).await.status, 401, "replay");
        assert_eq!(rx.try_recv().unwrap().delivery.events[0].keys, vec!["DB".to_string()]);
        assert!(rx.try_recv().is_err());
        assert_eq!(stats.refused.load(Ordering::Relaxed), 3);
        // Same scheme: the same counters; the store gone: nothing is accepted.
        assert!(Arc::ptr_eq(&stats, &intake.track(&s, DOPPLER_WEBHOOK)));
        intake.remove_store(&s);
        assert_eq!(intake.doppler(s, Some(&sig), body).await.status, 401);
    }
}
