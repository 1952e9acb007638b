//! Where secrets are used: [`SecretSink`] writes targets, [`Restarter`] restarts the
//! consumers that read them only at start-up.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::value::SecretMap;

/// Annotation holding the keyed fingerprint of the data secretsync last wrote.
pub const FINGERPRINT_ANNOTATION: &str = "secretsync.io/fingerprint";
/// Annotation listing, comma-separated and sorted, the keys secretsync owns in a
/// `creationPolicy: Merge` target, so keys dropped upstream can be removed and others' kept.
pub const MANAGED_KEYS_ANNOTATION: &str = "secretsync.io/managed-keys";
/// Label set on targets secretsync creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_LABEL_VALUE: &str = "secretsync";

/// The kind of object a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum TargetKind {
    /// A Kubernetes `Secret` (values base64 in `data`).
    #[default]
    Secret,
    /// A Kubernetes `ConfigMap`, for configuration that is not secret.
    ConfigMap,
}

impl TargetKind {
    /// `Secret` or `ConfigMap`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TargetKind::Secret => "Secret",
            TargetKind::ConfigMap => "ConfigMap",
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which target: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetRef {
    /// Secret or ConfigMap.
    pub kind: TargetKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl TargetRef {
    /// A Secret target.
    pub fn secret(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: TargetKind::Secret,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TargetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// ESO `target.creationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum CreationPolicy {
    /// Create the target and own it (owner reference / managed-by label); we own every key.
    #[default]
    Owner,
    /// Create the target without an owner; it is left behind when the spec goes away.
    Orphan,
    /// Only update an existing target, touching only our keys.
    Merge,
    /// Never write the target.
    None,
}

/// ESO `target.deletionPolicy`: what happens to the target when the remote secret is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DeletionPolicy {
    /// Keep the target with its last data.
    #[default]
    Retain,
    /// Delete the target.
    Delete,
    /// Remove only our keys from the target.
    Merge,
}

/// The object that owns a target (the ExternalSecret), for owner references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    /// `external-secrets.io/v1`.
    pub api_version: String,
    /// `ExternalSecret`.
    pub kind: String,
    /// Its name (same namespace as the target).
    pub name: String,
    /// Its uid, when it exists in a cluster.
    pub uid: Option<String>,
}

/// The state a target should be in.
#[derive(Debug, Clone)]
pub struct DesiredTarget {
    /// Which target.
    pub target: TargetRef,
    /// The data.
    pub data: SecretMap,
    /// Secret `type` (`Opaque` when `None`); ignored for ConfigMaps.
    pub secret_type: Option<String>,
    /// Labels to set (others are left alone).
    pub labels: BTreeMap<String, String>,
    /// Annotations to set (others are left alone). Includes [`FINGERPRINT_ANNOTATION`].
    pub annotations: BTreeMap<String, String>,
    /// How the target may be created and which keys we own.
    pub creation_policy: CreationPolicy,
    /// What to do when the remote secret is gone.
    pub deletion_policy: DeletionPolicy,
    /// Create the target immutable.
    pub immutable: bool,
    /// The owning ExternalSecret.
    pub owner: Option<OwnerRef>,
    /// Keyed fingerprint of `data`, type, labels and annotations.
    pub fingerprint: Fingerprint,
}

/// What a target holds now.
#[derive(Debug, Clone, Default)]
pub struct TargetState {
    /// Its data (for Merge targets, including keys owned by others).
    pub data: SecretMap,
    /// Secret type.
    pub secret_type: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Whether it is immutable.
    pub immutable: bool,
}

impl TargetState {
    /// The fingerprint recorded in [`FINGERPRINT_ANNOTATION`] at the last write.
    pub fn recorded_fingerprint(&self) -> Option<Fingerprint> {
        self.annotations
            .get(FINGERPRINT_ANNOTATION)
            .and_then(|s| Fingerprint::parse(s))
    }
}

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ApplyOutcome {
    /// The target did not exist and was created.
    Created,
    /// The target existed and was changed.
    Updated,
    /// Nothing was written.
    Unchanged,
}

/// What a sink supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkCapabilities {
    /// ConfigMap targets.
    pub config_maps: bool,
    /// `creationPolicy: Merge` keeps other owners' keys.
    pub merge: bool,
    /// Owner references to the ExternalSecret.
    pub owner_references: bool,
    /// `immutable` targets.
    pub immutable: bool,
    /// `read` returns what was written (stdout cannot).
    pub readable: bool,
    /// Type, labels and annotations are stored and read back (a dotenv file has none).
    pub metadata: bool,
}

