//! Push: ESO's `PushSecret` in file mode — values from a Secret the manifests define (a plain
//! `v1` Secret, or an ExternalSecret's target) or from a generator, written to stores through
//! [`SecretWriter`] with the discipline reads have:
//!
//! - compare first: `describe`, then `get` only when the secret exists; an equal value
//!   (after merging a `property` into the current JSON) is no write at all;
//! - `updatePolicy: IfNotExists` never overwrites (and never reads the value);
//! - a generator runs only when a write is needed, and with `secretsync.io/generate:
//!   if-absent` (on the PushSecret or the generator) only when the remote secret does not
//!   exist, so re-runs never regenerate: the way to bootstrap generated values;
//! - an empty value is refused for GCP Secret Manager before any call (it has no empty
//!   payloads), naming the PushSecret, the Secret key and the remote key;
//! - errors and reports name keys, never values;
//! - `deletionPolicy: Delete`: a remote key this PushSecret pushed before (kept in a record
//!   under [`PushOptions::state_dir`], as ESO keeps `status.syncedPushSecrets`) and no
//!   longer lists is deleted through [`SecretWriter::delete`], which only deletes secrets
//!   carrying the managed-by mark; an unmanaged one is left alone and reported. A store no
//!   longer in `secretStoreRefs` is never deleted from (ESO's bug avoided);
//! - in a daemon, [`PushSchedule`] re-checks a PushSecret only when it is due (its
//!   `refreshInterval`, its source target written in the cycle, its spec changed, a failed
//!   push), not on every cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::engine::Engine;
use crate::error::Error;
use crate::manifest::push::{PushData, PushDeletionPolicy, PushUpdatePolicy};
use crate::manifest::{Manifests, PushSecret, SpecId, StoreId, StoreKind};
use crate::sink::TargetKind;
use crate::source::{RemoteKey, SecretWriter, WriteRequest};
use crate::value::{SecretMap, SecretValue};

pub use crate::engine::{PushEntry, PushOutcome, PushReport};

/// Where a PushSecret's values come from.
enum Source<'a> {
    Secret(SecretMap),
    Generator(&'a crate::manifest::GeneratorDoc),
}

/// Pushes every PushSecret of `manifests` once, through the engine's built stores. Run it
/// after the ExternalSecret cycle: a PushSecret that reads an ExternalSecret's target pushes
/// what that ExternalSecret renders now.
pub async fn push_all(manifests: &Manifests, engine: &Engine) -> PushReport {
    push_all_with(manifests, engine, &PushOptions::default()).await
}

/// Options of [`push_all_with`].
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Folder of the records of what each PushSecret with `deletionPolicy: Delete` pushed
    /// (`<namespace>/<name>.json`: store and remote key, never a value). Without it, such a
    /// PushSecret fails: deleting needs the record.
    pub state_dir: Option<PathBuf>,
}

/// [`push_all`] with options.
pub async fn push_all_with(manifests: &Manifests, engine: &Engine, opts: &PushOptions) -> PushReport {
    let mut report = PushReport::default();
    for ps in &manifests.push_secrets {
        push_one(
            manifests,
            engine,
            ps,
            Record::Dir(opts.state_dir.as_deref()),
            &mut report,
        )
        .await;
    }
    report
}

/// When each PushSecret is due, for a daemon that runs many cycles: ESO re-checks a
/// PushSecret every `refreshInterval` (default 1h), not on every reconcile of anything.
///
/// [`PushSchedule::push_due`] pushes, out of the manifests' PushSecrets, only those that
/// are due:
/// - never pushed by this schedule (the first cycle, or a new PushSecret);
/// - their spec, labels or annotations changed (a manifest reload);
/// - their source changed: the ExternalSecret target they read was written in this cycle
///   (from the cycle's report), or the plain `v1` Secret document they read has other
///   data now;
/// - their `refreshInterval` has passed since their last push (`0`: never by time);
/// - their last push failed (retried at the next cycle).
#[derive(Debug, Default)]
pub struct PushSchedule {
    last: BTreeMap<String, LastPush>,
}

/// What the schedule keeps of one PushSecret's last successful push.
#[derive(Debug)]
struct LastPush {
    at: std::time::Instant,
    /// Spec and metadata (and a plain Secret source's data fingerprint) at that push.
    shape: String,
}

