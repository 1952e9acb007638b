//! The two lanes: the fast one (new, changed, force-synced and repaired ExternalSecrets, in
//! small batches) and the periodic one (what is due, in one batch), and the engine over the
//! watched stores that both run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use secretsync_core::SecretSource;
use secretsync_core::engine::{CycleOptions, CycleReport, Engine};
use secretsync_core::manifest::{Manifests, SpecId, StoreId};
use secretsync_core::registry::BuiltStore;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::metrics::{BatchTimer, metered};
use crate::shared::{BuiltEntry, Shared};
use crate::state::{State, StoreEntry};
use crate::status::Info;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    Fast,
    Periodic,
}

impl Lane {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Lane::Fast => "fast",
            Lane::Periodic => "periodic",
        }
    }
}

impl Shared {
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

    pub(crate) fn pick_fast(&self) -> Vec<SpecId> {
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

    pub(crate) fn pick_periodic(&self) -> (Vec<SpecId>, Duration) {
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
    pub(crate) async fn engine(&self) -> Arc<Engine> {
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

    pub(crate) async fn run_batch(&self, ids: Vec<SpecId>, lane: Lane) {
        self.run_batch_with(ids, lane, CycleOptions::default()).await;
    }

    /// [`run_batch`](Self::run_batch) with cycle options (change events' `changed`); `only`
    /// is always the batch.
    pub(crate) async fn run_batch_with(&self, ids: Vec<SpecId>, lane: Lane, options: CycleOptions) {
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
        // templateFrom objects and generators, from their watches.
        let unresolved = self.resolve_refs(&mut manifests);
        let only: BTreeSet<SpecId> = manifests.external_secrets.iter().map(|e| e.id()).collect();
        let mut report = if only.is_empty() || !self.is_leader() {
            CycleReport::default()
        } else {
            let engine = self.engine().await;
            engine
                .run(
                    &manifests,
                    &CycleOptions {
                        dry_run: false,
                        only: Some(only),
                        ..options
                    },
                )
                .await
        };
        report.specs.extend(unresolved.failed);
        {
            let now = Instant::now();
            let mut st = self.state.lock().expect("lock");
            for s in report.specs.iter().filter(|s| s.kind == "ExternalSecret") {
                st.sched.record(s, now);
            }
            // Waiting for a referenced object's first list: again shortly (its watch also
            // makes them urgent when it lists).
            for id in &unresolved.waiting {
                st.sched.force(id, now + Duration::from_millis(500));
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
}
