#![doc = include_str!("../README.md")]
//!
//! ## How it works
//!
//! [`Controller`] watches `ExternalSecret`, `SecretStore`, `ClusterSecretStore` and
//! `ClusterExternalSecret` objects of a configurable API group (ESO's own,
//! `external-secrets.io`, by default), keeps their targets in sync through one shared
//! [`Engine`], creates the ExternalSecrets of ClusterExternalSecrets, and writes status and
//! Events as ESO does.
//!
//! How it stays fast at thousands of resources:
//!
//! - **One fetch per distinct remote key per cycle.** Every ExternalSecret that is due goes
//!   into one [`Engine::run`] call (`CycleOptions::only`), which dedupes remote references
//!   by (store, key, version) and skips unchanged values through change tokens.
//! - **Spread refreshes.** The core [`Scheduler`](secretsync_core::engine::Scheduler) gives
//!   each resource its `refreshInterval` plus jitter, backoff with jitter after errors,
//!   and honours provider retry-after.
//! - **A fast lane.** New and changed ExternalSecrets, a changed `force-sync` annotation,
//!   and targets edited or deleted by someone else run in small batches on their own lane,
//!   concurrently with the periodic lane, so they never wait behind a long refresh.
//!
//! High availability: replicas elect one leader per shard through a
//! `coordination.k8s.io/v1` Lease ([`LeaseConfig`]); only the leader writes (targets,
//! status, Events, restarts), the others keep their caches warm and take over when the
//! leader stops renewing. Resources can be sharded across replicas by a stable hash of
//! `namespace/name` ([`ControllerConfig::shards`]), each shard with its own Lease.
//!
//! ClusterExternalSecrets are handled as ESO does: Namespaces are watched too, and in every
//! namespace a ClusterExternalSecret selects (`namespaces`, `namespaceSelectors`, the
//! deprecated `namespaceSelector`) the leader applies an ExternalSecret owned by it, deletes
//! the ones in namespaces it no longer selects (and all of them when it is deleted), and
//! writes ESO's status (`externalSecretName`, `provisionedNamespaces`, `failedNamespaces`,
//! `Ready`). A ClusterExternalSecret is sharded by a hash of its name (`shard_of("", name)`);
//! its ExternalSecrets then go through the ExternalSecret path like any other. See the
//! `cluster` module for the details.
//!
//! ExternalSecrets' `templateFrom` ConfigMaps and Secrets and `generatorRef` generators
//! (`generators.external-secrets.io/v1alpha1` `Password`, `UUID`) are read from the cluster
//! through one narrow watch per referenced object (`refs` module): an unchanged round reads
//! nothing, a change re-renders at once, a missing object is named in `Ready=False` until it
//! appears. `secretsync.io/generate: if-absent` keeps a generated key's value by reading the
//! target from the watch cache. PushSecrets (`external-secrets.io/v1alpha1`) are pushed
//! through core's push code with ESO's status and `deletionPolicy: Delete` finalizer (`push`
//! module); ClusterPushSecrets make one PushSecret per selected namespace (`cpush` module).

mod cluster;
mod cpush;
mod cpush_lane;
mod events;
mod events_lane;
mod guard;
mod http;
mod key;
mod lanes;
mod lease;
pub mod metrics;
mod owned;
mod push;
mod push_lane;
mod refs;
mod refs_lane;
mod shared;
mod state;
mod status;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use secretsync_core::engine::{Engine, EngineConfig};
use secretsync_core::manifest::API_GROUP;
use secretsync_core::registry::Registry;
use secretsync_core::{FingerprintKey, Result};
use tokio::sync::watch as wch;
use tokio::task::JoinSet;

pub use events::EVENTS_CONDITION;
pub use http::{router, serve};
pub use lease::LeaseConfig;
pub use metrics::Metrics;

use guard::Tracked;
use shared::Shared;

