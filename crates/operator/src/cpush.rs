//! ClusterPushSecrets (`external-secrets.io/v1alpha1`), as ESO handles them: one
//! PushSecret per selected namespace, owned by the ClusterPushSecret, and an ESO-shaped
//! status.
//!
//! A ClusterPushSecret selects the namespaces in `spec.namespaces` and those any of its
//! `namespaceSelectors` match (namespaces being deleted are skipped). In each, the leader
//! of its shard (`shard_of("", name)`) applies, by server-side apply with our field
//! manager, a PushSecret named `spec.pushSecretName` (default: the ClusterPushSecret's
//! name) with `spec.pushSecretSpec` verbatim, the labels and annotations of
//! `spec.pushSecretMetadata`, and a controller owner reference; the PushSecret path
//! (`push`) then pushes it. A PushSecret is applied again only when what we would apply
//! changes or it was deleted (the PushSecret watch says so): an unchanged round sends
//! nothing. The PushSecrets in namespaces no longer selected, and all of them when the
//! ClusterPushSecret goes, are deleted (only those it owns). Selection is re-evaluated
//! when the ClusterPushSecret changes and every few seconds against the watched
//! Namespaces (no request), and everything every `spec.refreshTime` (default 1m).
//!
//! Status: `pushSecretName`, `provisionedNamespaces`, `failedNamespaces` (`namespace`,
//! `reason`) and the `Ready` condition (`True`, or `False` with "one or more namespaces
//! failed" or why the spec is invalid), written only when it changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::DynamicObject;
use secretsync_core::error::Location;
use secretsync_core::manifest::push::ClusterPushSecretSpec;
use secretsync_core::manifest::{ObjectMeta, PushSecret};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// ESO's message of `Ready=False` when namespaces failed.
pub(crate) const NAMESPACES_FAILED: &str = "one or more namespaces failed";
/// A PushSecret of that name exists in the namespace and is not ours.
pub(crate) const ALREADY_EXISTS: &str = "push secret already exists in namespace";

/// A valid ClusterPushSecret.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) spec: ClusterPushSecretSpec,
    pub(crate) raw_spec: Value,
}

impl Parsed {
    pub(crate) fn push_secret_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.spec
            .push_secret_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(name)
    }
    pub(crate) fn selects(&self, ns: &str, labels: &BTreeMap<String, String>) -> bool {
        self.spec.namespaces.iter().any(|n| n == ns) || self.spec.namespace_selectors.iter().any(|s| s.matches(labels))
    }
    pub(crate) fn every(&self) -> Duration {
        self.spec
            .refresh_time
            .as_deref()
            .and_then(|s| secretsync_core::duration::parse_go_duration(s).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(60))
    }
}

/// A watched ClusterPushSecret of this replica's shard.
#[derive(Debug, Clone)]
pub(crate) struct CpsEntry {
    pub(crate) uid: Option<String>,
    pub(crate) generation: Option<i64>,
    pub(crate) parsed: Result<Arc<Parsed>, String>,
    pub(crate) observed: Value,
    pub(crate) dirty: bool,
    pub(crate) due: Option<Instant>,
    pub(crate) running: bool,
    /// Namespaces selected at the last reconcile.
    pub(crate) targets: BTreeSet<String>,
    /// Namespace → fingerprint of the PushSecret we applied there.
    pub(crate) applied: BTreeMap<String, u64>,
    /// Namespaces where we made its PushSecret, and under which name.
    pub(crate) made: BTreeSet<String>,
    pub(crate) made_name: Option<String>,
}

/// A deleted ClusterPushSecret whose PushSecrets are to be deleted.
#[derive(Debug, Clone)]
pub(crate) struct Cleanup {
    pub(crate) name: String,
    pub(crate) uid: Option<String>,
    pub(crate) ps_names: BTreeSet<String>,
    pub(crate) namespaces: BTreeSet<String>,
}

/// The ClusterPushSecrets and their lane's wake-up.
#[derive(Debug, Default)]
pub(crate) struct CpsState {
    pub(crate) entries: BTreeMap<String, CpsEntry>,
    pub(crate) cleanups: Vec<Cleanup>,
    pub(crate) listed: bool,
    pub(crate) wake: Arc<Notify>,
}

pub(crate) fn parse(obj: &DynamicObject, name: &str) -> Result<Arc<Parsed>, String> {
    let raw = obj.data.get("spec").cloned().unwrap_or_else(|| json!({}));
    let spec: ClusterPushSecretSpec =
        serde_json::from_value(raw.clone()).map_err(|e| format!("ClusterPushSecret {name}: spec: {e}"))?;
    let ps = PushSecret {
        metadata: ObjectMeta {
            name: spec.push_secret_name.clone().unwrap_or_else(|| name.to_string()),
            namespace: spec.namespaces.first().cloned(),
            ..ObjectMeta::default()
        },
        spec: spec.push_secret_spec.clone(),
        origin: Location {
            file: format!("cluster:ClusterPushSecret {name}").into(),
            document: 1,
            object: Some(format!("ClusterPushSecret {name}")),
            field: None,
        },
        spec_path: "spec.pushSecretSpec".to_string(),
    };
    if let Some(e) = ps.check().first() {
        return Err(e.to_string());
    }
    let raw_spec = raw.get("pushSecretSpec").cloned().unwrap_or_else(|| json!({}));
    Ok(Arc::new(Parsed { spec, raw_spec }))
}
