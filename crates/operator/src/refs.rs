//! Objects that ExternalSecrets and PushSecrets refer to by name: `templateFrom` ConfigMaps
//! and Secrets, `generatorRef` generators (`generators.external-secrets.io/v1alpha1`
//! `Password`, `UUID`), and the source Secret of a PushSecret.
//!
//! How they are read, and why: each referenced object gets its own watch, namespaced and
//! narrowed to it by `fieldSelector=metadata.name=<name>`, started when the first resource
//! refers to it and stopped when the last one stops. The watch keeps the object in memory,
//! so rendering and pushing read nothing from the API server: an unchanged refresh round
//! sends no request for them (the operator's "zero requests when unchanged" property), and
//! a change arrives as a watch event that re-renders the ExternalSecrets (fast lane) and
//! re-pushes the PushSecrets using the object. Watching every ConfigMap and Secret of the
//! cluster instead would hold every Secret in memory; reading on every round would cost one
//! GET per reference per round. A missing object is known once its watch has listed: the
//! resource then says which object is missing (Ready=False), and resolves when the object
//! appears.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use secretsync_core::engine::SpecReport;
use secretsync_core::error::Location;
use secretsync_core::manifest::push::GENERATORS_API_GROUP;
use secretsync_core::manifest::{
    ExternalSecret, GeneratorDoc, Manifests, ObjectMeta, SpecId, StaticTarget, from_value, resolve_generators,
    resolve_template_from,
};
use secretsync_core::{SecretMap, SecretValue, TargetKind, TargetRef};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::shared::Shared;

/// How long a resource waits for the first list of a referenced object's watch before it
/// reports the object as not seen.
const LIST_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The batch's ExternalSecrets that cannot run now.
#[derive(Debug, Default)]
pub(crate) struct Unresolved {
    /// Failed: a referenced object is missing or unusable (reports naming it).
    pub(crate) failed: Vec<SpecReport>,
    /// Waiting for a referenced object's watch to list (no status yet).
    pub(crate) waiting: Vec<SpecId>,
}

/// The kinds of referenced objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum RefKind {
    ConfigMap,
    Secret,
    Password,
    Uuid,
}

impl RefKind {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            RefKind::ConfigMap => "ConfigMap",
            RefKind::Secret => "Secret",
            RefKind::Password => "Password",
            RefKind::Uuid => "UUID",
        }
    }

    /// The generator kind of a `generatorRef.kind`.
    pub(crate) fn generator(kind: &str) -> Option<Self> {
        match kind {
            "Password" => Some(RefKind::Password),
            "UUID" => Some(RefKind::Uuid),
            _ => None,
        }
    }

    fn api_resource(self) -> ApiResource {
        match self {
            RefKind::ConfigMap => ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
            RefKind::Secret => ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
            RefKind::Password => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(GENERATORS_API_GROUP, "v1alpha1", "Password"),
                "passwords",
            ),
            RefKind::Uuid => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(GENERATORS_API_GROUP, "v1alpha1", "UUID"),
                "uuids",
            ),
        }
    }
}

/// One referenced object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RefKey {
    pub(crate) kind: RefKind,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl fmt::Display for RefKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.kind(), self.namespace, self.name)
    }
}

/// Who refers to an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum User {
    ExternalSecret(SpecId),
    PushSecret(SpecId),
}

/// A referenced object as its watch sees it.
#[derive(Debug, Clone)]
pub(crate) enum Seen {
    /// The watch has not listed yet.
    Unknown,
    /// Listed: it does not exist.
    Missing,
    /// It exists.
    Present(Arc<DynamicObject>),
}

/// The referenced objects, who refers to them, and their watches.
#[derive(Default)]
pub(crate) struct Refs {
    objects: HashMap<RefKey, Arc<DynamicObject>>,
    listed: HashSet<RefKey>,
    users: BTreeMap<RefKey, BTreeSet<User>>,
    by_user: BTreeMap<User, BTreeSet<RefKey>>,
    watches: HashMap<RefKey, (tokio::task::AbortHandle, Instant)>,
    /// Wakes the task that starts and stops watches.
    pub(crate) wake: Arc<Notify>,
}

