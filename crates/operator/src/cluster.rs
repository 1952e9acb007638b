//! ClusterExternalSecrets, as ESO's controller handles them: one ExternalSecret per selected
//! namespace, owned by the ClusterExternalSecret, and an ESO-shaped status.
//!
//! A ClusterExternalSecret selects the namespaces listed in `spec.namespaces` and those
//! any of its label selectors (`namespaceSelectors`, the deprecated `namespaceSelector`)
//! match; namespaces being deleted are skipped. In each, the leader of the
//! ClusterExternalSecret's shard (`shard_of("", name)`) applies, by server-side apply with
//! our field manager, an ExternalSecret named `spec.externalSecretName` (default: the
//! ClusterExternalSecret's name) with `spec.externalSecretSpec`, the labels and annotations
//! of `spec.externalSecretMetadata` (plus the ClusterExternalSecret's `force-sync`), and a
//! controller owner reference to the ClusterExternalSecret. An ExternalSecret of that name
//! that is not owned by it is left alone and its namespace is reported failed. The
//! ExternalSecrets it made in namespaces that no longer match, or under a previous name, are
//! deleted, as are all of them when it is deleted. Everything is re-evaluated when the
//! ClusterExternalSecret or a Namespace changes, when one of its ExternalSecrets is deleted,
//! and every `spec.refreshTime` (default 1m).
//!
//! Status, as ESO writes it: `externalSecretName`, `provisionedNamespaces`,
//! `failedNamespaces` (`namespace`, `reason`), and one condition `Ready`: `True`, or `False`
//! with the message "one or more namespaces failed" (or why the spec is invalid).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use secretsync_core::error::Location;
use secretsync_core::manifest::{API_GROUP, ClusterExternalSecret, FORCE_SYNC_ANNOTATION};
use serde_json::{Value, json};

use crate::owned::OwnedCopy;
use crate::shared::Shared;
use crate::state::{CesEntry, Cleanup, Kind, NsEntry, Observed, Parsed, fnv};
use secretsync_k8s::FIELD_MANAGER;
use secretsync_k8s::from_kube;

/// ESO's reason for a namespace whose ExternalSecret someone else owns.
pub(crate) const ALREADY_EXISTS: &str = "external secret already exists in namespace";
/// ESO's message of `Ready=False` when namespaces failed.
pub(crate) const NAMESPACES_FAILED: &str = "one or more namespaces failed";

/// The controller owner reference of an object, when it is a ClusterExternalSecret of
/// `group`: its name and uid.
pub(crate) fn ces_owner(obj: &DynamicObject, group: &str) -> Option<(String, String)> {
    crate::owned::controller_owner(obj, "ClusterExternalSecret", group)
}

/// Whether `want` is contained in `have`: every key of an object, with a contained value;
/// arrays of the same length, element by element; other values equal. A cluster may add
/// defaults; it must not change what we wrote.
fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| wv.is_null() || h.get(k).is_some_and(|hv| contains(hv, wv))),
        (Value::Array(h), Value::Array(w)) => h.len() == w.len() && h.iter().zip(w).all(|(a, b)| contains(a, b)),
        _ => have == want,
    }
}