/// What the controller watches and how it runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// API group of the ESO kinds (default `external-secrets.io`; another group lets the
    /// controller run beside ESO).
    pub group: String,
    /// API version (`v1` or `v1beta1`).
    pub version: String,
    /// Watch one namespace only (`None`: all namespaces).
    pub namespace: Option<String>,
    /// This replica's identity in the Lease (the pod name).
    pub identity: String,
    /// Leader election; `None` means this replica always writes (a single replica).
    pub lease: Option<LeaseConfig>,
    /// Number of shards resources are spread over (1: no sharding).
    pub shards: u32,
    /// The shard this replica serves, `0..shards`.
    pub shard_index: u32,
    /// Most ExternalSecrets in one fast-lane batch.
    pub fast_batch: usize,
    /// Fast-lane batches running at once.
    pub fast_concurrency: usize,
    /// Most ExternalSecrets in one periodic batch.
    pub periodic_batch: usize,
    /// A periodic batch also takes the ExternalSecrets due within this window, so that
    /// resources refreshed together stay together (one fetch per key) while jitter still
    /// spreads them over the interval.
    pub periodic_window: Duration,
    /// Status writes and Events in flight at once.
    pub status_concurrency: usize,
    /// Engine tunables.
    pub engine: EngineConfig,
    /// Watch managed targets and repair them when someone edits or deletes them.
    pub watch_targets: bool,
    /// Restart consumers of changed targets (declared ones, plus discovered ones when
    /// `discover_consumers`).
    pub restart_consumers: bool,
    /// Find consumers by reading pod templates (needs list on workloads).
    pub discover_consumers: bool,
    /// Fingerprint key. Default: `SECRETSYNC_FINGERPRINT_KEY` when set, else the key in
    /// [`fingerprint_key_secret`](Self::fingerprint_key_secret), else random per process.
    pub fingerprint_key: Option<FingerprintKey>,
    /// The Secret that holds the fingerprint key every replica uses (created with a random
    /// key by the first replica, then read by all), so fingerprints in annotations are the
    /// same across restarts and replicas. Default `secretsync-fingerprint-key`; `None`
    /// disables it (a random key per process unless one is given).
    pub fingerprint_key_secret: Option<String>,
    /// Namespace of the key Secret. Default: `$POD_NAMESPACE`, else the Lease's
    /// namespace, else the client's default namespace.
    pub fingerprint_key_namespace: Option<String>,
    /// `status.refreshTime` alone is rewritten at most this often per ExternalSecret: an
    /// unchanged refresh writes no status until then (ESO writes it at every refresh, one
    /// etcd write per resource per interval). A change of the Ready condition, its message
    /// or the synced version is written at once. Default 10 minutes.
    pub refresh_time_every: Duration,
    /// The reporting controller name on Events.
    pub controller_name: String,
    /// The bearer token `POST /refresh` requires; `None`: every call is refused.
    pub refresh_token: Option<secretsync_core::SecretValue>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            group: API_GROUP.to_string(),
            version: "v1".to_string(),
            namespace: None,
            identity: default_identity(),
            lease: None,
            shards: 1,
            shard_index: 0,
            fast_batch: 64,
            fast_concurrency: 2,
            periodic_batch: 5000,
            periodic_window: Duration::from_secs(2),
            status_concurrency: 16,
            engine: EngineConfig::default(),
            watch_targets: true,
            restart_consumers: true,
            discover_consumers: true,
            fingerprint_key: None,
            fingerprint_key_secret: Some(DEFAULT_KEY_SECRET.to_string()),
            fingerprint_key_namespace: None,
            refresh_time_every: Duration::from_secs(600),
            controller_name: "secretsync".to_string(),
            refresh_token: None,
        }
    }
}

/// Default name of the fingerprint key Secret ([`ControllerConfig::fingerprint_key_secret`]).
pub const DEFAULT_KEY_SECRET: &str = "secretsync-fingerprint-key";

/// `$POD_NAME`, else `$HOSTNAME`, else a random name.
pub fn default_identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("secretsync-{:08x}", rand::random::<u32>()))
}

impl ControllerConfig {
    /// The Lease of this replica's shard: the configured name, suffixed `-shard-<i>` when
    /// sharded.
    pub fn shard_lease(&self) -> Option<LeaseConfig> {
        let mut l = self.lease.clone()?;
        if self.shards > 1 {
            l.name = format!("{}-shard-{}", l.name, self.shard_index);
        }
        Some(l)
    }

    /// Whether `namespace/name` belongs to this replica's shard.
    pub fn owns(&self, namespace: &str, name: &str) -> bool {
        self.shards <= 1 || shard_of(namespace, name, self.shards) == self.shard_index
    }

    fn check(&self) -> Result<()> {
        if self.shards == 0 || self.shard_index >= self.shards {
            return Err(secretsync_core::Error::invalid(format!(
                "--shard-index {} must be below --shards {}",
                self.shard_index, self.shards
            )));
        }
        if self.version != "v1" && self.version != "v1beta1" {
            return Err(secretsync_core::Error::invalid(format!(
                "API version `{}`: expected v1 or v1beta1",
                self.version
            )));
        }
        Ok(())
    }
}

/// The shard of `namespace/name` among `shards`: FNV-1a, stable across processes and
/// releases.
pub fn shard_of(namespace: &str, name: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(shards.max(1))) as u32
}

/// Counters a test or a dashboard can read without parsing metrics.
#[derive(Debug, Default)]
pub(crate) struct LaneStats {
    pub(crate) fast_batches: AtomicU64,
    pub(crate) periodic_batches: AtomicU64,
    pub(crate) periodic_in_flight: AtomicBool,
    pub(crate) fast_in_flight: AtomicU64,
}

/// A cheap handle on a running (or built) controller.
#[derive(Clone)]
pub struct ControllerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ControllerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerHandle")
            .field("identity", &self.shared.cfg.identity)
            .field("leader", &self.is_leader())
            .finish_non_exhaustive()
    }
}