impl fmt::Debug for Refs {
    // Counts only: the objects hold secret data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refs")
            .field("objects", &self.objects.len())
            .field("referenced", &self.users.len())
            .field("watches", &self.watches.len())
            .finish_non_exhaustive()
    }
}

impl Refs {
    /// Sets what `user` refers to now (empty: nothing, it is gone).
    pub(crate) fn set_user(&mut self, user: User, keys: BTreeSet<RefKey>) {
        let before = self.by_user.remove(&user).unwrap_or_default();
        if before == keys {
            if !keys.is_empty() {
                self.by_user.insert(user, keys);
            }
            return;
        }
        for k in before.difference(&keys) {
            if let Some(u) = self.users.get_mut(k) {
                u.remove(&user);
                if u.is_empty() {
                    self.users.remove(k);
                }
            }
        }
        for k in &keys {
            self.users.entry(k.clone()).or_default().insert(user.clone());
        }
        if !keys.is_empty() {
            self.by_user.insert(user, keys);
        }
        self.wake.notify_one();
    }

    /// What the watch of `key` knows.
    pub(crate) fn seen(&self, key: &RefKey) -> Seen {
        match self.objects.get(key) {
            Some(o) => Seen::Present(o.clone()),
            None if self.listed.contains(key) => Seen::Missing,
            None => Seen::Unknown,
        }
    }

    /// Whether the watch of `key` has had time to list: a reference still unknown after
    /// [`LIST_GRACE`] is reported (its kind may not be installed), before that it waits.
    pub(crate) fn waited(&self, key: &RefKey, now: Instant) -> bool {
        self.watches
            .get(key)
            .is_none_or(|(_, at)| now.duration_since(*at) >= LIST_GRACE)
    }

