//! The sync engine: plan → fetch → render → diff → apply → report.
//!
//! 1. Collect every remote reference of every selected spec; dedupe by (store, key,
//!    version); group by store. A value used by many specs is fetched once a cycle.
//! 2. Fetch per store, stores in parallel: `find` for each distinct query, then — when the
//!    source has cheap change tokens — `change_tokens`, and `get_many` only for keys whose
//!    token changed since the value was cached.
//! 3. Render each spec: properties, decoding, extract, find, rewrite, templates.
//! 4. Read each target and compare; unchanged means no write at all.
//! 5. Apply changed targets; restart their consumers once per cycle.
//! 6. Report per-spec status, provider calls, values read and sink writes.
//!
//! A failed fetch never writes: the target keeps its last good data and the spec is
//! `SecretSyncedError`; other specs go on.

mod memo;
mod render;
mod report;
pub mod scheduler;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

pub use crate::sink::target_matches;
pub use crate::value::MAX_TARGET_BYTES;
pub use render::SpecError;
pub use report::{CycleReport, EventsDown, Outcome, PushEntry, PushOutcome, PushReport, SpecReport, SyncStatus};
pub use scheduler::Scheduler;

use crate::fingerprint::FingerprintKey;
use crate::manifest::{ExternalSecret, Manifests, SpecId, StoreId};
use crate::registry::BuiltStore;
use crate::sink::*;
use crate::source::{ChangeToken, FindQuery, RemoteKey, SecretSource};
use crate::value::SecretValue;
use render::{Fetched, KeyMap, StoreFetched, find_query, is_metadata};

/// An ExternalSecret and its store (resolved once a cycle).
/// A spec and the store it reads (`None`: every entry is generated, no store).
type SpecAt<'a> = (&'a ExternalSecret, Result<Option<StoreId>, SpecError>);

/// One rendered item: its report so far, and what the diff and apply need.
struct Job {
    report: SpecReport,
    input: JobInput,
}

struct JobInput {
    desired: Result<DesiredTarget, SpecError>,
    /// Consumers declared on the spec, restarted when the target changes.
    consumers: Vec<ConsumerRef>,
    deletion: DeletionPolicy,
    /// The target (for deletionPolicy Delete); `None` for static targets.
    target: Option<TargetRef>,
    /// What deletionPolicy Merge applies when the remote secret is gone.
    removal: Option<DesiredTarget>,
}

/// One thing a cycle writes: an ExternalSecret's target or a plain ConfigMap/Secret.
enum Item<'a> {
    Spec(SpecAt<'a>),
    Static(&'a crate::manifest::StaticTarget),
}

/// Options of one cycle.
#[derive(Debug, Clone, Default)]
pub struct CycleOptions {
    /// Compute and report, write nothing (the plan).
    pub dry_run: bool,
    /// Only these ExternalSecrets (static targets are included only when `None`).
    pub only: Option<BTreeSet<SpecId>>,
    /// What change events said: per store, the only keys that changed (`Some`), or that
    /// anything may have changed (`None`). Named keys are read fresh (past any snapshot the
    /// source keeps, see [`SecretSource::forget`]); every other key of that store already
    /// cached is served from the cache without a provider call, so an event-driven sync of
    /// a one-key change reads one value. A `None` store drops its snapshots and is fetched
    /// as usual; stores not listed are fetched as usual.
    pub changed: Option<BTreeMap<StoreId, Option<BTreeSet<String>>>>,
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Sink reads and writes in flight at once.
    pub sink_concurrency: usize,
    /// Longest a store's fetch may take before its specs fail with a timeout.
    pub fetch_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            sink_concurrency: 16,
            fetch_timeout: Duration::from_secs(60),
        }
    }
}

/// The cache token of a value read from a source that gives no version: it never equals a
/// provider's change token, so change tokens still decide for sources that have them.
const UNVERSIONED: &str = "\u{0}unversioned";

