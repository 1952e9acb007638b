//! PushSecrets (`external-secrets.io/v1alpha1`), as ESO's controller handles them, through
//! core's push code ([`push_with_record`]): compare first (an equal remote value is no
//! write), `updatePolicy: IfNotExists`, `property` writes merged into a JSON secret.
//!
//! - **Watches.** PushSecrets of the configured group, and each one's source (the Secret
//!   of `selector.secret.name`, or the generator of `selector.generatorRef`) through the
//!   per-object watches of [`crate::refs`]: the source is read from memory, and a change of
//!   it is a watch event that pushes again at once.
//! - **When.** A new PushSecret, a changed spec, labels or annotations, and a changed
//!   source push at once; otherwise every `refreshInterval` (default 1h; `0`: never by
//!   time) plus up to 10 % jitter, so PushSecrets created together spread out; a failed
//!   push retries with backoff (5 s doubling, at most 5 minutes or the interval).
//! - **Status**, as ESO writes it: the `Ready` condition (`Synced` / "PushSecret synced
//!   successfully", or `Errored` with why), `syncedPushSecrets` (`<Kind>/<store>` → remote
//!   key (`key/property` with a property) → the `data[]` entry), `syncedResourceVersion`
//!   and `refreshTime`. Written only when the condition, the synced map or the version
//!   changes, or `refreshTime` is older than `refresh_time_every`: an unchanged refresh
//!   writes nothing.
//! - **`deletionPolicy: Delete`.** As ESO: the finalizer
//!   `pushsecret.externalsecrets.io/finalizer` is added; a remote key no longer pushed is
//!   deleted from the stores the PushSecret still names (a store removed from
//!   `secretStoreRefs` is never deleted from); when the PushSecret is deleted, every key in
//!   `syncedPushSecrets` is deleted, then the finalizer removed. Deletes go through
//!   [`SecretWriter::delete`](secretsync_core::SecretWriter), which deletes only secrets
//!   carrying the managed-by mark (ours, or ESO's): an unmanaged one is left alone. Where
//!   finalizers are not honoured (the object is gone at once), the delete event does the
//!   same from the last status seen.
//! - Only the leader pushes and writes; PushSecrets are sharded by `namespace/name` as
//!   ExternalSecrets are.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use rand::Rng;
use secretsync_core::error::Location;
use secretsync_core::manifest::push::PushDeletionPolicy;
use secretsync_core::manifest::{API_GROUP, Manifests, PushSecret, SpecId, StoreId, StoreKind, from_value};
use secretsync_core::push::{PushReport, Pushed, delete_pushed, push_with_record};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::refs::{RefKey, RefKind, Seen, User, generator_doc, static_target};
use crate::shared::Shared;
use crate::state::fnv;
use secretsync_k8s::{FIELD_MANAGER, from_kube};

/// ESO's finalizer on PushSecrets with `deletionPolicy: Delete`.
pub(crate) const FINALIZER: &str = "pushsecret.externalsecrets.io/finalizer";
/// ESO's message of a successful push.
pub(crate) const SYNCED_MESSAGE: &str = "PushSecret synced successfully";
/// ESO's message when the source Secret cannot be read.
pub(crate) const NO_SOURCE: &str = "could not get source secret";

const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const JITTER_FRACTION: f64 = 0.1;

/// A watched PushSecret of this replica's shard.
#[derive(Debug, Clone)]
pub(crate) struct PushEntry {
    uid: Option<String>,
    generation: Option<i64>,
    meta_hash: u64,
    parsed: Result<PushSecret, String>,
    /// `status` on the object as last seen (or written).
    observed: Value,
    finalizers: Vec<String>,
    /// Being deleted (a finalizer holds it).
    deleting: bool,
    /// Its remote keys were deleted (nothing more to do when it goes).
    cleaned: bool,
    /// What it pushed: from its status, then from our own pushes.
    record: BTreeSet<Pushed>,
    /// Push at the next look.
    pub(crate) dirty: bool,
    due: Option<Instant>,
    running: bool,
    failures: u32,
}

/// A PushSecret gone (no finalizer held it) whose remote keys are still to delete.
#[derive(Debug, Clone)]
struct Cleanup {
    ps: PushSecret,
    record: BTreeSet<Pushed>,
}

