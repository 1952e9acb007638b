//! [`TargetCache`]: the managed targets the sink knows without asking the API server.
//!
//! Filled either by a watch the caller runs (the operator already watches the Secrets and
//! ConfigMaps labelled `app.kubernetes.io/managed-by=secretsync`) or, for one cycle, by
//! the sink's own list of each namespace ([`SecretSink::begin_cycle`]). Holds only
//! labelled targets: a target absent from a complete scope is either missing or not
//! labelled by us, and the sink decides what that means for each desired state.
//!
//! [`SecretSink::begin_cycle`]: secretsync_core::SecretSink::begin_cycle

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};

use kube::api::DynamicObject;
use secretsync_core::{TargetKind, TargetRef};

/// Where a cache holds every labelled target of a kind.
#[derive(Debug, Clone, Default)]
enum Scope {
    /// Nowhere yet (a watch not synced, nothing listed).
    #[default]
    None,
    /// In every namespace (a watch over all namespaces, synced).
    All,
    /// In these namespaces.
    Namespaces(HashSet<String>),
}

impl Scope {
    fn covers(&self, namespace: &str) -> bool {
        match self {
            Scope::None => false,
            Scope::All => true,
            Scope::Namespaces(s) => s.contains(namespace),
        }
    }
}

#[derive(Default)]
struct Inner {
    objects: HashMap<TargetRef, Arc<DynamicObject>>,
    complete: HashMap<TargetKind, Scope>,
}

/// What the cache knows of one target.
#[derive(Debug, Clone)]
pub enum Cached {
    /// The target, labelled managed-by secretsync, as last seen.
    Labelled(Arc<DynamicObject>),
    /// No labelled target of that name: it is missing, or exists without our label.
    NotLabelled,
    /// The cache does not cover the target's namespace (not synced yet, not listed): ask
    /// the API server.
    Unknown,
}

/// The labelled Secrets and ConfigMaps seen by a watch or a list, by target.
///
/// Shared between whoever fills it and the [`KubeSink`](crate::KubeSink) that reads it.
/// Its `Debug` shows counts only: the objects hold secret data.
#[derive(Default)]
pub struct TargetCache {
    inner: RwLock<Inner>,
}

impl fmt::Debug for TargetCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.read().expect("lock");
        f.debug_struct("TargetCache")
            .field("objects", &inner.objects.len())
            .finish_non_exhaustive()
    }
}

/// The target an object is, as a [`TargetRef`] of `kind`.
pub fn target_of(kind: TargetKind, obj: &DynamicObject) -> TargetRef {
    TargetRef {
        kind,
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        name: obj.metadata.name.clone().unwrap_or_default(),
    }
}

impl TargetCache {
    /// An empty cache, complete nowhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the cache knows of `t`.
    pub fn get(&self, t: &TargetRef) -> Cached {
        let inner = self.inner.read().expect("lock");
        if let Some(obj) = inner.objects.get(t) {
            return Cached::Labelled(obj.clone());
        }
        if inner.complete.get(&t.kind).is_some_and(|s| s.covers(&t.namespace)) {
            Cached::NotLabelled
        } else {
            Cached::Unknown
        }
    }

    /// A labelled object was seen (a watch event, a list, the answer to our write).
    pub fn insert(&self, kind: TargetKind, obj: DynamicObject) {
        let t = target_of(kind, &obj);
        self.inner.write().expect("lock").objects.insert(t, Arc::new(obj));
    }

    /// A target was deleted or lost our label.
    pub fn remove(&self, t: &TargetRef) {
        self.inner.write().expect("lock").objects.remove(t);
    }

    /// The cache now holds every labelled target of `kind` in `namespace` (`None`: in
    /// every namespace), as a synced watch does.
    pub fn set_complete(&self, kind: TargetKind, namespace: Option<&str>) {
        let mut inner = self.inner.write().expect("lock");
        let scope = inner.complete.entry(kind).or_default();
        match namespace {
            None => *scope = Scope::All,
            Some(ns) => match scope {
                Scope::All => {}
                Scope::Namespaces(s) => {
                    s.insert(ns.to_string());
                }
                Scope::None => *scope = Scope::Namespaces(HashSet::from([ns.to_string()])),
            },
        }
    }

    /// The cache no longer covers `kind` anywhere (a watch restarts its list): targets are
    /// read from the API server until [`set_complete`](Self::set_complete) again.
    pub fn set_incomplete(&self, kind: TargetKind) {
        self.inner.write().expect("lock").complete.insert(kind, Scope::None);
    }

    /// Keeps only the targets of `kind` that `keep` accepts (a watch relisted: the others
    /// went away while it was down).
    pub fn retain(&self, kind: TargetKind, keep: impl Fn(&TargetRef) -> bool) {
        self.inner
            .write()
            .expect("lock")
            .objects
            .retain(|t, _| t.kind != kind || keep(t));
    }

    /// Replaces what is known of `kind` in `namespace` with a complete list of it.
    pub fn replace_namespace(&self, kind: TargetKind, namespace: &str, objects: Vec<DynamicObject>) {
        let mut inner = self.inner.write().expect("lock");
        inner.objects.retain(|t, _| t.kind != kind || t.namespace != namespace);
        for obj in objects {
            let t = target_of(kind, &obj);
            inner.objects.insert(t, Arc::new(obj));
        }
        drop(inner);
        self.set_complete(kind, Some(namespace));
    }

    /// Forgets `kind` in `namespace`: its objects and that it was complete there.
    pub fn forget_namespace(&self, kind: TargetKind, namespace: &str) {
        let mut inner = self.inner.write().expect("lock");
        inner.objects.retain(|t, _| t.kind != kind || t.namespace != namespace);
        if let Some(Scope::Namespaces(s)) = inner.complete.get_mut(&kind) {
            s.remove(namespace);
        }
    }

    /// How many objects the cache holds.
    pub fn len(&self) -> usize {
        self.inner.read().expect("lock").objects.len()
    }

    /// Whether the cache holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