#[derive(Debug, Clone)]
struct Cached {
    token: ChangeToken,
    value: SecretValue,
}

/// The sync engine. Cheap to share behind an `Arc`; one cycle at a time per engine is the
/// intended use (cycles may overlap, but then their call counts do too).
pub struct Engine {
    stores: BTreeMap<StoreId, BuiltStore>,
    store_errors: BTreeMap<StoreId, SpecError>,
    sink: Arc<dyn SecretSink>,
    restarter: Option<Arc<dyn Restarter>>,
    key: FingerprintKey,
    config: EngineConfig,
    cache: Mutex<HashMap<StoreId, KeyMap<Cached>>>,
    /// Last cycle's renders, given back when their inputs did not change.
    memo: memo::RenderMemo,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .field("sink", &self.sink.name())
            .field("restarter", &self.restarter.is_some())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over built stores and one sink, with a random fingerprint key.
    pub fn new(stores: BTreeMap<StoreId, BuiltStore>, sink: Arc<dyn SecretSink>) -> Self {
        Self {
            stores,
            store_errors: BTreeMap::new(),
            sink,
            restarter: None,
            key: FingerprintKey::random(),
            config: EngineConfig::default(),
            cache: Mutex::new(HashMap::new()),
            memo: memo::RenderMemo::default(),
        }
    }

    /// Restarts consumers of changed targets.
    pub fn with_restarter(mut self, restarter: Arc<dyn Restarter>) -> Self {
        self.restarter = Some(restarter);
        self
    }

    /// Uses this fingerprint key.
    pub fn with_fingerprint_key(mut self, key: FingerprintKey) -> Self {
        self.key = key;
        self
    }

    /// Tunables.
    pub fn with_config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Stores that failed to build: specs using them fail with this error.
    pub fn with_store_error(mut self, store: StoreId, error: &crate::Error) -> Self {
        self.store_errors.insert(store, SpecError::from_error(error));
        self
    }

    /// The fingerprint key.
    pub fn fingerprint_key(&self) -> &FingerprintKey {
        &self.key
    }

    /// The sink.
    pub fn sink(&self) -> &Arc<dyn SecretSink> {
        &self.sink
    }

    /// A built store.
    pub fn store(&self, id: &StoreId) -> Option<&BuiltStore> {
        self.stores.get(id)
    }

    /// Forgets cached values (the next cycle reads everything again).
    pub fn clear_cache(&self) {
        self.cache.lock().expect("lock").clear();
        self.memo.clear();
    }

    /// The desired state of one ExternalSecret, fetched now (no write). Used by rotation
    /// to verify targets.
    pub async fn desired(&self, manifests: &Manifests, id: &SpecId) -> Result<DesiredTarget, SpecError> {
        let es = manifests
            .external_secrets
            .iter()
            .find(|e| &e.id() == id)
            .ok_or_else(|| SpecError {
                message: format!("no ExternalSecret {id}"),
                retryable: false,
                retry_after: None,
                not_found: true,
            })?;
        let store = self.spec_store(es)?;
        let fetched = self.fetch(&[(es, Ok(store.clone()))], None).await.0;
        let current = render::current_data(self.sink.as_ref(), es).await?;
        render::render(
            es,
            es.target_ref(),
            store.as_ref(),
            &fetched,
            (&self.key, &self.memo),
            current.as_ref(),
        )
    }

    fn spec_store(&self, es: &ExternalSecret) -> Result<Option<StoreId>, SpecError> {
        if es.spec.secret_store_ref.is_none() && es.generated_only() {
            return Ok(None);
        }
        let id = es.store_id().ok_or_else(|| SpecError {
            message: format!("{}: missing secretStoreRef", es.field("spec.secretStoreRef")),
            retryable: false,
            retry_after: None,
            not_found: false,
        })?;
        if let Some(e) = self.store_errors.get(&id) {
            return Err(e.at(es, "spec.secretStoreRef.name"));
        }
        if !self.stores.contains_key(&id) {
            return Err(SpecError {
                message: format!(
                    "{}: missing store: {id} is not in the given manifests",
                    es.field("spec.secretStoreRef.name")
                ),
                retryable: false,
                retry_after: None,
                not_found: false,
            });
        }
        Ok(Some(id))
    }

