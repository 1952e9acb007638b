//! The two lanes, the engine over the watched stores, and ESO-shaped status and Events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use secretsync_core::engine::{CycleOptions, CycleReport, Engine, Outcome, Scheduler, SpecReport, SyncStatus};
use secretsync_core::manifest::{ExternalSecret, Manifests, SpecId, Store, StoreId};
use secretsync_core::registry::{BuiltStore, Registry};
use secretsync_core::{FingerprintKey, SecretSource, TargetRef};
use serde_json::json;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::cluster::{CesEntry, Cleanup, NsEntry};
use crate::guard::{GuardedRestarter, GuardedSink, Tracked};
use crate::metrics::{ApiWriteLabels, BatchTimer, Metrics, ResourceLabels, metered, unix_now};
use crate::watch::Kind;
use crate::{ControllerConfig, LaneStats};
use secretsync_k8s::{FIELD_MANAGER, KubeRestarter, KubeSink, TargetCache};

/// ESO's Ready condition as it is on an object, with the other status fields we write
/// (compared before writing, so that an unchanged round writes no status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReadyCondition {
    pub(crate) status: String,
    pub(crate) reason: String,
    pub(crate) message: String,
    pub(crate) last_transition_time: String,
    /// `status.syncedResourceVersion`.
    pub(crate) synced_version: Option<String>,
    /// `status.refreshTime`.
    pub(crate) refresh_time: Option<String>,
    /// `status.binding.name`.
    pub(crate) binding: Option<String>,
}

impl ReadyCondition {
    /// Whether writing `want` would change nothing but a `refreshTime` younger than
    /// `every` (ESO rewrites it at every refresh: one etcd write per resource per interval).
    fn covers(&self, want: &ReadyCondition, now: Timestamp, every: Duration) -> bool {
        let fresh = match (&want.refresh_time, &self.refresh_time) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(have)) => have.parse::<Timestamp>().is_ok_and(|t| {
                let age = now.duration_since(t);
                !age.is_negative() && age.unsigned_abs() < every
            }),
        };
        fresh
            && self.status == want.status
            && self.reason == want.reason
            && self.message == want.message
            && self.binding == want.binding
            && (want.synced_version.is_none() || self.synced_version == want.synced_version)
    }
}

/// A watched ExternalSecret.
#[derive(Debug, Clone)]
pub(crate) struct EsEntry {
    pub(crate) uid: Option<String>,
    pub(crate) generation: Option<i64>,
    pub(crate) meta_hash: u64,
    pub(crate) parsed: Result<ExternalSecret, String>,
    pub(crate) ready: Option<ReadyCondition>,
}

/// A watched SecretStore or ClusterSecretStore.
#[derive(Debug, Clone)]
pub(crate) struct StoreEntry {
    pub(crate) spec_json: String,
    pub(crate) parsed: Result<Store, String>,
}

/// Everything the watches saw, and the schedule.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) es: BTreeMap<SpecId, EsEntry>,
    pub(crate) stores: BTreeMap<StoreId, StoreEntry>,
    pub(crate) targets: HashMap<TargetRef, BTreeSet<SpecId>>,
    /// ClusterExternalSecrets of this replica's shard, by name.
    pub(crate) ces: BTreeMap<String, CesEntry>,
    /// Every Namespace (the one watched, with `--namespace`), by name.
    pub(crate) namespaces: BTreeMap<String, NsEntry>,
    /// Deleted ClusterExternalSecrets whose ExternalSecrets are still to be deleted.
    pub(crate) ces_cleanups: Vec<Cleanup>,
    pub(crate) sched: Scheduler,
    pub(crate) specs_dirty: bool,
    pub(crate) stores_dirty: bool,
    /// Specs for the fast lane, with the sequence number of their latest reason.
    pub(crate) urgent: BTreeMap<SpecId, u64>,
    seq: u64,
    in_flight: BTreeSet<SpecId>,
}

impl State {
    pub(crate) fn mark_urgent(&mut self, id: &SpecId) {
        self.seq += 1;
        self.urgent.insert(id.clone(), self.seq);
    }

    pub(crate) fn unindex_target(&mut self, t: &TargetRef, id: &SpecId) {
        if let Some(s) = self.targets.get_mut(t) {
            s.remove(id);
            if s.is_empty() {
                self.targets.remove(t);
            }
        }
    }

