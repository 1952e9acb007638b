//! Prometheus metrics of the controller, and a source wrapper that counts calls.
//!
//! Names follow ESO's where ESO has one (`externalsecret_sync_calls_total`,
//! `externalsecret_sync_calls_error`), under the `secretsync_` prefix. Labels name
//! resources, stores, providers and operations; never values.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use secretsync_core::layers::{CallObserver, MeteredSource};
use secretsync_core::manifest::{SpecId, StoreId};
use secretsync_core::{CallStats, SecretSource};
use std::sync::atomic::AtomicU64;

/// `namespace`, `name` of an ExternalSecret.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl From<&SpecId> for ResourceLabels {
    fn from(id: &SpecId) -> Self {
        Self {
            namespace: id.namespace.clone(),
            name: id.name.clone(),
        }
    }
}

/// One kind of provider call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// Provider (`aws`, `gcpsm`, `doppler`, `fake`, …).
    pub provider: String,
    /// The store, as `ClusterSecretStore name` or `SecretStore ns/name`.
    pub store: String,
    /// The call (`get_many`, `BatchGetSecretValue`, …).
    pub call: String,
    /// `ok`, `error`, or the provider's own status.
    pub status: String,
}

/// A sink write.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `Secret` or `ConfigMap`.
    pub kind: String,
    /// `apply` or `delete`.
    pub operation: String,
    /// `ok` or `error`.
    pub status: String,
}

/// Which lane ran a batch.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    /// `fast` (new, changed, forced, repaired) or `periodic`.
    pub lane: String,
}

/// A status, event or ExternalSecret write.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiWriteLabels {
    /// `status` (of an ExternalSecret or ClusterExternalSecret), `event`, or
    /// `externalsecret` (an ExternalSecret of a ClusterExternalSecret applied or deleted).
    pub what: String,
    /// `ok` or `error`.
    pub status: String,
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    /// Reconciles per ExternalSecret.
    pub sync_calls: Family<ResourceLabels, Counter>,
    /// Failed reconciles per ExternalSecret.
    pub sync_errors: Family<ResourceLabels, Counter>,
    /// Unix time of the last successful sync per ExternalSecret.
    pub last_success: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    /// Calls into sources (`get`, `get_many`, `change_tokens`, `find`, `metadata`).
    pub source_calls: Family<CallLabels, Counter>,
    /// Provider API requests as each provider counts them ([`CallStats`]).
    pub provider_calls: Family<CallLabels, Counter>,
    /// Target writes.
    pub sink_writes: Family<WriteLabels, Counter>,
    /// Status, event and ClusterExternalSecrets' ExternalSecret writes.
    pub api_writes: Family<ApiWriteLabels, Counter>,
    /// Engine runs per lane.
    pub batches: Family<LaneLabels, Counter>,
    /// Duration of one batch (fetch, render, diff, apply, status).
    pub reconcile_duration: Family<LaneLabels, Histogram>,
    /// ExternalSecrets per batch.
    pub batch_size: Family<LaneLabels, Histogram>,
    /// Batches running now per lane.
    pub in_flight: Family<LaneLabels, Gauge>,
    /// 1 while this replica leads (its shard), else 0.
    pub leader: Gauge,
    /// ExternalSecrets this replica manages (its shard).
    pub resources: Gauge,
    seen_stats: Mutex<HashMap<(String, String, String), u64>>,
    events: Arc<std::sync::OnceLock<Arc<secretsync_core::events::Intake>>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("secretsync");
        let sync_calls = Family::<ResourceLabels, Counter>::default();
        let sync_errors = Family::<ResourceLabels, Counter>::default();
        let last_success = Family::<ResourceLabels, Gauge<f64, AtomicU64>>::default();
        let source_calls = Family::<CallLabels, Counter>::default();
        let provider_calls = Family::<CallLabels, Counter>::default();
        let sink_writes = Family::<WriteLabels, Counter>::default();
        let api_writes = Family::<ApiWriteLabels, Counter>::default();
        let batches = Family::<LaneLabels, Counter>::default();
        let reconcile_duration =
            Family::<LaneLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        let batch_size = Family::<LaneLabels, Histogram>::new_with_constructor(size_histogram as fn() -> Histogram);
        let in_flight = Family::<LaneLabels, Gauge>::default();
        let leader = Gauge::default();
        let resources = Gauge::default();
        registry.register(
            "externalsecret_sync_calls",
            "Reconciles of an ExternalSecret",
            sync_calls.clone(),
        );
        registry.register(
            "externalsecret_sync_calls_error",
            "Failed reconciles of an ExternalSecret",
            sync_errors.clone(),
        );
        registry.register(
            "externalsecret_last_success_timestamp_seconds",
            "Unix time of the last successful sync of an ExternalSecret",
            last_success.clone(),
        );
        registry.register(
            "source_calls",
            "Calls from the engine into a store's source, by operation and outcome",
            source_calls.clone(),
        );
        registry.register(
            "provider_api_calls",
            "Provider API requests, by provider, store, call and status, as the provider counts them",
            provider_calls.clone(),
        );
        registry.register(
            "sink_writes",
            "Writes of target Secrets and ConfigMaps",
            sink_writes.clone(),
        );
        registry.register(
            "api_writes",
            "Writes of status, of Events and of ClusterExternalSecrets' ExternalSecrets",
            api_writes.clone(),
        );
        registry.register("reconcile_batches", "Engine runs, by lane", batches.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one batch (fetch, render, diff, apply, status), by lane",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_batch_size",
            "ExternalSecrets per batch, by lane",
            batch_size.clone(),
        );
        registry.register("reconcile_in_flight", "Batches running now, by lane", in_flight.clone());
        registry.register("leader", "1 while this replica leads its shard", leader.clone());
        registry.register(
            "managed_externalsecrets",
            "ExternalSecrets in this replica's shard",
            resources.clone(),
        );
        let events = Arc::new(std::sync::OnceLock::new());
        registry.register_collector(Box::new(crate::events::EventsCollector(events.clone())));
        Self {
            events,
            registry,
            sync_calls,
            sync_errors,
            last_success,
            source_calls,
            provider_calls,
            sink_writes,
            api_writes,
            batches,
            reconcile_duration,
            batch_size,
            in_flight,
            leader,
            resources,
            seen_stats: Mutex::new(HashMap::new()),
        }
    }

    /// Shows the change-event counters of `intake` (`secretsync_events_total{source,store,outcome}`,
    /// `secretsync_events_lag_seconds`, `secretsync_events_up`); the first call wins.
    pub fn set_events(&self, intake: Arc<secretsync_core::events::Intake>) {
        let _ = self.events.set(intake);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }

    /// Forgets an ExternalSecret's series (it was deleted or left the shard).
    pub(crate) fn forget(&self, id: &SpecId) {
        let l = ResourceLabels::from(id);
        self.sync_calls.remove(&l);
        self.sync_errors.remove(&l);
        self.last_success.remove(&l);
    }

    /// Adds what a provider counted since the last call (its [`CallStats`]).
    /// `generation` distinguishes rebuilt sources of the same store.
    pub(crate) fn absorb_call_stats(&self, store: &StoreId, generation: u64, provider: &str, stats: &CallStats) {
        let mut seen = self.seen_stats.lock().expect("lock");
        for ((call, status), n) in stats.snapshot() {
            let key = (format!("{store}#{generation}"), call.clone(), status.clone());
            let before = seen.insert(key, n).unwrap_or(0);
            if n > before {
                self.provider_calls
                    .get_or_create(&CallLabels {
                        provider: provider.to_string(),
                        store: store.to_string(),
                        call,
                        status,
                    })
                    .inc_by(n - before);
            }
        }
    }
}