    /// Runs one cycle over the manifests' ExternalSecrets (and static targets).
    pub async fn run(&self, manifests: &Manifests, opts: &CycleOptions) -> CycleReport {
        let start = Instant::now();
        let specs: Vec<SpecAt<'_>> = manifests
            .external_secrets
            .iter()
            .filter(|es| opts.only.as_ref().is_none_or(|o| o.contains(&es.id())))
            .map(|es| (es, self.spec_store(es)))
            .collect();
        let calls_before = self.api_calls();
        let (fetched, values_read) = self.fetch(&specs, opts.changed.as_ref()).await;
        let provider_calls = self.api_calls().saturating_sub(calls_before);

        // Render each spec right before its diff and apply, so only the specs in flight
        // (`sink_concurrency`) hold rendered data at once, not every spec of the cycle. A
        // plain loop over an async method (no closures held across awaits) keeps the future
        // `Send` for callers that spawn it.
        let mut items: Vec<Item<'_>> = Vec::with_capacity(specs.len() + manifests.static_targets.len());
        for spec in specs {
            items.push(Item::Spec(spec));
        }
        if opts.only.is_none() {
            for st in &manifests.static_targets {
                items.push(Item::Static(st));
            }
        }
        // The sink may read this cycle's targets ahead (one list per namespace).
        let targets: Vec<TargetRef> = items
            .iter()
            .map(|i| match i {
                Item::Spec((es, _)) => es.target_ref(),
                Item::Static(st) => st.target.clone(),
            })
            .collect();
        self.sink.begin_cycle(&targets).await;
        let limit = self.config.sink_concurrency.max(1);
        let mut results: Vec<(SpecReport, Option<RestartRequest>, bool)> = Vec::with_capacity(items.len());
        let mut pending = items.into_iter();
        let mut in_flight = futures::stream::FuturesOrdered::new();
        loop {
            while in_flight.len() < limit {
                match pending.next() {
                    Some(item) => in_flight.push_back(self.process(item, &fetched, opts.dry_run)),
                    None => break,
                }
            }
            match in_flight.next().await {
                Some(r) => results.push(r),
                None => break,
            }
        }

        self.sink.end_cycle(&targets).await;
        if opts.only.is_none() && opts.changed.is_none() {
            self.memo.end_full_cycle();
        }
        let mut report = CycleReport {
            dry_run: opts.dry_run,
            provider_calls,
            values_read,
            specs: Vec::with_capacity(results.len()),
            ..Default::default()
        };
        let mut restarts = vec![];
        for (spec, restart, wrote) in results {
            if wrote {
                report.writes += 1;
            }
            if let Some(r) = restart {
                restarts.push(r);
            }
            report.specs.push(spec);
        }
        if !restarts.is_empty()
            && !opts.dry_run
            && let Some(r) = &self.restarter
        {
            match r.restart(&restarts).await {
                Ok(done) => report.restarts = done,
                Err(e) => report.restart_errors.push(e.to_string()),
            }
        }
        report.duration_ms = start.elapsed().as_millis() as u64;
        for s in report.failed() {
            tracing::warn!(spec = %format!("{}/{}", s.namespace, s.name), error = %s.message, "sync failed");
        }
        tracing::debug!(
            writes = report.writes,
            provider_calls = report.provider_calls,
            specs = report.specs.len(),
            "cycle done"
        );
        report
    }

