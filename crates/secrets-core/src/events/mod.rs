//! Change events: a provider says a secret changed, and only the specs that read it sync,
//! in seconds, instead of waiting for their refresh interval. Polling stays as the backstop.
//!
//! A store opts in with annotations on its SecretStore / ClusterSecretStore (ESO's CRDs
//! would prune new fields under `spec`):
//!
//! - `secretsync.io/events: <scheme>:<address>` names the event source, e.g.
//!   `gcp-pubsub:projects/P/subscriptions/S`, `aws-sqs:https://sqs.…/queue`,
//!   `doppler-webhook`;
//! - `secretsync.io/events-secret: <namespace>/<name>/<key>` names a secret the source
//!   needs (a webhook's signing secret).
//!
//! An [`EventSource`] (built by an [`EventSourceFactory`] registered for its scheme) yields
//! [`Delivery`]s. Each names remote keys ([`ChangeEvent`]) and carries an [`AckToken`] that is
//! acknowledged only after the sync handling it finished, so a crash means redelivery, not a
//! lost change. [`Pending`] coalesces duplicates and bursts: 100 events for one key within
//! the debounce window cause one sync.
//!
//! [`Intake`] is what the `sync` daemon and the operator share around that: the receive
//! loop of a pulled source ([`receive_loop`]), `POST /refresh` and Doppler webhooks as plain
//! functions from headers and body to an [`Answer`], burst collection ([`collect_burst`]),
//! and the counters behind `/metrics`. No HTTP server here: each program mounts the routes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::credentials::CredentialResolver;
use crate::error::{Error, Result};
use crate::manifest::{ExternalSecret, Manifests, SpecId, Store, StoreId};

mod intake;
pub use intake::{Answer, DOPPLER_WEBHOOK, Incoming, Intake, SourceSample, collect_burst, receive_loop};

/// The annotation naming a store's event source.
pub const EVENTS_ANNOTATION: &str = "secretsync.io/events";
/// The annotation naming the secret an event source needs (`<namespace>/<name>/<key>`).
pub const EVENTS_SECRET_ANNOTATION: &str = "secretsync.io/events-secret";

/// One change a provider announced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeEvent {
    /// Names of the changed secret as specs may write it in `remoteRef.key` (for AWS: the
    /// name and the ARN). Empty: anything in the store may have changed.
    pub keys: Vec<String>,
    /// The provider's event type (`SECRET_VERSION_ADD`, `PutSecretValue`, …), for logs.
    pub kind: String,
    /// When the provider published it, if known (for the lag metric).
    pub published: Option<SystemTime>,
}

impl ChangeEvent {
    /// An event about one key.
    pub fn key(key: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            keys: vec![key.into()],
            kind: kind.into(),
            published: None,
        }
    }
}

/// What acknowledges a delivery (a Pub/Sub ack id, an SQS receipt handle). Opaque.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AckToken(pub String);

impl fmt::Debug for AckToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Receipt handles are long and not secret, but they say nothing to a reader.
        write!(f, "AckToken(…{} chars)", self.0.len())
    }
}

/// One message from an event source: what it says changed, and how to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The changes; empty when the message was not about a secret (it is acknowledged and
    /// ignored).
    pub events: Vec<ChangeEvent>,
    /// Acknowledges it; `None` for sources without acknowledgement (webhooks).
    pub ack: Option<AckToken>,
}

/// A source of change events for one store.
#[async_trait]
pub trait EventSource: Send + Sync + fmt::Debug {
    /// Its scheme, for logs and metrics (`gcp-pubsub`, `aws-sqs`).
    fn scheme(&self) -> &'static str;
    /// Waits for messages: a long poll bounded by the source (about 20 s); an empty list is
    /// a quiet poll. Errors say what is wrong (subscription missing, permission denied,
    /// unreachable) and never quote a message body.
    async fn receive(&self) -> Result<Vec<Delivery>>;
    /// Acknowledges handled messages so they are not delivered again.
    async fn ack(&self, tokens: &[AckToken]) -> Result<()>;
}

