//! The loaded manifests as plain data: stores, ExternalSecrets (ClusterExternalSecrets
//! expanded), static targets, their ids, and what loading returns.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;
use crate::error::{Error, Location};
use crate::sink::{ConsumerRef, TargetKind, TargetRef};
use crate::value::SecretMap;

/// The API group of ESO's kinds.
pub const API_GROUP: &str = "external-secrets.io";
/// ESO's annotation that triggers a refresh when its value changes.
pub const FORCE_SYNC_ANNOTATION: &str = "force-sync";
/// Our annotation on an ExternalSecret listing consumers to restart when its target
/// changes: `deployment/tomoda-api, statefulset/db` (namespace of the target, or
/// `kind/namespace/name`).
pub const RESTART_ANNOTATION: &str = "secretsync.io/restart";
/// Default `refreshInterval` (ESO's).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);
/// Default `refreshTime` of a ClusterExternalSecret: how often its namespaces are
/// re-evaluated.
pub const DEFAULT_CES_REFRESH_TIME: Duration = Duration::from_secs(60);

/// SecretStore or ClusterSecretStore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreKind {
    /// Namespaced.
    SecretStore,
    /// Cluster-wide.
    ClusterSecretStore,
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::SecretStore => "SecretStore",
            StoreKind::ClusterSecretStore => "ClusterSecretStore",
        })
    }
}

/// Identifies a store: kind, namespace (SecretStore only) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreId {
    /// Kind.
    pub kind: StoreKind,
    /// Namespace of a SecretStore; `None` for a ClusterSecretStore.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A loaded store.
#[derive(Debug, Clone)]
pub struct Store {
    /// Its id.
    pub id: StoreId,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: StoreSpec,
    /// Where it was read from.
    pub origin: Location,
}

impl Store {
    /// The folder relative paths in this store's settings are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.origin.file.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    /// The provider's settings (`spec.provider.<name>`) as the provider's own type. Errors
    /// name the document and the field path under `spec.provider.<name>` (unknown fields
    /// included, with `#[serde(deny_unknown_fields)]`), and never quote a value.
    pub fn provider_config<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let name = self.spec.provider.name();
        typed_at(
            self.spec.provider.config().clone(),
            &self.origin,
            &format!("spec.provider.{name}"),
        )
    }

    /// Where the field at `path` (relative to `spec.provider.<name>`) of this store is.
    pub fn provider_field(&self, path: &str) -> Location {
        let name = self.spec.provider.name();
        if path.is_empty() {
            self.origin.field(format!("spec.provider.{name}"))
        } else {
            self.origin.field(format!("spec.provider.{name}.{path}"))
        }
    }

    /// Whether an ExternalSecret in `namespace` may use this store.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        match self.id.kind {
            StoreKind::SecretStore => self.id.namespace.as_deref() == Some(namespace),
            StoreKind::ClusterSecretStore => {
                self.spec.conditions.is_empty()
                    || self.spec.conditions.iter().any(|c| {
                        c.namespaces.iter().any(|n| n == namespace)
                            || c.namespace_regexes
                                .iter()
                                .any(|r| regex::Regex::new(r).map(|re| re.is_match(namespace)).unwrap_or(false))
                    })
            }
        }
    }
}

/// A loaded ExternalSecret.
#[derive(Debug, Clone)]
pub struct ExternalSecret {
    /// `external-secrets.io/v1` or `v1beta1`.
    pub api_version: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ExternalSecretSpec,
    /// Where it was read from (for one expanded from a ClusterExternalSecret, that
    /// document).
    pub origin: Location,
    /// The ClusterExternalSecret it was expanded from, if any.
    pub expanded_from: Option<ExpandedFrom>,
}

/// Where an ExternalSecret expanded from a ClusterExternalSecret came from: errors about it
/// name the ClusterExternalSecret's fields ([`ExternalSecret::field`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandedFrom {
    /// The ClusterExternalSecret's name.
    pub cluster_external_secret: String,
    /// Index of its namespace in `spec.namespaces`.
    pub namespace_index: usize,
    /// Whether `spec.externalSecretName` gave its name (else the ClusterExternalSecret's
    /// name did).
    pub named_by_spec: bool,
}

