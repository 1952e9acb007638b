//! Rotation: seed 000's `setup-gcp-secrets.sh`, for any store with a [`SecretWriter`].
//!
//! A plan declares each secret: its store and key, a generator (`hex:32`, `base64:24`,
//! `alphanumeric:40`, `uuid`) or `manual`, an optional environment variable with the desired
//! value, impact notes, and the ExternalSecrets that must receive it first (coupled
//! consumers, such as a database's credentials before the application's).
//!
//! `ensure` semantics, exactly as the script:
//! - desired value set and differs from current: add a version, disable the old one;
//! - desired value set and equal: nothing;
//! - desired empty and a value exists: leave it;
//! - desired empty and nothing there: generate for generated kinds, report manual ones missing;
//! - `rotate`: regenerate the generated kinds regardless.
//!
//! It is safe to re-run at any time. After a change, [`propagate`] force-syncs every spec
//! that reads the key (ordered steps first), lets the engine restart their consumers, and
//! verifies each target now carries the new value's fingerprint before the next step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::engine::{CycleOptions, Engine, Outcome, SyncStatus, target_matches};
use crate::error::{Error, Location, Result};
use crate::manifest::{Manifests, SpecId, StoreId, StoreKind};
use crate::source::{RemoteKey, SecretWriter, WriteOutcome, WriteRequest};
use crate::value::SecretValue;

/// How a secret's value is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generator {
    /// N random bytes as hex (`openssl rand -hex N`).
    Hex(usize),
    /// N random bytes as base64 (`openssl rand -base64 N`).
    Base64(usize),
    /// N random characters from `[A-Za-z0-9]`.
    Alphanumeric(usize),
    /// A random UUID v4.
    Uuid,
    /// Set by a person; never generated.
    Manual,
}

impl Generator {
    /// Parses `hex:32`, `base64:24`, `alphanumeric:40`, `uuid`, `manual`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let (kind, n) = match s.split_once(':') {
            Some((k, n)) => (
                k,
                Some(
                    n.parse::<usize>()
                        .map_err(|_| format!("`{s}`: the length must be a number"))?,
                ),
            ),
            None => (s, None),
        };
        let need = |n: Option<usize>| match n {
            Some(n) if (1..=4096).contains(&n) => Ok(n),
            Some(_) => Err(format!("`{s}`: length must be 1..=4096")),
            None => Err(format!("`{s}`: needs a length, like `{kind}:32`")),
        };
        Ok(match kind {
            "hex" => Generator::Hex(need(n)?),
            "base64" => Generator::Base64(need(n)?),
            "alphanumeric" => Generator::Alphanumeric(need(n)?),
            "uuid" if n.is_none() => Generator::Uuid,
            "manual" if n.is_none() => Generator::Manual,
            _ => {
                return Err(format!(
                    "unknown generator `{s}` (hex:N, base64:N, alphanumeric:N, uuid, manual)"
                ));
            }
        })
    }

    /// Whether values are generated (not manual).
    pub fn is_generated(&self) -> bool {
        !matches!(self, Generator::Manual)
    }

    /// A fresh value; `None` for manual.
    pub fn generate(&self) -> Option<SecretValue> {
        use base64::Engine as _;
        let bytes = |n: usize| {
            let mut b = zeroize::Zeroizing::new(vec![0u8; n]);
            rand::rng().fill(&mut b[..]);
            b
        };
        Some(match self {
            Generator::Hex(n) => SecretValue::from(hex::encode(&*bytes(*n))),
            Generator::Base64(n) => SecretValue::from(base64::engine::general_purpose::STANDARD.encode(&*bytes(*n))),
            Generator::Alphanumeric(n) => {
                const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                SecretValue::new((0..*n).map(|_| ABC[rand::rng().random_range(0..ABC.len())]).collect())
            }
            Generator::Uuid => SecretValue::from(uuid::Uuid::new_v4().to_string()),
            Generator::Manual => return None,
        })
    }
}

/// A store reference in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanStoreRef {
    /// Store name.
    pub name: String,
    /// `ClusterSecretStore` (default) or `SecretStore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace of a SecretStore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl PlanStoreRef {
    fn id(&self) -> StoreId {
        match self.kind.as_deref() {
            Some("SecretStore") => StoreId {
                kind: StoreKind::SecretStore,
                namespace: Some(self.namespace.clone().unwrap_or_else(|| "default".into())),
                name: self.name.clone(),
            },
            _ => StoreId {
                kind: StoreKind::ClusterSecretStore,
                namespace: None,
                name: self.name.clone(),
            },
        }
    }
}