/// A store's `secretsync.io/events` annotation, parsed: `<scheme>[:<address>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAddress {
    /// `gcp-pubsub`, `aws-sqs`, `doppler-webhook`, …
    pub scheme: String,
    /// What follows the first `:` (a subscription, a queue URL), empty when none.
    pub address: String,
    /// `secretsync.io/events-secret`, when given.
    pub secret: Option<crate::manifest::SecretKeySelector>,
}

impl EventAddress {
    /// The store's event address, if it has one; errors name the store's document and the
    /// annotation.
    pub fn of(store: &Store) -> Option<Result<Self>> {
        let value = store.metadata.annotations.get(EVENTS_ANNOTATION)?;
        let at = || store.origin.field(format!("metadata.annotations.{EVENTS_ANNOTATION}"));
        let value = value.trim();
        let (scheme, address) = value.split_once(':').unwrap_or((value, ""));
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Some(Err(Error::manifest(
                at(),
                "expected `<scheme>:<address>`, e.g. `gcp-pubsub:projects/P/subscriptions/S`".to_string(),
            )));
        }
        let secret = match store.metadata.annotations.get(EVENTS_SECRET_ANNOTATION) {
            None => None,
            Some(s) => {
                let parts: Vec<&str> = s.trim().splitn(3, '/').collect();
                match parts.as_slice() {
                    [ns, name, key] if !ns.is_empty() && !name.is_empty() && !key.is_empty() => {
                        Some(crate::manifest::SecretKeySelector {
                            name: name.to_string(),
                            key: key.to_string(),
                            namespace: Some(ns.to_string()),
                        })
                    }
                    _ => {
                        return Some(Err(Error::manifest(
                            store
                                .origin
                                .field(format!("metadata.annotations.{EVENTS_SECRET_ANNOTATION}")),
                            "expected `<namespace>/<name>/<key>`".to_string(),
                        )));
                    }
                }
            }
        };
        Some(Ok(Self {
            scheme: scheme.to_string(),
            address: address.trim().to_string(),
            secret,
        }))
    }
}

/// Builds event sources of one scheme.
#[async_trait]
pub trait EventSourceFactory: Send + Sync {
    /// The scheme it handles (`gcp-pubsub`).
    fn scheme(&self) -> &'static str;
    /// Every problem of the address that can be known offline (names the store's
    /// document and the annotation).
    fn validate(&self, store: &Store, address: &EventAddress) -> Vec<Error>;
    /// Builds the source. No network call is required here.
    async fn build(
        &self,
        store: &Store,
        address: &EventAddress,
        credentials: Arc<dyn CredentialResolver>,
    ) -> Result<Arc<dyn EventSource>>;
}

/// Whether `es` reads `key` of its store (by `data`, `dataFrom.extract` or a `dataFrom.find`
/// that would match it). The lookup rotation and events share.
pub fn reads_key(es: &ExternalSecret, key: &str) -> bool {
    es.spec.data.iter().any(|d| d.remote_ref.key == key)
        || es.spec.data_from.iter().any(|df| {
            df.extract.as_ref().is_some_and(|x| x.key == key)
                || df.find.as_ref().is_some_and(|f| {
                    f.path.as_ref().is_none_or(|p| key.starts_with(p.as_str()))
                        && f.name
                            .as_ref()
                            .is_none_or(|n| regex::Regex::new(&n.regexp).is_ok_and(|re| re.is_match(key)))
                        && f.tags.is_empty()
                })
        })
}

/// The ExternalSecrets of `store` that read any of `keys`; every spec of the store when
/// `keys` is `None` (an event that does not say which key).
pub fn readers_of(manifests: &Manifests, store: &StoreId, keys: Option<&BTreeSet<String>>) -> BTreeSet<SpecId> {
    manifests
        .external_secrets
        .iter()
        .filter(|es| es.store_id().as_ref() == Some(store))
        .filter(|es| keys.is_none_or(|keys| keys.iter().any(|k| reads_key(es, k))))
        .map(|es| es.id())
        .collect()
}

