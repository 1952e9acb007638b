//! The running side of [`push`](crate::push): the PushSecret watch, the push lane
//! (pushes through core, ESO's status, the `deletionPolicy: Delete` finalizer), only on the
//! leader.

use crate::refs::{RefKind, Seen, User, generator_doc, static_target};
use crate::shared::Shared;
use crate::state::fnv;
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use rand::Rng;
use secretsync_core::manifest::push::PushDeletionPolicy;
use secretsync_core::manifest::{Manifests, PushSecret, SpecId, StoreId};
use secretsync_core::push::{Pushed, delete_pushed, push_with_record};
use secretsync_k8s::{FIELD_MANAGER, from_kube};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::push::*;

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