    /// Who refers to `key`.
    fn users_of(&self, key: &RefKey) -> Vec<User> {
        self.users
            .get(key)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The objects an ExternalSecret refers to: its `templateFrom` ConfigMaps and Secrets and
/// its generators.
pub(crate) fn es_refs(es: &ExternalSecret) -> BTreeSet<RefKey> {
    let ns = es.namespace().to_string();
    let mut out = BTreeSet::new();
    if let Some(t) = &es.spec.target.template {
        for tf in &t.template_from {
            if let Some(r) = &tf.config_map {
                out.insert(RefKey {
                    kind: RefKind::ConfigMap,
                    namespace: ns.clone(),
                    name: r.name.clone(),
                });
            }
            if let Some(r) = &tf.secret {
                out.insert(RefKey {
                    kind: RefKind::Secret,
                    namespace: ns.clone(),
                    name: r.name.clone(),
                });
            }
        }
    }
    let sources = es
        .spec
        .data
        .iter()
        .filter_map(|d| d.source_ref.as_ref())
        .chain(es.spec.data_from.iter().filter_map(|d| d.source_ref.as_ref()));
    for sr in sources {
        if let Some(g) = &sr.generator_ref
            && let Some(kind) = RefKind::generator(&g.kind)
        {
            out.insert(RefKey {
                kind,
                namespace: ns.clone(),
                name: g.name.clone(),
            });
        }
    }
    out
}

/// The data of a ConfigMap or Secret object, decoded (undecodable entries are skipped: the
/// API server only stores valid base64).
pub(crate) fn object_data(obj: &DynamicObject, kind: RefKind) -> SecretMap {
    let mut out = SecretMap::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    let map = |field: &str| {
        obj.data
            .get(field)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    if kind == RefKind::Secret {
        for (k, v) in map("data") {
            if let Some(bytes) = v.as_str().and_then(|s| b64.decode(s).ok()) {
                out.insert(k, SecretValue::new(bytes));
            }
        }
    } else {
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
    out
}

/// A watched ConfigMap or Secret as the plain `v1` document core resolves references
/// against.
pub(crate) fn static_target(key: &RefKey, obj: &DynamicObject) -> StaticTarget {
    let target = TargetRef {
        kind: if key.kind == RefKind::Secret {
            TargetKind::Secret
        } else {
            TargetKind::ConfigMap
        },
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    };
    StaticTarget {
        target,
        metadata: ObjectMeta {
            name: key.name.clone(),
            namespace: Some(key.namespace.clone()),
            ..ObjectMeta::default()
        },
        secret_type: obj.data.get("type").and_then(Value::as_str).map(str::to_string),
        data: object_data(obj, key.kind),
        immutable: false,
        origin: Location {
            file: format!("cluster:{key}").into(),
            document: 1,
            object: None,
            field: None,
        },
    }
}

/// A watched generator as core's generator document; the error names it and the field.
pub(crate) fn generator_doc(key: &RefKey, obj: &DynamicObject) -> Result<GeneratorDoc, String> {
    let mut v = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(format!("{GENERATORS_API_GROUP}/v1alpha1")));
        m.insert("kind".into(), json!(key.kind.kind()));
        m.remove("status");
    }
    let origin = Location {
        file: format!("cluster:{key}").into(),
        document: 1,
        object: None,
        field: None,
    };
    let loaded = from_value(v, origin);
    if let Some(e) = loaded.errors.first() {
        return Err(e.to_string());
    }
    loaded
        .manifests
        .generators
        .into_iter()
        .next()
        .ok_or_else(|| format!("{key} is not a generator"))
}

/// Why a reference cannot be used now.
fn missing(key: &RefKey, seen: &Seen) -> String {
    match seen {
        Seen::Unknown => format!("{key} not seen yet (its watch has not listed)"),
        _ => format!("{key} not found"),
    }
}

impl Shared {
    /// Fills the `templateFrom` references and generators of the batch's ExternalSecrets
    /// from the watched objects. Those that cannot render (a referenced object missing, a
    /// template in it that does not parse, a key it lacks) leave the batch and come back as
    /// failed reports naming the field and the object, never a value.
    pub(crate) fn resolve_refs(&self, manifests: &mut Manifests) -> Unresolved {
        let now = Instant::now();
        let mut out = Unresolved::default();
        // What the watches hold now, for the batch's references (the objects are shared,
        // not copied); the lock is not held while rendering inputs are built.
        let mut snapshot: HashMap<RefKey, Seen> = HashMap::new();
        let mut with_refs: Vec<(ExternalSecret, BTreeSet<RefKey>)> = vec![];
        let mut keep = Vec::with_capacity(manifests.external_secrets.len());
        {
            let st = self.state.lock().expect("lock");
            for es in std::mem::take(&mut manifests.external_secrets) {
                let keys = es_refs(&es);
                if keys.is_empty() {
                    keep.push(es);
                    continue;
                }
                let waiting = keys
                    .iter()
                    .any(|k| matches!(st.refs.seen(k), Seen::Unknown) && !st.refs.waited(k, now));
                if waiting {
                    out.waiting.push(es.id());
                    continue;
                }
                for k in &keys {
                    snapshot.entry(k.clone()).or_insert_with(|| st.refs.seen(k));
                }
                with_refs.push((es, keys));
            }
        }
        for (es, keys) in with_refs {
            match resolve_one(es.clone(), &keys, &snapshot) {
                Ok(resolved) => keep.push(resolved),
                Err(message) => {
                    let mut r =
                        SpecReport::pending("ExternalSecret", es.namespace(), es.name(), es.target_ref().to_string());
                    r.message = message;
                    out.failed.push(r);
                }
            }
        }
        manifests.external_secrets = keep;
        out
    }

    /// Starts and stops the watches of referenced objects as references come and go.
    pub(crate) async fn refs_lane(self: Arc<Self>) {
        let wake = self.state.lock().expect("lock").refs.wake.clone();
        // The watches end with this task (a JoinSet aborts its tasks when dropped).
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.try_join_next().is_some() {}
            let notified = wake.notified();
            let start: Vec<RefKey> = {
                let mut st = self.state.lock().expect("lock");
                let refs = &mut st.refs;
                let wanted: BTreeSet<RefKey> = refs.users.keys().cloned().collect();
                let stale: Vec<RefKey> = refs.watches.keys().filter(|k| !wanted.contains(*k)).cloned().collect();
                for k in stale {
                    if let Some((h, _)) = refs.watches.remove(&k) {
                        h.abort();
                    }
                    refs.objects.remove(&k);
                    refs.listed.remove(&k);
                }
                wanted.into_iter().filter(|k| !refs.watches.contains_key(k)).collect()
            };
            for key in start {
                let handle = running.spawn(self.clone().watch_ref(key.clone()));
                self.state
                    .lock()
                    .expect("lock")
                    .refs
                    .watches
                    .insert(key, (handle, Instant::now()));
            }
            notified.await;
        }
    }

    /// One referenced object's watch.
    async fn watch_ref(self: Arc<Self>, key: RefKey) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, &key.kind.api_resource());
        let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
        let stream = watcher::watcher(api, config).default_backoff();
        futures::pin_mut!(stream);
        let mut relisted = false;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => relisted = false,
                Ok(Event::InitApply(obj)) => {
                    relisted = true;
                    self.ref_seen(&key, Some(obj), false);
                }
                Ok(Event::InitDone) => {
                    if !relisted {
                        self.ref_seen(&key, None, true);
                    } else {
                        self.state.lock().expect("lock").refs.listed.insert(key.clone());
                    }
                }
                Ok(Event::Apply(obj)) => self.ref_seen(&key, Some(obj), false),
                Ok(Event::Delete(_)) => self.ref_seen(&key, None, false),
                Err(e) => {
                    tracing::warn!(object = %key, error = %secretsync_core::error::redact_quoted(&e.to_string()), "watch of a referenced object failed; retrying");
                }
            }
        }
    }

    /// The watch of `key` saw it (or saw it gone): its users run again when it changed.
    fn ref_seen(&self, key: &RefKey, obj: Option<DynamicObject>, listed_missing: bool) {
        let mut st = self.state.lock().expect("lock");
        let was_listed = st.refs.listed.contains(key);
        let before = st.refs.objects.get(key).map(|o| o.metadata.resource_version.clone());
        let now = obj.as_ref().map(|o| o.metadata.resource_version.clone());
        match obj {
            Some(o) => {
                st.refs.objects.insert(key.clone(), Arc::new(o));
            }
            None => {
                st.refs.objects.remove(key);
            }
        }
        if obj_listed(listed_missing, now.is_some()) {
            st.refs.listed.insert(key.clone());
        }
        if before == now && was_listed {
            return;
        }
        let users = st.refs.users_of(key);
        let t = Instant::now();
        let mut es = false;
        let mut push = false;
        for u in users {
            match u {
                User::ExternalSecret(id) => {
                    if st.es.contains_key(&id) {
                        st.sched.force(&id, t);
                        st.mark_urgent(&id);
                        es = true;
                    }
                }
                User::PushSecret(id) => {
                    if let Some(p) = st.push.entries.get_mut(&id) {
                        p.dirty = true;
                        push = true;
                    }
                }
            }
        }
        let push_wake = st.push.wake.clone();
        drop(st);
        tracing::debug!(object = %key, "referenced object changed");
        if es {
            self.fast_wake.notify_one();
        }
        if push {
            push_wake.notify_one();
        }
    }
}

