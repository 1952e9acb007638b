//! The controller's sink and restarter: [`KubeSink`] and [`KubeRestarter`] behind a
//! leadership check, with write metrics and a record of what each target held last, so
//! that edits by others can be told from our own writes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secretsync_core::{
    ApplyOutcome, Compared, ConsumerRef, DesiredTarget, Error, Fingerprint, FingerprintKey, RestartRequest, Restarter,
    Result, SecretMap, SecretSink, SinkCapabilities, TargetRef, TargetState,
};
use tokio::sync::watch;

use crate::metrics::{Metrics, WriteLabels};
use secretsync_k8s::{Cached, KubeRestarter, KubeSink, TargetCache};

/// A watched target's state, as the sink's `read` gives it.
fn state_of(t: &TargetRef, obj: &kube::api::DynamicObject) -> TargetState {
    use serde_json::Value;
    let kind = if t.kind == secretsync_core::TargetKind::Secret {
        crate::refs::RefKind::Secret
    } else {
        crate::refs::RefKind::ConfigMap
    };
    let meta = &obj.metadata;
    TargetState {
        data: crate::refs::object_data(obj, kind),
        secret_type: (t.kind == secretsync_core::TargetKind::Secret).then(|| {
            obj.data
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("Opaque")
                .to_string()
        }),
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        immutable: obj.data.get("immutable").and_then(Value::as_bool).unwrap_or(false),
    }
}

fn not_leader(what: &str) -> Error {
    Error::provider(
        "kubernetes",
        format!("{what}: this replica is not the leader (any more); the write was not sent"),
        true,
    )
}

/// Fingerprints of target data as last read or written by us.
#[derive(Default)]
pub(crate) struct Tracked {
    key: Mutex<Option<FingerprintKey>>,
    map: Mutex<HashMap<TargetRef, Fingerprint>>,
}

impl Tracked {
    pub(crate) fn new(key: FingerprintKey) -> Self {
        Self {
            key: Mutex::new(Some(key)),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// A new key: what was tracked under the old one is forgotten.
    pub(crate) fn set_key(&self, key: FingerprintKey) {
        *self.key.lock().expect("lock") = Some(key);
        self.map.lock().expect("lock").clear();
    }

    pub(crate) fn fingerprint(&self, data: &SecretMap) -> Option<Fingerprint> {
        self.key
            .lock()
            .expect("lock")
            .as_ref()
            .map(|k| k.fingerprint(data, &[]))
    }

    fn set(&self, t: &TargetRef, data: &SecretMap) {
        if let Some(fp) = self.fingerprint(data) {
            self.map.lock().expect("lock").insert(t.clone(), fp);
        }
    }

    /// Forgets a target; returns whether it was known.
    pub(crate) fn forget(&self, t: &TargetRef) -> bool {
        self.map.lock().expect("lock").remove(t).is_some()
    }

    /// Whether `data` differs from what we last saw in `t`; `None` when `t` is not tracked.
    pub(crate) fn differs(&self, t: &TargetRef, data: &SecretMap) -> Option<bool> {
        let known = self.map.lock().expect("lock").get(t).copied()?;
        Some(self.fingerprint(data) != Some(known))
    }
}

/// [`KubeSink`] that writes only while this replica leads.
pub(crate) struct GuardedSink {
    inner: KubeSink,
    leader: watch::Receiver<bool>,
    owner_api_version: String,
    metrics: Arc<Metrics>,
    tracked: Arc<Tracked>,
    /// The watch cache of labelled targets: `read` answers from it.
    cache: Option<Arc<TargetCache>>,
}

impl fmt::Debug for GuardedSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedSink")
            .field("inner", &self.inner)
            .field("owner_api_version", &self.owner_api_version)
            .finish_non_exhaustive()
    }
}