/// Events received and not yet handled, coalesced per store: duplicates and bursts of one
/// key become one entry; the ack tokens wait for the sync.
#[derive(Debug, Default)]
pub struct Pending {
    stores: BTreeMap<StoreId, PendingStore>,
}

#[derive(Debug, Default)]
struct PendingStore {
    /// `None`: the whole store (an event without a key).
    keys: Option<BTreeSet<String>>,
    acks: Vec<AckToken>,
    events: u64,
    oldest: Option<SystemTime>,
}

/// What one store's pending events call for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChanges {
    /// The store.
    pub store: StoreId,
    /// Keys that changed; `None`: any key of the store.
    pub keys: Option<BTreeSet<String>>,
    /// Acknowledge these after the sync finished.
    pub acks: Vec<AckToken>,
    /// Events coalesced into this entry.
    pub events: u64,
    /// The earliest publish time among them, for the lag metric.
    pub oldest: Option<SystemTime>,
}

impl Pending {
    /// Adds a delivery for `store`.
    pub fn add(&mut self, store: &StoreId, delivery: Delivery) {
        let p = self.stores.entry(store.clone()).or_insert_with(|| PendingStore {
            keys: Some(BTreeSet::new()),
            ..Default::default()
        });
        for e in delivery.events {
            p.events += 1;
            if let Some(t) = e.published {
                p.oldest = Some(p.oldest.map_or(t, |o| o.min(t)));
            }
            if e.keys.is_empty() {
                p.keys = None;
            } else if let Some(keys) = &mut p.keys {
                keys.extend(e.keys);
            }
        }
        if let Some(a) = delivery.ack {
            p.acks.push(a);
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// Takes everything pending.
    pub fn take(&mut self) -> Vec<StoreChanges> {
        std::mem::take(&mut self.stores)
            .into_iter()
            .map(|(store, p)| StoreChanges {
                store,
                keys: p.keys,
                acks: p.acks,
                events: p.events,
                oldest: p.oldest,
            })
            .collect()
    }
}

/// Counters of one event source, for logs, status and `/metrics`
/// (`secretsync_events_total{source,outcome}`, `secretsync_events_lag_seconds`).
#[derive(Debug, Default)]
pub struct EventStats {
    /// Events that led to a sync.
    pub synced: AtomicU64,
    /// Events for keys nobody reads (acknowledged, nothing else).
    pub ignored: AtomicU64,
    /// Failed receives (source down, permission denied).
    pub errors: AtomicU64,
    /// Refused requests (bad or missing signature or token).
    pub refused: AtomicU64,
    /// Lag of the latest handled event, publish to sync done, in milliseconds.
    pub lag_ms: AtomicU64,
    /// Why events are not flowing, while they are not (empty when healthy).
    pub problem: std::sync::Mutex<String>,
}

impl EventStats {
    /// Adds to a counter.
    pub fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records a receive failure; returns whether the problem is new (log it once).
    pub fn failed(&self, problem: &str) -> bool {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut p = self.problem.lock().expect("lock");
        if *p == problem {
            return false;
        }
        *p = problem.to_string();
        true
    }

    /// Records a successful receive; returns whether the source just recovered.
    pub fn healthy(&self) -> bool {
        let mut p = self.problem.lock().expect("lock");
        let was = !p.is_empty();
        p.clear();
        was
    }

    /// Why events are not flowing, if they are not.
    pub fn problem(&self) -> Option<String> {
        let p = self.problem.lock().expect("lock");
        (!p.is_empty()).then(|| p.clone())
    }

    /// Records the lag of an event published at `published`, handled now.
    pub fn handled(&self, published: Option<SystemTime>) {
        if let Some(t) = published
            && let Ok(d) = SystemTime::now().duration_since(t)
        {
            self.lag_ms.store(d.as_millis() as u64, Ordering::Relaxed);
        }
    }
}

/// How long a source waits after a failed receive before the next (the shared backoff,
/// capped at a minute so a recovered source resumes soon).
pub fn retry_delay(attempt: u32) -> Duration {
    crate::backoff::Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(60),
        ..Default::default()
    }
    .delay(attempt)
}

/// Why an HTTP event was refused (401 for every authentication failure, so a prober learns
/// nothing; the message is for our own log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No signature or token.
    Missing,
    /// A signature or token that does not match.
    Invalid,
    /// A signature seen before within the replay window, or a payload too old.
    Stale,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Missing => "missing signature or token",
            Refusal::Invalid => "signature or token does not match",
            Refusal::Stale => "replayed or stale request",
        })
    }
}

