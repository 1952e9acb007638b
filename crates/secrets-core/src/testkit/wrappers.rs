//! Wrappers around any source or sink: counting calls, and injecting faults (errors,
//! latency, throttling, failing part-way through a cycle). They wrap real implementations;
//! they are never a stand-in for a provider.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::sink::*;
use crate::source::*;

pub use crate::layers::CountingSource;

/// A fault to inject.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The provider is down: a retryable provider error.
    Down,
    /// Throttled, with a retry-after.
    Throttled(Option<Duration>),
    /// Access denied.
    Denied,
    /// Not found.
    NotFound,
}

impl Fault {
    fn error(&self, provider: &str, what: &str) -> Error {
        match self {
            Fault::Down => Error::provider(provider, format!("{what}: connection refused (injected)"), true),
            Fault::Throttled(ra) => Error::Throttled {
                provider: provider.to_string(),
                retry_after: *ra,
            },
            Fault::Denied => Error::PermissionDenied {
                what: format!("{what} (injected)"),
            },
            Fault::NotFound => Error::not_found(format!("{what} (injected)")),
        }
    }
}

/// What a [`FaultySource`] does; change it while a test runs.
#[derive(Debug, Clone, Default)]
pub struct SourceFaults {
    /// Every call fails.
    pub all: Option<Fault>,
    /// Reads of these keys fail.
    pub keys: BTreeMap<String, Fault>,
    /// The next N calls fail with this fault, then calls succeed again (a burst).
    pub next: Option<(u32, Fault)>,
    /// After this many more successful calls, every call fails with `all_after` (the
    /// provider going down half-way through a cycle).
    pub fail_after: Option<(u32, Fault)>,
    /// Added to every call.
    pub latency: Option<Duration>,
}

/// Injects faults into any source.
#[derive(Debug)]
pub struct FaultySource<S> {
    inner: S,
    faults: Arc<Mutex<SourceFaults>>,
}

impl<S> FaultySource<S> {
    /// Wraps `inner`, healthy until told otherwise.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            faults: Arc::new(Mutex::new(SourceFaults::default())),
        }
    }
    /// Changes the faults.
    pub fn set(&self, f: impl FnOnce(&mut SourceFaults)) {
        f(&mut self.faults.lock().expect("lock"));
    }
    /// Heals.
    pub fn heal(&self) {
        *self.faults.lock().expect("lock") = SourceFaults::default();
    }
    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: SecretSource> FaultySource<S> {
    /// The fault for this call, if any, consuming counters.
    async fn gate(&self, what: &str) -> Result<()> {
        self.gate_fault()
            .await
            .map_err(|f| f.error(self.inner.provider(), what))
    }

    async fn gate_fault(&self) -> std::result::Result<(), Fault> {
        let (latency, fault) = {
            let mut f = self.faults.lock().expect("lock");
            let mut fault = f.all.clone();
            if fault.is_none()
                && let Some((n, flt)) = f.next.clone()
            {
                fault = Some(flt);
                f.next = (n > 1).then(|| (n - 1, fault.clone().expect("set")));
            }
            if fault.is_none()
                && let Some((n, flt)) = f.fail_after.clone()
            {
                if n == 0 {
                    f.all = Some(flt.clone());
                    f.fail_after = None;
                    fault = Some(flt);
                } else {
                    f.fail_after = Some((n - 1, flt));
                }
            }
            (f.latency, fault)
        };
        if let Some(l) = latency {
            tokio::time::sleep(l).await;
        }
        match fault {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
    fn key_fault(&self, key: &str) -> Option<Error> {
        self.faults
            .lock()
            .expect("lock")
            .keys
            .get(key)
            .map(|f| f.error(self.inner.provider(), &format!("read of `{key}`")))
    }
}

#[async_trait]
impl<S: SecretSource> SecretSource for FaultySource<S> {
    fn provider(&self) -> &str {
        self.inner.provider()
    }
    fn capabilities(&self) -> SourceCapabilities {
        self.inner.capabilities()
    }
    async fn forget(&self, keys: &[RemoteKey]) {
        self.inner.forget(keys).await
    }
    async fn get(&self, key: &RemoteKey) -> Result<Fetched> {
        self.gate("get").await?;
        if let Some(e) = self.key_fault(&key.key) {
            return Err(e);
        }
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[RemoteKey]) -> Vec<Result<Fetched>> {
        if let Err(f) = self.gate_fault().await {
            return keys
                .iter()
                .map(|k| Err(f.error(self.inner.provider(), &format!("read of `{}`", k.key))))
                .collect();
        }
        let mut out = self.inner.get_many(keys).await;
        for (k, r) in keys.iter().zip(out.iter_mut()) {
            if let Some(e) = self.key_fault(&k.key) {
                *r = Err(e);
            }
        }
        out
    }
    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        self.gate("find").await?;
        self.inner.find(query).await
    }
    async fn change_tokens(&self, keys: &[RemoteKey]) -> Vec<Result<Option<ChangeToken>>> {
        if let Err(f) = self.gate_fault().await {
            return keys
                .iter()
                .map(|k| Err(f.error(self.inner.provider(), &format!("version check of `{}`", k.key))))
                .collect();
        }
        self.inner.change_tokens(keys).await
    }
    async fn metadata(&self, key: &str) -> Result<BTreeMap<String, String>> {
        self.gate("metadata").await?;
        self.inner.metadata(key).await
    }
    fn api_calls(&self) -> u64 {
        self.inner.api_calls()
    }
    fn call_stats(&self) -> Option<&CallStats> {
        self.inner.call_stats()
    }
}

#[async_trait]
impl<S: SecretWriter> SecretWriter for FaultySource<S> {
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
        self.gate("describe").await?;
        self.inner.describe(key).await
    }
    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
        self.gate("put").await?;
        self.inner.put(request).await
    }
    async fn disable_version(&self, key: &str, version: &str) -> Result<()> {
        self.gate("disable_version").await?;
        self.inner.disable_version(key, version).await
    }
}