/// One secret of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlannedSecret {
    /// Remote key.
    pub key: String,
    /// Store (default: the plan's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<PlanStoreRef>,
    /// `hex:32`, `base64:24`, `alphanumeric:40`, `uuid` or `manual`.
    pub generate: String,
    /// Environment variable holding the desired value (seed 000's `TOMODA_*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// What rotating it does to users, printed before asking for confirmation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<String>,
    /// ExternalSecrets (`namespace/name`) to sync first, in this order, each verified
    /// before the next (a database's credentials before the application's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
}

/// A rotation plan file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotationPlan {
    /// The default store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<PlanStoreRef>,
    /// The secrets.
    pub secrets: Vec<PlannedSecret>,
}

impl RotationPlan {
    /// Parses a plan; errors name the file and field.
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let loc = Location {
            file: file.to_path_buf(),
            document: 1,
            object: Some("RotationPlan".into()),
            field: None,
        };
        let value: serde_json::Value = serde_norway::from_str(text).map_err(|e| {
            Error::manifest(
                loc.clone(),
                format!("malformed YAML: {}", crate::error::redact_quoted(&e.to_string())),
            )
        })?;
        let plan: RotationPlan = crate::manifest::typed(value, &loc)?;
        let mut seen = BTreeSet::new();
        for (i, s) in plan.secrets.iter().enumerate() {
            Generator::parse(&s.generate)
                .map_err(|e| Error::manifest(loc.field(format!("secrets[{i}].generate")), e))?;
            if s.store.is_none() && plan.store.is_none() {
                return Err(Error::manifest(
                    loc.field(format!("secrets[{i}].store")),
                    "no store: set it here or at the top",
                ));
            }
            if !seen.insert((s.store.clone().or(plan.store.clone()).map(|r| r.id()), s.key.clone())) {
                return Err(Error::manifest(
                    loc.field(format!("secrets[{i}].key")),
                    format!("duplicate key `{}`", s.key),
                ));
            }
            for (j, o) in s.order.iter().enumerate() {
                if o.split_once('/').is_none() {
                    return Err(Error::manifest(
                        loc.field(format!("secrets[{i}].order[{j}]")),
                        format!("`{o}`: expected namespace/name"),
                    ));
                }
            }
        }
        Ok(plan)
    }

    /// Reads and parses a plan file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// The store of a secret.
    pub fn store_of(&self, s: &PlannedSecret) -> StoreId {
        s.store
            .as_ref()
            .or(self.store.as_ref())
            .expect("validated: every secret has a store")
            .id()
    }
}

/// What `ensure` decided for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    /// No value existed: a generated (or given) one will be created.
    Create,
    /// The desired value differs: a new version, the old one disabled.
    Update,
    /// `--rotate`: a generated value replaces the current one.
    Rotate,
    /// Equal to the desired value, or no desired value and one exists: nothing.
    Keep,
    /// Manual, and no value anywhere: someone must set it.
    Missing,
}

/// One key's decision. The new value is held here (never printed) until applied.
#[derive(Debug, Clone, Serialize)]
pub struct KeyPlan {
    /// Store.
    #[serde(serialize_with = "ser_display")]
    pub store: StoreId,
    /// Remote key.
    pub key: String,
    /// Decision.
    pub action: Action,
    /// Why, in words (never a value).
    pub reason: String,
    /// Impact notes from the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact: Option<String>,
    /// The value to write.
    #[serde(skip)]
    pub new_value: Option<SecretValue>,
    /// Short fingerprint of the value to write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_fingerprint: Option<String>,
}