impl SinkCapabilities {
    /// Every capability (a sink that stores whole objects: folder, memory).
    pub fn all() -> Self {
        Self {
            config_maps: true,
            merge: true,
            owner_references: true,
            immutable: true,
            readable: true,
            metadata: true,
        }
    }
}

/// A place targets are written to.
///
/// # Contract
///
/// - `read` of a missing target is `Ok(None)`; of an existing one, its data, type, labels
///   and annotations as last written (by anyone).
/// - `apply` makes the target hold `data` exactly (Owner, Orphan) or hold `data` for our
///   keys while keeping others' (Merge); it never leaves a half-written target: on error
///   the target holds its previous content. Keys we wrote before and no longer desire are
///   removed.
/// - `apply` with `CreationPolicy::Merge` on a missing target fails with
///   [`crate::Error::NotFound`]; with `CreationPolicy::None` it writes nothing.
/// - `delete` returns whether something was deleted.
/// - `compare` agrees with `read` followed by [`target_matches`]; a sink
///   overrides it only to compare without copying the target out (the in-memory sink) or
///   to answer from what it read ahead ([`SecretSink::begin_cycle`]) or keeps watched.
/// - Values never appear in errors or logs.
#[async_trait]
pub trait SecretSink: Send + Sync + fmt::Debug {
    /// A short name (`folder`, `dotenv`, `stdout`, `kubernetes`).
    fn name(&self) -> &str;
    /// What this sink supports.
    fn capabilities(&self) -> SinkCapabilities;
    /// What the target holds now.
    async fn read(&self, target: &TargetRef) -> Result<Option<TargetState>>;
    /// Writes the desired state.
    async fn apply(&self, desired: &DesiredTarget) -> Result<ApplyOutcome>;
    /// Deletes the target.
    async fn delete(&self, target: &TargetRef) -> Result<bool>;
    /// Whether the target already holds `desired` (so no write is needed), and what it
    /// holds when it does not. The engine calls this once per target per cycle.
    async fn compare(&self, desired: &DesiredTarget) -> Result<Compared> {
        Ok(Compared::of(
            desired,
            self.read(&desired.target).await?,
            &self.capabilities(),
        ))
    }
    /// A cycle is about to compare (and maybe apply) these targets. A sink that can read
    /// many targets in one request (the Kubernetes sink lists each namespace once) reads
    /// them here and answers this cycle's `compare`s from what it read. Default: nothing.
    ///
    /// It cannot fail: a sink that cannot read ahead answers `compare` target by target.
    async fn begin_cycle(&self, targets: &[TargetRef]) {
        let _ = targets;
    }
    /// The cycle that [`begin_cycle`](Self::begin_cycle) announced is over: forget what
    /// was read ahead for these targets. Default: nothing.
    async fn end_cycle(&self, targets: &[TargetRef]) {
        let _ = targets;
    }
}

/// What a target holds, compared with its desired state ([`SecretSink::compare`]).
#[derive(Debug, Clone)]
pub enum Compared {
    /// The target does not exist.
    Missing,
    /// It holds the desired state: nothing to write.
    Matches,
    /// It holds something else.
    Differs(TargetState),
}

impl Compared {
    /// The comparison of a read target with `desired`.
    pub fn of(desired: &DesiredTarget, current: Option<TargetState>, caps: &SinkCapabilities) -> Self {
        match current {
            None => Compared::Missing,
            Some(cur) if target_matches(desired, &cur, caps) => Compared::Matches,
            Some(cur) => Compared::Differs(cur),
        }
    }
}

