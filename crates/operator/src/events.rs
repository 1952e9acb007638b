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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use secretsync_core::events::{
    DOPPLER_WEBHOOK, EventAddress, EventSource, EventStats, Incoming, Intake, Pending, collect_burst, reads_key,
    receive_loop,
};
use secretsync_core::manifest::{SecretKeySelector, SpecId, Store, StoreId, StoreKind};
use secretsync_core::{SecretValue, engine::CycleOptions};
use secretsync_k8s::FIELD_MANAGER;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::lanes::Lane;
use crate::shared::Shared;

/// The status condition type on a store with an event source.
pub const EVENTS_CONDITION: &str = "EventsReady";

/// A pulled source that has not failed this long after it started counts as flowing (a
/// long poll that finds nothing takes ~20 s to return).
const GRACE: Duration = Duration::from_secs(3);

/// A source that could not be built (credentials not there yet, say) is tried again this
/// often; the same problem again writes no status and logs nothing new.
const RETRY: Duration = Duration::from_secs(30);

/// The operator's event state, in [`Shared`].
pub(crate) struct Events {
    pub(crate) intake: Arc<Intake>,
    rx: Mutex<Option<mpsc::Receiver<Incoming>>>,
    /// Pulled sources by store, for acknowledgements.
    sources: Mutex<BTreeMap<StoreId, Arc<dyn EventSource>>>,
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
struct Running {
    /// Spec and annotations it was started from.
    fingerprint: String,
    scheme: String,
    stats: Arc<EventStats>,
    task: Option<JoinHandle<()>>,
    started: Instant,
}

/// The running sources; aborted when dropped (leadership lost, controller stopped).
#[derive(Default)]
struct Runner {
    running: BTreeMap<StoreId, Running>,
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
    fn stop(&mut self, id: &StoreId) {
        if let Some(r) = self.running.remove(id)
            && let Some(t) = r.task
        {
            t.abort();
        }
    }
}

/// What a condition on a store says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    ok: bool,
    message: String,
}

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

/// Keeps a Doppler webhook store's signing secret current: read when the watch starts and
/// whenever the Secret changes, never per request.
async fn watch_signing_secret(
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