/// The PushSecrets and the lane's wake-up.
#[derive(Debug, Default)]
pub(crate) struct PushState {
    pub(crate) entries: BTreeMap<SpecId, PushEntry>,
    cleanups: Vec<Cleanup>,
    /// The watch has listed once.
    listed: bool,
    pub(crate) wake: Arc<Notify>,
}

/// A PushSecret object as core's manifest document.
fn parse(obj: &DynamicObject) -> Result<PushSecret, String> {
    let mut v = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(format!("{API_GROUP}/v1alpha1")));
        m.insert("kind".into(), json!("PushSecret"));
        m.remove("status");
    }
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let origin = Location {
        file: format!("cluster:PushSecret {ns}/{name}").into(),
        document: 1,
        object: None,
        field: None,
    };
    let loaded = from_value(v, origin);
    if let Some(e) = loaded.errors.first() {
        return Err(e.to_string());
    }
    let ps = loaded
        .manifests
        .push_secrets
        .into_iter()
        .next()
        .ok_or_else(|| "not a PushSecret".to_string())?;
    match ps.check().first() {
        Some(e) => Err(e.to_string()),
        None => Ok(ps),
    }
}

/// The objects a PushSecret reads: its source Secret or its generator.
fn source_refs(ps: &PushSecret) -> BTreeSet<RefKey> {
    let ns = ps.namespace().to_string();
    let mut out = BTreeSet::new();
    if let Some(g) = &ps.spec.selector.generator_ref
        && let Some(kind) = RefKind::generator(&g.kind)
    {
        out.insert(RefKey {
            kind,
            namespace: ns,
            name: g.name.clone(),
        });
    } else if let Some(name) = ps.spec.selector.secret.as_ref().and_then(|s| s.name.clone()) {
        out.insert(RefKey {
            kind: RefKind::Secret,
            namespace: ns,
            name,
        });
    }
    out
}

/// `<Kind>/<name>`, ESO's key of a store in `syncedPushSecrets`.
fn eso_store_key(id: &StoreId) -> String {
    format!("{}/{}", id.kind, id.name)
}

/// The store of an ESO store key, for a PushSecret in `namespace`.
fn store_of_key(key: &str, namespace: &str) -> Option<StoreId> {
    let (kind, name) = key.split_once('/')?;
    let kind = match kind {
        "ClusterSecretStore" => StoreKind::ClusterSecretStore,
        "SecretStore" => StoreKind::SecretStore,
        _ => return None,
    };
    Some(StoreId {
        namespace: (kind == StoreKind::SecretStore).then(|| namespace.to_string()),
        kind,
        name: name.to_string(),
    })
}

/// The record of what was pushed, from a status's `syncedPushSecrets`.
fn record_of(status: &Value, namespace: &str) -> BTreeSet<Pushed> {
    let mut out = BTreeSet::new();
    let Some(stores) = status.get("syncedPushSecrets").and_then(Value::as_object) else {
        return out;
    };
    for (store_key, entries) in stores {
        let Some(store) = store_of_key(store_key, namespace) else {
            continue;
        };
        for (ref_key, data) in entries.as_object().into_iter().flatten() {
            let remote_key = data
                .pointer("/match/remoteRef/remoteKey")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| ref_key.clone());
            out.insert(Pushed {
                store: store.to_string(),
                remote_key,
            });
        }
    }
    out
}

/// `syncedPushSecrets` for a record: store → remote key (`key/property`) → `data[]` entry.
fn synced_map(ps: &PushSecret, stores: &[StoreId], record: &BTreeSet<Pushed>) -> Value {
    let mut out = serde_json::Map::new();
    for p in record {
        let Some(store) = stores.iter().find(|s| s.to_string() == p.store) else {
            continue;
        };
        let entries = out
            .entry(eso_store_key(store))
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("an object");
        let mut any = false;
        for d in ps
            .spec
            .data
            .iter()
            .filter(|d| d.match_.remote_ref.remote_key == p.remote_key)
        {
            let r = &d.match_.remote_ref;
            let key = match &r.property {
                Some(prop) => format!("{}/{prop}", r.remote_key),
                None => r.remote_key.clone(),
            };
            entries.insert(key, serde_json::to_value(d).unwrap_or(Value::Null));
            any = true;
        }
        if !any {
            // A stale key whose delete failed: still ours to delete.
            entries.insert(
                p.remote_key.clone(),
                json!({"match": {"remoteRef": {"remoteKey": p.remote_key}}}),
            );
        }
    }
    Value::Object(out)
}