    /// Brings the scheduler up to date with the watched specs (debounced by the dirty flag:
    /// one pass however many events arrived).
    fn ingest(&mut self, now: Instant) {
        if !self.specs_dirty {
            return;
        }
        let specs: Vec<ExternalSecret> = self
            .es
            .values()
            .filter_map(|e| e.parsed.as_ref().ok().cloned())
            .collect();
        self.sched.observe(&specs, now);
        self.specs_dirty = false;
    }
}

/// A built source, by store and build generation, for provider call counts.
type SourceEntry = (StoreId, u64, Arc<dyn SecretSource>);

struct BuiltEntry {
    spec_json: String,
    result: Result<BuiltStore, String>,
}

#[derive(Default)]
struct EngineSlot {
    built: BTreeMap<StoreId, BuiltEntry>,
    engine: Option<Arc<Engine>>,
}

/// What the status of one ExternalSecret is written from.
#[derive(Debug, Clone)]
struct Info {
    uid: Option<String>,
    generation: Option<i64>,
    meta_hash: u64,
    ready: Option<ReadyCondition>,
    target_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Fast,
    Periodic,
}

impl Lane {
    fn name(self) -> &'static str {
        match self {
            Lane::Fast => "fast",
            Lane::Periodic => "periodic",
        }
    }
}

/// State shared by the watches, the lanes and the handle.
pub(crate) struct Shared {
    pub(crate) cfg: ControllerConfig,
    pub(crate) client: kube::Client,
    registry: Registry,
    key: Mutex<FingerprintKey>,
    pub(crate) leader_rx: watch::Receiver<bool>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tracked: Arc<Tracked>,
    /// The labelled Secrets and ConfigMaps as the watches see them; the sink answers
    /// `compare` from it.
    pub(crate) targets_cache: Arc<TargetCache>,
    pub(crate) state: Mutex<State>,
    pub(crate) fast_wake: Notify,
    pub(crate) periodic_wake: Notify,
    pub(crate) ces_wake: Notify,
    pub(crate) synced: [AtomicBool; 7],
    pub(crate) stats: LaneStats,
    slot: tokio::sync::Mutex<EngineSlot>,
    current: Mutex<Option<Arc<Engine>>>,
    sources: Mutex<Vec<SourceEntry>>,
    source_generation: std::sync::atomic::AtomicU64,
    sink: Arc<GuardedSink>,
    restarter: Option<Arc<GuardedRestarter>>,
    recorder: Recorder,
}