/// Counts sink calls.
#[derive(Debug)]
pub struct CountingSink<S> {
    inner: S,
    reads: AtomicU64,
    applies: AtomicU64,
    deletes: AtomicU64,
}

impl<S> CountingSink<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            reads: AtomicU64::new(0),
            applies: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
        }
    }
    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }
    /// `read` calls.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
    /// `apply` calls.
    pub fn applies(&self) -> u64 {
        self.applies.load(Ordering::Relaxed)
    }
    /// `delete` calls.
    pub fn deletes(&self) -> u64 {
        self.deletes.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl<S: SecretSink> SecretSink for CountingSink<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }
    async fn read(&self, target: &TargetRef) -> Result<Option<TargetState>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read(target).await
    }
    async fn apply(&self, desired: &DesiredTarget) -> Result<ApplyOutcome> {
        self.applies.fetch_add(1, Ordering::Relaxed);
        self.inner.apply(desired).await
    }
    async fn delete(&self, target: &TargetRef) -> Result<bool> {
        self.deletes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(target).await
    }
    async fn begin_cycle(&self, targets: &[TargetRef]) {
        self.inner.begin_cycle(targets).await
    }
    async fn end_cycle(&self, targets: &[TargetRef]) {
        self.inner.end_cycle(targets).await
    }
}

/// What a [`FaultySink`] does.
#[derive(Debug, Clone, Default)]
pub struct SinkFaults {
    /// Applies to these targets fail (retryable).
    pub fail_targets: BTreeSet<TargetRef>,
    /// The next N applies fail with a conflict.
    pub conflicts: u32,
    /// Every call fails (the API server is down).
    pub down: bool,
}

/// Injects faults into any sink.
#[derive(Debug)]
pub struct FaultySink<S> {
    inner: S,
    faults: Mutex<SinkFaults>,
}

impl<S> FaultySink<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            faults: Mutex::new(SinkFaults::default()),
        }
    }
    /// Changes the faults.
    pub fn set(&self, f: impl FnOnce(&mut SinkFaults)) {
        f(&mut self.faults.lock().expect("lock"));
    }
    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: SecretSink> SecretSink for FaultySink<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }
    async fn read(&self, target: &TargetRef) -> Result<Option<TargetState>> {
        if self.faults.lock().expect("lock").down {
            return Err(Error::provider(
                self.inner.name(),
                format!("read {target}: 503 (injected)"),
                true,
            ));
        }
        self.inner.read(target).await
    }
    async fn apply(&self, desired: &DesiredTarget) -> Result<ApplyOutcome> {
        {
            let mut f = self.faults.lock().expect("lock");
            if f.down || f.fail_targets.contains(&desired.target) {
                return Err(Error::provider(
                    self.inner.name(),
                    format!("apply {}: 503 (injected)", desired.target),
                    true,
                ));
            }
            if f.conflicts > 0 {
                f.conflicts -= 1;
                return Err(Error::Conflict {
                    what: format!("{}: 409 (injected)", desired.target),
                });
            }
        }
        self.inner.apply(desired).await
    }
    async fn delete(&self, target: &TargetRef) -> Result<bool> {
        if self.faults.lock().expect("lock").down {
            return Err(Error::provider(
                self.inner.name(),
                format!("delete {target}: 503 (injected)"),
                true,
            ));
        }
        self.inner.delete(target).await
    }
}