/// Counts a store's source calls by operation and outcome: the observer of core's
/// [`MeteredSource`] layer, which the controller puts around every store's source.
struct StoreCalls {
    store: String,
    metrics: Arc<Metrics>,
}

impl CallObserver for StoreCalls {
    fn observe(&self, provider: &str, operation: &'static str, ok: bool, _elapsed: std::time::Duration) {
        self.metrics
            .source_calls
            .get_or_create(&CallLabels {
                provider: provider.to_string(),
                store: self.store.clone(),
                call: operation.to_string(),
                status: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }
}

/// `inner` metered into `metrics` under `store`.
pub(crate) fn metered(
    inner: Arc<dyn SecretSource>,
    store: &StoreId,
    metrics: Arc<Metrics>,
) -> MeteredSource<Arc<dyn SecretSource>> {
    MeteredSource::new(
        inner,
        Arc::new(StoreCalls {
            store: store.to_string(),
            metrics,
        }),
    )
}

/// Seconds since the Unix epoch, for last-success gauges.
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Times a batch and keeps the in-flight gauge, whatever way the batch ends.
pub(crate) struct BatchTimer<'a> {
    metrics: &'a Metrics,
    lane: LaneLabels,
    start: Instant,
}

impl<'a> BatchTimer<'a> {
    pub(crate) fn start(metrics: &'a Metrics, lane: &str, size: usize) -> Self {
        let lane = LaneLabels { lane: lane.to_string() };
        metrics.in_flight.get_or_create(&lane).inc();
        metrics.batches.get_or_create(&lane).inc();
        metrics.batch_size.get_or_create(&lane).observe(size as f64);
        Self {
            metrics,
            lane,
            start: Instant::now(),
        }
    }
}

impl Drop for BatchTimer<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.get_or_create(&self.lane).dec();
        self.metrics
            .reconcile_duration
            .get_or_create(&self.lane)
            .observe(self.start.elapsed().as_secs_f64());
    }
}