/// A merge patch that turns `have` into `want`: keys `want` lacks become `null`.
fn replace_patch(have: &Value, want: &Value) -> Value {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => {
            let mut out = serde_json::Map::new();
            for (k, hv) in h {
                match w.get(k) {
                    None => {
                        out.insert(k.clone(), Value::Null);
                    }
                    Some(wv) => {
                        out.insert(k.clone(), replace_patch(hv, wv));
                    }
                }
            }
            for (k, wv) in w {
                if !h.contains_key(k) {
                    out.insert(k.clone(), wv.clone());
                }
            }
            Value::Object(out)
        }
        _ => want.clone(),
    }
}

/// The Ready condition of a status: (status, reason, message, lastTransitionTime).
fn ready_of(status: &Value) -> Option<(String, String, String, String)> {
    let c = status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?;
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message"), s("lastTransitionTime")))
}

/// `refreshInterval` (default 1h); `None` for `0`.
fn interval(ps: &PushSecret) -> Option<Duration> {
    match &ps.spec.refresh_interval {
        None => Some(secretsync_core::manifest::DEFAULT_REFRESH_INTERVAL),
        Some(s) => secretsync_core::duration::parse_go_duration(s)
            .ok()
            .filter(|d| !d.is_zero()),
    }
}

/// Why a push failed, as ESO words it, naming keys and stores, never values.
fn failure(report: &PushReport) -> Option<String> {
    if let Some(e) = report.errors.first() {
        return Some(format!("set secret failed: {e}"));
    }
    report.entries.iter().find(|e| e.error.is_some()).map(|e| {
        format!(
            "could not write remote ref {} to target secretstore {}: {}",
            e.remote_key,
            e.store,
            e.error.clone().unwrap_or_default()
        )
    })
}

impl Shared {
    /// A reference to an object of the configured group at `version`.
    fn reference_in(
        &self,
        kind: &str,
        version: &str,
        namespace: &str,
        name: &str,
        uid: Option<String>,
    ) -> k8s_openapi::api::core::v1::ObjectReference {
        let mut r = self.reference(kind, Some(namespace), name, uid);
        r.api_version = Some(format!("{}/{version}", self.cfg.group));
        r
    }