/// Checks `Authorization: Bearer <token>` against the expected token, in constant time.
pub fn check_bearer(expected: &[u8], header: Option<&str>) -> std::result::Result<(), Refusal> {
    let given = header
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or(Refusal::Missing)?;
    if expected.is_empty() {
        return Err(Refusal::Invalid);
    }
    // HMAC both sides with a per-call key: equal-length digests compared by `verify_slice`
    // (constant time), whatever the token lengths.
    use hmac::{Hmac, Mac};
    let key: [u8; 32] = rand::random();
    let mut a = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    a.update(expected);
    let mut b = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    b.update(given.as_bytes());
    a.verify_slice(&b.finalize().into_bytes()).map_err(|_| Refusal::Invalid)
}

/// Verifies Doppler's `X-Doppler-Signature: sha256=<hex HMAC-SHA256(signing secret, body)>`.
pub fn verify_doppler_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> std::result::Result<(), Refusal> {
    use hmac::{Hmac, Mac};
    let hex_sig = header
        .map(str::trim)
        .and_then(|h| h.strip_prefix("sha256="))
        .ok_or(Refusal::Missing)?;
    let sig = hex::decode(hex_sig).map_err(|_| Refusal::Invalid)?;
    if secret.is_empty() {
        return Err(Refusal::Invalid);
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| Refusal::Invalid)
}

/// The change a Doppler webhook announces: the secret names of its `diff`
/// (`added`/`updated`/`removed`) when the payload carries one, else the whole config
/// (`keys` empty). Errors when the body is not a Doppler secrets-update payload.
pub fn doppler_event(body: &[u8]) -> std::result::Result<ChangeEvent, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON (line {}, column {})", e.line(), e.column()))?;
    let kind = v
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or("no `type` field (expected a Doppler webhook payload)")?;
    if !kind.ends_with("secrets.update") {
        return Err(format!("event type `{kind}` is not a secrets update"));
    }
    let mut keys = vec![];
    if let Some(diff) = v.get("diff").and_then(|d| d.as_object()) {
        for part in ["added", "updated", "removed"] {
            for item in diff.get(part).and_then(|x| x.as_array()).into_iter().flatten() {
                let name = item.as_str().or_else(|| item.get("name").and_then(|n| n.as_str()));
                if let Some(n) = name {
                    keys.push(n.to_string());
                }
            }
        }
        // A diff that names nothing says nothing: sync the whole config.
    }
    Ok(ChangeEvent {
        keys,
        kind: kind.to_string(),
        published: None,
    })
}

/// Remembers the signatures of recent webhook deliveries so a captured request replayed
/// within `window` is refused (Doppler's payload carries no timestamp to judge staleness by).
#[derive(Debug)]
pub struct ReplayGuard {
    window: Duration,
    seen: std::sync::Mutex<std::collections::VecDeque<(std::time::Instant, [u8; 32])>>,
}

impl ReplayGuard {
    /// A guard remembering deliveries for `window` (bounded to the latest 10,000).
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            seen: Default::default(),
        }
    }

    /// Records `signature`; refuses it when it was seen within the window.
    pub fn check(&self, signature: &str) -> std::result::Result<(), Refusal> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(signature.trim().as_bytes()).into();
        let now = std::time::Instant::now();
        let mut seen = self.seen.lock().expect("lock");
        while seen.front().is_some_and(|(t, _)| now.duration_since(*t) > self.window) || seen.len() > 10_000 {
            seen.pop_front();
        }
        if seen.iter().any(|(_, d)| *d == digest) {
            return Err(Refusal::Stale);
        }
        seen.push_back((now, digest));
        Ok(())
    }
}

