//! Watches: the ESO kinds of the configured group, the targets we manage, and Namespaces
//! (what ClusterExternalSecrets select).
//!
//! Every replica watches (followers keep warm caches so a takeover is immediate); only
//! the leader acts on what it sees.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use secretsync_core::error::Location;
use secretsync_core::manifest::{API_GROUP, ExternalSecret, Store, StoreId, StoreKind, from_value};
use secretsync_core::sink::MANAGED_BY_LABEL;
use secretsync_core::{SecretMap, SecretValue, TargetKind, TargetRef};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::shared::Shared;
use crate::state::NsEntry;
use crate::state::{EsEntry, Kind, ReadyCondition, StoreEntry, fnv};

/// The object as an ESO manifest document in ESO's group (what the core loader reads),
/// without its status.
fn to_document(obj: &DynamicObject, kind: &str, version: &str) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(format!("{API_GROUP}/{version}")));
        m.insert("kind".into(), json!(kind));
        m.remove("status");
    }
    v
}

/// Where an object read from the cluster is, for errors.
fn origin(file: String) -> Location {
    Location {
        file: file.into(),
        document: 1,
        object: None,
        field: None,
    }
}

fn meta_hash(obj: &DynamicObject) -> u64 {
    let labels = serde_json::to_string(&obj.metadata.labels).unwrap_or_default();
    let annotations = serde_json::to_string(&obj.metadata.annotations).unwrap_or_default();
    fnv(&format!("{labels}|{annotations}"))
}

fn ready_of(obj: &DynamicObject) -> Option<ReadyCondition> {
    let conds = obj.data.get("status")?.get("conditions")?.as_array()?;
    let c = conds
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?;
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let status = obj.data.get("status")?;
    let field = |p: &str| status.pointer(p).and_then(Value::as_str).map(str::to_string);
    Some(ReadyCondition {
        status: s("status"),
        reason: s("reason"),
        message: s("message"),
        last_transition_time: s("lastTransitionTime"),
        synced_version: field("/syncedResourceVersion"),
        refresh_time: field("/refreshTime"),
        binding: field("/binding/name"),
    })
}

fn first_error(loaded: secretsync_core::manifest::Loaded) -> Result<secretsync_core::manifest::Manifests, String> {
    match loaded.errors.first() {
        Some(e) => Err(e.to_string()),
        None => Ok(loaded.manifests),
    }
}

fn parse_es(obj: &DynamicObject, version: &str) -> Result<ExternalSecret, String> {
    let doc = to_document(obj, "ExternalSecret", version);
    let name = obj.metadata.name.clone().unwrap_or_default();
    let ns = obj.metadata.namespace.clone().unwrap_or_default();
    let m = first_error(from_value(doc, origin(format!("cluster:ExternalSecret {ns}/{name}"))))?;
    let es = m
        .external_secrets
        .into_iter()
        .next()
        .ok_or_else(|| "not an ExternalSecret".to_string())?;
    // The same checks as in file mode (unsupported fields, key rules), so a resource the
    // `sync` example refuses is not half-synced by the operator. Its templateFrom objects
    // come from the cluster at each run (`refs`), and are checked then.
    match secretsync_core::manifest::check_external_secret_in_cluster(&es).first() {
        Some(e) => Err(e.to_string()),
        None => Ok(es),
    }
}

fn parse_store(obj: &DynamicObject, kind: &str, version: &str) -> Result<Store, String> {
    let doc = to_document(obj, kind, version);
    let name = obj.metadata.name.clone().unwrap_or_default();
    let m = first_error(from_value(doc, origin(format!("cluster:{kind} {name}"))))?;
    m.stores.into_iter().next().ok_or_else(|| format!("not a {kind}"))
}

fn store_id(obj: &DynamicObject, kind: Kind) -> StoreId {
    StoreId {
        kind: if kind == Kind::ClusterSecretStore {
            StoreKind::ClusterSecretStore
        } else {
            StoreKind::SecretStore
        },
        namespace: (kind == Kind::SecretStore).then(|| obj.metadata.namespace.clone().unwrap_or_default()),
        name: obj.metadata.name.clone().unwrap_or_default(),
    }
}

