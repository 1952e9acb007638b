//! [`Shared`]: the state, the engine slot, the sink and the clients that the watches, the
//! lanes and the handle share; leadership, Events and write counts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use secretsync_core::engine::{Engine, Scheduler};
use secretsync_core::manifest::StoreId;
use secretsync_core::registry::{BuiltStore, Registry};
use secretsync_core::{FingerprintKey, SecretSource};
use tokio::sync::{Notify, watch};

use crate::guard::{GuardedRestarter, GuardedSink, Tracked};
use crate::metrics::{ApiWriteLabels, Metrics};
use crate::state::{Kind, State};
use crate::{ControllerConfig, LaneStats};
use secretsync_k8s::{FIELD_MANAGER, KubeRestarter, KubeSink, TargetCache};

/// A built source, by store and build generation, for provider call counts.
pub(crate) type SourceEntry = (StoreId, u64, Arc<dyn SecretSource>);

pub(crate) struct BuiltEntry {
    pub(crate) spec_json: String,
    pub(crate) result: Result<BuiltStore, String>,
}

#[derive(Default)]
pub(crate) struct EngineSlot {
    pub(crate) built: BTreeMap<StoreId, BuiltEntry>,
    pub(crate) engine: Option<Arc<Engine>>,
}

/// State shared by the watches, the lanes and the handle.
pub(crate) struct Shared {
    pub(crate) cfg: ControllerConfig,
    pub(crate) client: kube::Client,
    pub(crate) registry: Registry,
    pub(crate) key: Mutex<FingerprintKey>,
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
    pub(crate) slot: tokio::sync::Mutex<EngineSlot>,
    pub(crate) current: Mutex<Option<Arc<Engine>>>,
    pub(crate) sources: Mutex<Vec<SourceEntry>>,
    pub(crate) source_generation: std::sync::atomic::AtomicU64,
    pub(crate) sink: Arc<GuardedSink>,
    pub(crate) restarter: Option<Arc<GuardedRestarter>>,
    pub(crate) recorder: Recorder,
    /// Change events: sources, the HTTP intake, the dispatcher's channel.
    pub(crate) events: crate::events::Events,
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
        let mut guarded = GuardedSink::new(
            kube_sink,
            leader_rx.clone(),
            owner_api_version,
            metrics.clone(),
            tracked.clone(),
        );
        if cfg.watch_targets {
            guarded = guarded.with_cache(targets_cache.clone());
        }
        let sink = Arc::new(guarded);
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
        let events = crate::events::Events::new(cfg.refresh_token.clone());
        metrics.set_events(events.intake.clone());
        Self {
            events,
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

    pub(crate) fn es_api(&self, namespace: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.cfg.group, &self.cfg.version, "ExternalSecret"),
            "externalsecrets",
        );
        Api::namespaced_with(self.client.clone(), namespace, &ar)
    }

    pub(crate) fn reference(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        uid: Option<String>,
    ) -> ObjectReference {
        ObjectReference {
            api_version: Some(format!("{}/{}", self.cfg.group, self.cfg.version)),
            kind: Some(kind.to_string()),
            name: Some(name.to_string()),
            namespace: namespace.map(str::to_string),
            uid,
            ..ObjectReference::default()
        }
    }

    pub(crate) async fn publish(&self, regarding: &ObjectReference, type_: EventType, reason: &str, note: String) {
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
