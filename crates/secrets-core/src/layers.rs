//! Layers: wrappers any source can wear, for what cuts across providers — counting calls
//! ([`CountingSource`]), metering them for metrics ([`MeteredSource`] with a
//! [`CallObserver`]), and bounding their time ([`TimeoutSource`]). Each forwards to the
//! source it wraps and implements [`SecretWriter`] when that source does, so layers stack:
//! `MeteredSource::new(TimeoutSource::new(source, limit), observer)`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::source::*;

/// Counts every call and every key requested of a source.
#[derive(Debug)]
pub struct CountingSource<S> {
    inner: S,
    gets: AtomicU64,
    get_manys: AtomicU64,
    finds: AtomicU64,
    tokens: AtomicU64,
    metadata: AtomicU64,
    reads: Mutex<BTreeMap<RemoteKey, u64>>,
}

impl<S> CountingSource<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            gets: AtomicU64::new(0),
            get_manys: AtomicU64::new(0),
            finds: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            metadata: AtomicU64::new(0),
            reads: Mutex::new(BTreeMap::new()),
        }
    }
    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }
    /// `get` calls.
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }
    /// `get_many` calls.
    pub fn get_manys(&self) -> u64 {
        self.get_manys.load(Ordering::Relaxed)
    }
    /// `find` calls.
    pub fn finds(&self) -> u64 {
        self.finds.load(Ordering::Relaxed)
    }
    /// `change_tokens` calls.
    pub fn token_calls(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }
    /// How many times a key's value was requested (get or inside get_many).
    pub fn reads_of(&self, key: &RemoteKey) -> u64 {
        self.reads.lock().expect("lock").get(key).copied().unwrap_or(0)
    }
    /// Values requested in total.
    pub fn values_read(&self) -> u64 {
        self.reads.lock().expect("lock").values().sum()
    }
    /// Resets every count.
    pub fn reset(&self) {
        for c in [&self.gets, &self.get_manys, &self.finds, &self.tokens, &self.metadata] {
            c.store(0, Ordering::Relaxed);
        }
        self.reads.lock().expect("lock").clear();
    }
    fn count_keys(&self, keys: &[RemoteKey]) {
        let mut r = self.reads.lock().expect("lock");
        for k in keys {
            *r.entry(k.clone()).or_default() += 1;
        }
    }
}

#[async_trait]
impl<S: SecretSource> SecretSource for CountingSource<S> {
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
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.count_keys(std::slice::from_ref(key));
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[RemoteKey]) -> Vec<Result<Fetched>> {
        self.get_manys.fetch_add(1, Ordering::Relaxed);
        self.count_keys(keys);
        self.inner.get_many(keys).await
    }
    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        self.finds.fetch_add(1, Ordering::Relaxed);
        self.inner.find(query).await
    }
    async fn change_tokens(&self, keys: &[RemoteKey]) -> Vec<Result<Option<ChangeToken>>> {
        self.tokens.fetch_add(1, Ordering::Relaxed);
        self.inner.change_tokens(keys).await
    }
    async fn metadata(&self, key: &str) -> Result<BTreeMap<String, String>> {
        self.metadata.fetch_add(1, Ordering::Relaxed);
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
impl<S: SecretWriter> SecretWriter for CountingSource<S> {
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
        self.inner.describe(key).await
    }
    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
        self.inner.put(request).await
    }
    async fn disable_version(&self, key: &str, version: &str) -> Result<()> {
        self.inner.disable_version(key, version).await
    }
}

/// Told of every call a [`MeteredSource`] forwards: operation, outcome and duration.
pub trait CallObserver: Send + Sync {
    /// One call of `operation` (`get`, `get_many`, `find`, `change_tokens`, `metadata`,
    /// `describe`, `put`, `disable_version`) to a source of `provider`.
    fn observe(&self, provider: &str, operation: &'static str, ok: bool, elapsed: Duration);
}

/// Reports every call to a [`CallObserver`] (the operator's Prometheus metrics, a test).
pub struct MeteredSource<S> {
    inner: S,
    observer: Arc<dyn CallObserver>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for MeteredSource<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredSource")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: SecretSource> MeteredSource<S> {
    /// Wraps `inner`, reporting to `observer`.
    pub fn new(inner: S, observer: Arc<dyn CallObserver>) -> Self {
        Self { inner, observer }
    }
    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }
    fn seen(&self, operation: &'static str, ok: bool, start: Instant) {
        self.observer
            .observe(self.inner.provider(), operation, ok, start.elapsed());
    }
}