    /// Renders one spec and diffs/applies it.
    ///
    /// The rendered state lives in one heap allocation that the diff and apply borrow, so the
    /// future of each spec in flight stays small (it is moved into the in-flight set).
    async fn process(
        &self,
        item: Item<'_>,
        fetched: &Fetched,
        dry_run: bool,
    ) -> (SpecReport, Option<RestartRequest>, bool) {
        // An `if-absent` generator renders against what the target holds now.
        let current = match &item {
            Item::Spec((es, Ok(_))) => render::current_data(self.sink.as_ref(), es).await,
            _ => Ok(None),
        };
        let mut job = Box::new(self.prepare(item, fetched, current));
        let Job { report, input } = &mut *job;
        let (restart, wrote) = self.apply_one(report, input, dry_run).await;
        (job.report, restart, wrote)
    }

    /// Renders one item: what `apply_one` needs, and its report so far.
    fn prepare(
        &self,
        item: Item<'_>,
        fetched: &Fetched,
        current: Result<Option<crate::value::SecretMap>, SpecError>,
    ) -> Job {
        match item {
            Item::Spec((es, store)) => {
                let target = es.target_ref();
                let report = SpecReport::pending("ExternalSecret", es.namespace(), es.name(), target.to_string());
                let desired = store.and_then(|store| {
                    render::render(
                        es,
                        target.clone(),
                        store.as_ref(),
                        fetched,
                        (&self.key, &self.memo),
                        current?.as_ref(),
                    )
                });
                let deletion = es.spec.target.deletion_policy;
                let removal = (deletion == DeletionPolicy::Merge).then(|| render::render_removal(es, &self.key));
                Job {
                    report,
                    input: JobInput {
                        desired,
                        consumers: es.declared_consumers().unwrap_or_default(),
                        deletion,
                        target: Some(target),
                        removal,
                    },
                }
            }
            Item::Static(st) => {
                let t = &st.target;
                Job {
                    report: SpecReport::pending(t.kind.as_str(), &t.namespace, &t.name, t.to_string()),
                    input: JobInput {
                        desired: render::render_static(st, &self.key),
                        consumers: vec![],
                        deletion: DeletionPolicy::Retain,
                        target: None,
                        removal: None,
                    },
                }
            }
        }
    }