impl PushSchedule {
    /// An empty schedule: everything is due.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pushes the PushSecrets that are due (see [`PushSchedule`]) after a cycle whose
    /// report is `cycle`, and records when each was pushed.
    pub async fn push_due(
        &mut self,
        manifests: &Manifests,
        engine: &Engine,
        cycle: &crate::engine::CycleReport,
        opts: &PushOptions,
    ) -> PushReport {
        let now = std::time::Instant::now();
        let due = self.due(manifests, engine, cycle, now);
        let mut report = PushReport::default();
        for ps in manifests.push_secrets.iter().filter(|ps| due.contains(&id_of(ps))) {
            let mut one = PushReport::default();
            push_one(manifests, engine, ps, Record::Dir(opts.state_dir.as_deref()), &mut one).await;
            let id = id_of(ps);
            if one.ok() {
                self.last.insert(
                    id,
                    LastPush {
                        at: now,
                        shape: shape_of(manifests, engine, ps),
                    },
                );
            } else {
                self.last.remove(&id);
            }
            report.writes += one.writes;
            report.deletes += one.deletes;
            report.entries.extend(one.entries);
            report.errors.extend(one.errors);
        }
        // PushSecrets no longer in the manifests are forgotten.
        let present: BTreeSet<String> = manifests.push_secrets.iter().map(id_of).collect();
        self.last.retain(|k, _| present.contains(k));
        report
    }

    /// The PushSecrets (`namespace/name`) due now.
    pub fn due(
        &self,
        manifests: &Manifests,
        engine: &Engine,
        cycle: &crate::engine::CycleReport,
        now: std::time::Instant,
    ) -> BTreeSet<String> {
        let written: BTreeSet<&str> = cycle
            .specs
            .iter()
            .filter(|s| s.changed)
            .map(|s| s.target.as_str())
            .collect();
        manifests
            .push_secrets
            .iter()
            .filter(|ps| {
                let Some(last) = self.last.get(&id_of(ps)) else {
                    return true;
                };
                if last.shape != shape_of(manifests, engine, ps) {
                    return true;
                }
                if let Some(name) = ps.spec.selector.secret.as_ref().and_then(|s| s.name.as_deref()) {
                    let source = crate::sink::TargetRef::secret(ps.namespace(), name).to_string();
                    if written.contains(source.as_str()) {
                        return true;
                    }
                }
                match refresh_interval(ps) {
                    Some(every) => now.duration_since(last.at) >= every,
                    None => false,
                }
            })
            .map(id_of)
            .collect()
    }

    /// When the next PushSecret falls due by its `refreshInterval` (`None`: none will by
    /// time), so a daemon can wake for it.
    pub fn next_due(&self, manifests: &Manifests) -> Option<std::time::Instant> {
        manifests
            .push_secrets
            .iter()
            .filter_map(|ps| match self.last.get(&id_of(ps)) {
                None => Some(std::time::Instant::now()),
                Some(last) => refresh_interval(ps).map(|every| last.at + every),
            })
            .min()
    }
}

fn id_of(ps: &PushSecret) -> String {
    format!("{}/{}", ps.namespace(), ps.name())
}

/// `refreshInterval` (default 1h, as ESO); `None` for `0` or an invalid one (which
/// [`PushSecret::check`] reports).
fn refresh_interval(ps: &PushSecret) -> Option<std::time::Duration> {
    match &ps.spec.refresh_interval {
        None => Some(crate::manifest::DEFAULT_REFRESH_INTERVAL),
        Some(s) => crate::duration::parse_go_duration(s).ok().filter(|d| !d.is_zero()),
    }
}

/// What makes a PushSecret due when it changes: its spec, labels and annotations, and the
/// data of a plain `v1` Secret it reads (as a keyed fingerprint, never a value).
fn shape_of(manifests: &Manifests, engine: &Engine, ps: &PushSecret) -> String {
    let mut shape = serde_json::json!({
        "spec": ps.spec,
        "labels": ps.metadata.labels,
        "annotations": ps.metadata.annotations,
    })
    .to_string();
    if let Some(name) = ps.spec.selector.secret.as_ref().and_then(|s| s.name.as_deref())
        && let Some(t) = manifests.static_targets.iter().find(|t| {
            t.target.kind == TargetKind::Secret && t.target.namespace == ps.namespace() && t.target.name == name
        })
    {
        shape.push_str(&engine.fingerprint_key().fingerprint(&t.data, &[]).to_string());
    }
    shape
}

