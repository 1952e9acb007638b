//! The running side of [`cpush`](crate::cpush): the ClusterPushSecret watch and lane
//! (one PushSecret per selected namespace, ESO's status), only on the leader.

use crate::owned::OwnedCopy;
use crate::shared::Shared;
use crate::state::{Kind, fnv};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use secretsync_k8s::{FIELD_MANAGER, from_kube};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cpush::*;

/// The controller owner reference of an object, when it is a ClusterPushSecret of `group`.
pub(crate) fn cps_owner(obj: &DynamicObject, group: &str) -> Option<(String, String)> {
    crate::owned::controller_owner(obj, "ClusterPushSecret", group)
}

impl Shared {
    fn cps_api(&self) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.cfg.group, "v1alpha1", "ClusterPushSecret"),
            "clusterpushsecrets",
        );
        Api::all_with(self.client.clone(), &ar)
    }

    fn ps_api(&self, namespace: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.cfg.group, "v1alpha1", "PushSecret"),
            "pushsecrets",
        );
        Api::namespaced_with(self.client.clone(), namespace, &ar)
    }

    /// Watches ClusterPushSecrets.
    pub(crate) async fn watch_cluster_push_secrets(self: Arc<Self>) {
        let stream = watcher::watcher(self.cps_api(), watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let mut relist: Option<BTreeSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => relist = Some(BTreeSet::new()),
                Ok(Event::InitApply(obj)) => {
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(obj.metadata.name.clone().unwrap_or_default());
                    }
                    self.on_cps(obj);
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        let gone: Vec<String> = {
                            let st = self.state.lock().expect("lock");
                            st.cpush
                                .entries
                                .keys()
                                .filter(|n| !seen.contains(*n))
                                .cloned()
                                .collect()
                        };
                        for name in gone {
                            self.on_cps_deleted(&name, None);
                        }
                    }
                    let wake = {
                        let mut st = self.state.lock().expect("lock");
                        st.cpush.listed = true;
                        st.cpush.wake.clone()
                    };
                    wake.notify_one();
                }
                Ok(Event::Apply(obj)) => self.on_cps(obj),
                Ok(Event::Delete(obj)) => {
                    let name = obj.metadata.name.clone().unwrap_or_default();
                    self.on_cps_deleted(&name, obj.metadata.uid.clone());
                }
                Err(e) => {
                    tracing::warn!(kind = "ClusterPushSecret", error = %secretsync_core::error::redact_quoted(&e.to_string()), "watch failed; retrying");
                }
            }
        }
    }

    fn on_cps(&self, obj: DynamicObject) {
        let name = obj.metadata.name.clone().unwrap_or_default();
        if !self.cfg.owns("", &name) {
            self.state.lock().expect("lock").cpush.entries.remove(&name);
            return;
        }
        let uid = obj.metadata.uid.clone();
        if obj.metadata.deletion_timestamp.is_some() {
            self.on_cps_deleted(&name, uid);
            return;
        }
        let generation = obj.metadata.generation;
        let observed = obj.data.get("status").cloned().unwrap_or(Value::Null);
        let mut st = self.state.lock().expect("lock");
        if let Some(e) = st.cpush.entries.get_mut(&name)
            && e.uid == uid
            && e.generation == generation
        {
            e.observed = observed;
            return;
        }
        drop(st);
        let parsed = parse(&obj, &name);
        if let Err(e) = &parsed {
            tracing::warn!(cluster_push_secret = %name, error = %e, "invalid ClusterPushSecret");
        }
        let mut st = self.state.lock().expect("lock");
        let previous = st.cpush.entries.remove(&name).filter(|p| p.uid == uid);
        let (applied, made, made_name) = match previous {
            Some(p) => (p.applied, p.made, p.made_name),
            None => Default::default(),
        };
        st.cpush.entries.insert(
            name,
            CpsEntry {
                uid,
                generation,
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
        let wake = st.cpush.wake.clone();
        drop(st);
        wake.notify_one();
    }

    fn on_cps_deleted(&self, name: &str, uid: Option<String>) {
        let mut st = self.state.lock().expect("lock");
        let Some(e) = st.cpush.entries.remove(name) else {
            return;
        };
        let mut ps_names: BTreeSet<String> = e.made_name.iter().cloned().collect();
        if let Ok(p) = &e.parsed {
            ps_names.insert(p.push_secret_name(name).to_string());
        }
        let mut namespaces = e.made.clone();
        namespaces.extend(
            e.observed
                .get("provisionedNamespaces")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string),
        );
        st.cpush.cleanups.push(Cleanup {
            name: name.to_string(),
            uid: uid.or(e.uid),
            ps_names,
            namespaces,
        });
        let wake = st.cpush.wake.clone();
        drop(st);
        wake.notify_one();
    }

    /// One of its PushSecrets was deleted by someone: put it back.
    pub(crate) fn on_owned_ps_deleted(&self, obj: &DynamicObject) {
        let Some((owner, _)) = cps_owner(obj, &self.cfg.group) else {
            return;
        };
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        let mut st = self.state.lock().expect("lock");
        if let Some(e) = st.cpush.entries.get_mut(&owner) {
            e.applied.remove(&ns);
            e.dirty = true;
            let wake = st.cpush.wake.clone();
            drop(st);
            wake.notify_one();
        }
    }

    /// Reconciles ClusterPushSecrets while this replica leads.
    pub(crate) async fn cps_lane(self: Arc<Self>) {
        let wake = self.state.lock().expect("lock").cpush.wake.clone();
        loop {
            self.wait_ready_leader().await;
            let notified = wake.notified();
            let (cleanups, due, wait) = self.pick_cps();
            if cleanups.is_empty() && due.is_empty() {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            for c in cleanups {
                for ns in &c.namespaces {
                    for ps in &c.ps_names {
                        if let Err(e) = self.delete_owned_ps(ns, ps, &c.name, c.uid.as_deref()).await {
                            tracing::warn!(cluster_push_secret = %c.name, namespace = %ns, error = %e, "cannot delete its PushSecret");
                        }
                    }
                }
            }
            for name in due {
                self.reconcile_cps(&name).await;
            }
        }
    }

    fn pick_cps(&self) -> (Vec<Cleanup>, Vec<String>, Duration) {
        let now = Instant::now();
        let mut st = self.state.lock().expect("lock");
        if !st.cpush.listed || !self.synced[Kind::Namespace.index()].load(std::sync::atomic::Ordering::SeqCst) {
            return (vec![], vec![], Duration::from_millis(50));
        }
        let namespaces = std::mem::take(&mut st.namespaces);
        let cleanups = std::mem::take(&mut st.cpush.cleanups);
        let mut due = vec![];
        let mut next: Option<Instant> = None;
        for (name, e) in st.cpush.entries.iter_mut() {
            if e.running {
                continue;
            }
            // Namespaces relabelled, added or removed since the last look.
            if let Ok(p) = &e.parsed {
                let selected: BTreeSet<String> = namespaces
                    .iter()
                    .filter(|(n, ns)| {
                        self.cfg.namespace.as_ref().is_none_or(|only| only == *n) && p.selects(n, &ns.labels)
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                if selected != e.targets {
                    e.dirty = true;
                }
            }
            if e.dirty || e.due.is_some_and(|d| d <= now) {
                e.dirty = false;
                e.running = true;
                due.push(name.clone());
            } else if let Some(d) = e.due {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        st.namespaces = namespaces;
        let wait = next
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(2))
            .clamp(Duration::from_millis(20), Duration::from_secs(2));
        (cleanups, due, wait)
    }

    async fn reconcile_cps(&self, name: &str) {
        let snapshot = {
            let st = self.state.lock().expect("lock");
            st.cpush.entries.get(name).cloned().map(|e| {
                let (live, all): (BTreeSet<String>, BTreeSet<String>) = match &e.parsed {
                    Ok(p) => {
                        let mut live = BTreeSet::new();
                        let mut all = BTreeSet::new();
                        for (n, ns) in &st.namespaces {
                            if self.cfg.namespace.as_ref().is_some_and(|only| only != n) || !p.selects(n, &ns.labels) {
                                continue;
                            }
                            all.insert(n.clone());
                            if !ns.terminating {
                                live.insert(n.clone());
                            }
                        }
                        (live, all)
                    }
                    Err(_) => Default::default(),
                };
                (e, live, all)
            })
        };
        let Some((entry, live, all)) = snapshot else {
            return;
        };
        let mut failed: BTreeMap<String, String> = BTreeMap::new();
        let mut applied = entry.applied.clone();
        let mut made = entry.made.clone();
        let status = match &entry.parsed {
            Err(msg) => json!({"conditions": [{"type": "Ready", "status": "False", "message": msg}]}),
            Ok(p) => {
                let ps_name = p.push_secret_name(name).to_string();
                // Renamed, or no longer selected: ours go.
                let stale_names: Vec<&String> = entry.made_name.iter().filter(|n| **n != ps_name).collect();
                for old in stale_names {
                    for ns in entry.made.iter() {
                        if let Err(e) = self.delete_owned_ps(ns, old, name, entry.uid.as_deref()).await {
                            failed.insert(ns.clone(), e);
                        }
                    }
                }
                for ns in entry.made.iter().filter(|ns| !all.contains(*ns)) {
                    match self.delete_owned_ps(ns, &ps_name, name, entry.uid.as_deref()).await {
                        Ok(()) => {
                            made.remove(ns);
                            applied.remove(ns);
                        }
                        Err(e) => {
                            failed.insert(ns.clone(), e);
                        }
                    }
                }
                for ns in &live {
                    match self.apply_ps(ns, &ps_name, name, &entry, p).await {
                        Ok(fp) => {
                            applied.insert(ns.clone(), fp);
                            made.insert(ns.clone());
                        }
                        Err(e) => {
                            failed.insert(ns.clone(), e);
                        }
                    }
                }
                let provisioned: Vec<&String> = live.iter().filter(|ns| !failed.contains_key(*ns)).collect();
                let failed_list: Vec<Value> = failed
                    .iter()
                    .map(|(ns, reason)| json!({"namespace": ns, "reason": reason}))
                    .collect();
                let ready = if failed.is_empty() {
                    json!({"type": "Ready", "status": "True"})
                } else {
                    json!({"type": "Ready", "status": "False", "message": NAMESPACES_FAILED})
                };
                json!({
                    "pushSecretName": ps_name,
                    "provisionedNamespaces": provisioned,
                    "failedNamespaces": failed_list,
                    "conditions": [ready],
                })
            }
        };
        let written = self.write_cps_status(name, &entry.observed, &status).await;
        let mut st = self.state.lock().expect("lock");
        if let Some(e) = st.cpush.entries.get_mut(name).filter(|e| e.uid == entry.uid) {
            e.running = false;
            e.targets = all;
            e.applied = applied;
            e.made = made;
            if let Ok(p) = &entry.parsed {
                e.made_name = Some(p.push_secret_name(name).to_string());
            }
            if let Some(s) = written {
                e.observed = s;
            }
            let every = e.parsed.as_ref().map(|p| p.every()).unwrap_or(Duration::from_secs(60));
            e.due = Some(
                Instant::now()
                    + if failed.is_empty() {
                        every
                    } else {
                        every.min(Duration::from_secs(10))
                    },
            );
        }
    }

    /// Applies the PushSecret in `ns` unless what we applied last is still what we would
    /// apply (no request then); a PushSecret of that name not owned by us is left alone.
    async fn apply_ps(&self, ns: &str, ps_name: &str, cps: &str, entry: &CpsEntry, p: &Parsed) -> Result<u64, String> {
        let Some(uid) = entry.uid.clone() else {
            return Err(format!("ClusterPushSecret {cps} has no uid yet"));
        };
        let md = p.spec.push_secret_metadata.clone().unwrap_or_default();
        let api_version = format!("{}/v1alpha1", self.cfg.group);
        let owner = json!({
            "apiVersion": api_version, "kind": "ClusterPushSecret", "name": cps, "uid": uid,
            "controller": true, "blockOwnerDeletion": true,
        });
        let mut meta = json!({"name": ps_name, "namespace": ns, "ownerReferences": [owner]});
        if !md.labels.is_empty() {
            meta["labels"] = json!(md.labels);
        }
        if !md.annotations.is_empty() {
            meta["annotations"] = json!(md.annotations);
        }
        let body = json!({"apiVersion": api_version, "kind": "PushSecret", "metadata": meta, "spec": p.raw_spec});
        let fp = fnv(&body.to_string());
        if entry.applied.get(ns) == Some(&fp) {
            return Ok(fp);
        }
        let api = self.ps_api(ns);
        let what = format!("PushSecret {ns}/{ps_name}");
        if let Some(x) = api
            .get_opt(ps_name)
            .await
            .map_err(|e| from_kube(e, &format!("reading {what}")).to_string())?
            && cps_owner(&x, &self.cfg.group).is_none_or(|(o, _)| o != cps)
        {
            return Err(ALREADY_EXISTS.to_string());
        }
        if !self.is_leader() {
            return Err("not written: this replica is not the leader (any more)".to_string());
        }
        let r = api
            .patch(
                ps_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await;
        self.count_api_write("pushsecret", r.is_ok());
        r.map_err(|e| from_kube(e, &format!("applying {what}")).to_string())?;
        tracing::info!(cluster_push_secret = %cps, push_secret = %what, "applied");
        Ok(fp)
    }

    /// Deletes `ns/ps_name` if the ClusterPushSecret `cps` (with `uid`, when given) owns it.
    async fn delete_owned_ps(&self, ns: &str, ps_name: &str, cps: &str, uid: Option<&str>) -> Result<(), String> {
        self.delete_owned_copy(OwnedCopy {
            api: self.ps_api(ns),
            kind: "PushSecret",
            namespace: ns,
            name: ps_name,
            owner_kind: "ClusterPushSecret",
            owner: cps,
            owner_uid: uid,
        })
        .await
    }

    async fn write_cps_status(&self, name: &str, observed: &Value, status: &Value) -> Option<Value> {
        self.write_owner_status(self.cps_api(), "ClusterPushSecret", name, observed, status)
            .await
    }
}