    /// Diffs one rendered item with its target and writes it when it differs; fills in the
    /// report. Returns the restart it calls for and whether it wrote.
    async fn apply_one(
        &self,
        report: &mut SpecReport,
        input: &JobInput,
        dry_run: bool,
    ) -> (Option<RestartRequest>, bool) {
        let desired = match &input.desired {
            Ok(d) => d,
            // The remote secret is gone: deletionPolicy Merge removes only our keys.
            Err(e) if e.not_found && input.deletion == DeletionPolicy::Merge && input.removal.is_some() => {
                report.message = format!("remote secret gone; removing our keys ({})", e.message);
                let removal = input.removal.as_ref().expect("checked");
                match self.sink.compare(removal).await {
                    Ok(Compared::Differs(_)) => removal,
                    Ok(_) => {
                        report.status = SyncStatus::SecretSynced;
                        report.outcome = Outcome::Unchanged;
                        return (None, false);
                    }
                    Err(re) => {
                        report.message = re.to_string();
                        report.retryable = re.is_retryable();
                        return (None, false);
                    }
                }
            }
            Err(e) => {
                // The remote secret is gone: honour deletionPolicy Delete.
                if e.not_found
                    && input.deletion == DeletionPolicy::Delete
                    && let Some(t) = &input.target
                {
                    if dry_run {
                        report.status = SyncStatus::SecretSynced;
                        report.outcome = Outcome::Deleted;
                        report.changed = true;
                        return (None, false);
                    }
                    return match self.sink.delete(t).await {
                        Ok(deleted) => {
                            report.status = SyncStatus::SecretSynced;
                            report.outcome = if deleted { Outcome::Deleted } else { Outcome::Unchanged };
                            report.changed = deleted;
                            report.message = format!("remote secret gone ({})", e.message);
                            (None, deleted)
                        }
                        Err(de) => {
                            report.message = de.to_string();
                            report.retryable = de.is_retryable();
                            (None, false)
                        }
                    };
                }
                report.message = e.message.clone();
                report.retryable = e.retryable;
                report.retry_after = e.retry_after;
                return (None, false);
            }
        };
        report.fingerprint = Some(desired.fingerprint.short());
        report.keys = desired.data.keys().cloned().collect();
        let (exists, unchanged) = match self.sink.compare(desired).await {
            Ok(Compared::Matches) => (true, true),
            Ok(Compared::Missing) => (false, false),
            // Only computed when the target is about to change.
            Ok(Compared::Differs(cur)) => {
                let fp = render::fingerprint_of(
                    &DesiredTarget {
                        data: cur.data,
                        secret_type: cur.secret_type,
                        ..desired.clone()
                    },
                    &self.key,
                );
                report.previous_fingerprint = Some(fp.short());
                (true, false)
            }
            Err(e) => {
                report.message = e.to_string();
                report.retryable = e.is_retryable();
                return (None, false);
            }
        };
        if unchanged {
            report.previous_fingerprint = report.fingerprint.clone();
        }
        if unchanged || desired.creation_policy == CreationPolicy::None {
            report.status = SyncStatus::SecretSynced;
            report.outcome = Outcome::Unchanged;
            return (None, false);
        }
        let would = if exists { Outcome::Updated } else { Outcome::Created };
        if dry_run {
            report.status = SyncStatus::SecretSynced;
            report.outcome = would;
            report.changed = true;
            // A sink that answers from what it manages (Kubernetes: its list of labelled
            // targets) calls a target it does not manage missing, and a run finds out by
            // writing. A plan reads it, to say what a run would do to it.
            if !exists && let Ok(Some(cur)) = self.sink.read(&desired.target).await {
                match takeover_refused(desired, &cur) {
                    Some(why) => {
                        report.status = SyncStatus::SecretSyncedError;
                        report.outcome = Outcome::Skipped;
                        report.changed = false;
                        report.message = why;
                    }
                    None => {
                        report.outcome = Outcome::Updated;
                        report.message =
                            "exists, not managed by secretsync: a run takes it over (labels it, replaces its data)"
                                .into();
                    }
                }
            }
            return (None, false);
        }
        match self.sink.apply(desired).await {
            Ok(outcome) => {
                report.status = SyncStatus::SecretSynced;
                report.outcome = match outcome {
                    ApplyOutcome::Created => Outcome::Created,
                    ApplyOutcome::Updated => Outcome::Updated,
                    ApplyOutcome::Unchanged => Outcome::Unchanged,
                };
                report.changed = outcome != ApplyOutcome::Unchanged;
                let restart = (outcome == ApplyOutcome::Updated).then(|| RestartRequest {
                    target: desired.target.clone(),
                    declared: input.consumers.clone(),
                });
                (restart, outcome != ApplyOutcome::Unchanged)
            }
            Err(e) => {
                report.message = format!("{}: {e}", desired.target);
                report.retryable = e.is_retryable();
                report.retry_after = e.retry_after();
                (None, false)
            }
        }
    }

    fn api_calls(&self) -> u64 {
        self.stores.values().map(|s| s.source.api_calls()).sum()
    }