/// One pushed remote key, as the record of a PushSecret with `deletionPolicy: Delete` keeps
/// it (a file under [`PushOptions::state_dir`], or ESO's `status.syncedPushSecrets` in a
/// cluster): the store and the remote key, never a value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pushed {
    /// The store, as [`StoreId`]'s `Display` writes it (`ClusterSecretStore aws`).
    pub store: String,
    /// The remote key (without a property).
    pub remote_key: String,
}

fn record_path(dir: &Path, ps: &PushSecret) -> PathBuf {
    dir.join(ps.namespace()).join(format!("{}.json", ps.name()))
}

async fn delete_stale(
    engine: &Engine,
    ps: &PushSecret,
    stores: &[StoreId],
    dir: &Path,
    report: &mut PushReport,
) -> Result<(), Error> {
    let path = record_path(dir, ps);
    let before: BTreeSet<Pushed> = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| Error::invalid(format!("{}: not a push record: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let keep = delete_stale_keys(engine, ps, stores, &before, pushed_now(ps, stores), report).await;
    let text = serde_json::to_vec_pretty(&keep).expect("records serialize");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    crate::files::atomic_write(&path, &text).await
}

/// The remote keys `ps` pushes to `stores` now.
fn pushed_now(ps: &PushSecret, stores: &[StoreId]) -> BTreeSet<Pushed> {
    let mut now: BTreeSet<Pushed> = BTreeSet::new();
    for d in &ps.spec.data {
        for s in stores {
            now.insert(Pushed {
                store: s.to_string(),
                remote_key: d.match_.remote_ref.remote_key.clone(),
            });
        }
    }
    now
}

/// Deletes the keys of `before` that are not in `now`, in the stores of `stores` only (a
/// store no longer referenced is never deleted from); returns the record to keep: `now`
/// and the keys whose delete failed.
async fn delete_stale_keys(
    engine: &Engine,
    ps: &PushSecret,
    stores: &[StoreId],
    before: &BTreeSet<Pushed>,
    now: BTreeSet<Pushed>,
    report: &mut PushReport,
) -> BTreeSet<Pushed> {
    let id = format!("{}/{}", ps.namespace(), ps.name());
    let mut keep = now.clone();
    for old in before.difference(&now) {
        // A store no longer referenced is never deleted from.
        let Some(store) = stores.iter().find(|s| s.to_string() == old.store) else {
            continue;
        };
        let mut entry = PushEntry {
            push_secret: id.clone(),
            store: old.store.clone(),
            remote_key: old.remote_key.clone(),
            outcome: PushOutcome::Failed,
            error: None,
        };
        let writer = engine.store(store).and_then(|b| b.writer.clone());
        match writer {
            None => entry.error = Some(format!("store {store} does not accept writes")),
            Some(w) => match w.delete(&old.remote_key).await {
                Ok(()) => {
                    entry.outcome = PushOutcome::Deleted;
                    report.deletes += 1;
                }
                Err(Error::PermissionDenied { .. }) => entry.outcome = PushOutcome::LeftUnmanaged,
                // Trying again would fail the same way (and hold a PushSecret's finalizer
                // for ever): say so once and drop the key from the record.
                Err(e @ Error::NotSupported { .. }) => {
                    entry.outcome = PushOutcome::LeftNotDeletable;
                    entry.error = Some(e.to_string());
                }
                Err(e) => {
                    entry.error = Some(e.to_string());
                    keep.insert(old.clone());
                }
            },
        }
        tracing::info!(push_secret = %id, store = %entry.store, remote_key = %entry.remote_key, outcome = ?entry.outcome, "push delete");
        report.entries.push(entry);
    }
    keep
}

/// How [`push_one`] keeps the record of what was pushed.
enum Record<'a> {
    /// In a file under this folder (file mode), if given.
    Dir(Option<&'a Path>),
    /// Given by the caller (the operator's `status.syncedPushSecrets`); the record to keep
    /// goes into the second.
    Given(&'a BTreeSet<Pushed>, &'a mut BTreeSet<Pushed>),
}

/// Pushes one PushSecret of `manifests` (its stores, its source Secret as a plain `v1`
/// Secret document or an ExternalSecret's target, its generator) as [`push_all`] does, with
/// the record of what it pushed before given rather than kept in a file: a controller keeps
/// it in the PushSecret's status (ESO's `syncedPushSecrets`). Returns the report and the
/// record to keep: the remote keys it pushes now, plus stale ones whose delete failed (with
/// `deletionPolicy: Delete`, stale keys in the stores it still names are deleted, only if
/// managed; with `None`, nothing is deleted).
pub async fn push_with_record(
    manifests: &Manifests,
    engine: &Engine,
    ps: &PushSecret,
    before: &BTreeSet<Pushed>,
) -> (PushReport, BTreeSet<Pushed>) {
    let mut report = PushReport::default();
    let mut keep = before.clone();
    push_one(manifests, engine, ps, Record::Given(before, &mut keep), &mut report).await;
    (report, keep)
}

/// A PushSecret with `deletionPolicy: Delete` is being deleted: deletes every remote key of
/// `record` from the stores it names now (ESO's finalizer), through [`SecretWriter::delete`],
/// which deletes only secrets carrying the managed-by mark (an unmanaged one is reported
/// [`PushOutcome::LeftUnmanaged`] and left alone). Returns the report and what is still to
/// delete (failed deletes; empty when done).
pub async fn delete_pushed(
    manifests: &Manifests,
    engine: &Engine,
    ps: &PushSecret,
    record: &BTreeSet<Pushed>,
) -> (PushReport, BTreeSet<Pushed>) {
    let mut report = PushReport::default();
    let stores = match stores_of(manifests, ps) {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(e.to_string());
            return (report, record.clone());
        }
    };
    let keep = delete_stale_keys(engine, ps, &stores, record, BTreeSet::new(), &mut report).await;
    (report, keep)
}

async fn push_one(
    manifests: &Manifests,
    engine: &Engine,
    ps: &PushSecret,
    record: Record<'_>,
    report: &mut PushReport,
) {
    let id = format!("{}/{}", ps.namespace(), ps.name());
    let problems = ps.check();
    if !problems.is_empty() {
        report.errors.extend(problems.iter().map(ToString::to_string));
        return;
    }
    let stores = match stores_of(manifests, ps) {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(e.to_string());
            return;
        }
    };
    let source = match source_of(manifests, engine, ps).await {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(e.to_string());
            return;
        }
    };
    let if_absent = ps.spec.update_policy == PushUpdatePolicy::IfNotExists
        || ps.generate_if_absent()
        || matches!(&source, Source::Generator(g) if g.if_absent());
    // A generated value is made once per PushSecret and run, and only when needed, so every
    // store of one PushSecret receives the same value.
    let mut generated: Option<SecretValue> = None;
    for (i, d) in ps.spec.data.iter().enumerate() {
        for store in &stores {
            let remote = match &d.match_.remote_ref.property {
                Some(p) => format!("{}.{p}", d.match_.remote_ref.remote_key),
                None => d.match_.remote_ref.remote_key.clone(),
            };
            let mut entry = PushEntry {
                push_secret: id.clone(),
                store: store.to_string(),
                remote_key: remote,
                outcome: PushOutcome::Failed,
                error: None,
            };
            match push_entry(engine, ps, i, d, store, &source, if_absent, &mut generated).await {
                Ok(o) => {
                    if matches!(o, PushOutcome::Created | PushOutcome::Updated) {
                        report.writes += 1;
                    }
                    entry.outcome = o;
                }
                Err(e) => entry.error = Some(e.to_string()),
            }
            tracing::info!(push_secret = %id, store = %store, remote_key = %entry.remote_key, outcome = ?entry.outcome, "push");
            report.entries.push(entry);
        }
    }
    match record {
        Record::Given(before, keep) => {
            *keep = if ps.spec.deletion_policy == PushDeletionPolicy::Delete {
                delete_stale_keys(engine, ps, &stores, before, pushed_now(ps, &stores), report).await
            } else {
                pushed_now(ps, &stores)
            };
        }
        Record::Dir(dir) if ps.spec.deletion_policy == PushDeletionPolicy::Delete => {
            let result = match dir {
                Some(dir) => delete_stale(engine, ps, &stores, dir, report).await,
                None => Err(Error::manifest(
                    ps.field("deletionPolicy"),
                    "Delete needs a record of what was pushed: no state folder given",
                )),
            };
            if let Err(e) = result {
                report.errors.push(format!("{id}: {e}"));
            }
        }
        Record::Dir(_) => {}
    }
}

