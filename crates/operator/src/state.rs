//! What the watches saw, as plain data: ExternalSecrets, stores, ClusterExternalSecrets,
//! Namespaces, the schedule, and which watch an event came from. No I/O here: the watches
//! (`watch`, `cluster`) fill it, the lanes (`lanes`) and `status` read it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use secretsync_core::engine::Scheduler;
use secretsync_core::manifest::{ClusterExternalSecret, ExternalSecret, SpecId, Store, StoreId};
use secretsync_core::{TargetKind, TargetRef};
use serde_json::Value;

/// Which watch an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    ExternalSecret,
    SecretStore,
    ClusterSecretStore,
    ClusterExternalSecret,
    Secret,
    ConfigMap,
    Namespace,
}

impl Kind {
    pub(crate) const ESO: [Kind; 4] = [
        Kind::ExternalSecret,
        Kind::SecretStore,
        Kind::ClusterSecretStore,
        Kind::ClusterExternalSecret,
    ];

    pub(crate) fn kind(self) -> &'static str {
        match self {
            Kind::ExternalSecret => "ExternalSecret",
            Kind::SecretStore => "SecretStore",
            Kind::ClusterSecretStore => "ClusterSecretStore",
            Kind::ClusterExternalSecret => "ClusterExternalSecret",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::Namespace => "Namespace",
        }
    }

    pub(crate) fn plural(self) -> &'static str {
        match self {
            Kind::ExternalSecret => "externalsecrets",
            Kind::SecretStore => "secretstores",
            Kind::ClusterSecretStore => "clustersecretstores",
            Kind::ClusterExternalSecret => "clusterexternalsecrets",
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
            Kind::Namespace => "namespaces",
        }
    }

    pub(crate) fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::ClusterSecretStore | Kind::ClusterExternalSecret | Kind::Namespace
        )
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The target kind of the Secret and ConfigMap watches.
    pub(crate) fn target_kind(self) -> Option<TargetKind> {
        match self {
            Kind::Secret => Some(TargetKind::Secret),
            Kind::ConfigMap => Some(TargetKind::ConfigMap),
            _ => None,
        }
    }
}

/// FNV-1a of a string, for cheap change detection.
pub(crate) fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// ESO's Ready condition as it is on an object, with the other status fields we write
/// (compared before writing, so that an unchanged round writes no status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReadyCondition {
    pub(crate) status: String,
    pub(crate) reason: String,
    pub(crate) message: String,
    pub(crate) last_transition_time: String,
    /// `status.syncedResourceVersion`.
    pub(crate) synced_version: Option<String>,
    /// `status.refreshTime`.
    pub(crate) refresh_time: Option<String>,
    /// `status.binding.name`.
    pub(crate) binding: Option<String>,
}

impl ReadyCondition {
    /// Whether writing `want` would change nothing but a `refreshTime` younger than
    /// `every` (ESO rewrites it at every refresh: one etcd write per resource per interval).
    pub(crate) fn covers(&self, want: &ReadyCondition, now: Timestamp, every: Duration) -> bool {
        let fresh = match (&want.refresh_time, &self.refresh_time) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(have)) => have.parse::<Timestamp>().is_ok_and(|t| {
                let age = now.duration_since(t);
                !age.is_negative() && age.unsigned_abs() < every
            }),
        };
        fresh
            && self.status == want.status
            && self.reason == want.reason
            && self.message == want.message
            && self.binding == want.binding
            && (want.synced_version.is_none() || self.synced_version == want.synced_version)
    }
}

/// A watched ExternalSecret.
#[derive(Debug, Clone)]
pub(crate) struct EsEntry {
    pub(crate) uid: Option<String>,
    pub(crate) generation: Option<i64>,
    pub(crate) meta_hash: u64,
    pub(crate) parsed: Result<ExternalSecret, String>,
    pub(crate) ready: Option<ReadyCondition>,
}

/// A watched SecretStore or ClusterSecretStore.
#[derive(Debug, Clone)]
pub(crate) struct StoreEntry {
    pub(crate) spec_json: String,
    /// Its `secretsync.io/events*` annotations (a change restarts its event source, not
    /// its engine).
    pub(crate) events_key: String,
    pub(crate) parsed: Result<Store, String>,
}

/// Everything the watches saw, and the schedule.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) es: BTreeMap<SpecId, EsEntry>,
    pub(crate) stores: BTreeMap<StoreId, StoreEntry>,
    pub(crate) targets: HashMap<TargetRef, BTreeSet<SpecId>>,
    /// ClusterExternalSecrets of this replica's shard, by name.
    pub(crate) ces: BTreeMap<String, CesEntry>,
    /// Every Namespace (the one watched, with `--namespace`), by name.
    pub(crate) namespaces: BTreeMap<String, NsEntry>,
    /// Deleted ClusterExternalSecrets whose ExternalSecrets are still to be deleted.
    pub(crate) ces_cleanups: Vec<Cleanup>,
    pub(crate) sched: Scheduler,
    pub(crate) specs_dirty: bool,
    pub(crate) stores_dirty: bool,
    /// Specs for the fast lane, with the sequence number of their latest reason.
    pub(crate) urgent: BTreeMap<SpecId, u64>,
    pub(crate) seq: u64,
    pub(crate) in_flight: BTreeSet<SpecId>,
    /// Objects referenced by name (templateFrom, generators, PushSecret sources).
    pub(crate) refs: crate::refs::Refs,
    /// PushSecrets.
    pub(crate) push: crate::push::PushState,
    /// ClusterPushSecrets.
    pub(crate) cpush: crate::cpush::CpsState,
}