/// `namespace/name` of a spec: how reports and errors name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpecId {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for SpecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ExternalSecret {
    /// The path, in the document it came from, of the field at `path` of this
    /// ExternalSecret: `path` itself, or for one expanded from a ClusterExternalSecret the
    /// field that gave it (`spec.x` → `spec.externalSecretSpec.x`, `metadata.name` →
    /// `spec.externalSecretName`, `metadata.labels.x` → `spec.externalSecretMetadata.labels.x`,
    /// `metadata.namespace` → `spec.namespaces[i]`).
    pub fn field_path(&self, path: &str) -> String {
        let Some(from) = &self.expanded_from else {
            return path.to_string();
        };
        if let Some(rest) = path.strip_prefix("spec")
            && (rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
        {
            return format!("spec.externalSecretSpec{rest}");
        }
        match path {
            "metadata.name" if from.named_by_spec => "spec.externalSecretName".to_string(),
            "metadata.name" => path.to_string(),
            "metadata.namespace" => format!("spec.namespaces[{}]", from.namespace_index),
            _ => match path.strip_prefix("metadata.") {
                Some(rest) if rest.starts_with("labels") || rest.starts_with("annotations") => {
                    format!("spec.externalSecretMetadata.{rest}")
                }
                _ => path.to_string(),
            },
        }
    }
    /// Where the field at `path` of this ExternalSecret is: its document and
    /// [`field_path`](Self::field_path).
    pub fn field(&self, path: &str) -> Location {
        self.origin.field(self.field_path(path))
    }
    /// Namespace (`default` when absent).
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }
    /// Name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
    /// `namespace/name`.
    pub fn id(&self) -> SpecId {
        SpecId {
            namespace: self.namespace().to_string(),
            name: self.name().to_string(),
        }
    }
    /// The target this spec writes.
    pub fn target_ref(&self) -> TargetRef {
        let kind = match &self.spec.target.manifest {
            Some(m) if m.kind == "ConfigMap" => TargetKind::ConfigMap,
            _ => TargetKind::Secret,
        };
        TargetRef {
            kind,
            namespace: self.namespace().to_string(),
            name: self.spec.target.name.clone().unwrap_or_else(|| self.name().to_string()),
        }
    }
    /// The store this spec reads, as an id.
    pub fn store_id(&self) -> Option<StoreId> {
        let r = self.spec.secret_store_ref.as_ref()?;
        Some(match r.kind.as_deref() {
            Some("ClusterSecretStore") => StoreId {
                kind: StoreKind::ClusterSecretStore,
                namespace: None,
                name: r.name.clone(),
            },
            _ => StoreId {
                kind: StoreKind::SecretStore,
                namespace: Some(self.namespace().to_string()),
                name: r.name.clone(),
            },
        })
    }
    /// `refreshInterval` (default 1h); `None` means no periodic refresh (`0`).
    pub fn refresh_interval(&self) -> Result<Option<Duration>, String> {
        match &self.spec.refresh_interval {
            None => Ok(Some(DEFAULT_REFRESH_INTERVAL)),
            Some(s) => crate::duration::parse_go_duration(s).map(|d| (!d.is_zero()).then_some(d)),
        }
    }
    /// `refreshPolicy` (default Periodic).
    pub fn refresh_policy(&self) -> RefreshPolicy {
        self.spec.refresh_policy.unwrap_or_default()
    }
    /// The `force-sync` annotation's value.
    pub fn force_sync_token(&self) -> Option<&str> {
        self.metadata.annotations.get(FORCE_SYNC_ANNOTATION).map(String::as_str)
    }
    /// Consumers listed in [`RESTART_ANNOTATION`].
    pub fn declared_consumers(&self) -> Result<Vec<ConsumerRef>, String> {
        let Some(raw) = self.metadata.annotations.get(RESTART_ANNOTATION) else {
            return Ok(vec![]);
        };
        raw.split([',', '\n', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                let parts: Vec<&str> = item.split('/').collect();
                let (kind, ns, name) = match parts.as_slice() {
                    [k, n] => (*k, self.namespace(), *n),
                    [k, ns, n] => (*k, *ns, *n),
                    _ => {
                        return Err(format!("`{item}`: expected kind/name or kind/namespace/name"));
                    }
                };
                let kind = match kind.to_ascii_lowercase().as_str() {
                    "deployment" | "deployments" | "deploy" => "Deployment",
                    "statefulset" | "statefulsets" | "sts" => "StatefulSet",
                    "daemonset" | "daemonsets" | "ds" => "DaemonSet",
                    other => {
                        return Err(format!(
                            "`{item}`: unknown kind `{other}` (Deployment, StatefulSet, DaemonSet)"
                        ));
                    }
                };
                Ok(ConsumerRef {
                    kind: kind.to_string(),
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
            })
            .collect()
    }
    /// A stable hash of the spec, to notice spec changes (OnChange, reloads).
    pub fn spec_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(&self.spec).unwrap_or_default().hash(&mut h);
        self.metadata.labels.hash(&mut h);
        self.metadata.annotations.get(RESTART_ANNOTATION).hash(&mut h);
        h.finish()
    }
}