impl Shared {
    fn ces_api(&self) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.cfg.group, &self.cfg.version, "ClusterExternalSecret"),
            "clusterexternalsecrets",
        );
        Api::all_with(self.client.clone(), &ar)
    }

    /// Namespaces a ClusterExternalSecret selects now: (where it gets an ExternalSecret,
    /// every matching one including those being deleted).
    fn select(
        &self,
        ces: &ClusterExternalSecret,
        namespaces: &BTreeMap<String, NsEntry>,
    ) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut live = BTreeSet::new();
        let mut all = BTreeSet::new();
        for (name, ns) in namespaces {
            if self.cfg.namespace.as_ref().is_some_and(|only| only != name) || !ces.selects(name, &ns.labels) {
                continue;
            }
            all.insert(name.clone());
            if !ns.terminating {
                live.insert(name.clone());
            }
        }
        (live, all)
    }

    /// A ClusterExternalSecret was added or changed.
    pub(crate) fn on_ces(&self, obj: DynamicObject) {
        let name = obj.metadata.name.clone().unwrap_or_default();
        if !self.cfg.owns("", &name) {
            // Another shard's (or it moved there).
            self.state.lock().expect("lock").ces.remove(&name);
            return;
        }
        let uid = obj.metadata.uid.clone();
        if obj.metadata.deletion_timestamp.is_some() {
            // Being deleted (foreground, or held by a finalizer): stop making ExternalSecrets
            // the garbage collector is removing, and remove them ourselves.
            let known = self.state.lock().expect("lock").ces.contains_key(&name);
            if known {
                self.on_ces_deleted(&name, uid);
            } else {
                // First seen so (a restart): what its status says it made.
                let observed = Observed::from_status(obj.data.get("status"));
                let es_name = observed.external_secret_name.clone().unwrap_or_else(|| {
                    obj.data
                        .pointer("/spec/externalSecretName")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .unwrap_or(&name)
                        .to_string()
                });
                let cleanup = Cleanup {
                    name: name.clone(),
                    uid,
                    es_names: BTreeSet::from([es_name]),
                    namespaces: observed.provisioned,
                };
                self.state.lock().expect("lock").ces_cleanups.push(cleanup);
                self.ces_wake.notify_one();
            }
            return;
        }
        let generation = obj.metadata.generation;
        let force_sync = obj
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FORCE_SYNC_ANNOTATION))
            .cloned();
        let observed = Observed::from_status(obj.data.get("status"));
        {
            let mut st = self.state.lock().expect("lock");
            if let Some(e) = st.ces.get_mut(&name)
                && e.uid == uid
                && e.generation == generation
                && e.force_sync == force_sync
            {
                // Only the status (ours) changed.
                e.observed = observed;
                return;
            }
        }
        let parsed = self.parse_ces(&obj, &name);
        if let Err(e) = &parsed {
            tracing::warn!(cluster_external_secret = %name, error = %e, "invalid ClusterExternalSecret");
        }
        let mut st = self.state.lock().expect("lock");
        let previous = st.ces.remove(&name).filter(|p| p.uid == uid);
        let (applied, made, made_name) = match previous {
            Some(p) => (p.applied, p.made, p.made_name),
            None => Default::default(),
        };
        st.ces.insert(
            name,
            CesEntry {
                uid,
                generation,
                force_sync,
                parsed,
                observed,
                dirty: true,
                due: None,
                running: false,
                targets: BTreeSet::new(),
                applied,
                made,
                made_name,
            },
        );
        drop(st);
        self.ces_wake.notify_one();
    }

    fn parse_ces(&self, obj: &DynamicObject, name: &str) -> Result<Arc<Parsed>, String> {
        let mut v = serde_json::to_value(obj).map_err(|e| e.to_string())?;
        if let Some(m) = v.as_object_mut() {
            m.insert("apiVersion".into(), json!(format!("{API_GROUP}/{}", self.cfg.version)));
            m.insert("kind".into(), json!("ClusterExternalSecret"));
            m.remove("status");
        }
        let location = Location {
            file: format!("cluster:ClusterExternalSecret {name}").into(),
            document: 1,
            object: Some(format!("ClusterExternalSecret {name}")),
            field: None,
        };
        let ces = ClusterExternalSecret::parse(v, &location).map_err(|e| e.to_string())?;
        if let Some(e) = ces.check_spec().first() {
            return Err(e.to_string());
        }
        let raw_spec = obj
            .data
            .get("spec")
            .and_then(|s| s.get("externalSecretSpec"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        Ok(Arc::new(Parsed { ces, raw_spec }))
    }

    /// A ClusterExternalSecret is gone: its ExternalSecrets go too (the garbage collector
    /// would delete them through their owner reference; we do not wait for it, as ESO
    /// does not).
    pub(crate) fn on_ces_deleted(&self, name: &str, uid: Option<String>) {
        let mut st = self.state.lock().expect("lock");
        let Some(e) = st.ces.remove(name) else {
            return;
        };
        let cleanup = e.cleanup(name, uid);
        st.ces_cleanups.push(cleanup);
        drop(st);
        self.ces_wake.notify_one();
    }

    /// ClusterExternalSecrets gone while the watch was down.
    pub(crate) fn on_ces_relisted(&self, seen: &BTreeSet<String>) {
        let gone: Vec<String> = {
            let st = self.state.lock().expect("lock");
            st.ces
                .keys()
                .filter(|n| !seen.contains(&format!("/{n}")))
                .cloned()
                .collect()
        };
        for name in gone {
            self.on_ces_deleted(&name, None);
        }
    }

    /// A Namespace was added, changed or deleted (`None`).
    pub(crate) fn on_namespace(&self, name: &str, entry: Option<NsEntry>) {
        let mut st = self.state.lock().expect("lock");
        if st.namespaces.get(name) == entry.as_ref() {
            return;
        }
        match entry {
            Some(e) => st.namespaces.insert(name.to_string(), e),
            None => st.namespaces.remove(name),
        };
        drop(st);
        if self.synced[Kind::Namespace.index()].load(std::sync::atomic::Ordering::SeqCst) {
            self.retarget();
        }
    }

    /// Namespaces gone while the watch was down.
    pub(crate) fn on_namespaces_relisted(&self, seen: &BTreeSet<String>) {
        let mut st = self.state.lock().expect("lock");
        st.namespaces.retain(|n, _| seen.contains(&format!("/{n}")));
        drop(st);
        self.retarget();
    }

    /// Marks the ClusterExternalSecrets whose selected namespaces changed.
    pub(crate) fn retarget(&self) {
        let mut st = self.state.lock().expect("lock");
        let namespaces = std::mem::take(&mut st.namespaces);
        let mut any = false;
        for e in st.ces.values_mut() {
            let Ok(p) = &e.parsed else { continue };
            let (_, all) = self.select(&p.ces, &namespaces);
            if all != e.targets {
                e.dirty = true;
                any = true;
            }
        }
        st.namespaces = namespaces;
        drop(st);
        if any {
            self.ces_wake.notify_one();
        }
    }

    /// One of its ExternalSecrets was deleted by someone: put it back at once.
    pub(crate) fn on_owned_es_deleted(&self, obj: &DynamicObject) {
        let Some((owner, _)) = ces_owner(obj, &self.cfg.group) else {
            return;
        };
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        let mut st = self.state.lock().expect("lock");
        if let Some(e) = st.ces.get_mut(&owner)
            && e.targets.contains(&ns)
        {
            e.dirty = true;
            drop(st);
            self.ces_wake.notify_one();
        }
    }

    /// Reconciles due ClusterExternalSecrets and cleans up after deleted ones, while this
    /// replica leads.
    pub(crate) async fn ces_lane(self: Arc<Self>) {
        loop {
            self.wait_ready_leader().await;
            if !self.synced[Kind::Namespace.index()].load(std::sync::atomic::Ordering::SeqCst) {
                // Selection needs every Namespace.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let notified = self.ces_wake.notified();
            let (cleanups, due, wait) = self.pick_ces();
            if cleanups.is_empty() && due.is_empty() {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            for c in cleanups {
                self.clean_up(c).await;
            }
            for name in due {
                self.reconcile_ces(&name).await;
            }
        }
    }

    fn pick_ces(&self) -> (Vec<Cleanup>, Vec<String>, Duration) {
        let now = Instant::now();
        let mut st = self.state.lock().expect("lock");
        let cleanups = std::mem::take(&mut st.ces_cleanups);
        let mut due = vec![];
        let mut next: Option<Instant> = None;
        for (name, e) in st.ces.iter_mut() {
            if e.running {
                continue;
            }
            if e.dirty || e.due.is_some_and(|d| d <= now) {
                e.dirty = false;
                e.running = true;
                due.push(name.clone());
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

    async fn reconcile_ces(&self, name: &str) {
        let snapshot = {
            let mut st = self.state.lock().expect("lock");
            let namespaces = std::mem::take(&mut st.namespaces);
            let snap = st.ces.get_mut(name).map(|e| {
                let selected = e.parsed.as_ref().ok().map(|p| self.select(&p.ces, &namespaces));
                if let Some((_, all)) = &selected {
                    e.targets = all.clone();
                }
                (e.clone(), selected)
            });
            st.namespaces = namespaces;
            snap
        };
        let Some((entry, selected)) = snapshot else {
            return;
        };
        let (status, outcome) = match (&entry.parsed, selected) {
            (Ok(p), Some((live, all))) => {
                let o = self.provision(name, &entry, p, &live, &all).await;
                let failed: Vec<Value> = o
                    .failed
                    .iter()
                    .map(|(ns, reason)| json!({"namespace": ns, "reason": reason}))
                    .collect();
                let ready = if o.failed.is_empty() {
                    json!({"type": "Ready", "status": "True"})
                } else {
                    json!({"type": "Ready", "status": "False", "message": NAMESPACES_FAILED})
                };
                let status = json!({
                    "externalSecretName": o.name,
                    "provisionedNamespaces": o.provisioned,
                    "failedNamespaces": failed,
                    "conditions": [ready],
                });
                (status, Some(o))
            }
            (parsed, _) => {
                let msg = parsed.as_ref().err().cloned().unwrap_or_default();
                let status = json!({"conditions": [{"type": "Ready", "status": "False", "message": msg}]});
                (status, None)
            }
        };
        let written = self.write_ces_status(name, &entry.observed.status, &status).await;
        let mut st = self.state.lock().expect("lock");
        let current = st.ces.get(name).is_some_and(|e| e.uid == entry.uid);
        if !current {
            // Deleted while we ran: what we just made goes too.
            if let Some(o) = &outcome {
                let cleanup = Cleanup {
                    name: name.to_string(),
                    uid: entry.uid.clone(),
                    es_names: BTreeSet::from([o.name.clone()]),
                    namespaces: o.made.clone(),
                };
                st.ces_cleanups.push(cleanup);
                drop(st);
                self.ces_wake.notify_one();
            }
            return;
        }
        if let Some(e) = st.ces.get_mut(name) {
            e.running = false;
            if let Some(o) = outcome {
                e.applied = o.applied;
                e.made = o.made;
                e.made_name = Some(o.name);
            }
            if let Some(status) = written {
                e.observed = Observed::from_status(Some(&status));
            }
            let every = e.parsed.as_ref().ok().and_then(|p| p.ces.refresh_time().ok().flatten());
            e.due = every.map(|d| Instant::now() + d);
        }
    }

    /// Makes the cluster match: ExternalSecrets under an old name or in namespaces no
    /// longer selected are deleted, the selected ones applied.
    async fn provision(
        &self,
        name: &str,
        entry: &CesEntry,
        p: &Parsed,
        live: &BTreeSet<String>,
        all: &BTreeSet<String>,
    ) -> Provisioned {
        let es_name = p.ces.external_secret_name().to_string();
        let mut failed: BTreeMap<String, String> = BTreeMap::new();
        let mut made: BTreeSet<String> = BTreeSet::new();
        let candidates: BTreeSet<String> = entry
            .made
            .union(&entry.observed.provisioned)
            .filter(|ns| self.cfg.namespace.as_ref().is_none_or(|only| only == *ns))
            .cloned()
            .collect();
        // Renamed: the old ones go first; until they are gone the old name stays (ESO
        // retries then too).
        let old_names: BTreeSet<&String> = entry
            .made_name
            .iter()
            .chain(entry.observed.external_secret_name.iter())
            .filter(|n| **n != es_name)
            .collect();
        for old in &old_names {
            for ns in &candidates {
                if let Err(reason) = self.delete_owned(ns, old, name, None).await {
                    failed.insert(ns.clone(), reason);
                }
            }
        }
        if !failed.is_empty() {
            let mut provisioned: Vec<String> = entry.observed.provisioned.iter().cloned().collect();
            provisioned.retain(|ns| !failed.contains_key(ns));
            return Provisioned {
                name: old_names.first().map_or(es_name.clone(), |n| (*n).clone()),
                provisioned,
                failed,
                applied: entry.applied.clone(),
                made: candidates,
            };
        }
        // No longer selected (a namespace being deleted takes its ExternalSecret along).
        for ns in candidates.iter().filter(|ns| !all.contains(*ns)) {
            if let Err(reason) = self.delete_owned(ns, &es_name, name, None).await {
                failed.insert(ns.clone(), reason);
                made.insert(ns.clone());
            }
        }
        let es_name_ref = es_name.as_str();
        let results: Vec<(String, Result<u64, String>)> = futures::stream::iter(live.iter().cloned())
            .map(|ns| async move {
                let r = self.apply_es(&ns, es_name_ref, name, entry, p).await;
                (ns, r)
            })
            .buffer_unordered(self.cfg.status_concurrency.max(1))
            .collect()
            .await;
        let mut provisioned = vec![];
        let mut applied = BTreeMap::new();
        for (ns, r) in results {
            match r {
                Ok(fp) => {
                    applied.insert(ns.clone(), fp);
                    made.insert(ns.clone());
                    provisioned.push(ns);
                }
                Err(reason) => {
                    failed.insert(ns, reason);
                }
            }
        }
        provisioned.sort();
        for (ns, reason) in &failed {
            tracing::warn!(cluster_external_secret = %name, namespace = %ns, reason = %reason, "namespace failed");
        }
        Provisioned {
            name: es_name,
            provisioned,
            failed,
            applied,
            made,
        }
    }

    /// Creates or updates the ExternalSecret in `ns`, unless one of that name is not ours.
    /// Returns the fingerprint of what we applied (or found applied).
    async fn apply_es(
        &self,
        ns: &str,
        es_name: &str,
        ces_name: &str,
        entry: &CesEntry,
        p: &Parsed,
    ) -> Result<u64, String> {
        let api = self.es_api(ns);
        let what = format!("ExternalSecret {ns}/{es_name}");
        let existing = api
            .get_opt(es_name)
            .await
            .map_err(|e| from_kube(e, &format!("reading {what}")).to_string())?;
        if let Some(x) = &existing
            && ces_owner(x, &self.cfg.group).is_none_or(|(owner, _)| owner != ces_name)
        {
            return Err(ALREADY_EXISTS.to_string());
        }
        let Some(uid) = entry.uid.clone() else {
            return Err(format!("ClusterExternalSecret {ces_name} has no uid yet"));
        };
        let md = p.ces.spec.external_secret_metadata.clone().unwrap_or_default();
        let mut annotations = md.annotations;
        if let Some(v) = &entry.force_sync {
            annotations.insert(FORCE_SYNC_ANNOTATION.to_string(), v.clone());
        }
        let api_version = format!("{}/{}", self.cfg.group, self.cfg.version);
        let owner = json!({
            "apiVersion": api_version,
            "kind": "ClusterExternalSecret",
            "name": ces_name,
            "uid": uid,
            "controller": true,
            "blockOwnerDeletion": true,
        });
        let mut meta = json!({"name": es_name, "namespace": ns, "ownerReferences": [owner]});
        if !md.labels.is_empty() {
            meta["labels"] = json!(md.labels);
        }
        if !annotations.is_empty() {
            meta["annotations"] = json!(annotations);
        }
        let body = json!({
            "apiVersion": api_version,
            "kind": "ExternalSecret",
            "metadata": meta,
            "spec": p.raw_spec,
        });
        let fp = fnv(&body.to_string());
        if let Some(x) = &existing {
            let have = serde_json::to_value(x).unwrap_or(Value::Null);
            let mut want = body.clone();
            // Owner references are compared by uid below.
            want["metadata"]["ownerReferences"] = Value::Null;
            let owned = ces_owner(x, &self.cfg.group).is_some_and(|(_, u)| Some(u) == entry.uid);
            if owned && entry.applied.get(ns) == Some(&fp) && contains(&have, &want) {
                return Ok(fp);
            }
        }
        if !self.is_leader() {
            return Err("not written: this replica is not the leader (any more)".to_string());
        }
        let r = api
            .patch(
                es_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await;
        self.count_api_write("externalsecret", r.is_ok());
        r.map_err(|e| from_kube(e, &format!("applying {what}")).to_string())?;
        tracing::info!(
            cluster_external_secret = %ces_name,
            external_secret = %what,
            created = existing.is_none(),
            "applied"
        );
        Ok(fp)
    }

    /// Deletes `ns/es_name` if the ClusterExternalSecret `ces_name` (with `uid`, when
    /// given) owns it; anything else of that name is left alone.
    async fn delete_owned(&self, ns: &str, es_name: &str, ces_name: &str, uid: Option<&str>) -> Result<(), String> {
        self.delete_owned_copy(OwnedCopy {
            api: self.es_api(ns),
            kind: "ExternalSecret",
            namespace: ns,
            name: es_name,
            owner_kind: "ClusterExternalSecret",
            owner: ces_name,
            owner_uid: uid,
        })
        .await
    }

    /// Writes the fields of `status` unless the object already says so; returns the status
    /// now on the object when it wrote it.
    async fn write_ces_status(&self, name: &str, observed: &Value, status: &Value) -> Option<Value> {
        self.write_owner_status(self.ces_api(), "ClusterExternalSecret", name, observed, status)
            .await
    }

    async fn clean_up(&self, c: Cleanup) {
        for ns in &c.namespaces {
            for es_name in &c.es_names {
                if let Err(e) = self.delete_owned(ns, es_name, &c.name, c.uid.as_deref()).await {
                    tracing::warn!(cluster_external_secret = %c.name, namespace = %ns, error = %e, "cannot delete its ExternalSecret");
                }
            }
        }
    }
}

/// What one reconcile did.
struct Provisioned {
    name: String,
    provisioned: Vec<String>,
    failed: BTreeMap<String, String>,
    applied: BTreeMap<String, u64>,
    made: BTreeSet<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_allows_defaults_but_not_changes() {
        let have = json!({"spec": {"refreshInterval": "1h", "data": [{"secretKey": "A", "remoteRef": {"key": "a", "conversionStrategy": "Default"}}]}});
        assert!(contains(
            &have,
            &json!({"spec": {"data": [{"secretKey": "A", "remoteRef": {"key": "a"}}]}})
        ));
        assert!(!contains(
            &have,
            &json!({"spec": {"data": [{"secretKey": "B", "remoteRef": {"key": "a"}}]}})
        ));
        assert!(!contains(&have, &json!({"spec": {"data": []}})));
        assert!(contains(&have, &json!({"metadata": null, "spec": {}})));
    }

    #[test]
    fn empty_status_fields_do_not_count() {
        assert_eq!(
            crate::owned::normalized(
                &json!({"provisionedNamespaces": [], "failedNamespaces": null, "externalSecretName": "x"})
            ),
            json!({"externalSecretName": "x"})
        );
    }
}