#[async_trait]
impl<S: SecretSource> SecretSource for MeteredSource<S> {
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
        let start = Instant::now();
        let r = self.inner.get(key).await;
        self.seen("get", r.is_ok(), start);
        r
    }
    async fn get_many(&self, keys: &[RemoteKey]) -> Vec<Result<Fetched>> {
        let start = Instant::now();
        let r = self.inner.get_many(keys).await;
        self.seen("get_many", r.iter().all(Result::is_ok), start);
        r
    }
    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        let start = Instant::now();
        let r = self.inner.find(query).await;
        self.seen("find", r.is_ok(), start);
        r
    }
    async fn change_tokens(&self, keys: &[RemoteKey]) -> Vec<Result<Option<ChangeToken>>> {
        let start = Instant::now();
        let r = self.inner.change_tokens(keys).await;
        self.seen("change_tokens", r.iter().all(Result::is_ok), start);
        r
    }
    async fn metadata(&self, key: &str) -> Result<BTreeMap<String, String>> {
        let start = Instant::now();
        let r = self.inner.metadata(key).await;
        self.seen("metadata", r.is_ok(), start);
        r
    }
    fn api_calls(&self) -> u64 {
        self.inner.api_calls()
    }
    fn call_stats(&self) -> Option<&CallStats> {
        self.inner.call_stats()
    }
}

#[async_trait]
impl<S: SecretWriter> SecretWriter for MeteredSource<S> {
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
        let start = Instant::now();
        let r = self.inner.describe(key).await;
        self.seen("describe", r.is_ok(), start);
        r
    }
    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
        let start = Instant::now();
        let r = self.inner.put(request).await;
        self.seen("put", r.is_ok(), start);
        r
    }
    async fn disable_version(&self, key: &str, version: &str) -> Result<()> {
        let start = Instant::now();
        let r = self.inner.disable_version(key, version).await;
        self.seen("disable_version", r.is_ok(), start);
        r
    }
}

/// Bounds every call of a source: one that takes longer than `limit` fails with
/// [`Error::Timeout`] naming the call (retryable), so a hung provider cannot hold a cycle.
#[derive(Debug)]
pub struct TimeoutSource<S> {
    inner: S,
    limit: Duration,
}

impl<S: SecretSource> TimeoutSource<S> {
    /// Wraps `inner`; each call may take at most `limit`.
    pub fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit }
    }
    async fn bound<T>(&self, what: String, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.limit, f).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                what: format!("{} {what}", self.inner.provider()),
                after: self.limit,
            }),
        }
    }
    fn bound_each<T>(&self, what: &str, n: usize) -> Vec<Result<T>> {
        (0..n)
            .map(|_| {
                Err(Error::Timeout {
                    what: format!("{} {what}", self.inner.provider()),
                    after: self.limit,
                })
            })
            .collect()
    }
}

#[async_trait]
impl<S: SecretSource> SecretSource for TimeoutSource<S> {
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
        self.bound(format!("get of `{}`", key.key), self.inner.get(key)).await
    }
    async fn get_many(&self, keys: &[RemoteKey]) -> Vec<Result<Fetched>> {
        match tokio::time::timeout(self.limit, self.inner.get_many(keys)).await {
            Ok(r) => r,
            Err(_) => self.bound_each("get_many", keys.len()),
        }
    }
    async fn find(&self, query: &FindQuery) -> Result<Vec<String>> {
        self.bound("find".into(), self.inner.find(query)).await
    }
    async fn change_tokens(&self, keys: &[RemoteKey]) -> Vec<Result<Option<ChangeToken>>> {
        match tokio::time::timeout(self.limit, self.inner.change_tokens(keys)).await {
            Ok(r) => r,
            Err(_) => self.bound_each("change_tokens", keys.len()),
        }
    }
    async fn metadata(&self, key: &str) -> Result<BTreeMap<String, String>> {
        self.bound(format!("metadata of `{key}`"), self.inner.metadata(key))
            .await
    }
    fn api_calls(&self) -> u64 {
        self.inner.api_calls()
    }
    fn call_stats(&self) -> Option<&CallStats> {
        self.inner.call_stats()
    }
}

#[async_trait]
impl<S: SecretWriter> SecretWriter for TimeoutSource<S> {
    async fn describe(&self, key: &str) -> Result<Option<RemoteDescription>> {
        self.bound(format!("describe of `{key}`"), self.inner.describe(key))
            .await
    }
    async fn put(&self, request: &WriteRequest) -> Result<WriteOutcome> {
        self.bound(format!("put of `{}`", request.key), self.inner.put(request))
            .await
    }
    async fn disable_version(&self, key: &str, version: &str) -> Result<()> {
        self.bound(
            format!("disable_version of `{key}`"),
            self.inner.disable_version(key, version),
        )
        .await
    }
}
