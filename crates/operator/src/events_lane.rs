//! The running side of [`events`](crate::events): the leader's event sources (started,
//! restarted and stopped with their stores), the dispatcher that syncs the readers of a
//! changed key, and the stores' `EventsReady` condition.

use crate::lanes::Lane;
use crate::shared::Shared;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use secretsync_core::engine::CycleOptions;
use secretsync_core::events::{
    DOPPLER_WEBHOOK, EventAddress, EventStats, Pending, collect_burst, reads_key, receive_loop,
};
use secretsync_core::manifest::{SpecId, Store, StoreId, StoreKind};
use secretsync_k8s::FIELD_MANAGER;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::*;

impl Shared {
    /// Runs the event sources of the watched stores while this replica leads.
    pub(crate) async fn events_sources(self: Arc<Self>) {
        let mut runner = Runner::default();
        // What the stores' conditions say, as last written or read.
        let mut shown: BTreeMap<StoreId, Wanted> = BTreeMap::new();
        let mut leader_rx = self.leader_rx.clone();
        loop {
            let notified = self.events.wake.notified();
            let leading = self.is_leader() && self.is_synced();
            if leading {
                self.reconcile_sources(&mut runner).await;
                self.show_conditions(&runner, &mut shown).await;
            } else if !runner.running.is_empty() {
                tracing::info!("not leading: change event sources stopped");
                runner = Runner::default();
                self.events.sources.lock().expect("lock").clear();
                shown.clear();
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                r = leader_rx.changed() => if r.is_err() { return },
            }
        }
    }

    async fn reconcile_sources(&self, runner: &mut Runner) {
        // Every valid store (for `/refresh`); those with events annotations to run.
        let (ids, stores): (BTreeSet<StoreId>, Vec<(StoreId, String, Store)>) = {
            let st = self.state.lock().expect("lock");
            let valid = st
                .stores
                .iter()
                .filter_map(|(id, e)| Some((id, e, e.parsed.as_ref().ok()?)));
            let ids = valid.clone().map(|(id, _, _)| id.clone()).collect();
            let annotated = valid
                .filter(|(_, e, _)| e.events_key != crate::events::NO_ANNOTATIONS)
                .map(|(id, e, s)| (id.clone(), format!("{}\u{0}{}", e.spec_json, e.events_key), s.clone()))
                .collect();
            (ids, annotated)
        };
        self.events.intake.set_stores(ids);
        let wanted: BTreeSet<&StoreId> = stores.iter().map(|(id, _, _)| id).collect();
        for id in runner.running.keys().cloned().collect::<Vec<_>>() {
            if !wanted.contains(&id) {
                // Deleted, invalid, or no longer annotated.
                runner.stop(&id);
                self.events.sources.lock().expect("lock").remove(&id);
                self.events.intake.untrack(&id);
            }
        }
        for (id, fingerprint, store) in stores {
            let Some(address) = EventAddress::of(&store) else {
                continue;
            };
            // Unchanged and running (or failed to start less than RETRY ago): leave it.
            if runner
                .running
                .get(&id)
                .is_some_and(|r| r.fingerprint == fingerprint && (r.task.is_some() || r.started.elapsed() < RETRY))
            {
                continue;
            }
            let edited = runner.running.get(&id).is_some_and(|r| r.fingerprint != fingerprint);
            runner.stop(&id);
            self.events.sources.lock().expect("lock").remove(&id);
            if edited && let Some((_, stats)) = self.events.intake.stats_of(&id) {
                // A new configuration: the old one's problem no longer says anything.
                stats.healthy();
            }
            let (scheme, task) = match address {
                Err(e) => {
                    let stats = self.events.intake.track(&id, "invalid");
                    note(&stats, &id, &e.to_string());
                    ("invalid".to_string(), None)
                }
                Ok(a) if a.scheme == DOPPLER_WEBHOOK => {
                    let stats = self.events.intake.track(&id, DOPPLER_WEBHOOK);
                    self.events.intake.set_webhook_secret(&id, None);
                    let task = match &a.secret {
                        None => {
                            let problem = format!(
                                "{}: {DOPPLER_WEBHOOK} needs its signing secret in the annotation {} (<namespace>/<name>/<key>)",
                                id,
                                secretsync_core::events::EVENTS_SECRET_ANNOTATION
                            );
                            note(&stats, &id, &problem);
                            None
                        }
                        Some(sel) => Some(tokio::spawn(watch_signing_secret(
                            self.client.clone(),
                            self.events.intake.clone(),
                            id.clone(),
                            sel.clone(),
                            stats,
                        ))),
                    };
                    (DOPPLER_WEBHOOK.to_string(), task)
                }
                Ok(a) => {
                    let stats = self.events.intake.track(&id, &a.scheme);
                    match self.registry.build_events(&store).await {
                        None => {
                            let problem = format!(
                                "{id}: no event source `{}` is registered (known: {})",
                                a.scheme,
                                self.registry.event_schemes().join(", ")
                            );
                            note(&stats, &id, &problem);
                            (a.scheme, None)
                        }
                        Some(Err(e)) => {
                            note(&stats, &id, &e.to_string());
                            (a.scheme, None)
                        }
                        Some(Ok(source)) => {
                            self.events
                                .sources
                                .lock()
                                .expect("lock")
                                .insert(id.clone(), source.clone());
                            let task =
                                tokio::spawn(receive_loop(id.clone(), source, stats, self.events.intake.sender()));
                            tracing::info!(store = %id, source = a.scheme, "change events: receiving");
                            (a.scheme, Some(task))
                        }
                    }
                }
            };
            let stats = self.events.intake.stats_of(&id).map(|(_, s)| s).unwrap_or_default();
            runner.running.insert(
                id,
                Running {
                    fingerprint,
                    scheme,
                    stats,
                    task,
                    started: Instant::now(),
                },
            );
        }
    }