#[allow(clippy::too_many_arguments)]
async fn push_entry(
    engine: &Engine,
    ps: &PushSecret,
    index: usize,
    d: &PushData,
    store: &StoreId,
    source: &Source<'_>,
    if_absent: bool,
    generated: &mut Option<SecretValue>,
) -> Result<PushOutcome, Error> {
    let field = |p: &str| ps.field(&format!("data[{index}].{p}"));
    let remote_key = &d.match_.remote_ref.remote_key;
    let property = d.match_.remote_ref.property.as_deref();
    let built = engine
        .store(store)
        .ok_or_else(|| Error::manifest(ps.field("secretStoreRefs"), format!("store {store} was not built")))?;
    let writer: Arc<dyn SecretWriter> = built.writer.clone().ok_or_else(|| {
        Error::manifest(
            ps.field("secretStoreRefs"),
            format!(
                "store {store} (provider {}) does not accept writes",
                built.source.provider()
            ),
        )
    })?;
    // The value, when it comes from a Secret: known before any call.
    let from_secret = match source {
        Source::Secret(map) => Some(value_of(map, d, &field)?),
        Source::Generator(g) => {
            if let Some(k) = &d.match_.secret_key
                && k != g.output_key()
            {
                return Err(Error::manifest(
                    field("match.secretKey"),
                    format!(
                        "generator {} {} produces only `{}`",
                        g.kind_name(),
                        g.metadata.name,
                        g.output_key()
                    ),
                ));
            }
            None
        }
    };
    let gcp = writer.provider() == "gcpsm";
    if let Some(v) = &from_secret
        && v.is_empty()
        && gcp
        && property.is_none()
    {
        return Err(Error::manifest(
            field("match.secretKey"),
            format!(
                "key `{}` is empty: GCP Secret Manager does not accept empty values (remote key `{remote_key}`, store {store}); nothing was sent",
                d.match_.secret_key.as_deref().unwrap_or("*")
            ),
        ));
    }
    let description = writer
        .describe(remote_key)
        .await
        .map_err(|e| e.context(format!("describe `{remote_key}` in {store}")))?;
    if description.is_some() && if_absent {
        return Ok(PushOutcome::Exists);
    }
    let value = match from_secret {
        Some(v) => v,
        None => {
            if generated.is_none() {
                let Source::Generator(g) = source else {
                    unreachable!("a secret source has a value")
                };
                *generated =
                    Some(crate::generators::generate(&g.kind).map_err(|m| Error::manifest(g.origin.field("spec"), m))?);
            }
            generated.clone().expect("generated above")
        }
    };
    // A GCP secret that exists with no version gets its first version: `current_version`
    // None means there is nothing to read and compare.
    let current = match &description {
        Some(desc) if desc.current_version.is_some() || !gcp => {
            match writer.get(&RemoteKey::new(remote_key.clone())).await {
                Ok(f) => Some(f.value),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.context(format!("read `{remote_key}` in {store} to compare"))),
            }
        }
        _ => None,
    };
    let desired = match property {
        None => value.clone(),
        Some(p) => crate::sources::memory::merge_property(current.as_ref(), p, &value, remote_key)?,
    };
    if let Some(c) = &current
        && same(c, &desired, property.is_some())
    {
        return Ok(PushOutcome::Unchanged);
    }
    let request = WriteRequest {
        property: property.map(str::to_string),
        ..WriteRequest::new(remote_key.clone(), value)
    };
    writer
        .put(&request)
        .await
        .map_err(|e| e.context(format!("push `{remote_key}` to {store}")))?;
    Ok(if description.is_some() {
        PushOutcome::Updated
    } else {
        PushOutcome::Created
    })
}