/// An event source that is not flowing (listed in a cycle report's `events_down`).
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct EventsDown {
    /// The store.
    pub store: String,
    /// Its scheme (`gcp-pubsub`).
    pub source: String,
    /// What is wrong (never a message body).
    pub problem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid() -> StoreId {
        StoreId {
            kind: crate::manifest::StoreKind::SecretStore,
            namespace: Some("ns".into()),
            name: "s".into(),
        }
    }

    #[test]
    fn doppler_signatures_are_checked_and_replays_refused() {
        use hmac::{Hmac, Mac};
        let body = br#"{"type":"config.secrets.update","config":{"name":"prd"},"diff":{"added":[],"updated":["DB_PASSWORD"],"removed":[]}}"#;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(verify_doppler_signature(b"whsec", body, Some(&good)), Ok(()));
        assert_eq!(
            verify_doppler_signature(b"other", body, Some(&good)),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            verify_doppler_signature(b"whsec", b"{}", Some(&good)),
            Err(Refusal::Invalid)
        );
        assert_eq!(verify_doppler_signature(b"whsec", body, None), Err(Refusal::Missing));
        assert_eq!(
            verify_doppler_signature(b"whsec", body, Some("sha256=zz")),
            Err(Refusal::Invalid)
        );
        let e = doppler_event(body).unwrap();
        assert_eq!(e.keys, vec!["DB_PASSWORD".to_string()]);
        let whole = doppler_event(br#"{"type":"config.secrets.update","config":{"name":"prd"}}"#).unwrap();
        assert!(whole.keys.is_empty(), "no diff: the whole config");
        assert!(doppler_event(br#"{"type":"project.deleted"}"#).is_err());
        let guard = ReplayGuard::new(Duration::from_secs(600));
        assert_eq!(guard.check(&good), Ok(()));
        assert_eq!(guard.check(&good), Err(Refusal::Stale));
    }

    #[test]
    fn bearer_tokens_compare_exactly() {
        assert_eq!(check_bearer(b"t0k", Some("Bearer t0k")), Ok(()));
        assert_eq!(check_bearer(b"t0k", Some("Bearer t0")), Err(Refusal::Invalid));
        assert_eq!(check_bearer(b"t0k", Some("t0k")), Err(Refusal::Missing));
        assert_eq!(check_bearer(b"t0k", None), Err(Refusal::Missing));
        assert_eq!(check_bearer(b"", Some("Bearer ")), Err(Refusal::Invalid));
    }

    #[test]
    fn bursts_and_duplicates_coalesce_and_keep_every_ack() {
        let store = sid();
        let mut p = Pending::default();
        for i in 0..100 {
            p.add(
                &store,
                Delivery {
                    events: vec![ChangeEvent::key("db", "SECRET_VERSION_ADD")],
                    ack: Some(AckToken(format!("a{i}"))),
                },
            );
        }
        let out = p.take();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].keys, Some(BTreeSet::from(["db".to_string()])));
        assert_eq!(out[0].acks.len(), 100);
        assert_eq!(out[0].events, 100);
        assert!(p.is_empty());
    }

    #[test]
    fn an_event_without_a_key_widens_to_the_whole_store() {
        let store = sid();
        let mut p = Pending::default();
        p.add(
            &store,
            Delivery {
                events: vec![ChangeEvent::key("db", "x")],
                ack: None,
            },
        );
        p.add(
            &store,
            Delivery {
                events: vec![ChangeEvent::default()],
                ack: None,
            },
        );
        p.add(
            &store,
            Delivery {
                events: vec![ChangeEvent::key("api", "x")],
                ack: None,
            },
        );
        assert_eq!(p.take()[0].keys, None);
    }

    #[test]
    fn a_message_about_nothing_is_still_acknowledged() {
        let store = sid();
        let mut p = Pending::default();
        p.add(
            &store,
            Delivery {
                events: vec![],
                ack: Some(AckToken("t".into())),
            },
        );
        let out = p.take();
        assert_eq!(out[0].keys, Some(BTreeSet::new()));
        assert_eq!(out[0].acks, vec![AckToken("t".into())]);
    }
}