/// A plain `v1` ConfigMap or Secret in the manifests, synced as it is (seed 000 keeps its
/// non-secret config in a ConfigMap beside the ExternalSecrets).
#[derive(Debug, Clone)]
pub struct StaticTarget {
    /// Kind, namespace, name.
    pub target: TargetRef,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Secret type.
    pub secret_type: Option<String>,
    /// Data (decoded).
    pub data: SecretMap,
    /// Immutable.
    pub immutable: bool,
    /// Where it was read from.
    pub origin: Location,
}

/// A loaded ClusterExternalSecret.
#[derive(Debug, Clone)]
pub struct ClusterExternalSecret {
    /// `external-secrets.io/v1` or `v1beta1`.
    pub api_version: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ClusterExternalSecretSpec,
    /// Where it was read from.
    pub origin: Location,
}

impl ClusterExternalSecret {
    /// Parses one ClusterExternalSecret document, as the loader does and as the operator
    /// does with one read from a cluster: the model (unknown fields are errors), the name,
    /// `refreshTime`, the namespace names and the selectors. Namespaces are not resolved and
    /// `externalSecretSpec` is checked only by the model here; [`check_spec`](Self::check_spec)
    /// checks the rest. `location` names the document in errors.
    pub fn parse(value: Value, location: &Location) -> Result<ClusterExternalSecret, Error> {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let doc: Document<ClusterExternalSecretSpec> = typed(value, location)?;
        require_name(&doc.metadata, location)?;
        let ces = ClusterExternalSecret {
            api_version,
            metadata: doc.metadata,
            spec: doc.spec,
            origin: location.clone(),
        };
        if let Err(e) = ces.refresh_time() {
            return Err(Error::manifest(location.field("spec.refreshTime"), e));
        }
        for (i, ns) in ces.spec.namespaces.iter().enumerate() {
            if ns.len() > 63 || ns.contains('.') || !is_valid_object_name(ns) {
                return Err(Error::manifest(
                    location.field(format!("spec.namespaces[{i}]")),
                    format!("`{ns}` is not a valid namespace name (lowercase RFC 1123 label, at most 63 characters)"),
                ));
            }
        }
        for (path, selector) in ces.selectors() {
            if let Some((sub, problem)) = selector.problem() {
                return Err(Error::manifest(location.field(format!("{path}.{sub}")), problem));
            }
        }
        Ok(ces)
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The name of the ExternalSecrets it creates: `spec.externalSecretName`, else its own.
    pub fn external_secret_name(&self) -> &str {
        self.spec
            .external_secret_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.metadata.name)
    }

    /// `refreshTime` (default 1m); `None` means no periodic re-evaluation (`0`).
    pub fn refresh_time(&self) -> Result<Option<Duration>, String> {
        match &self.spec.refresh_time {
            None => Ok(Some(DEFAULT_CES_REFRESH_TIME)),
            Some(s) => crate::duration::parse_go_duration(s).map(|d| (!d.is_zero()).then_some(d)),
        }
    }