    /// Writes each store's `EventsReady` condition when what it should say changed.
    async fn show_conditions(&self, runner: &Runner, shown: &mut BTreeMap<StoreId, Wanted>) {
        shown.retain(|id, _| runner.running.contains_key(id));
        for (id, r) in &runner.running {
            let want = match r.stats.problem() {
                Some(p) => Wanted { ok: false, message: p },
                None if r.started.elapsed() < GRACE => continue,
                None => Wanted {
                    ok: true,
                    message: format!("change events ({}) are flowing", r.scheme),
                },
            };
            if shown.get(id) == Some(&want) {
                continue;
            }
            if self.write_condition(id, &want).await {
                shown.insert(id.clone(), want);
            }
        }
    }

    fn store_api(&self, id: &StoreId) -> Api<DynamicObject> {
        let (kind, plural) = match id.kind {
            StoreKind::ClusterSecretStore => ("ClusterSecretStore", "clustersecretstores"),
            StoreKind::SecretStore => ("SecretStore", "secretstores"),
        };
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&self.cfg.group, &self.cfg.version, kind), plural);
        match &id.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// Reads the store and patches its conditions when ours differs; whether the object
    /// now says `want`.
    async fn write_condition(&self, id: &StoreId, want: &Wanted) -> bool {
        let api = self.store_api(id);
        let obj = match api.get_opt(&id.name).await {
            Ok(Some(o)) => o,
            Ok(None) => return false,
            Err(e) => {
                tracing::debug!(store = %id, error = %secretsync_k8s::from_kube(e, "reading a store"), "store not read");
                return false;
            }
        };
        let conditions: Vec<Value> = obj
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let status = if want.ok { "True" } else { "False" };
        let ours = conditions
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(EVENTS_CONDITION));
        if let Some(c) = ours
            && c.get("status").and_then(Value::as_str) == Some(status)
            && c.get("message").and_then(Value::as_str) == Some(want.message.as_str())
        {
            return true;
        }
        let transition = match ours {
            Some(c) if c.get("status").and_then(Value::as_str) == Some(status) => c
                .get("lastTransitionTime")
                .cloned()
                .unwrap_or_else(|| json!(Timestamp::now().to_string())),
            _ => json!(Timestamp::now().to_string()),
        };
        let mut next: Vec<Value> = conditions
            .into_iter()
            .filter(|c| c.get("type").and_then(Value::as_str) != Some(EVENTS_CONDITION))
            .collect();
        next.push(json!({
            "type": EVENTS_CONDITION,
            "status": status,
            "reason": if want.ok { "EventsFlowing" } else { "EventSourceDown" },
            "message": want.message,
            "lastTransitionTime": transition,
        }));
        if !self.is_leader() {
            return false;
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let r = api
            .patch_status(
                &id.name,
                &params,
                &Patch::Merge(&json!({"status": {"conditions": next}})),
            )
            .await;
        self.count_api_write("status", r.is_ok());
        match r {
            // The problem itself was logged where it arose (once per new problem).
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(store = %id, error = %secretsync_k8s::from_kube(e, &format!("writing the status of {id}")), "status write failed");
                false
            }
        }
    }

    /// Drains received changes: coalesces a burst, syncs the readers of the changed keys on
    /// the fast lane reading only those keys, then acknowledges.
    pub(crate) async fn events_dispatch(self: Arc<Self>) {
        let Some(mut rx) = self.events.rx.lock().expect("lock").take() else {
            return;
        };
        while let Some(first) = rx.recv().await {
            let mut pending = Pending::default();
            pending.add(&first.store, first.delivery);
            collect_burst(&mut rx, &mut pending).await;
            self.sync_changes(pending).await;
        }
    }

    async fn sync_changes(&self, mut pending: Pending) {
        let changes = pending.take();
        if !self.is_leader() {
            // Not acknowledged: a pulled message comes again, to the next leader.
            return;
        }
        let mut only: BTreeSet<SpecId> = BTreeSet::new();
        let mut changed = BTreeMap::new();
        let mut read_by = Vec::with_capacity(changes.len());
        {
            let st = self.state.lock().expect("lock");
            for c in &changes {
                let readers: Vec<SpecId> = st
                    .es
                    .iter()
                    .filter(|(_, e)| {
                        e.parsed.as_ref().is_ok_and(|es| {
                            es.store_id().as_ref() == Some(&c.store)
                                && c.keys.as_ref().is_none_or(|keys| keys.iter().any(|k| reads_key(es, k)))
                        })
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                if !readers.is_empty() {
                    changed.insert(c.store.clone(), c.keys.clone());
                }
                read_by.push(!readers.is_empty());
                only.extend(readers);
            }
        }
        if !only.is_empty() {
            let ids: Vec<SpecId> = only.into_iter().collect();
            // Wait for any of them in another batch, then run them as one fast batch.
            loop {
                {
                    let mut st = self.state.lock().expect("lock");
                    if ids.iter().all(|id| !st.in_flight.contains(id)) {
                        st.in_flight.extend(ids.iter().cloned());
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tracing::debug!(
                specs = ids.len(),
                stores = changed.len(),
                "change events: syncing readers"
            );
            self.run_batch_with(
                ids,
                Lane::Fast,
                CycleOptions {
                    dry_run: false,
                    only: None,
                    changed: Some(changed),
                },
            )
            .await;
        }
        // Acknowledged once the sync finished: a crash before this means redelivery.
        for (c, synced) in changes.iter().zip(read_by) {
            if !c.acks.is_empty() {
                let source = self.events.sources.lock().expect("lock").get(&c.store).cloned();
                if let Some(s) = source
                    && let Err(e) = s.ack(&c.acks).await
                {
                    tracing::warn!(store = %c.store, error = %e, "acknowledging change events failed");
                }
            }
            self.events.intake.handled(&c.store, synced, c.events, c.oldest);
        }
    }
}

/// Records why a store's events cannot start; logs it when it is a new problem.
fn note(stats: &EventStats, store: &StoreId, problem: &str) {
    if stats.failed(problem) {
        tracing::warn!(store = %store, problem = %problem, "change events cannot start; the store keeps polling at its refreshInterval");
    }
}