    /// Fetches every distinct remote value the specs need, per store, stores in parallel.
    async fn fetch<'a>(
        &self,
        specs: &'a [SpecAt<'a>],
        changed: Option<&BTreeMap<StoreId, Option<BTreeSet<String>>>>,
    ) -> (Fetched, u64) {
        /// What one store must give, borrowed from the specs and deduplicated.
        #[derive(Default)]
        struct Needs<'a> {
            /// Sorted and deduplicated below (cheaper than a set for thousands of refs).
            values: Vec<(&'a str, Option<&'a str>)>,
            metadata: BTreeSet<&'a str>,
            finds: BTreeSet<FindQuery>,
        }
        let mut needs: BTreeMap<&StoreId, Needs<'a>> = BTreeMap::new();
        for (es, store) in specs {
            let Ok(Some(store)) = store else {
                continue;
            };
            let n = needs.entry(store).or_default();
            let mut add = |r: &'a crate::manifest::RemoteRef| {
                if is_metadata(r) {
                    n.metadata.insert(r.key.as_str());
                } else {
                    n.values.push((r.key.as_str(), r.version.as_deref()));
                }
            };
            // A generated entry reads nothing from the store.
            for d in es.spec.data.iter().filter(|d| d.source_ref.is_none()) {
                add(&d.remote_ref);
            }
            for df in &es.spec.data_from {
                if let Some(x) = &df.extract {
                    add(x);
                }
                if let Some(f) = &df.find {
                    n.finds.insert(find_query(f));
                }
            }
        }
        let jobs = needs.into_iter().map(|(id, mut n)| {
            let source = self.stores[id].source.clone();
            n.values.sort_unstable();
            n.values.dedup();
            let keys: BTreeSet<RemoteKey> = n
                .values
                .into_iter()
                .map(|(key, version)| RemoteKey {
                    key: key.to_string(),
                    version: version.map(str::to_string),
                })
                .collect();
            let metadata: Vec<String> = n.metadata.into_iter().map(str::to_string).collect();
            let changed = changed.and_then(|c| c.get(id));
            async move {
                let work = self.fetch_store(id, source.as_ref(), keys, metadata, n.finds, changed);
                match tokio::time::timeout(self.config.fetch_timeout, work).await {
                    Ok((f, read)) => (id.clone(), f, read),
                    Err(_) => {
                        let message = format!(
                            "fetch from {id} timed out after {}s",
                            self.config.fetch_timeout.as_secs()
                        );
                        // Every spec of this store fails; its targets keep their data.
                        let error = SpecError {
                            message,
                            retryable: true,
                            retry_after: None,
                            not_found: false,
                        };
                        (
                            id.clone(),
                            StoreFetched {
                                error: Some(error),
                                ..Default::default()
                            },
                            0,
                        )
                    }
                }
            }
        });
        let results = futures::future::join_all(jobs).await;
        let mut fetched = Fetched::default();
        let mut read = 0;
        for (id, f, n) in results {
            read += n;
            fetched.stores.insert(id, f);
        }
        (fetched, read)
    }

    async fn fetch_store(
        &self,
        id: &StoreId,
        source: &dyn SecretSource,
        mut keys: BTreeSet<RemoteKey>,
        metadata: Vec<String>,
        finds: BTreeSet<FindQuery>,
        changed: Option<&Option<BTreeSet<String>>>,
    ) -> (StoreFetched, u64) {
        let mut out = StoreFetched::default();
        for q in finds {
            let r = source
                .find(&q)
                .await
                .map_err(|e| SpecError::from_error(&e.context(format!("find in {id}"))));
            if let Ok(names) = &r {
                keys.extend(names.iter().map(|n| RemoteKey::new(n.clone())));
            }
            out.finds.insert(q, r);
        }
        let mut keys: Vec<RemoteKey> = keys.into_iter().collect();
        let mut to_read: Vec<(RemoteKey, Option<ChangeToken>)> = vec![];
        // An event said anything in the store may have changed: drop the source's
        // snapshot, then fetch as usual.
        if let Some(None) = changed {
            source.forget(&keys).await;
        }
        // An event said which keys changed: those are read without asking for change
        // tokens (and past any snapshot), the others are served from the cache.
        if let Some(Some(changed)) = changed {
            let cache = self.cache.lock().expect("lock");
            let cached = cache.get(id);
            keys.retain(|k| {
                if changed.contains(&k.key) {
                    to_read.push((k.clone(), None));
                    return false;
                }
                match cached.and_then(|c| c.get(&k.key, k.version.as_deref())) {
                    Some(c) => {
                        out.values.insert(k.clone(), Ok(c.value.clone()));
                        false
                    }
                    None => true,
                }
            });
        }
        // Change tokens only help for values already cached: a key never read goes straight
        // to `get_many`, whose version becomes its token.
        let (keys, uncached): (Vec<RemoteKey>, Vec<RemoteKey>) = if source.capabilities().change_tokens {
            let cache = self.cache.lock().expect("lock");
            match cache.get(id) {
                Some(cached) => keys.into_iter().partition(|k| cached.contains(k)),
                None => (vec![], keys),
            }
        } else {
            (vec![], keys)
        };
        to_read.extend(uncached.into_iter().map(|k| (k, None)));
        if !keys.is_empty() {
            let tokens = source.change_tokens(&keys).await;
            let cache = self.cache.lock().expect("lock");
            let cached = cache.get(id);
            for (k, t) in keys.into_iter().zip(tokens) {
                match t {
                    Ok(Some(token)) => match cached.and_then(|c| c.get(&k.key, k.version.as_deref())) {
                        Some(c) if c.token == token => {
                            out.values.insert(k, Ok(c.value.clone()));
                        }
                        _ => to_read.push((k, Some(token))),
                    },
                    Ok(None) => to_read.push((k, None)),
                    Err(e) => {
                        let e = SpecError::from_error(&e.context(format!("remote key `{}` in {id}", k.key)));
                        out.values.insert(k, Err(e));
                    }
                }
            }
        }
        let read_keys: Vec<RemoteKey> = to_read.iter().map(|(k, _)| k.clone()).collect();
        if let Some(Some(_)) = changed
            && !read_keys.is_empty()
        {
            source.forget(&read_keys).await;
        }
        // Values read: those that arrived (a failed read is an error, not a value).
        let mut n = 0u64;
        if !read_keys.is_empty() {
            let results = source.get_many(&read_keys).await;
            let mut cache = self.cache.lock().expect("lock");
            let cache = cache.entry(id.clone()).or_default();
            for ((k, token), r) in to_read.into_iter().zip(results) {
                match r {
                    Ok(f) => {
                        n += 1;
                        // A source without versions still gets its values cached (under a
                        // token no provider gives), so a change event naming another key
                        // does not re-read this one.
                        let token = token.or(f.version.clone()).unwrap_or_else(|| UNVERSIONED.to_string());
                        cache.insert(
                            k.clone(),
                            Cached {
                                token,
                                value: f.value.clone(),
                            },
                        );
                        out.values.insert(k, Ok(f.value));
                    }
                    Err(e) => {
                        cache.remove(&k);
                        let e = SpecError::from_error(&e.context(format!("remote key `{}` in {id}", k.key)));
                        out.values.insert(k, Err(e));
                    }
                }
            }
        }
        for key in metadata {
            let r = source
                .metadata(&key)
                .await
                .map(|m| SecretValue::from(serde_json::to_string(&m).expect("a string map serializes")))
                .map_err(|e| SpecError::from_error(&e.context(format!("metadata of remote key `{key}` in {id}"))));
            out.metadata.insert(key, r);
        }
        (out, n)
    }
}

/// Why a run would refuse to take over an existing target it does not manage, as the sink
/// refuses it: a Secret's type cannot change; an immutable target's data cannot.
fn takeover_refused(desired: &DesiredTarget, cur: &crate::sink::TargetState) -> Option<String> {
    let t = &desired.target;
    if t.kind == crate::sink::TargetKind::Secret {
        let want = desired.secret_type.as_deref().unwrap_or("Opaque");
        let have = cur.secret_type.as_deref().unwrap_or("Opaque");
        if want != have {
            return Some(format!(
                "{t} has type `{have}`, the template wants `{want}`: a Secret's type cannot change; delete the Secret to recreate it"
            ));
        }
    }
    if cur.immutable && cur.data != desired.data {
        return Some(format!("{t} is immutable; delete it to change its data"));
    }
    None
}