/// Equal values; JSON objects compare as JSON (a provider may reorder keys).
fn same(current: &SecretValue, desired: &SecretValue, json: bool) -> bool {
    if current.ct_eq(desired) {
        return true;
    }
    json && match (current.expose_str(), desired.expose_str()) {
        (Some(a), Some(b)) => {
            let a: Option<serde_json::Value> = serde_json::from_str(a).ok();
            let b: Option<serde_json::Value> = serde_json::from_str(b).ok();
            a.is_some() && a == b
        }
        _ => false,
    }
}

/// The value of one `data[]` entry: the Secret's key, or the whole Secret as a JSON object.
fn value_of(map: &SecretMap, d: &PushData, field: &dyn Fn(&str) -> crate::Location) -> Result<SecretValue, Error> {
    match &d.match_.secret_key {
        Some(k) => map
            .get(k)
            .cloned()
            .ok_or_else(|| Error::manifest(field("match.secretKey"), format!("the Secret has no key `{k}`"))),
        None => {
            let mut obj = serde_json::Map::new();
            for (k, v) in map.iter() {
                let s = v.expose_str().ok_or_else(|| {
                    Error::manifest(field("match"), format!("key `{k}` is not UTF-8: name it in secretKey"))
                })?;
                obj.insert(k.clone(), serde_json::Value::String(s.to_string()));
            }
            Ok(SecretValue::from(serde_json::Value::Object(obj).to_string()))
        }
    }
}