impl GuardedSink {
    pub(crate) fn new(
        inner: KubeSink,
        leader: watch::Receiver<bool>,
        owner_api_version: String,
        metrics: Arc<Metrics>,
        tracked: Arc<Tracked>,
    ) -> Self {
        Self {
            inner,
            leader,
            owner_api_version,
            metrics,
            tracked,
            cache: None,
        }
    }

    /// Answers `read` from the watch cache where it holds the target (an `if-absent`
    /// generator reads the target at every render: no request when it is cached).
    pub(crate) fn with_cache(mut self, cache: Arc<TargetCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    fn count(&self, t: &TargetRef, operation: &str, ok: bool) {
        self.metrics
            .sink_writes
            .get_or_create(&WriteLabels {
                kind: t.kind.to_string(),
                operation: operation.to_string(),
                status: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }
}

#[async_trait]
impl SecretSink for GuardedSink {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }
    async fn read(&self, target: &TargetRef) -> Result<Option<TargetState>> {
        let cached = match self.cache.as_ref().map(|c| c.get(target)) {
            Some(Cached::Labelled(obj)) => Some(state_of(target, &obj)),
            _ => None,
        };
        let r = match cached {
            Some(state) => Some(state),
            // Not ours (yet), or not watched: the API server says.
            None => self.inner.read(target).await?,
        };
        match &r {
            Some(state) => self.tracked.set(target, &state.data),
            None => {
                self.tracked.forget(target);
            }
        }
        Ok(r)
    }
    async fn compare(&self, desired: &DesiredTarget) -> Result<Compared> {
        // The inner sink answers from the watch cache (no request when unchanged).
        let r = self.inner.compare(desired).await?;
        match &r {
            Compared::Matches => self.tracked.set(&desired.target, &desired.data),
            Compared::Differs(state) => self.tracked.set(&desired.target, &state.data),
            Compared::Missing => {
                self.tracked.forget(&desired.target);
            }
        }
        Ok(r)
    }
    async fn apply(&self, desired: &DesiredTarget) -> Result<ApplyOutcome> {
        if !*self.leader.borrow() {
            return Err(not_leader(&format!("writing {}", desired.target)));
        }
        // The ExternalSecret lives in the configured group, whatever group the manifest
        // model names.
        let mut d = desired.clone();
        if let Some(o) = d.owner.as_mut() {
            o.api_version = self.owner_api_version.clone();
        }
        // Record first: the watch event of our own write may arrive before we return.
        self.tracked.set(&d.target, &d.data);
        let r = self.inner.apply(&d).await;
        match &r {
            Ok(ApplyOutcome::Unchanged) => {}
            Ok(_) => self.count(&d.target, "apply", true),
            Err(_) => {
                self.tracked.forget(&d.target);
                self.count(&d.target, "apply", false);
            }
        }
        r
    }
    async fn delete(&self, target: &TargetRef) -> Result<bool> {
        if !*self.leader.borrow() {
            return Err(not_leader(&format!("deleting {target}")));
        }
        self.tracked.forget(target);
        let r = self.inner.delete(target).await;
        if !matches!(r, Ok(false)) {
            self.count(target, "delete", r.is_ok());
        }
        r
    }
}

/// [`KubeRestarter`] that restarts only while this replica leads.
pub(crate) struct GuardedRestarter {
    inner: KubeRestarter,
    leader: watch::Receiver<bool>,
}

impl fmt::Debug for GuardedRestarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedRestarter").field("inner", &self.inner).finish()
    }
}

impl GuardedRestarter {
    pub(crate) fn new(inner: KubeRestarter, leader: watch::Receiver<bool>) -> Self {
        Self { inner, leader }
    }
}

#[async_trait]
impl Restarter for GuardedRestarter {
    async fn restart(&self, changed: &[RestartRequest]) -> Result<Vec<ConsumerRef>> {
        if !*self.leader.borrow() {
            return Err(not_leader("restarting consumers"));
        }
        self.inner.restart(changed).await
    }
}
