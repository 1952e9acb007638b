//! Change events in the operator: for every SecretStore / ClusterSecretStore annotated
//! `secretsync.io/events`, the leader runs its event source (a receive task for pulled
//! sources built through the Registry, as the `sync` daemon does; a watch of the signing
//! Secret for Doppler webhooks), and the ExternalSecrets reading a changed key sync on the
//! fast lane reading only that key. Deliveries are acknowledged after the sync finished.
//!
//! What is shared with the daemon lives in core ([`Intake`], [`receive_loop`],
//! [`collect_burst`]): the HTTP routes (`http`) and the receive tasks feed one channel, the
//! dispatcher here drains it.
//!
//! A source that is not flowing is shown on its store: a status condition of type
//! `EventsReady` (`True`/`False`, reason `EventsFlowing`/`EventSourceDown`, the problem as
//! message), written only when it changes (an unchanged condition costs no write, a
//! new leadership term costs a read per store), and in `/metrics`
//! (`secretsync_events_total{source,store,outcome}`, `_lag_seconds`, `_up`). The store
//! keeps polling at its refreshInterval either way.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use secretsync_core::SecretValue;
use secretsync_core::events::{EventSource, EventStats, Incoming, Intake};
use secretsync_core::manifest::{SecretKeySelector, StoreId};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// The status condition type on a store with an event source.
pub const EVENTS_CONDITION: &str = "EventsReady";

/// A pulled source that has not failed this long after it started counts as flowing (a
/// long poll that finds nothing takes ~20 s to return).
pub(crate) const GRACE: Duration = Duration::from_secs(3);

/// A source that could not be built (credentials not there yet, say) is tried again this
/// often; the same problem again writes no status and logs nothing new.
pub(crate) const RETRY: Duration = Duration::from_secs(30);

/// The operator's event state, in [`Shared`].
pub(crate) struct Events {
    pub(crate) intake: Arc<Intake>,
    pub(crate) rx: Mutex<Option<mpsc::Receiver<Incoming>>>,
    /// Pulled sources by store, for acknowledgements.
    pub(crate) sources: Mutex<BTreeMap<StoreId, Arc<dyn EventSource>>>,
    /// Stores changed: reconsider the sources.
    pub(crate) wake: Notify,
}

impl Events {
    pub(crate) fn new(refresh_token: Option<SecretValue>) -> Self {
        let (intake, rx) = Intake::new(refresh_token);
        Self {
            intake,
            rx: Mutex::new(Some(rx)),
            sources: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        }
    }
}

/// [`annotations_key`] of a store without events annotations.
pub(crate) const NO_ANNOTATIONS: &str = "\u{0}";

/// The events annotations of a store object, to notice changes that leave its spec alone.
pub(crate) fn annotations_key(obj: &DynamicObject) -> String {
    let a = obj.metadata.annotations.as_ref();
    let get = |k: &str| a.and_then(|a| a.get(k)).cloned().unwrap_or_default();
    format!(
        "{}\u{0}{}",
        get(secretsync_core::events::EVENTS_ANNOTATION),
        get(secretsync_core::events::EVENTS_SECRET_ANNOTATION)
    )
}

/// One running event source.
pub(crate) struct Running {
    /// Spec and annotations it was started from.
    pub(crate) fingerprint: String,
    pub(crate) scheme: String,
    pub(crate) stats: Arc<EventStats>,
    pub(crate) task: Option<JoinHandle<()>>,
    pub(crate) started: Instant,
}

/// The running sources; aborted when dropped (leadership lost, controller stopped).
#[derive(Default)]
pub(crate) struct Runner {
    pub(crate) running: BTreeMap<StoreId, Running>,
}

impl Drop for Runner {
    fn drop(&mut self) {
        for r in self.running.values() {
            if let Some(t) = &r.task {
                t.abort();
            }
        }
    }
}

impl Runner {
    pub(crate) fn stop(&mut self, id: &StoreId) {
        if let Some(r) = self.running.remove(id)
            && let Some(t) = r.task
        {
            t.abort();
        }
    }
}

/// What a condition on a store says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) ok: bool,
    pub(crate) message: String,
}

