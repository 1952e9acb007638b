//! The running side of [`refs`](crate::refs): starting and stopping the per-object
//! watches, taking their events into state, and resolving a batch's references.

use crate::shared::Shared;
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use secretsync_core::engine::SpecReport;
use secretsync_core::manifest::{ExternalSecret, Manifests, resolve_generators, resolve_template_from};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::refs::*;

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