fn ser_display<S: serde::Serializer>(v: &StoreId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl KeyPlan {
    /// Whether applying it writes.
    pub fn writes(&self) -> bool {
        matches!(self.action, Action::Create | Action::Update | Action::Rotate)
    }
}

/// Decides, per key, what to do. Reads current values; writes nothing. `env` looks up
/// environment variables (pass `|k| std::env::var(k).ok()`).
pub async fn plan(
    plan: &RotationPlan,
    writers: &BTreeMap<StoreId, Arc<dyn SecretWriter>>,
    rotate: bool,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    key: &crate::FingerprintKey,
) -> Result<Vec<KeyPlan>> {
    let mut out = vec![];
    for s in &plan.secrets {
        let store = plan.store_of(s);
        let writer = writers.get(&store).ok_or_else(|| {
            Error::not_found(format!(
                "{store} (for key `{}`): not in the manifests, or it does not accept writes",
                s.key
            ))
        })?;
        let generator = Generator::parse(&s.generate).map_err(Error::invalid)?;
        let current = match writer.get(&RemoteKey::new(&s.key)).await {
            Ok(f) if !f.value.is_empty() => Some(f.value),
            Ok(_) => None,
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.context(format!("read `{}` in {store}", s.key))),
        };
        let desired = s
            .env
            .as_deref()
            .and_then(env)
            .filter(|v| !v.is_empty())
            .map(SecretValue::from);
        let from = s.env.as_deref().map(|e| format!("${e}")).unwrap_or_default();
        let (action, reason, new_value) = match (desired, &current) {
            (Some(d), Some(c)) if d.ct_eq(c) => (Action::Keep, format!("{from} matches the current value"), None),
            (Some(d), Some(_)) => (
                Action::Update,
                format!("{from} differs from the current value"),
                Some(d),
            ),
            (Some(d), None) => (Action::Create, format!("set from {from}"), Some(d)),
            (None, Some(_)) if rotate && generator.is_generated() => (
                Action::Rotate,
                format!("--rotate: regenerated ({})", s.generate),
                generator.generate(),
            ),
            (None, Some(_)) => (Action::Keep, "has a value; nothing desired".into(), None),
            (None, None) if generator.is_generated() => (
                Action::Create,
                format!("empty: generated ({})", s.generate),
                generator.generate(),
            ),
            (None, None) => (
                Action::Missing,
                match &s.env {
                    Some(e) => format!("manual and empty: set ${e} or write a value to the store"),
                    None => "manual and empty: write a value to the store".into(),
                },
                None,
            ),
        };
        let new_fingerprint = new_value.as_ref().map(|v| key.fingerprint_value(v.expose()).short());
        out.push(KeyPlan {
            store,
            key: s.key.clone(),
            action,
            reason,
            impact: s.impact.clone(),
            new_value,
            new_fingerprint,
        });
    }
    Ok(out)
}