impl Shared {
    pub(crate) fn new(
        client: kube::Client,
        registry: Registry,
        cfg: ControllerConfig,
        key: FingerprintKey,
        leader_rx: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
        tracked: Arc<Tracked>,
    ) -> Self {
        let owner_api_version = format!("{}/{}", cfg.group, cfg.version);
        let targets_cache = Arc::new(TargetCache::new());
        let mut kube_sink = KubeSink::new(client.clone()).with_field_manager(FIELD_MANAGER);
        if cfg.watch_targets {
            // The watch of labelled targets answers `compare`: no read when unchanged.
            kube_sink = kube_sink.with_watched_cache(targets_cache.clone());
        }
        let sink = Arc::new(GuardedSink::new(
            kube_sink,
            leader_rx.clone(),
            owner_api_version,
            metrics.clone(),
            tracked.clone(),
        ));
        let restarter = cfg.restart_consumers.then(|| {
            Arc::new(GuardedRestarter::new(
                KubeRestarter::new(client.clone()).with_discovery(cfg.discover_consumers),
                leader_rx.clone(),
            ))
        });
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: cfg.controller_name.clone(),
                instance: Some(cfg.identity.clone()),
            },
        );
        Self {
            cfg,
            client,
            registry,
            key: Mutex::new(key),
            leader_rx,
            metrics,
            tracked,
            targets_cache,
            state: Mutex::new(State::default()),
            fast_wake: Notify::new(),
            periodic_wake: Notify::new(),
            ces_wake: Notify::new(),
            synced: Default::default(),
            stats: LaneStats::default(),
            slot: tokio::sync::Mutex::new(EngineSlot::default()),
            current: Mutex::new(None),
            sources: Mutex::new(vec![]),
            source_generation: Default::default(),
            sink,
            restarter,
            recorder,
        }
    }

    /// Replaces the fingerprint key (before the lanes start).
    pub(crate) fn set_key(&self, key: FingerprintKey) {
        self.tracked.set_key(key.clone());
        *self.key.lock().expect("lock") = key;
    }

    /// Every ESO watch has listed once.
    pub(crate) fn is_synced(&self) -> bool {
        Kind::ESO.iter().all(|k| self.synced[k.index()].load(Ordering::SeqCst))
    }

    pub(crate) fn is_leader(&self) -> bool {
        *self.leader_rx.borrow()
    }

    pub(crate) fn current_engine(&self) -> Option<Arc<Engine>> {
        self.current.lock().expect("lock").clone()
    }

    pub(crate) fn wake_all(&self) {
        self.fast_wake.notify_one();
        self.periodic_wake.notify_one();
        self.ces_wake.notify_one();
    }

    /// Brings provider call counts into the metrics.
    pub(crate) fn absorb_call_stats(&self) {
        let sources = self.sources.lock().expect("lock").clone();
        for (id, generation, s) in sources {
            if let Some(stats) = s.call_stats() {
                self.metrics.absorb_call_stats(&id, generation, s.provider(), stats);
            }
        }
    }

    pub(crate) async fn wait_ready_leader(&self) {
        let mut rx = self.leader_rx.clone();
        loop {
            if rx.wait_for(|l| *l).await.is_err() {
                // The controller is going away.
                std::future::pending::<()>().await;
            }
            if self.is_synced() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new leadership term starts from a fresh schedule: everything is due once.
    pub(crate) async fn leadership_loop(self: Arc<Self>) {
        let mut rx = self.leader_rx.clone();
        loop {
            let leading = *rx.borrow_and_update();
            self.metrics.leader.set(i64::from(leading));
            if leading {
                let mut st = self.state.lock().expect("lock");
                st.sched = Scheduler::new();
                st.specs_dirty = true;
                // ClusterExternalSecrets too, every ExternalSecret applied once more.
                for c in st.ces.values_mut() {
                    c.dirty = true;
                    c.applied.clear();
                }
                drop(st);
                self.wake_all();
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// New, changed, force-synced and repaired ExternalSecrets, in small batches, several
    /// at once, never behind a periodic batch.
    pub(crate) async fn fast_lane(self: Arc<Self>) {
        let mut running = JoinSet::new();
        let slots = Arc::new(Semaphore::new(self.cfg.fast_concurrency.max(1)));
        loop {
            self.wait_ready_leader().await;
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            while running.try_join_next().is_some() {}
            let notified = self.fast_wake.notified();
            let batch = self.pick_fast();
            if batch.is_empty() {
                drop(permit);
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let me = self.clone();
            running.spawn(async move {
                me.run_batch(batch, Lane::Fast).await;
                drop(permit);
            });
        }
    }

    /// Due ExternalSecrets, all in one batch (up to `periodic_batch`), one batch at a time.
    pub(crate) async fn periodic_lane(self: Arc<Self>) {
        loop {
            self.wait_ready_leader().await;
            let notified = self.periodic_wake.notified();
            let (batch, wait) = self.pick_periodic();
            if batch.is_empty() {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            self.stats.periodic_in_flight.store(true, Ordering::SeqCst);
            self.run_batch(batch, Lane::Periodic).await;
            self.stats.periodic_in_flight.store(false, Ordering::SeqCst);
        }
    }

    fn pick_fast(&self) -> Vec<SpecId> {
        let mut st = self.state.lock().expect("lock");
        st.ingest(Instant::now());
        let State {
            urgent, in_flight, es, ..
        } = &mut *st;
        urgent.retain(|id, _| es.contains_key(id));
        let mut ids: Vec<(u64, SpecId)> = urgent
            .iter()
            .filter(|(id, _)| !in_flight.contains(*id))
            .map(|(id, s)| (*s, id.clone()))
            .collect();
        ids.sort();
        ids.truncate(self.cfg.fast_batch.max(1));
        let batch: Vec<SpecId> = ids.into_iter().map(|(_, id)| id).collect();
        in_flight.extend(batch.iter().cloned());
        batch
    }

    fn pick_periodic(&self) -> (Vec<SpecId>, Duration) {
        let mut st = self.state.lock().expect("lock");
        let now = Instant::now();
        st.ingest(now);
        let batch: Vec<SpecId> = st
            .sched
            .due(now + self.cfg.periodic_window)
            .into_iter()
            .filter(|id| !st.urgent.contains_key(id) && !st.in_flight.contains(id))
            .take(self.cfg.periodic_batch.max(1))
            .collect();
        st.in_flight.extend(batch.iter().cloned());
        let wait = st
            .sched
            .next_wake()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(5))
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        (batch, wait)
    }

    /// The engine over the stores as watched now; stores whose spec changed are rebuilt and
    /// the ExternalSecrets reading them are due at once.
    async fn engine(&self) -> Arc<Engine> {
        let mut slot = self.slot.lock().await;
        let snapshot: Option<Vec<(StoreId, StoreEntry)>> = {
            let mut st = self.state.lock().expect("lock");
            if st.stores_dirty || slot.engine.is_none() {
                st.stores_dirty = false;
                Some(st.stores.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            } else {
                None
            }
        };
        if let Some(stores) = snapshot {
            let first = slot.engine.is_none();
            let ids: BTreeSet<StoreId> = stores.iter().map(|(id, _)| id.clone()).collect();
            slot.built.retain(|id, _| ids.contains(id));
            let mut changed = vec![];
            for (id, entry) in stores {
                if slot.built.get(&id).is_some_and(|b| b.spec_json == entry.spec_json) {
                    continue;
                }
                let result = match &entry.parsed {
                    Ok(store) => match self.registry.build(store).await {
                        Ok(b) => {
                            let generation = self.source_generation.fetch_add(1, Ordering::SeqCst);
                            let metered: Arc<dyn SecretSource> =
                                Arc::new(metered(b.source.clone(), &id, self.metrics.clone()));
                            let mut sources = self.sources.lock().expect("lock");
                            sources.retain(|(s, _, _)| s != &id);
                            sources.push((id.clone(), generation, b.source.clone()));
                            Ok(BuiltStore {
                                source: metered,
                                writer: b.writer,
                            })
                        }
                        Err(e) => Err(e.to_string()),
                    },
                    Err(msg) => Err(msg.clone()),
                };
                if let Err(m) = &result {
                    tracing::warn!(store = %id, error = %m, "store cannot be used");
                }
                slot.built.insert(
                    id.clone(),
                    BuiltEntry {
                        spec_json: entry.spec_json,
                        result,
                    },
                );
                changed.push(id);
            }
            self.sources.lock().expect("lock").retain(|(s, _, _)| ids.contains(s));
            let ok: BTreeMap<StoreId, BuiltStore> = slot
                .built
                .iter()
                .filter_map(|(id, b)| b.result.as_ref().ok().map(|s| (id.clone(), s.clone())))
                .collect();
            let mut engine = Engine::new(ok, self.sink.clone())
                .with_fingerprint_key(self.key.lock().expect("lock").clone())
                .with_config(self.cfg.engine.clone());
            for (id, b) in &slot.built {
                if let Err(m) = &b.result {
                    engine = engine.with_store_error(id.clone(), &secretsync_core::Error::invalid(m.clone()));
                }
            }
            if let Some(r) = &self.restarter {
                engine = engine.with_restarter(r.clone());
            }
            let engine = Arc::new(engine);
            slot.engine = Some(engine.clone());
            *self.current.lock().expect("lock") = Some(engine);
            if !first && !changed.is_empty() {
                let changed: BTreeSet<StoreId> = changed.into_iter().collect();
                let now = Instant::now();
                let mut st = self.state.lock().expect("lock");
                st.ingest(now);
                let due: Vec<SpecId> = st
                    .es
                    .iter()
                    .filter(|(_, e)| {
                        e.parsed
                            .as_ref()
                            .ok()
                            .and_then(|es| es.store_id())
                            .is_some_and(|s| changed.contains(&s))
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &due {
                    st.sched.force(id, now);
                }
                drop(st);
                if !due.is_empty() {
                    tracing::info!(specs = due.len(), "stores changed; their ExternalSecrets are due");
                    self.periodic_wake.notify_one();
                }
            }
        }
        slot.engine.clone().expect("built above")
    }

    async fn run_batch(&self, ids: Vec<SpecId>, lane: Lane) {
        let _timer = BatchTimer::start(&self.metrics, lane.name(), ids.len());
        if lane == Lane::Fast {
            self.stats.fast_in_flight.fetch_add(1, Ordering::SeqCst);
        }
        let mut manifests = Manifests::default();
        let mut invalid: Vec<(SpecId, String)> = vec![];
        let mut infos: BTreeMap<SpecId, Info> = BTreeMap::new();
        let mut seqs: BTreeMap<SpecId, Option<u64>> = BTreeMap::new();
        {
            let st = self.state.lock().expect("lock");
            for id in &ids {
                seqs.insert(id.clone(), st.urgent.get(id).copied());
                let Some(e) = st.es.get(id) else { continue };
                infos.insert(
                    id.clone(),
                    Info {
                        uid: e.uid.clone(),
                        generation: e.generation,
                        meta_hash: e.meta_hash,
                        ready: e.ready.clone(),
                        target_name: e.parsed.as_ref().ok().map(|es| es.target_ref().name),
                    },
                );
                match &e.parsed {
                    Ok(es) => manifests.external_secrets.push(es.clone()),
                    Err(m) => invalid.push((id.clone(), m.clone())),
                }
            }
        }
        let only: BTreeSet<SpecId> = manifests.external_secrets.iter().map(|e| e.id()).collect();
        let report = if only.is_empty() || !self.is_leader() {
            CycleReport::default()
        } else {
            let engine = self.engine().await;
            engine
                .run(
                    &manifests,
                    &CycleOptions {
                        dry_run: false,
                        only: Some(only),
                    },
                )
                .await
        };
        {
            let now = Instant::now();
            let mut st = self.state.lock().expect("lock");
            for s in report.specs.iter().filter(|s| s.kind == "ExternalSecret") {
                st.sched.record(s, now);
            }
            for id in &ids {
                let snap = seqs.get(id).copied().flatten();
                match st.urgent.get(id).copied() {
                    Some(cur) if Some(cur) == snap => {
                        st.urgent.remove(id);
                    }
                    // Changed again while it ran: run it again, now.
                    Some(_) => st.sched.force(id, now),
                    None => {}
                }
            }
        }
        self.absorb_call_stats();
        if self.is_leader() {
            self.write_statuses(&report, &invalid, &infos).await;
        }
        {
            let mut st = self.state.lock().expect("lock");
            for id in &ids {
                st.in_flight.remove(id);
            }
        }
        match lane {
            Lane::Fast => {
                self.stats.fast_in_flight.fetch_sub(1, Ordering::SeqCst);
                self.stats.fast_batches.fetch_add(1, Ordering::SeqCst);
            }
            Lane::Periodic => {
                self.stats.periodic_batches.fetch_add(1, Ordering::SeqCst);
            }
        }
        tracing::debug!(
            lane = lane.name(),
            specs = ids.len(),
            writes = report.writes,
            provider_calls = report.provider_calls,
            values_read = report.values_read,
            "batch done"
        );
        self.wake_all();
    }

    pub(crate) fn es_api(&self, namespace: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.cfg.group, &self.cfg.version, "ExternalSecret"),
            "externalsecrets",
        );
        Api::namespaced_with(self.client.clone(), namespace, &ar)
    }

    fn reference(&self, kind: &str, namespace: Option<&str>, name: &str, uid: Option<String>) -> ObjectReference {
        ObjectReference {
            api_version: Some(format!("{}/{}", self.cfg.group, self.cfg.version)),
            kind: Some(kind.to_string()),
            name: Some(name.to_string()),
            namespace: namespace.map(str::to_string),
            uid,
            ..ObjectReference::default()
        }
    }

    async fn write_statuses(&self, report: &CycleReport, invalid: &[(SpecId, String)], infos: &BTreeMap<SpecId, Info>) {
        let mut jobs: Vec<(SpecId, Option<SpecReport>, Option<String>)> = vec![];
        for s in report.specs.iter().filter(|s| s.kind == "ExternalSecret") {
            let id = SpecId {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
            };
            jobs.push((id, Some(s.clone()), None));
        }
        for (id, msg) in invalid {
            jobs.push((id.clone(), None, Some(msg.clone())));
        }
        futures::stream::iter(jobs)
            .map(|(id, spec, invalid)| {
                let info = infos.get(&id).cloned();
                async move {
                    if let Some(info) = info {
                        self.finish_one(&id, spec.as_ref(), invalid.as_deref(), &info).await;
                    }
                }
            })
            .buffer_unordered(self.cfg.status_concurrency.max(1))
            .collect::<Vec<()>>()
            .await;
    }

    /// Status, Event and metrics of one ExternalSecret after a run.
    async fn finish_one(&self, id: &SpecId, spec: Option<&SpecReport>, invalid: Option<&str>, info: &Info) {
        let labels = ResourceLabels::from(id);
        self.metrics.sync_calls.get_or_create(&labels).inc();
        let synced = spec.is_some_and(|s| s.status == SyncStatus::SecretSynced);
        let message = match (spec, invalid) {
            (Some(s), _) if synced => match s.outcome {
                Outcome::Deleted => "secret deleted: the remote secret is gone".to_string(),
                _ => "Secret was synced".to_string(),
            },
            (Some(s), _) => s.message.clone(),
            (None, Some(m)) => m.to_string(),
            (None, None) => "not synced".to_string(),
        };
        if synced {
            self.metrics.last_success.get_or_create(&labels).set(unix_now());
        } else {
            self.metrics.sync_errors.get_or_create(&labels).inc();
        }
        let now_ts = Timestamp::now();
        let now = now_ts.to_string();
        let (status, reason) = if synced {
            ("True", "SecretSynced")
        } else {
            ("False", "SecretSyncedError")
        };
        let ltt = match &info.ready {
            Some(r) if r.status == status && !r.last_transition_time.is_empty() => r.last_transition_time.clone(),
            _ => now.clone(),
        };
        let mut st = json!({
            "conditions": [{
                "type": "Ready",
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": ltt,
            }],
        });
        if synced {
            st["refreshTime"] = json!(now);
            st["syncedResourceVersion"] = json!(format!("{}-{:016x}", info.generation.unwrap_or(0), info.meta_hash));
        }
        if let Some(t) = &info.target_name {
            st["binding"] = json!({"name": t});
        }
        let want = ReadyCondition {
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.clone(),
            last_transition_time: ltt.clone(),
            synced_version: st
                .get("syncedResourceVersion")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            refresh_time: st.get("refreshTime").and_then(|v| v.as_str()).map(str::to_string),
            binding: info.target_name.clone(),
        };
        // Unchanged condition, message, version and binding, and a recent refreshTime:
        // nothing to write.
        let unchanged = info
            .ready
            .as_ref()
            .is_some_and(|have| have.covers(&want, now_ts, self.cfg.refresh_time_every));
        let patch = json!({"status": st});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        if !self.is_leader() {
            return;
        }
        if !unchanged {
            let r = self
                .es_api(&id.namespace)
                .patch_status(&id.name, &params, &Patch::Merge(&patch))
                .await;
            self.count_api_write("status", r.is_ok());
            if let Err(e) = r {
                tracing::warn!(spec = %id, error = %secretsync_k8s::from_kube(e, &format!("writing the status of ExternalSecret {id}")), "status write failed");
            }
        }
        // Events: created, updated, deleted, failed; nothing when unchanged.
        let event = match (spec.map(|s| s.outcome), synced) {
            (Some(Outcome::Created), true) => {
                Some((EventType::Normal, "Created", format!("Created {}", spec_target(spec))))
            }
            (Some(Outcome::Updated), true) => {
                Some((EventType::Normal, "Updated", format!("Updated {}", spec_target(spec))))
            }
            (Some(Outcome::Deleted), true) => {
                Some((EventType::Normal, "Deleted", format!("Deleted {}", spec_target(spec))))
            }
            (_, false) => Some((EventType::Warning, "UpdateFailed", message.clone())),
            _ => None,
        };
        if let Some((type_, reason, note)) = event {
            self.publish(
                &self.reference("ExternalSecret", Some(&id.namespace), &id.name, info.uid.clone()),
                type_,
                reason,
                note,
            )
            .await;
        }
    }

    async fn publish(&self, regarding: &ObjectReference, type_: EventType, reason: &str, note: String) {
        if !self.is_leader() {
            return;
        }
        let mut note = note;
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let ev = KubeEvent {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        let r = self.recorder.publish(&ev, regarding).await;
        self.count_api_write("event", r.is_ok());
        if let Err(e) = r {
            tracing::debug!(error = %secretsync_k8s::from_kube(e, "publishing an Event"), "event not published");
        }
    }

    pub(crate) fn count_api_write(&self, what: &str, ok: bool) {
        self.metrics
            .api_writes
            .get_or_create(&ApiWriteLabels {
                what: what.to_string(),
                status: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }
}

fn spec_target(spec: Option<&SpecReport>) -> String {
    spec.map(|s| s.target.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_marks_are_ordered_and_refreshed() {
        let mut st = State::default();
        let a = SpecId {
            namespace: "n".into(),
            name: "a".into(),
        };
        let b = SpecId {
            namespace: "n".into(),
            name: "b".into(),
        };
        st.mark_urgent(&b);
        st.mark_urgent(&a);
        assert!(st.urgent[&b] < st.urgent[&a], "first marked, first served");
        let before = st.urgent[&b];
        st.mark_urgent(&b);
        assert!(st.urgent[&b] > before, "a new reason gets a new sequence number");
    }
}