/// The data of a watched Secret or ConfigMap, decoded.
fn target_data(obj: &DynamicObject, kind: Kind) -> SecretMap {
    let mut out = SecretMap::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    let map = |field: &str| {
        obj.data
            .get(field)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    match kind {
        Kind::Secret => {
            for (k, v) in map("data") {
                if let Some(bytes) = v.as_str().and_then(|s| b64.decode(s).ok()) {
                    out.insert(k, SecretValue::new(bytes));
                }
            }
        }
        _ => {
            for (k, v) in map("data") {
                if let Some(s) = v.as_str() {
                    out.insert(k, SecretValue::from(s));
                }
            }
            for (k, v) in map("binaryData") {
                if let Some(bytes) = v.as_str().and_then(|s| b64.decode(s).ok()) {
                    out.insert(k, SecretValue::new(bytes));
                }
            }
        }
    }
    out
}

impl Shared {
    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        let ar = match kind {
            Kind::Secret => ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
            Kind::ConfigMap => ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
            Kind::Namespace => ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
            _ => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(&self.cfg.group, &self.cfg.version, kind.kind()),
                kind.plural(),
            ),
        };
        match (&self.cfg.namespace, kind.namespaced()) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        }
    }

    pub(crate) fn spawn_watchers(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        for kind in Kind::ESO {
            tasks.spawn(self.clone().watch(kind));
        }
        if self.cfg.watch_targets {
            tasks.spawn(self.clone().watch(Kind::Secret));
            tasks.spawn(self.clone().watch(Kind::ConfigMap));
        }
        tasks.spawn(self.clone().watch(Kind::Namespace));
    }

    async fn watch(self: Arc<Self>, kind: Kind) {
        let mut config = watcher::Config::default();
        if matches!(kind, Kind::Secret | Kind::ConfigMap) {
            // Only targets we created; RBAC cannot filter by label, this request does.
            config = config.labels(&format!("{MANAGED_BY_LABEL}=secretsync"));
        }
        if kind == Kind::Namespace
            && let Some(ns) = &self.cfg.namespace
        {
            // One namespace watched: only it can be selected.
            config = config.fields(&format!("metadata.name={ns}"));
        }
        let stream = watcher::watcher(self.api(kind), config).default_backoff();
        futures::pin_mut!(stream);
        let mut relist: Option<BTreeSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => {
                    relist = Some(BTreeSet::new());
                    // Until the list is done, targets are read from the API server.
                    if let Some(k) = kind.target_kind() {
                        self.targets_cache.set_incomplete(k);
                    }
                }
                Ok(Event::InitApply(obj)) => {
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(key_of(&obj));
                    }
                    self.on_apply(kind, obj);
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        self.on_relisted(kind, &seen);
                    }
                    if let Some(k) = kind.target_kind() {
                        self.targets_cache.set_complete(k, self.cfg.namespace.as_deref());
                    }
                    if !self.synced[kind.index()].swap(true, Ordering::SeqCst) {
                        tracing::debug!(kind = kind.kind(), "initial list done");
                    }
                    self.wake_all();
                }
                Ok(Event::Apply(obj)) => self.on_apply(kind, obj),
                Ok(Event::Delete(obj)) => self.on_delete(kind, &obj),
                Err(e) => {
                    tracing::warn!(kind = kind.kind(), error = %secretsync_core::error::redact_quoted(&e.to_string()), "watch failed; retrying");
                }
            }
        }
    }

    fn on_apply(&self, kind: Kind, obj: DynamicObject) {
        match kind {
            Kind::ExternalSecret => self.on_es(obj),
            Kind::SecretStore | Kind::ClusterSecretStore => self.on_store(kind, obj),
            Kind::ClusterExternalSecret => self.on_ces(obj),
            Kind::Secret | Kind::ConfigMap => self.on_target(kind, &obj, false),
            Kind::Namespace => {
                let name = obj.metadata.name.clone().unwrap_or_default();
                let terminating = obj.metadata.deletion_timestamp.is_some()
                    || obj.data.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating");
                let entry = NsEntry {
                    labels: obj.metadata.labels.clone().unwrap_or_default(),
                    terminating,
                };
                self.on_namespace(&name, Some(entry));
            }
        }
    }

    fn on_delete(&self, kind: Kind, obj: &DynamicObject) {
        match kind {
            Kind::ExternalSecret => {
                let id = secretsync_core::manifest::SpecId {
                    namespace: obj.metadata.namespace.clone().unwrap_or_default(),
                    name: obj.metadata.name.clone().unwrap_or_default(),
                };
                self.remove_es(&id);
                self.on_owned_es_deleted(obj);
            }
            Kind::SecretStore | Kind::ClusterSecretStore => {
                let id = store_id(obj, kind);
                let mut st = self.state.lock().expect("lock");
                if st.stores.remove(&id).is_some() {
                    st.stores_dirty = true;
                }
                drop(st);
                self.events.wake.notify_one();
            }
            Kind::ClusterExternalSecret => {
                let name = obj.metadata.name.clone().unwrap_or_default();
                self.on_ces_deleted(&name, obj.metadata.uid.clone());
            }
            Kind::Secret | Kind::ConfigMap => self.on_target(kind, obj, true),
            Kind::Namespace => self.on_namespace(obj.metadata.name.as_deref().unwrap_or_default(), None),
        }
    }

    /// Objects gone while the watch was down.
    fn on_relisted(&self, kind: Kind, seen: &BTreeSet<String>) {
        let gone: Vec<_> = {
            let st = self.state.lock().expect("lock");
            match kind {
                Kind::ExternalSecret => st
                    .es
                    .keys()
                    .filter(|id| !seen.contains(&format!("{}/{}", id.namespace, id.name)))
                    .cloned()
                    .collect(),
                _ => vec![],
            }
        };
        for id in gone {
            self.remove_es(&id);
        }
        if let Some(k) = kind.target_kind() {
            // Gone while the watch was down (or no longer labelled).
            self.targets_cache
                .retain(k, |t| seen.contains(&format!("{}/{}", t.namespace, t.name)));
        }
        match kind {
            Kind::ClusterExternalSecret => self.on_ces_relisted(seen),
            Kind::Namespace => self.on_namespaces_relisted(seen),
            _ => {}
        }
        if matches!(kind, Kind::SecretStore | Kind::ClusterSecretStore) {
            let mut st = self.state.lock().expect("lock");
            let want = if kind == Kind::ClusterSecretStore {
                StoreKind::ClusterSecretStore
            } else {
                StoreKind::SecretStore
            };
            let before = st.stores.len();
            st.stores.retain(|id, _| {
                id.kind != want || seen.contains(&format!("{}/{}", id.namespace.clone().unwrap_or_default(), id.name))
            });
            if st.stores.len() != before {
                st.stores_dirty = true;
            }
        }
    }

    fn on_es(&self, obj: DynamicObject) {
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        let name = obj.metadata.name.clone().unwrap_or_default();
        let id = secretsync_core::manifest::SpecId {
            namespace: ns.clone(),
            name: name.clone(),
        };
        if !self.cfg.owns(&ns, &name) {
            // Another shard's: forget it if it moved.
            self.remove_es(&id);
            return;
        }
        let generation = obj.metadata.generation;
        let mh = meta_hash(&obj);
        let ready = ready_of(&obj);
        let mut st = self.state.lock().expect("lock");
        let synced = self.synced[Kind::ExternalSecret.index()].load(Ordering::SeqCst);
        if let Some(e) = st.es.get_mut(&id)
            && e.generation == generation
            && e.meta_hash == mh
            && e.uid == obj.metadata.uid
        {
            // Only status (ours) changed.
            e.ready = ready;
            return;
        }
        drop(st);
        let parsed = parse_es(&obj, &self.cfg.version);
        let mut st = self.state.lock().expect("lock");
        let previous = st.es.get(&id);
        let fresh = previous.is_none();
        let changed = match (previous.map(|p| &p.parsed), &parsed) {
            (Some(Ok(a)), Ok(b)) => a.spec_hash() != b.spec_hash() || a.force_sync_token() != b.force_sync_token(),
            (Some(Err(a)), Err(b)) => a != b,
            _ => true,
        };
        if let Some(old) = previous.and_then(|p| p.parsed.as_ref().ok()) {
            let t = old.target_ref();
            if parsed.as_ref().map(|p| p.target_ref()).ok() != Some(t.clone()) {
                st.unindex_target(&t, &id);
            }
        }
        if let Ok(es) = &parsed {
            st.targets.entry(es.target_ref()).or_default().insert(id.clone());
        }
        let refs = parsed.as_ref().map(crate::refs::es_refs).unwrap_or_default();
        st.refs.set_user(crate::refs::User::ExternalSecret(id.clone()), refs);
        let invalid = parsed.is_err();
        st.es.insert(
            id.clone(),
            EsEntry {
                uid: obj.metadata.uid.clone(),
                generation,
                meta_hash: mh,
                parsed,
                ready,
            },
        );
        st.specs_dirty = true;
        // New resources after the first list, spec changes and force-sync take the fast
        // lane; the first list goes to the periodic lane as one batch. Invalid ones get
        // their error status at once either way.
        let urgent = if fresh { synced || invalid } else { changed };
        if urgent {
            st.mark_urgent(&id);
        }
        let n = st.es.len();
        drop(st);
        self.metrics.resources.set(n as i64);
        if urgent {
            self.fast_wake.notify_one();
        }
    }

    pub(crate) fn remove_es(&self, id: &secretsync_core::manifest::SpecId) {
        let mut st = self.state.lock().expect("lock");
        let Some(e) = st.es.remove(id) else {
            return;
        };
        if let Ok(es) = &e.parsed {
            let t = es.target_ref();
            st.unindex_target(&t, id);
            // Its target goes with it (owner references) or stays (Orphan): either way no
            // longer ours to repair.
            self.tracked.forget(&t);
        }
        st.urgent.remove(id);
        st.refs
            .set_user(crate::refs::User::ExternalSecret(id.clone()), Default::default());
        st.specs_dirty = true;
        let n = st.es.len();
        drop(st);
        self.metrics.resources.set(n as i64);
        self.metrics.forget(id);
    }

    fn on_store(&self, kind: Kind, obj: DynamicObject) {
        let id = store_id(&obj, kind);
        let spec = obj.data.get("spec").map(|s| s.to_string()).unwrap_or_default();
        let events_key = crate::events::annotations_key(&obj);
        let mut st = self.state.lock().expect("lock");
        let spec_changed = st.stores.get(&id).is_none_or(|s| s.spec_json != spec);
        if !spec_changed && st.stores.get(&id).is_some_and(|s| s.events_key == events_key) {
            return;
        }
        let parsed = parse_store(&obj, kind.kind(), &self.cfg.version);
        st.stores.insert(
            id,
            StoreEntry {
                spec_json: spec,
                events_key,
                parsed,
            },
        );
        // Only the events annotations changed: the engine (and its cache) stays.
        st.stores_dirty |= spec_changed;
        drop(st);
        self.events.wake.notify_one();
        self.periodic_wake.notify_one();
    }

    /// A managed Secret or ConfigMap changed or went away: repair it unless the change is
    /// ours.
    fn on_target(&self, kind: Kind, obj: &DynamicObject, deleted: bool) {
        let t = TargetRef {
            kind: if kind == Kind::Secret {
                TargetKind::Secret
            } else {
                TargetKind::ConfigMap
            },
            namespace: obj.metadata.namespace.clone().unwrap_or_default(),
            name: obj.metadata.name.clone().unwrap_or_default(),
        };
        if deleted {
            self.targets_cache.remove(&t);
        } else {
            self.targets_cache.insert(t.kind, obj.clone());
        }
        let edited = if deleted {
            self.tracked.forget(&t)
        } else {
            self.tracked.differs(&t, &target_data(obj, kind)) == Some(true)
        };
        if !edited {
            return;
        }
        let mut st = self.state.lock().expect("lock");
        let Some(specs) = st.targets.get(&t).cloned() else {
            return;
        };
        let now = std::time::Instant::now();
        for id in &specs {
            st.sched.force(id, now);
            st.mark_urgent(id);
        }
        drop(st);
        tracing::info!(target = %t, deleted, "target changed by someone else; repairing");
        self.fast_wake.notify_one();
    }
}

fn key_of(obj: &DynamicObject) -> String {
    format!(
        "{}/{}",
        obj.metadata.namespace.clone().unwrap_or_default(),
        obj.metadata.name.clone().unwrap_or_default()
    )
}