/// What applying one key did.
#[derive(Debug, Clone, Serialize)]
pub struct KeyResult {
    /// The decision.
    pub plan: KeyPlan,
    /// The write's outcome, when it wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether the previous version was disabled.
    pub disabled_previous: bool,
    /// Error, if the write failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Writes every planned change (new version, previous disabled). Keys that fail are
/// reported; the others go on.
pub async fn apply(plans: Vec<KeyPlan>, writers: &BTreeMap<StoreId, Arc<dyn SecretWriter>>) -> Vec<KeyResult> {
    let mut out = vec![];
    for p in plans {
        let mut r = KeyResult {
            plan: p,
            version: None,
            disabled_previous: false,
            error: None,
        };
        if let (true, Some(value)) = (r.plan.writes(), r.plan.new_value.clone()) {
            let writer = &writers[&r.plan.store];
            let mut req = WriteRequest::new(&r.plan.key, value);
            req.disable_previous = true;
            match writer.put(&req).await {
                Ok(WriteOutcome::Created { version }) => r.version = version,
                Ok(WriteOutcome::Updated {
                    version,
                    disabled_previous,
                    ..
                }) => {
                    r.version = version;
                    r.disabled_previous = disabled_previous;
                }
                Err(e) => r.error = Some(e.to_string()),
            }
        }
        r.plan.new_value = None;
        out.push(r);
    }
    out
}

/// One propagation step: a spec synced and verified.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The keys that changed and this spec reads.
    pub keys: Vec<String>,
    /// The ExternalSecret.
    pub spec: String,
    /// Target.
    pub target: String,
    /// Outcome of the sync.
    pub outcome: Outcome,
    /// Consumers restarted.
    pub restarted: Vec<String>,
    /// The target now holds the desired data (re-read after the write).
    pub verified: bool,
    /// What went wrong.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The ExternalSecrets reading `key` of `store`, in propagation order: the plan's `order`
/// first, then the others in manifest order.
pub fn readers(manifests: &Manifests, store: &StoreId, key: &str, order: &[String]) -> Vec<SpecId> {
    let reads = |es: &crate::manifest::ExternalSecret| {
        es.store_id().as_ref() == Some(store) && crate::events::reads_key(es, key)
    };
    let all: Vec<SpecId> = manifests
        .external_secrets
        .iter()
        .filter(|es| reads(es))
        .map(|es| es.id())
        .collect();
    let mut out: Vec<SpecId> = order
        .iter()
        .filter_map(|o| o.split_once('/'))
        .map(|(ns, n)| SpecId {
            namespace: ns.into(),
            name: n.into(),
        })
        .filter(|id| all.contains(id))
        .collect();
    for id in all {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Force-syncs every spec reading the changed keys, in order, one at a time; the engine
/// restarts their consumers; each target is re-read and verified before the next step.
/// Stops at the first step that fails, so a later consumer never gets a value an earlier
/// one did not.
pub async fn propagate(
    results: &[KeyResult],
    plan: &RotationPlan,
    manifests: &Manifests,
    engine: &Engine,
) -> Vec<Step> {
    let mut steps: Vec<(SpecId, Vec<String>)> = vec![];
    let order_of = |r: &KeyResult| {
        plan.secrets
            .iter()
            .find(|s| s.key == r.plan.key && plan.store_of(s) == r.plan.store)
            .map(|s| s.order.clone())
            .unwrap_or_default()
    };
    // Keys with a declared order place their specs first, so no other key's readers can
    // jump ahead of a coupled consumer.
    let mut changed: Vec<&KeyResult> = results
        .iter()
        .filter(|r| r.error.is_none() && r.plan.writes())
        .collect();
    changed.sort_by_key(|r| order_of(r).is_empty());
    for r in changed {
        let order = order_of(r);
        for id in readers(manifests, &r.plan.store, &r.plan.key, &order) {
            match steps.iter_mut().find(|(s, _)| *s == id) {
                Some((_, keys)) => keys.push(r.plan.key.clone()),
                None => steps.push((id, vec![r.plan.key.clone()])),
            }
        }
    }
    let mut out = vec![];
    for (id, keys) in steps {
        let report = engine
            .run(
                manifests,
                &CycleOptions {
                    dry_run: false,
                    only: Some(BTreeSet::from([id.clone()])),
                    ..Default::default()
                },
            )
            .await;
        let spec = report.specs.first();
        let mut step = Step {
            keys,
            spec: id.to_string(),
            target: spec.map(|s| s.target.clone()).unwrap_or_default(),
            outcome: spec.map(|s| s.outcome).unwrap_or(Outcome::Skipped),
            restarted: report.restarts.iter().map(|c| c.to_string()).collect(),
            verified: false,
            message: spec.map(|s| s.message.clone()).unwrap_or_default(),
        };
        if spec.is_some_and(|s| s.status == SyncStatus::SecretSynced) {
            // Verify: what the target holds now matches what the spec renders now.
            match engine.desired(manifests, &id).await {
                Ok(desired) => match engine.sink().read(&desired.target).await {
                    Ok(Some(cur)) => step.verified = target_matches(&desired, &cur, &engine.sink().capabilities()),
                    Ok(None) => step.message = format!("{} does not exist after sync", desired.target),
                    Err(e) => step.message = e.to_string(),
                },
                Err(e) => step.message = e.message,
            }
        }
        if !report.restart_errors.is_empty() {
            step.message = report.restart_errors.join("; ");
        }
        let ok = step.verified;
        out.push(step);
        if !ok {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_make_what_openssl_would() {
        let hex = Generator::parse("hex:32").unwrap().generate().unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex.expose().iter().all(u8::is_ascii_hexdigit));
        let b64 = Generator::parse("base64:24").unwrap().generate().unwrap();
        assert_eq!(b64.len(), 32);
        let an = Generator::parse("alphanumeric:40").unwrap().generate().unwrap();
        assert!(an.len() == 40 && an.expose().iter().all(u8::is_ascii_alphanumeric));
        assert_eq!(Generator::parse("uuid").unwrap().generate().unwrap().len(), 36);
        assert_eq!(Generator::parse("manual").unwrap().generate(), None);
        assert_ne!(Generator::Hex(16).generate(), Generator::Hex(16).generate());
        for bad in ["hex", "hex:x", "rot13:3", "uuid:3", "hex:0"] {
            assert!(Generator::parse(bad).is_err(), "{bad}");
        }
    }
}