/// Keeps a Doppler webhook store's signing secret current: read when the watch starts and
/// whenever the Secret changes, never per request.
pub(crate) async fn watch_signing_secret(
    client: kube::Client,
    intake: Arc<Intake>,
    store: StoreId,
    sel: SecretKeySelector,
    stats: Arc<EventStats>,
) {
    let ns = sel
        .namespace
        .clone()
        .or_else(|| store.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let api: Api<Secret> = Api::namespaced(client, &ns);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", sel.name));
    let stream = watcher::watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let missing = format!(
        "{store}: the webhook signing secret {ns}/{} has no key `{}` (or does not exist)",
        sel.name, sel.key
    );
    let mut seen = false;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => seen = false,
            Ok(Event::Apply(s) | Event::InitApply(s)) => {
                seen = true;
                let value = s.data.as_ref().and_then(|d| d.get(&sel.key)).map(|b| b.0.clone());
                let value = value.or_else(|| {
                    s.string_data
                        .as_ref()
                        .and_then(|d| d.get(&sel.key))
                        .map(|v| v.as_bytes().to_vec())
                });
                match value.filter(|v| !v.is_empty()) {
                    Some(v) => {
                        intake.set_webhook_secret(&store, Some(SecretValue::new(v)));
                        if stats.healthy() {
                            tracing::info!(store = %store, "webhook signing secret read");
                        }
                    }
                    None => {
                        intake.set_webhook_secret(&store, None);
                        if stats.failed(&missing) {
                            tracing::warn!(store = %store, problem = %missing, "Doppler webhooks refused");
                        }
                    }
                }
            }
            Ok(Event::InitDone) => {
                if !seen {
                    intake.set_webhook_secret(&store, None);
                    if stats.failed(&missing) {
                        tracing::warn!(store = %store, problem = %missing, "Doppler webhooks refused");
                    }
                }
            }
            Ok(Event::Delete(_)) => {
                intake.set_webhook_secret(&store, None);
                if stats.failed(&missing) {
                    tracing::warn!(store = %store, problem = %missing, "Doppler webhooks refused");
                }
            }
            Err(e) => {
                let problem = format!(
                    "{store}: reading the webhook signing secret {ns}/{}: {}",
                    sel.name,
                    secretsync_core::error::redact_quoted(&e.to_string())
                );
                if stats.failed(&problem) {
                    tracing::warn!(store = %store, problem = %problem, "webhook signing secret not readable");
                }
            }
        }
    }
}

/// `source`, `store`, `outcome` of an event counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    source: String,
    store: String,
    outcome: String,
}

/// `source`, `store` of an event gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
    store: String,
}

/// The intake's counters on the operator's `/metrics` (the same series as the daemon's).
#[derive(Debug)]
pub(crate) struct EventsCollector(pub(crate) Arc<std::sync::OnceLock<Arc<Intake>>>);

impl Collector for EventsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(intake) = self.0.get() else {
            return Ok(());
        };
        let (rows, refresh_refused) = intake.samples();
        {
            let mut family = encoder.encode_descriptor(
                "events",
                "Change events by outcome",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            let mut one = |source: &str, store: &str, outcome: &str, n: u64| -> Result<(), std::fmt::Error> {
                let labels = OutcomeLabels {
                    source: source.to_string(),
                    store: store.to_string(),
                    outcome: outcome.to_string(),
                };
                ConstCounter::new(n).encode(family.encode_family(&labels)?)
            };
            for r in &rows {
                one(&r.source, &r.store, "synced", r.synced)?;
                one(&r.source, &r.store, "ignored", r.ignored)?;
                one(&r.source, &r.store, "error", r.errors)?;
                one(&r.source, &r.store, "refused", r.refused)?;
            }
            one("refresh", "", "refused", refresh_refused)?;
        }
        if rows.is_empty() {
            return Ok(());
        }
        {
            let mut family = encoder.encode_descriptor(
                "events_lag_seconds",
                "Publish-to-synced lag of the latest handled event",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for r in &rows {
                let labels = SourceLabels {
                    source: r.source.clone(),
                    store: r.store.clone(),
                };
                ConstGauge::new(r.lag_seconds).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "events_up",
            "Whether a store's event source is flowing",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for r in &rows {
            let labels = SourceLabels {
                source: r.source.clone(),
                store: r.store.clone(),
            };
            ConstGauge::new(i64::from(r.up)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