/// A workload that reads a target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ConsumerRef {
    /// `Deployment`, `StatefulSet`, `DaemonSet` (or `Process` for `run`).
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for ConsumerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A target whose data changed, and the consumers its spec declares.
#[derive(Debug, Clone)]
pub struct RestartRequest {
    /// The changed target.
    pub target: TargetRef,
    /// Consumers listed on the spec (annotation [`crate::manifest::RESTART_ANNOTATION`]).
    pub declared: Vec<ConsumerRef>,
}

/// Makes consumers that read secrets only at start-up pick up a change.
///
/// # Contract
///
/// - Each consumer of the changed targets (declared or discovered) is restarted once per
///   call, however many of its targets changed; the result lists them.
/// - A call with no requests restarts nothing.
#[async_trait]
pub trait Restarter: Send + Sync + fmt::Debug {
    /// Restarts the consumers of the changed targets.
    async fn restart(&self, changed: &[RestartRequest]) -> Result<Vec<ConsumerRef>>;
}

macro_rules! forward_sink {
    ($ty:ty) => {
        #[async_trait]
        impl<T: SecretSink + ?Sized> SecretSink for $ty {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn capabilities(&self) -> SinkCapabilities {
                (**self).capabilities()
            }
            async fn read(&self, target: &TargetRef) -> Result<Option<TargetState>> {
                (**self).read(target).await
            }
            async fn apply(&self, desired: &DesiredTarget) -> Result<ApplyOutcome> {
                (**self).apply(desired).await
            }
            async fn delete(&self, target: &TargetRef) -> Result<bool> {
                (**self).delete(target).await
            }
            async fn compare(&self, desired: &DesiredTarget) -> Result<Compared> {
                (**self).compare(desired).await
            }
            async fn begin_cycle(&self, targets: &[TargetRef]) {
                (**self).begin_cycle(targets).await
            }
            async fn end_cycle(&self, targets: &[TargetRef]) {
                (**self).end_cycle(targets).await
            }
        }

        #[async_trait]
        impl<T: Restarter + ?Sized> Restarter for $ty {
            async fn restart(&self, changed: &[RestartRequest]) -> Result<Vec<ConsumerRef>> {
                (**self).restart(changed).await
            }
        }
    };
}

forward_sink!(Arc<T>);
forward_sink!(Box<T>);

/// Whether the target already holds the desired state, so no write is needed.
///
/// Data is compared exactly (Owner, Orphan) or for our keys (Merge, whose dropped keys show
/// in the managed-keys annotation). Type, labels and annotations are compared when the sink
/// stores them; desired ones must be present, others may exist. The fingerprint annotation
/// itself is not compared: a process with another fingerprint key must not rewrite
/// unchanged targets.
pub fn target_matches(d: &DesiredTarget, cur: &TargetState, caps: &SinkCapabilities) -> bool {
    let data_ok = match d.creation_policy {
        CreationPolicy::Merge => d.data.iter().all(|(k, v)| cur.data.get(k) == Some(v)),
        _ => cur.data == d.data,
    };
    if !data_ok {
        return false;
    }
    if !caps.metadata {
        return true;
    }
    let type_ok = d.target.kind == TargetKind::ConfigMap
        || d.creation_policy == CreationPolicy::Merge
        || cur.secret_type.as_deref().unwrap_or("Opaque") == d.secret_type.as_deref().unwrap_or("Opaque");
    let labels_ok = d.labels.iter().all(|(k, v)| cur.labels.get(k) == Some(v));
    let ann_ok = d
        .annotations
        .iter()
        .filter(|(k, _)| *k != FINGERPRINT_ANNOTATION)
        .all(|(k, v)| cur.annotations.get(k) == Some(v));
    type_ok && labels_ok && ann_ok && (!caps.immutable || cur.immutable == d.immutable || cur.immutable)
}