    fn push_api(&self, namespace: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.cfg.group, "v1alpha1", "PushSecret"),
            "pushsecrets",
        );
        Api::namespaced_with(self.client.clone(), namespace, &ar)
    }

    /// Watches PushSecrets (all namespaces, or the one configured).
    pub(crate) async fn watch_push_secrets(self: Arc<Self>) {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.cfg.group, "v1alpha1", "PushSecret"),
            "pushsecrets",
        );
        let api: Api<DynamicObject> = match &self.cfg.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let mut relist: Option<BTreeSet<SpecId>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => relist = Some(BTreeSet::new()),
                Ok(Event::InitApply(obj)) => {
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(id_of(&obj));
                    }
                    self.on_push(obj);
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        let gone: Vec<SpecId> = {
                            let st = self.state.lock().expect("lock");
                            st.push
                                .entries
                                .keys()
                                .filter(|id| !seen.contains(*id))
                                .cloned()
                                .collect()
                        };
                        for id in gone {
                            self.forget_push(&id, None);
                        }
                    }
                    let wake = {
                        let mut st = self.state.lock().expect("lock");
                        st.push.listed = true;
                        st.push.wake.clone()
                    };
                    wake.notify_one();
                }
                Ok(Event::Apply(obj)) => self.on_push(obj),
                Ok(Event::Delete(obj)) => {
                    let id = id_of(&obj);
                    self.forget_push(&id, Some(&obj));
                }
                Err(e) => {
                    tracing::warn!(kind = "PushSecret", error = %secretsync_core::error::redact_quoted(&e.to_string()), "watch failed; retrying");
                }
            }
        }
    }

    fn on_push(&self, obj: DynamicObject) {
        let id = id_of(&obj);
        if !self.cfg.owns(&id.namespace, &id.name) {
            self.forget_push(&id, None);
            return;
        }
        let status = obj.data.get("status").cloned().unwrap_or(Value::Null);
        let finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
        let deleting = obj.metadata.deletion_timestamp.is_some();
        let generation = obj.metadata.generation;
        let labels = serde_json::to_string(&obj.metadata.labels).unwrap_or_default();
        let annotations = serde_json::to_string(&obj.metadata.annotations).unwrap_or_default();
        let meta_hash = fnv(&format!("{labels}|{annotations}"));
        let mut st = self.state.lock().expect("lock");
        if let Some(e) = st.push.entries.get_mut(&id)
            && e.uid == obj.metadata.uid
            && e.generation == generation
            && e.meta_hash == meta_hash
            && e.deleting == deleting
        {
            // Only the status or the finalizers (ours) changed.
            e.observed = status;
            e.finalizers = finalizers;
            return;
        }
        drop(st);
        let parsed = parse(&obj);
        if let Err(e) = &parsed {
            tracing::warn!(push_secret = %id, error = %e, "invalid PushSecret");
        }
        let refs = parsed.as_ref().map(source_refs).unwrap_or_default();
        let mut st = self.state.lock().expect("lock");
        let previous = st.push.entries.remove(&id).filter(|p| p.uid == obj.metadata.uid);
        let mut record = record_of(&status, &id.namespace);
        if let Some(p) = &previous {
            record.extend(p.record.iter().cloned());
        }
        st.push.entries.insert(
            id.clone(),
            PushEntry {
                uid: obj.metadata.uid.clone(),
                generation,
                meta_hash,
                parsed,
                observed: status,
                finalizers,
                deleting,
                cleaned: previous.as_ref().is_some_and(|p| p.cleaned),
                record,
                dirty: true,
                due: None,
                running: previous.as_ref().is_some_and(|p| p.running),
                failures: 0,
            },
        );
        st.refs.set_user(User::PushSecret(id), refs);
        let wake = st.push.wake.clone();
        drop(st);
        wake.notify_one();
    }

    /// A PushSecret is gone (or moved to another shard: `obj` is `None`). With
    /// `deletionPolicy: Delete` and no finalizer of ours that already cleaned up, its
    /// remote keys are deleted now.
    fn forget_push(&self, id: &SpecId, obj: Option<&DynamicObject>) {
        if let Some(o) = obj {
            // A ClusterPushSecret's: it puts it back.
            self.on_owned_ps_deleted(o);
        }
        let mut st = self.state.lock().expect("lock");
        let entry = st.push.entries.remove(id);
        st.refs.set_user(User::PushSecret(id.clone()), BTreeSet::new());
        let Some(obj) = obj else {
            return;
        };
        if entry.as_ref().is_some_and(|e| e.cleaned) {
            return;
        }
        let Ok(ps) = parse(obj) else {
            return;
        };
        if ps.spec.deletion_policy != PushDeletionPolicy::Delete || !self.cfg.owns(&id.namespace, &id.name) {
            return;
        }
        let mut record = record_of(obj.data.get("status").unwrap_or(&Value::Null), &id.namespace);
        if let Some(e) = &entry {
            record.extend(e.record.iter().cloned());
        }
        if record.is_empty() {
            return;
        }
        st.push.cleanups.push(Cleanup { ps, record });
        let wake = st.push.wake.clone();
        drop(st);
        wake.notify_one();
    }

    /// Pushes what is due, while this replica leads.
    pub(crate) async fn push_lane(self: Arc<Self>) {
        let wake = self.state.lock().expect("lock").push.wake.clone();
        loop {
            self.wait_ready_leader().await;
            let notified = wake.notified();
            let (cleanups, due, wait) = self.pick_push();
            if cleanups.is_empty() && due.is_empty() {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            for c in cleanups {
                self.clean_up_push(c).await;
            }
            let me = &self;
            futures::stream::iter(due)
                .map(|id| async move { me.reconcile_push(&id).await })
                .buffer_unordered(self.cfg.status_concurrency.max(1))
                .collect::<Vec<()>>()
                .await;
        }
    }

    fn pick_push(&self) -> (Vec<Cleanup>, Vec<SpecId>, Duration) {
        let now = Instant::now();
        let mut st = self.state.lock().expect("lock");
        if !st.push.listed {
            return (vec![], vec![], Duration::from_millis(50));
        }
        let cleanups = std::mem::take(&mut st.push.cleanups);
        let mut due = vec![];
        let mut next: Option<Instant> = None;
        for (id, e) in st.push.entries.iter_mut() {
            if e.running {
                continue;
            }
            if e.dirty || e.due.is_some_and(|d| d <= now) {
                e.dirty = false;
                e.running = true;
                due.push(id.clone());
            } else if let Some(d) = e.due {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        let wait = next
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(5))
            .clamp(Duration::from_millis(20), Duration::from_secs(5));
        (cleanups, due, wait)
    }

    /// The manifests a push needs: the stores, the PushSecret, its source. `Err(None)`:
    /// the source's watch has not listed yet (wait, write no status).
    fn push_manifests(&self, ps: &PushSecret) -> Result<Manifests, Option<String>> {
        let st = self.state.lock().expect("lock");
        let now = Instant::now();
        if source_refs(ps)
            .iter()
            .any(|k| matches!(st.refs.seen(k), Seen::Unknown) && !st.refs.waited(k, now))
        {
            return Err(None);
        }
        let mut m = Manifests {
            stores: st
                .stores
                .values()
                .filter_map(|s| s.parsed.as_ref().ok().cloned())
                .collect(),
            push_secrets: vec![ps.clone()],
            ..Manifests::default()
        };
        for key in source_refs(ps) {
            match (key.kind, st.refs.seen(&key)) {
                (RefKind::Secret | RefKind::ConfigMap, Seen::Present(obj)) => {
                    m.static_targets.push(static_target(&key, &obj))
                }
                (RefKind::Password | RefKind::Uuid, Seen::Present(obj)) => {
                    m.generators
                        .push(generator_doc(&key, &obj).map_err(|e| format!("{key}: {e}"))?);
                }
                (RefKind::Secret | RefKind::ConfigMap, seen) => {
                    let why = if matches!(seen, Seen::Unknown) {
                        "not seen yet"
                    } else {
                        "not found"
                    };
                    return Err(Some(format!("{NO_SOURCE}: {key} {why}")));
                }
                (_, _) => return Err(Some(format!("generator {key} not found"))),
            }
        }
        Ok(m)
    }

    async fn reconcile_push(&self, id: &SpecId) {
        let entry = self.state.lock().expect("lock").push.entries.get(id).cloned();
        let Some(entry) = entry else {
            return;
        };
        let outcome = self.push_one(id, &entry).await;
        let mut st = self.state.lock().expect("lock");
        let Some(e) = st.push.entries.get_mut(id).filter(|e| e.uid == entry.uid) else {
            return;
        };
        e.running = false;
        let Some(o) = outcome else {
            // Not the leader: the next one pushes.
            e.dirty = true;
            return;
        };
        if let Some(r) = o.record {
            e.record = r;
        }
        if let Some(s) = o.status {
            e.observed = s;
        }
        if let Some(f) = o.finalizers {
            e.finalizers = f;
        }
        e.cleaned |= o.cleaned;
        let now = Instant::now();
        if o.wait {
            e.due = Some(now + Duration::from_millis(500));
        } else if o.ok {
            e.failures = 0;
            e.due = e.parsed.as_ref().ok().and_then(interval).map(|iv| {
                let jitter = iv.mul_f64(rand::rng().random_range(0.0..JITTER_FRACTION));
                now + iv + jitter
            });
        } else {
            e.failures = e.failures.saturating_add(1);
            let cap = e
                .parsed
                .as_ref()
                .ok()
                .and_then(interval)
                .map_or(BACKOFF_MAX, |iv| iv.clamp(BACKOFF_BASE, BACKOFF_MAX));
            let wait = BACKOFF_BASE.saturating_mul(1u32 << (e.failures - 1).min(16)).min(cap);
            // An invalid spec waits for a change of it.
            e.due = e.parsed.is_ok().then_some(now + wait);
        }
    }

    /// One push (or, being deleted, one cleanup) and its status. `None` when this replica
    /// does not lead.
    async fn push_one(&self, id: &SpecId, entry: &PushEntry) -> Option<Outcome> {
        if !self.is_leader() {
            return None;
        }
        let ps = match &entry.parsed {
            Ok(ps) => ps,
            Err(msg) => {
                let status = self.write_push_status(id, entry, false, msg, None, &[]).await;
                return Some(Outcome::failed(status));
            }
        };
        let engine = self.engine().await;
        let m = match self.push_manifests(ps) {
            Ok(m) => m,
            Err(Some(msg)) => {
                let status = self.write_push_status(id, entry, false, &msg, None, &[]).await;
                return Some(Outcome::failed(status));
            }
            // Its watch lists shortly (and then marks it dirty).
            Err(None) => {
                return Some(Outcome {
                    wait: true,
                    ..Outcome::default()
                });
            }
        };
        let stores: Vec<StoreId> = m.stores.iter().map(|s| s.id.clone()).collect();
        if entry.deleting {
            if entry.cleaned || !entry.finalizers.iter().any(|f| f == FINALIZER) {
                // Held by someone else's finalizer: nothing of ours to do.
                return Some(Outcome {
                    ok: true,
                    ..Outcome::default()
                });
            }
            let (report, left) = delete_pushed(&m, &engine, ps, &entry.record).await;
            if !report.ok() || !left.is_empty() {
                let msg = format!(
                    "Failed to Delete Secrets from Provider: {}",
                    failure(&report).unwrap_or_else(|| "some remote keys are left".to_string())
                );
                let status = self
                    .write_push_status(id, entry, false, &msg, Some(&left), &stores)
                    .await;
                return Some(Outcome {
                    record: Some(left),
                    ..Outcome::failed(status)
                });
            }
            let finalizers = self.set_finalizer(id, entry, false).await;
            return Some(Outcome {
                ok: true,
                cleaned: true,
                record: Some(BTreeSet::new()),
                finalizers,
                ..Outcome::default()
            });
        }
        if !self.is_leader() {
            return None;
        }
        let (report, keep) = push_with_record(&m, &engine, ps, &entry.record).await;
        tracing::debug!(push_secret = %id, writes = report.writes, deletes = report.deletes, "pushed");
        let ok = report.ok();
        let msg = failure(&report).unwrap_or_else(|| SYNCED_MESSAGE.to_string());
        let status = self.write_push_status(id, entry, ok, &msg, Some(&keep), &stores).await;
        let finalizers = if ps.spec.deletion_policy == PushDeletionPolicy::Delete {
            self.set_finalizer(id, entry, true).await
        } else {
            None
        };
        Some(Outcome {
            ok,
            record: Some(keep),
            status,
            finalizers,
            ..Outcome::default()
        })
    }

    /// Adds (or removes) our finalizer unless it is already so; the finalizers now, when
    /// written.
    async fn set_finalizer(&self, id: &SpecId, entry: &PushEntry, present: bool) -> Option<Vec<String>> {
        let has = entry.finalizers.iter().any(|f| f == FINALIZER);
        if has == present || !self.is_leader() {
            return None;
        }
        let mut finalizers: Vec<String> = entry.finalizers.iter().filter(|f| *f != FINALIZER).cloned().collect();
        if present {
            finalizers.push(FINALIZER.to_string());
        }
        let mut meta = json!({"finalizers": finalizers});
        if let Some(uid) = &entry.uid {
            // Never the finalizers of a namesake created since.
            meta["uid"] = json!(uid);
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let r = self
            .push_api(&id.namespace)
            .patch(&id.name, &params, &Patch::Merge(&json!({"metadata": meta})))
            .await;
        self.count_api_write("pushsecret", r.is_ok());
        match r {
            Ok(_) => Some(finalizers),
            Err(e) => {
                tracing::warn!(push_secret = %id, error = %from_kube(e, &format!("updating the finalizers of PushSecret {id}")), "finalizer not written");
                None
            }
        }
    }

    /// Writes ESO's status unless the object already says so; the status now on the object
    /// when it wrote it.
    async fn write_push_status(
        &self,
        id: &SpecId,
        entry: &PushEntry,
        ok: bool,
        message: &str,
        record: Option<&BTreeSet<Pushed>>,
        stores: &[StoreId],
    ) -> Option<Value> {
        let have = &entry.observed;
        let (status, reason) = if ok { ("True", "Synced") } else { ("False", "Errored") };
        let now = Timestamp::now();
        let before = ready_of(have);
        let ltt = match &before {
            Some((s, _, _, t)) if s == status && !t.is_empty() => t.clone(),
            _ => now.to_string(),
        };
        let version = format!("{}-{:016x}", entry.generation.unwrap_or(0), entry.meta_hash);
        let synced = match (record, &entry.parsed) {
            (Some(r), Ok(ps)) => Some(synced_map(ps, stores, r)),
            _ => None,
        };
        let same_condition = before
            .as_ref()
            .is_some_and(|(s, r, m, _)| s == status && r == reason && m == message);
        let same_synced = synced
            .as_ref()
            .is_none_or(|want| have.get("syncedPushSecrets").unwrap_or(&json!({})) == want);
        let same_version = !ok || have.get("syncedResourceVersion").and_then(Value::as_str) == Some(version.as_str());
        let fresh = !ok
            || have
                .get("refreshTime")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| {
                    let age = now.duration_since(t);
                    !age.is_negative() && age.unsigned_abs() < self.cfg.refresh_time_every
                });
        if (same_condition && same_synced && same_version && fresh) || !self.is_leader() {
            return None;
        }
        let mut patch = json!({
            "conditions": [{
                "type": "Ready",
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": ltt,
            }],
        });
        if let Some(want) = &synced {
            patch["syncedPushSecrets"] = replace_patch(have.get("syncedPushSecrets").unwrap_or(&json!({})), want);
        }
        if ok {
            patch["refreshTime"] = json!(now.to_string());
            patch["syncedResourceVersion"] = json!(version);
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let r = self
            .push_api(&id.namespace)
            .patch_status(&id.name, &params, &Patch::Merge(&json!({"status": patch})))
            .await;
        self.count_api_write("status", r.is_ok());
        if !ok {
            tracing::warn!(push_secret = %id, message = %message, "push failed");
        }
        // An Event when the condition changes (ESO sends one per reconcile).
        if !same_condition {
            let type_ = if ok {
                kube::runtime::events::EventType::Normal
            } else {
                kube::runtime::events::EventType::Warning
            };
            self.publish(
                &self.reference_in("PushSecret", "v1alpha1", &id.namespace, &id.name, entry.uid.clone()),
                type_,
                reason,
                message.to_string(),
            )
            .await;
        }
        match r {
            Ok(obj) => Some(obj.data.get("status").cloned().unwrap_or(Value::Null)),
            Err(e) => {
                tracing::warn!(push_secret = %id, error = %from_kube(e, &format!("writing the status of PushSecret {id}")), "status write failed");
                None
            }
        }
    }

    /// Deletes the remote keys of a PushSecret that is gone.
    async fn clean_up_push(&self, c: Cleanup) {
        if !self.is_leader() {
            self.state.lock().expect("lock").push.cleanups.push(c);
            return;
        }
        let engine = self.engine().await;
        let m = {
            let st = self.state.lock().expect("lock");
            Manifests {
                stores: st
                    .stores
                    .values()
                    .filter_map(|s| s.parsed.as_ref().ok().cloned())
                    .collect(),
                ..Manifests::default()
            }
        };
        let (report, left) = delete_pushed(&m, &engine, &c.ps, &c.record).await;
        let id = format!("{}/{}", c.ps.namespace(), c.ps.name());
        if !report.ok() || !left.is_empty() {
            tracing::warn!(push_secret = %id, error = %failure(&report).unwrap_or_default(), left = left.len(), "deleting the remote secrets of a deleted PushSecret failed");
        } else {
            tracing::info!(push_secret = %id, deleted = report.deletes, "remote secrets of a deleted PushSecret deleted");
        }
    }
}

/// What one reconcile did, for the entry.
#[derive(Debug, Default)]
struct Outcome {
    ok: bool,
    record: Option<BTreeSet<Pushed>>,
    status: Option<Value>,
    finalizers: Option<Vec<String>>,
    cleaned: bool,
    /// The source is not known yet: again shortly, no status written.
    wait: bool,
}

impl Outcome {
    fn failed(status: Option<Value>) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }
}

fn id_of(obj: &DynamicObject) -> SpecId {
    SpecId {
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        name: obj.metadata.name.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_removes_what_is_no_longer_synced() {
        let have = json!({"ClusterSecretStore/a": {"k1": {"x": 1}, "k2": {"x": 2}}, "SecretStore/b": {"k": {}}});
        let want = json!({"ClusterSecretStore/a": {"k1": {"x": 1}}});
        assert_eq!(
            replace_patch(&have, &want),
            json!({"ClusterSecretStore/a": {"k1": {"x": 1}, "k2": null}, "SecretStore/b": null})
        );
    }

    #[test]
    fn store_keys_round_trip() {
        let id = store_of_key("SecretStore/s", "app").unwrap();
        assert_eq!(id.namespace.as_deref(), Some("app"));
        assert_eq!(eso_store_key(&id), "SecretStore/s");
        let id = store_of_key("ClusterSecretStore/c", "app").unwrap();
        assert_eq!(id.namespace, None);
        assert!(store_of_key("Other/x", "app").is_none());
    }
}