impl ControllerHandle {
    /// Whether this replica leads (writes) now.
    pub fn is_leader(&self) -> bool {
        *self.shared.leader_rx.borrow()
    }
    /// Whether every watch has listed its objects once.
    pub fn is_ready(&self) -> bool {
        self.shared.is_synced()
    }
    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }
    /// The metrics in the text exposition format, provider counts brought up to date.
    pub fn render_metrics(&self) -> String {
        self.shared.absorb_call_stats();
        self.shared.metrics.encode()
    }
    /// Whether a periodic batch is running now.
    pub fn periodic_in_flight(&self) -> bool {
        self.shared.stats.periodic_in_flight.load(Ordering::SeqCst)
    }
    /// Periodic batches finished so far.
    pub fn periodic_batches(&self) -> u64 {
        self.shared.stats.periodic_batches.load(Ordering::SeqCst)
    }
    /// Fast-lane batches finished so far.
    pub fn fast_batches(&self) -> u64 {
        self.shared.stats.fast_batches.load(Ordering::SeqCst)
    }
    /// The identity.
    pub fn identity(&self) -> &str {
        &self.shared.cfg.identity
    }
    /// The engine in use now (stores as last built), once one was built.
    pub fn engine(&self) -> Option<Arc<Engine>> {
        self.shared.current_engine()
    }
}

/// The operator. Build it, take a [`ControllerHandle`] for metrics and health, then
/// [`run`](Controller::run) it until shutdown.
pub struct Controller {
    shared: Arc<Shared>,
    leader_tx: wch::Sender<bool>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("config", &self.shared.cfg)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller over `client`, building stores with `registry` (give it
    /// [`KubeCredentials`](secretsync_k8s::KubeCredentials) to read stores' `secretRef`s from the
    /// cluster).
    pub fn new(client: kube::Client, registry: Registry, config: ControllerConfig) -> Result<Self> {
        config.check()?;
        // Until `run` reads the key Secret, a random key (nothing is fingerprinted before).
        let key = match &config.fingerprint_key {
            Some(k) => k.clone(),
            None => FingerprintKey::from_env()?.unwrap_or_else(FingerprintKey::random),
        };
        // Without election this replica always leads.
        let (leader_tx, leader_rx) = wch::channel(config.lease.is_none());
        let metrics = Arc::new(Metrics::new());
        let tracked = Arc::new(Tracked::new(key.clone()));
        let shared = Arc::new(Shared::new(client, registry, config, key, leader_rx, metrics, tracked));
        Ok(Self { shared, leader_tx })
    }

    /// A handle for metrics, health and tests.
    pub fn handle(&self) -> ControllerHandle {
        ControllerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Runs until `shutdown` resolves; then stops writing and releases the Lease, so
    /// another replica takes over at once. Dropping the returned future instead (a crash)
    /// stops every task without releasing: others take over when the Lease expires.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Controller { shared, leader_tx } = self;
        if shared.cfg.fingerprint_key.is_none()
            && FingerprintKey::from_env()?.is_none()
            && let Some(name) = &shared.cfg.fingerprint_key_secret
        {
            let namespace = shared.cfg.fingerprint_key_namespace.clone().unwrap_or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
                    .or_else(|| shared.cfg.lease.as_ref().map(|l| l.namespace.clone()))
                    .unwrap_or_else(|| shared.client.default_namespace().to_string())
            });
            // Before any watch or lane starts, so every fingerprint uses this key.
            shared.set_key(key::resolve(&shared.client, &namespace, name).await);
        }
        let (stop_tx, stop_rx) = wch::channel(false);
        let mut tasks = JoinSet::new();
        shared.spawn_watchers(&mut tasks);
        let elector = shared.cfg.shard_lease().map(|lease| {
            lease::LeaderElector::new(
                shared.client.clone(),
                lease,
                shared.cfg.identity.clone(),
                leader_tx.clone(),
            )
        });
        let mut election = JoinSet::new();
        if let Some(e) = elector {
            election.spawn(e.run(stop_rx.clone()));
        }
        tasks.spawn(shared.clone().leadership_loop());
        tasks.spawn(shared.clone().fast_lane());
        tasks.spawn(shared.clone().periodic_lane());
        tasks.spawn(shared.clone().ces_lane());
        tasks.spawn(shared.clone().events_sources());
        tasks.spawn(shared.clone().events_dispatch());
        tasks.spawn(shared.clone().refs_lane());
        tasks.spawn(shared.clone().watch_push_secrets());
        tasks.spawn(shared.clone().push_lane());
        tasks.spawn(shared.clone().watch_cluster_push_secrets());
        tasks.spawn(shared.clone().cps_lane());
        shutdown.await;
        tracing::info!(identity = %shared.cfg.identity, "shutting down");
        let _ = stop_tx.send(true);
        if shared.cfg.lease.is_none() {
            leader_tx.send_replace(false);
        }
        // Give the elector a moment to release the Lease.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while election.join_next().await.is_some() {}
        })
        .await;
        tasks.shutdown().await;
        Ok(())
    }
}