/// Whether an event makes the object's presence known.
fn obj_listed(listed_missing: bool, present: bool) -> bool {
    listed_missing || present
}

/// One ExternalSecret with its references filled in, checked as in file mode.
/// One ExternalSecret with its references filled in from `seen`. A missing object is an
/// error naming the field and the object; what is wrong inside one (a key it lacks, a
/// template that does not parse) is reported by rendering, with its field.
fn resolve_one(
    mut es: ExternalSecret,
    keys: &BTreeSet<RefKey>,
    seen: &HashMap<RefKey, Seen>,
) -> Result<ExternalSecret, String> {
    let mut m = Manifests::default();
    for key in keys {
        match (key.kind, seen.get(key).cloned().unwrap_or(Seen::Unknown)) {
            (RefKind::ConfigMap | RefKind::Secret, Seen::Present(obj)) => {
                m.static_targets.push(static_target(key, &obj))
            }
            (RefKind::Password | RefKind::Uuid, Seen::Present(obj)) => m
                .generators
                .push(generator_doc(key, &obj).map_err(|e| format!("{key}: {e}"))?),
            (_, s) => return Err(format!("{}: {}", field_of(&es, key), missing(key, &s))),
        }
    }
    // Filled afresh from what the watches hold now.
    if let Some(t) = es.spec.target.template.as_mut() {
        for tf in &mut t.template_from {
            for r in [tf.config_map.as_mut(), tf.secret.as_mut()].into_iter().flatten() {
                r.resolved = None;
            }
        }
    }
    m.external_secrets.push(es);
    resolve_template_from(&mut m);
    resolve_generators(&mut m);
    Ok(m.external_secrets.pop().expect("pushed above"))
}