    /// Its namespace selectors with their field paths: the deprecated `namespaceSelector`
    /// first, then `namespaceSelectors`.
    pub fn selectors(&self) -> Vec<(String, &LabelSelector)> {
        let single = self
            .spec
            .namespace_selector
            .as_ref()
            .map(|s| ("spec.namespaceSelector".to_string(), s));
        single
            .into_iter()
            .chain(
                self.spec
                    .namespace_selectors
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("spec.namespaceSelectors[{i}]"), s)),
            )
            .collect()
    }

    /// Whether the namespace `name` with `labels` gets an ExternalSecret: listed in
    /// `spec.namespaces` or matched by any selector (ESO ORs them). The caller skips
    /// namespaces being deleted.
    pub fn selects(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.spec.namespaces.iter().any(|n| n == name) || self.selectors().iter().any(|(_, s)| s.matches(labels))
    }

    /// The ExternalSecret it creates in `namespace`; `namespace_index` is the namespace's
    /// index in `spec.namespaces`, for errors (0 for a namespace found by a selector). Its
    /// annotations carry the ClusterExternalSecret's `force-sync`, as ESO's do.
    pub fn external_secret(&self, namespace: &str, namespace_index: usize) -> ExternalSecret {
        let md = self.spec.external_secret_metadata.clone().unwrap_or_default();
        let mut annotations = md.annotations;
        if let Some(v) = self.metadata.annotations.get(FORCE_SYNC_ANNOTATION) {
            annotations.insert(FORCE_SYNC_ANNOTATION.to_string(), v.clone());
        }
        ExternalSecret {
            api_version: self.api_version.clone(),
            metadata: ObjectMeta {
                name: self.external_secret_name().to_string(),
                namespace: Some(namespace.to_string()),
                labels: md.labels,
                annotations,
                ..ObjectMeta::default()
            },
            spec: self.spec.external_secret_spec.clone(),
            origin: self.origin.clone(),
            expanded_from: Some(ExpandedFrom {
                cluster_external_secret: self.metadata.name.clone(),
                namespace_index,
                named_by_spec: self.spec.external_secret_name.as_deref().is_some_and(|n| !n.is_empty()),
            }),
        }
    }

    /// Every problem of `externalSecretSpec`, `externalSecretName` and
    /// `externalSecretMetadata` that [`validate`] finds in an ExternalSecret without looking
    /// at stores, named by this document's fields. What the operator checks before it
    /// creates ExternalSecrets; their `templateFrom` ConfigMaps and Secrets are found in
    /// each namespace when they run, so an unresolved one is not a problem here.
    pub fn check_spec(&self) -> Vec<Error> {
        let ns = self.spec.namespaces.first().map_or("default", String::as_str);
        super::validate::check_external_secret_in_cluster(&self.external_secret(ns, 0))
    }
}

/// Everything loaded from a set of files.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// Stores.
    pub stores: Vec<Store>,
    /// ExternalSecrets, including those expanded from ClusterExternalSecrets.
    pub external_secrets: Vec<ExternalSecret>,
    /// Plain ConfigMaps and Secrets.
    pub static_targets: Vec<StaticTarget>,
    /// ClusterExternalSecrets, as loaded (already expanded into `external_secrets`).
    pub cluster_external_secrets: Vec<ClusterExternalSecret>,
    /// PushSecrets, including those expanded from ClusterPushSecrets.
    pub push_secrets: Vec<PushSecret>,
    /// Generators (`Password`, `UUID`).
    pub generators: Vec<GeneratorDoc>,
}

impl Manifests {
    /// The store with this id.
    pub fn store(&self, id: &StoreId) -> Option<&Store> {
        self.stores.iter().find(|s| &s.id == id)
    }
    /// Adds everything of `other`.
    pub fn extend(&mut self, other: Manifests) {
        self.stores.extend(other.stores);
        self.external_secrets.extend(other.external_secrets);
        self.static_targets.extend(other.static_targets);
        self.cluster_external_secrets.extend(other.cluster_external_secrets);
        self.push_secrets.extend(other.push_secrets);
        self.generators.extend(other.generators);
    }
}

/// The result of loading: what parsed, and every problem found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// What parsed.
    pub manifests: Manifests,
    /// Problems, each naming file, document and field.
    pub errors: Vec<Error>,
    /// Warnings (not fatal).
    pub warnings: Vec<String>,
    /// Documents left alone because they are someone else's (a Deployment, a Service),
    /// each naming file and document.
    pub notes: Vec<String>,
}

impl Loaded {
    /// The manifests, or the first error when there are any (use `errors` for all).
    pub fn into_result(self) -> Result<Manifests, Error> {
        match self.errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(self.manifests),
        }
    }
}