impl State {
    pub(crate) fn mark_urgent(&mut self, id: &SpecId) {
        self.seq += 1;
        self.urgent.insert(id.clone(), self.seq);
    }

    pub(crate) fn unindex_target(&mut self, t: &TargetRef, id: &SpecId) {
        if let Some(s) = self.targets.get_mut(t) {
            s.remove(id);
            if s.is_empty() {
                self.targets.remove(t);
            }
        }
    }

    /// Brings the scheduler up to date with the watched specs (debounced by the dirty flag:
    /// one pass however many events arrived).
    pub(crate) fn ingest(&mut self, now: Instant) {
        if !self.specs_dirty {
            return;
        }
        let specs: Vec<ExternalSecret> = self
            .es
            .values()
            .filter_map(|e| e.parsed.as_ref().ok().cloned())
            .collect();
        self.sched.observe(&specs, now);
        self.specs_dirty = false;
    }
}

/// A watched Namespace: what selection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NsEntry {
    pub(crate) labels: BTreeMap<String, String>,
    /// Being deleted: no new ExternalSecret there.
    pub(crate) terminating: bool,
}

/// A valid ClusterExternalSecret and its `externalSecretSpec` as written (copied verbatim
/// into its ExternalSecrets, as ESO does).
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) ces: ClusterExternalSecret,
    pub(crate) raw_spec: Value,
}

/// What the status on the object says (the last the watch saw).
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    pub(crate) status: Value,
    pub(crate) external_secret_name: Option<String>,
    pub(crate) provisioned: BTreeSet<String>,
}

impl Observed {
    pub(crate) fn from_status(status: Option<&Value>) -> Self {
        let status = status.cloned().unwrap_or(Value::Null);
        let external_secret_name = status
            .get("externalSecretName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let provisioned = status
            .get("provisionedNamespaces")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        Self {
            status,
            external_secret_name,
            provisioned,
        }
    }
}

/// A watched ClusterExternalSecret of this replica's shard.
#[derive(Debug, Clone)]
pub(crate) struct CesEntry {
    pub(crate) uid: Option<String>,
    pub(crate) generation: Option<i64>,
    pub(crate) force_sync: Option<String>,
    pub(crate) parsed: Result<Arc<Parsed>, String>,
    pub(crate) observed: Observed,
    /// Needs a reconcile now.
    pub(crate) dirty: bool,
    /// Next periodic reconcile.
    pub(crate) due: Option<Instant>,
    pub(crate) running: bool,
    /// Namespaces selected at the last look (to notice Namespace changes that matter).
    pub(crate) targets: BTreeSet<String>,
    /// Namespace → fingerprint of the ExternalSecret we applied there (no re-apply when the
    /// cluster still holds it).
    pub(crate) applied: BTreeMap<String, u64>,
    /// Namespaces where we made (or failed to delete) its ExternalSecret, and under which
    /// name: what the status says may lag our own writes.
    pub(crate) made: BTreeSet<String>,
    pub(crate) made_name: Option<String>,
}

/// A deleted ClusterExternalSecret whose ExternalSecrets are to be deleted.
#[derive(Debug, Clone)]
pub(crate) struct Cleanup {
    pub(crate) name: String,
    pub(crate) uid: Option<String>,
    pub(crate) es_names: BTreeSet<String>,
    pub(crate) namespaces: BTreeSet<String>,
}

impl CesEntry {
    pub(crate) fn cleanup(&self, name: &str, uid: Option<String>) -> Cleanup {
        let mut es_names: BTreeSet<String> = self.made_name.iter().cloned().collect();
        es_names.extend(self.observed.external_secret_name.clone());
        if let Ok(p) = &self.parsed {
            es_names.insert(p.ces.external_secret_name().to_string());
        }
        if es_names.is_empty() {
            es_names.insert(name.to_string());
        }
        Cleanup {
            name: name.to_string(),
            uid: uid.or_else(|| self.uid.clone()),
            es_names,
            namespaces: self.made.union(&self.observed.provisioned).cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_marks_are_ordered_and_refreshed() {
        let mut st = State::default();
        let a = SpecId {
            namespace: "n".into(),
            name: "a".into(),
        };
        let b = SpecId {
            namespace: "n".into(),
            name: "b".into(),
        };
        st.mark_urgent(&b);
        st.mark_urgent(&a);
        assert!(st.urgent[&b] < st.urgent[&a], "first marked, first served");
        let before = st.urgent[&b];
        st.mark_urgent(&b);
        assert!(st.urgent[&b] > before, "a new reason gets a new sequence number");
    }
}