/// The field of `es` that names `key`, for messages.
fn field_of(es: &ExternalSecret, key: &RefKey) -> String {
    if let Some(t) = &es.spec.target.template {
        for (i, tf) in t.template_from.iter().enumerate() {
            if key.kind == RefKind::ConfigMap && tf.config_map.as_ref().is_some_and(|r| r.name == key.name) {
                return es.field_path(&format!("spec.target.template.templateFrom[{i}].configMap.name"));
            }
            if key.kind == RefKind::Secret && tf.secret.as_ref().is_some_and(|r| r.name == key.name) {
                return es.field_path(&format!("spec.target.template.templateFrom[{i}].secret.name"));
            }
        }
    }
    for (i, d) in es.spec.data.iter().enumerate() {
        if d.source_ref
            .as_ref()
            .and_then(|s| s.generator_ref.as_ref())
            .is_some_and(|g| g.name == key.name && g.kind == key.kind.kind())
        {
            return es.field_path(&format!("spec.data[{i}].sourceRef.generatorRef"));
        }
    }
    for (i, d) in es.spec.data_from.iter().enumerate() {
        if d.source_ref
            .as_ref()
            .and_then(|s| s.generator_ref.as_ref())
            .is_some_and(|g| g.name == key.name && g.kind == key.kind.kind())
        {
            return es.field_path(&format!("spec.dataFrom[{i}].sourceRef.generatorRef"));
        }
    }
    format!("ExternalSecret {}", es.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> RefKey {
        RefKey {
            kind: RefKind::ConfigMap,
            namespace: "n".into(),
            name: name.into(),
        }
    }

    #[test]
    fn users_come_and_go() {
        let mut r = Refs::default();
        let a = User::ExternalSecret(SpecId {
            namespace: "n".into(),
            name: "a".into(),
        });
        r.set_user(a.clone(), BTreeSet::from([key("x"), key("y")]));
        assert_eq!(r.users.len(), 2);
        r.set_user(a.clone(), BTreeSet::from([key("y")]));
        assert_eq!(r.users.keys().cloned().collect::<Vec<_>>(), vec![key("y")]);
        r.set_user(a, BTreeSet::new());
        assert!(r.users.is_empty() && r.by_user.is_empty());
    }

    #[test]
    fn absence_is_known_only_after_a_list() {
        let r = Refs::default();
        assert!(matches!(r.seen(&key("x")), Seen::Unknown));
        let mut r = r;
        r.listed.insert(key("x"));
        assert!(matches!(r.seen(&key("x")), Seen::Missing));
    }
}