/// The stores a PushSecret writes to, by name or labels, in order, each once.
fn stores_of(manifests: &Manifests, ps: &PushSecret) -> Result<Vec<StoreId>, Error> {
    let mut out: Vec<StoreId> = Vec::new();
    for (i, r) in ps.spec.secret_store_refs.iter().enumerate() {
        let kind = match r.kind.as_deref() {
            Some("ClusterSecretStore") => StoreKind::ClusterSecretStore,
            _ => StoreKind::SecretStore,
        };
        let matches: Vec<StoreId> = manifests
            .stores
            .iter()
            .filter(|s| s.id.kind == kind)
            .filter(|s| kind == StoreKind::ClusterSecretStore || s.id.namespace.as_deref() == Some(ps.namespace()))
            .filter(|s| match (&r.name, &r.label_selector) {
                (Some(n), _) => &s.id.name == n,
                (None, Some(sel)) => sel.matches(&s.metadata.labels),
                (None, None) => false,
            })
            .map(|s| s.id.clone())
            .collect();
        if matches.is_empty() {
            let what = r
                .name
                .as_deref()
                .map(|n| format!("{kind} {n}"))
                .unwrap_or_else(|| format!("no {kind} matches the labels"));
            return Err(Error::manifest(
                ps.field(&format!("secretStoreRefs[{i}]")),
                format!("missing store: {what} is not in the given manifests"),
            ));
        }
        for m in matches {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// The Secret (a plain v1 Secret or an ExternalSecret's target) or generator a PushSecret
/// reads.
async fn source_of<'a>(manifests: &'a Manifests, engine: &Engine, ps: &PushSecret) -> Result<Source<'a>, Error> {
    if let Some(g) = &ps.spec.selector.generator_ref {
        return manifests
            .generators
            .iter()
            .find(|d| d.is(g))
            .map(Source::Generator)
            .ok_or_else(|| {
                Error::manifest(
                    ps.field("selector.generatorRef"),
                    format!("generator {} {} is not in the given manifests", g.kind, g.name),
                )
            });
    }
    let name = ps
        .spec
        .selector
        .secret
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_default();
    let ns = ps.namespace();
    if let Some(t) = manifests
        .static_targets
        .iter()
        .find(|t| t.target.kind == TargetKind::Secret && t.target.namespace == ns && t.target.name == name)
    {
        return Ok(Source::Secret(t.data.clone()));
    }
    if let Some(es) = manifests.external_secrets.iter().find(|es| {
        let t = es.target_ref();
        t.kind == TargetKind::Secret && t.namespace == ns && t.name == name
    }) {
        let id: SpecId = es.id();
        let desired = engine.desired(manifests, &id).await.map_err(|e| {
            Error::manifest(
                ps.field("selector.secret.name"),
                format!("Secret {ns}/{name} (target of ExternalSecret {id}): {}", e.message),
            )
        })?;
        return Ok(Source::Secret(desired.data));
    }
    Err(Error::manifest(
        ps.field("selector.secret.name"),
        format!(
            "Secret {ns}/{name} is not in the given manifests (neither a v1 Secret nor an ExternalSecret's target)"
        ),
    ))
}

/// PushSecrets by the ExternalSecrets whose targets they read: those must sync first.
pub fn feeding_specs(manifests: &Manifests) -> BTreeMap<String, Vec<SpecId>> {
    let mut out = BTreeMap::new();
    for ps in &manifests.push_secrets {
        let Some(name) = ps.spec.selector.secret.as_ref().and_then(|s| s.name.as_deref()) else {
            continue;
        };
        let specs: Vec<SpecId> = manifests
            .external_secrets
            .iter()
            .filter(|es| {
                let t = es.target_ref();
                t.kind == TargetKind::Secret && t.namespace == ps.namespace() && t.name == name
            })
            .map(|es| es.id())
            .collect();
        out.insert(format!("{}/{}", ps.namespace(), ps.name()), specs);
    }
    out
}
