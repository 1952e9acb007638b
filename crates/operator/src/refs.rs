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
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use secretsync_core::engine::SpecReport;
use secretsync_core::error::Location;
use secretsync_core::manifest::push::GENERATORS_API_GROUP;
use secretsync_core::manifest::{ExternalSecret, GeneratorDoc, ObjectMeta, SpecId, StaticTarget, from_value};
use secretsync_core::{SecretMap, SecretValue, TargetKind, TargetRef};
use serde_json::{Value, json};
use tokio::sync::Notify;

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

    pub(crate) fn api_resource(self) -> ApiResource {
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
    pub(crate) objects: HashMap<RefKey, Arc<DynamicObject>>,
    pub(crate) listed: HashSet<RefKey>,
    pub(crate) users: BTreeMap<RefKey, BTreeSet<User>>,
    by_user: BTreeMap<User, BTreeSet<RefKey>>,
    pub(crate) watches: HashMap<RefKey, (tokio::task::AbortHandle, Instant)>,
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
    pub(crate) fn users_of(&self, key: &RefKey) -> Vec<User> {
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
pub(crate) fn missing(key: &RefKey, seen: &Seen) -> String {
    match seen {
        Seen::Unknown => format!("{key} not seen yet (its watch has not listed)"),
        _ => format!("{key} not found"),
    }
}

/// The field of `es` that names `key`, for messages.
pub(crate) fn field_of(es: &ExternalSecret, key: &RefKey) -> String {
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
