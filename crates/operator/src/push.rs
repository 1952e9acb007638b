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

use kube::api::DynamicObject;
use secretsync_core::error::Location;
use secretsync_core::manifest::{API_GROUP, PushSecret, SpecId, StoreId, StoreKind, from_value};
use secretsync_core::push::{PushReport, Pushed};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::refs::{RefKey, RefKind};

/// ESO's finalizer on PushSecrets with `deletionPolicy: Delete`.
pub(crate) const FINALIZER: &str = "pushsecret.externalsecrets.io/finalizer";
/// ESO's message of a successful push.
pub(crate) const SYNCED_MESSAGE: &str = "PushSecret synced successfully";
/// ESO's message when the source Secret cannot be read.
pub(crate) const NO_SOURCE: &str = "could not get source secret";

pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(5);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(300);
pub(crate) const JITTER_FRACTION: f64 = 0.1;

/// A watched PushSecret of this replica's shard.
#[derive(Debug, Clone)]
pub(crate) struct PushEntry {
    pub(crate) uid: Option<String>,
    pub(crate) generation: Option<i64>,
    pub(crate) meta_hash: u64,
    pub(crate) parsed: Result<PushSecret, String>,
    /// `status` on the object as last seen (or written).
    pub(crate) observed: Value,
    pub(crate) finalizers: Vec<String>,
    /// Being deleted (a finalizer holds it).
    pub(crate) deleting: bool,
    /// Its remote keys were deleted (nothing more to do when it goes).
    pub(crate) cleaned: bool,
    /// What it pushed: from its status, then from our own pushes.
    pub(crate) record: BTreeSet<Pushed>,
    /// Push at the next look.
    pub(crate) dirty: bool,
    pub(crate) due: Option<Instant>,
    pub(crate) running: bool,
    pub(crate) failures: u32,
}

/// A PushSecret gone (no finalizer held it) whose remote keys are still to delete.
#[derive(Debug, Clone)]
pub(crate) struct Cleanup {
    pub(crate) ps: PushSecret,
    pub(crate) record: BTreeSet<Pushed>,
}

/// The PushSecrets and the lane's wake-up.
#[derive(Debug, Default)]
pub(crate) struct PushState {
    pub(crate) entries: BTreeMap<SpecId, PushEntry>,
    pub(crate) cleanups: Vec<Cleanup>,
    /// The watch has listed once.
    pub(crate) listed: bool,
    pub(crate) wake: Arc<Notify>,
}

/// A PushSecret object as core's manifest document.
pub(crate) fn parse(obj: &DynamicObject) -> Result<PushSecret, String> {
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
pub(crate) fn source_refs(ps: &PushSecret) -> BTreeSet<RefKey> {
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
pub(crate) fn record_of(status: &Value, namespace: &str) -> BTreeSet<Pushed> {
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
pub(crate) fn synced_map(ps: &PushSecret, stores: &[StoreId], record: &BTreeSet<Pushed>) -> Value {
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
pub(crate) fn replace_patch(have: &Value, want: &Value) -> Value {
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
pub(crate) fn ready_of(status: &Value) -> Option<(String, String, String, String)> {
    let c = status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?;
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message"), s("lastTransitionTime")))
}

/// `refreshInterval` (default 1h); `None` for `0`.
pub(crate) fn interval(ps: &PushSecret) -> Option<Duration> {
    match &ps.spec.refresh_interval {
        None => Some(secretsync_core::manifest::DEFAULT_REFRESH_INTERVAL),
        Some(s) => secretsync_core::duration::parse_go_duration(s)
            .ok()
            .filter(|d| !d.is_zero()),
    }
}

/// Why a push failed, as ESO words it, naming keys and stores, never values.
pub(crate) fn failure(report: &PushReport) -> Option<String> {
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

/// What one reconcile did, for the entry.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) ok: bool,
    pub(crate) record: Option<BTreeSet<Pushed>>,
    pub(crate) status: Option<Value>,
    pub(crate) finalizers: Option<Vec<String>>,
    pub(crate) cleaned: bool,
    /// The source is not known yet: again shortly, no status written.
    pub(crate) wait: bool,
}

impl Outcome {
    pub(crate) fn failed(status: Option<Value>) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }
}

pub(crate) fn id_of(obj: &DynamicObject) -> SpecId {
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
