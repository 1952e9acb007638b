//! ESO manifests: load multi-document YAML files of SecretStore, ClusterSecretStore,
//! ExternalSecret and ClusterExternalSecret (`external-secrets.io/v1` and `v1beta1`), plus
//! plain `v1` ConfigMaps and Secrets that are synced as they are.
//!
//! Loading collects every problem it finds, each naming the file, the document and the
//! field path; it never stops at the first.
//!
//! A ClusterExternalSecret expands into one ExternalSecret per namespace of its
//! `spec.namespaces` (named `spec.externalSecretName` or after it, labelled and annotated
//! from `spec.externalSecretMetadata`), so everything downstream sees plain ExternalSecrets;
//! errors about them still name the ClusterExternalSecret's document and fields. Namespace
//! selectors need the Namespaces of a cluster: without one (file mode) they are an error, and
//! the operator resolves them (see [`ClusterExternalSecret::selects`]).

mod generated;
pub mod model;
pub mod push;
mod template_from;
mod validate;
mod walk;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use generated::resolve_generators;
pub use model::*;
pub use push::{GeneratorDoc, GeneratorKind, PushSecret};
pub use template_from::resolve_template_from;
pub(crate) use template_from::{Rendered as TemplateOutput, render_template_from};
pub use validate::{ValidateOptions, check_external_secret, is_valid_object_name, validate};

use crate::error::{Error, Location, redact_quoted};
use crate::sink::{ConsumerRef, TargetKind, TargetRef};
use crate::value::{SecretMap, SecretValue};

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
    /// creates ExternalSecrets.
    pub fn check_spec(&self) -> Vec<Error> {
        let ns = self.spec.namespaces.first().map_or("default", String::as_str);
        check_external_secret(&self.external_secret(ns, 0))
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

/// Loads files and folders (every `*.yaml` / `*.yml` / `*.json` under a folder, recursively,
/// dot-folders skipped, sorted); documents of other kinds are noted in [`Loaded::notes`].
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Loaded {
    let mut loaded = Loaded::default();
    for p in paths {
        let p = p.as_ref();
        let files = match list_files(p) {
            Ok(f) => f,
            Err(e) => {
                loaded.errors.push(e);
                continue;
            }
        };
        for f in files {
            match std::fs::read_to_string(&f) {
                Ok(text) => {
                    let l = load_str(&text, &f);
                    loaded.manifests.extend(l.manifests);
                    loaded.errors.extend(l.errors);
                    loaded.warnings.extend(l.warnings);
                    loaded.notes.extend(l.notes);
                }
                Err(e) => loaded.errors.push(Error::io(&f, e)),
            }
        }
    }
    resolve_template_from(&mut loaded.manifests);
    resolve_generators(&mut loaded.manifests);
    loaded
}

fn list_files(p: &Path) -> Result<Vec<PathBuf>, Error> {
    walk::list_files(p)
}

/// Loads the documents of one file's text; `file` names it in errors.
pub fn load_str(text: &str, file: impl AsRef<Path>) -> Loaded {
    let file = file.as_ref();
    let mut loaded = Loaded::default();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let location = Location {
            file: file.to_path_buf(),
            document: i + 1,
            object: None,
            field: None,
        };
        let value: Value = match serde::Deserialize::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                loaded.errors.push(Error::manifest(
                    location,
                    format!("malformed YAML: {}", redact_quoted(&e.to_string())),
                ));
                // A syntax error ends the stream: later documents cannot be found reliably.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        if let Some(what) = walk::foreign(&value) {
            loaded
                .notes
                .push(format!("{location}: ignored {what}: not a kind secretsync syncs"));
            continue;
        }
        if let Err(e) = load_document(value, location, &mut loaded.manifests) {
            loaded.errors.push(e);
        }
    }
    resolve_template_from(&mut loaded.manifests);
    resolve_generators(&mut loaded.manifests);
    loaded
}

/// Loads one document given as a JSON value (an object read from a cluster, a document
/// parsed elsewhere) with the same checks and errors as [`load_str`], without going through
/// text. `origin` names it in errors; its `object` (`Kind namespace/name`) is filled in from
/// the document.
///
/// ```
/// use secretsync_core::error::Location;
/// use secretsync_core::manifest::from_value;
///
/// let doc = serde_json::json!({
///     "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
///     "metadata": {"name": "db", "namespace": "app"},
///     "spec": {
///         "secretStoreRef": {"kind": "ClusterSecretStore", "name": "aws"},
///         "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}],
///     },
/// });
/// let origin = Location { file: "cluster".into(), document: 1, object: None, field: None };
/// let loaded = from_value(doc, origin);
/// assert!(loaded.errors.is_empty());
/// assert_eq!(loaded.manifests.external_secrets[0].name(), "db");
/// ```
pub fn from_value(value: Value, origin: Location) -> Loaded {
    let mut loaded = Loaded::default();
    if value.is_null() {
        return loaded;
    }
    if let Some(what) = walk::foreign(&value) {
        loaded
            .notes
            .push(format!("{origin}: ignored {what}: not a kind secretsync syncs"));
        return loaded;
    }
    if let Err(e) = load_document(value, origin, &mut loaded.manifests) {
        loaded.errors.push(e);
    }
    resolve_template_from(&mut loaded.manifests);
    loaded
}

fn load_document(value: Value, mut location: Location, out: &mut Manifests) -> Result<(), Error> {
    let Value::Object(obj) = &value else {
        return Err(Error::manifest(location, "expected a mapping with apiVersion and kind"));
    };
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    if api_version.is_empty() {
        return Err(Error::manifest(location.field("apiVersion"), "missing apiVersion"));
    }
    if kind.is_empty() {
        return Err(Error::manifest(location.field("kind"), "missing kind"));
    }
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let namespace = obj
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .map(str::to_string);
    location.object = Some(match &namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    });
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version.as_str()));
    if group == API_GROUP && (kind == "PushSecret" || kind == "ClusterPushSecret") {
        return load_push(value, &kind, version, location, out);
    }
    if group == push::GENERATORS_API_GROUP {
        return load_generator(value, &kind, version, location, out);
    }
    if group == API_GROUP {
        if version != "v1" && version != "v1beta1" {
            return Err(Error::manifest(
                location.field("apiVersion"),
                format!("unsupported apiVersion `{api_version}` (expected {API_GROUP}/v1 or {API_GROUP}/v1beta1)"),
            ));
        }
        match kind.as_str() {
            "SecretStore" | "ClusterSecretStore" => {
                let doc: Document<StoreSpec> = typed(value, &location)?;
                let store_kind = if kind == "SecretStore" {
                    StoreKind::SecretStore
                } else {
                    StoreKind::ClusterSecretStore
                };
                let ns = match store_kind {
                    StoreKind::SecretStore => Some(doc.metadata.namespace.clone().unwrap_or_else(|| "default".into())),
                    StoreKind::ClusterSecretStore => None,
                };
                require_name(&doc.metadata, &location)?;
                out.stores.push(Store {
                    id: StoreId {
                        kind: store_kind,
                        namespace: ns,
                        name: doc.metadata.name.clone(),
                    },
                    metadata: doc.metadata,
                    spec: doc.spec,
                    origin: location,
                });
            }
            "ExternalSecret" => {
                let doc: Document<ExternalSecretSpec> = typed(value, &location)?;
                require_name(&doc.metadata, &location)?;
                out.external_secrets.push(ExternalSecret {
                    api_version,
                    metadata: doc.metadata,
                    spec: doc.spec,
                    origin: location,
                    expanded_from: None,
                });
            }
            "ClusterExternalSecret" => {
                let ces = ClusterExternalSecret::parse(value, &location)?;
                if let Some((path, _)) = ces.selectors().first() {
                    return Err(Error::manifest(
                        location.field(path.clone()),
                        "namespace selectors need a cluster's Namespaces: run the operator, or list the namespaces in spec.namespaces",
                    ));
                }
                if ces.spec.namespaces.is_empty() {
                    return Err(Error::manifest(
                        location.field("spec.namespaces"),
                        "no namespaces: nothing to sync (without a cluster, spec.namespaces lists them)",
                    ));
                }
                for (i, ns) in ces.spec.namespaces.iter().enumerate() {
                    out.external_secrets.push(ces.external_secret(ns, i));
                }
                out.cluster_external_secrets.push(ces);
            }
            _ => {
                return Err(Error::manifest(
                    location.field("kind"),
                    format!(
                        "unknown kind `{kind}` in {API_GROUP} (expected SecretStore, ClusterSecretStore, ExternalSecret or ClusterExternalSecret)"
                    ),
                ));
            }
        }
        return Ok(());
    }
    if api_version == "v1" && (kind == "ConfigMap" || kind == "Secret") {
        let target = load_static(value, &kind, &location)?;
        out.static_targets.push(target);
        return Ok(());
    }
    Err(Error::manifest(
        location.field("kind"),
        format!(
            "unknown kind `{kind}` (apiVersion `{api_version}`): secretsync reads {API_GROUP} SecretStore, ClusterSecretStore, ExternalSecret and ClusterExternalSecret, and v1 ConfigMap and Secret"
        ),
    ))
}

/// PushSecret and ClusterPushSecret (`v1alpha1`); a ClusterPushSecret expands into one
/// PushSecret per listed namespace.
fn load_push(value: Value, kind: &str, version: &str, location: Location, out: &mut Manifests) -> Result<(), Error> {
    if version != "v1alpha1" {
        return Err(Error::manifest(
            location.field("apiVersion"),
            format!("unsupported apiVersion for {kind}: expected {API_GROUP}/v1alpha1"),
        ));
    }
    if kind == "PushSecret" {
        let doc: Document<push::PushSecretSpec> = typed(value, &location)?;
        require_name(&doc.metadata, &location)?;
        out.push_secrets.push(PushSecret {
            metadata: doc.metadata,
            spec: doc.spec,
            origin: location,
            spec_path: "spec".into(),
        });
        return Ok(());
    }
    let doc: Document<push::ClusterPushSecretSpec> = typed(value, &location)?;
    require_name(&doc.metadata, &location)?;
    if !doc.spec.namespace_selectors.is_empty() {
        return Err(Error::manifest(
            location.field("spec.namespaceSelectors"),
            "namespace selectors need a cluster's Namespaces: run the operator, or list the namespaces in spec.namespaces",
        ));
    }
    if doc.spec.namespaces.is_empty() {
        return Err(Error::manifest(
            location.field("spec.namespaces"),
            "no namespaces: nothing to push (without a cluster, spec.namespaces lists them)",
        ));
    }
    for ns in &doc.spec.namespaces {
        let mut metadata = ObjectMeta {
            name: doc
                .spec
                .push_secret_name
                .clone()
                .unwrap_or_else(|| doc.metadata.name.clone()),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        };
        if let Some(m) = &doc.spec.push_secret_metadata {
            metadata.labels = m.labels.clone();
            metadata.annotations = m.annotations.clone();
        }
        out.push_secrets.push(PushSecret {
            metadata,
            spec: doc.spec.push_secret_spec.clone(),
            origin: location.clone(),
            spec_path: "spec.pushSecretSpec".into(),
        });
    }
    Ok(())
}

/// `Password` and `UUID` generators (`generators.external-secrets.io/v1alpha1`).
fn load_generator(
    value: Value,
    kind: &str,
    version: &str,
    location: Location,
    out: &mut Manifests,
) -> Result<(), Error> {
    if version != "v1alpha1" {
        return Err(Error::manifest(
            location.field("apiVersion"),
            format!(
                "unsupported apiVersion for {kind}: expected {}/v1alpha1",
                push::GENERATORS_API_GROUP
            ),
        ));
    }
    let (metadata, kind) = match kind {
        "Password" => {
            let doc: Document<push::PasswordSpec> = typed(value, &location)?;
            (doc.metadata, GeneratorKind::Password(doc.spec))
        }
        "UUID" => {
            let doc: Document<Option<BTreeMap<String, Value>>> = typed(value, &location)?;
            if doc.spec.as_ref().is_some_and(|s| !s.is_empty()) {
                return Err(Error::manifest(
                    location.field("spec"),
                    "a UUID generator takes no settings",
                ));
            }
            (doc.metadata, GeneratorKind::Uuid)
        }
        other => {
            return Err(Error::manifest(
                location.field("kind"),
                format!("{}generator kind {other} (Password, UUID)", model::NOT_SUPPORTED_PREFIX),
            ));
        }
    };
    require_name(&metadata, &location)?;
    if let GeneratorKind::Password(p) = &kind
        && let Err(m) = crate::generators::PasswordRules::from_spec(p)
    {
        return Err(Error::manifest(location.field("spec"), m));
    }
    out.generators.push(GeneratorDoc {
        metadata,
        kind,
        origin: location,
    });
    Ok(())
}

fn require_name(meta: &ObjectMeta, location: &Location) -> Result<(), Error> {
    if meta.name.is_empty() {
        return Err(Error::manifest(location.field("metadata.name"), "missing name"));
    }
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    spec: S,
    #[allow(dead_code)]
    #[serde(default)]
    status: Option<Value>,
}

/// Typed deserialization with the field path of the first error.
pub(crate) fn typed<T: DeserializeOwned>(value: Value, location: &Location) -> Result<T, Error> {
    typed_at(value, location, "")
}

/// [`typed`] for a value found at `prefix` of the document (`spec.provider.aws`): error
/// paths start with it.
pub(crate) fn typed_at<T: DeserializeOwned>(value: Value, location: &Location, prefix: &str) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        if !prefix.is_empty() {
            path = if path.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{path}")
            };
        }
        let mut msg = e.inner().to_string();
        // Nested provider errors carry their sub-path as `@@sub.path@@message`.
        if let Some(rest) = msg.strip_prefix("@@")
            && let Some((sub, m)) = rest.split_once("@@")
        {
            path = if path.is_empty() {
                sub.to_string()
            } else {
                format!("{path}.{sub}")
            };
            msg = m.to_string();
        }
        // serde names the unknown field in the message but not in the path.
        if let Some(rest) = msg.strip_prefix("unknown field `")
            && let Some((field, _)) = rest.split_once('`')
            && !path.ends_with(field)
        {
            path = if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
        }
        if let Some(rest) = msg.strip_prefix("missing field `")
            && let Some((field, _)) = rest.split_once('`')
        {
            path = if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
        }
        let msg = redact_quoted(&msg);
        let msg = match msg.strip_prefix(model::NOT_SUPPORTED_PREFIX) {
            Some(rest) => {
                // "not supported yet: <field path>" names the full path.
                let what = rest.split_once(':').map(|(_, w)| w.trim()).unwrap_or(rest);
                return Error::manifest(
                    location.field(path.clone()),
                    format!("{}{path} ({what})", model::NOT_SUPPORTED_PREFIX),
                );
            }
            None => msg,
        };
        let loc = if path.is_empty() {
            location.clone()
        } else {
            location.field(path)
        };
        Error::manifest(loc, msg)
    })
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StaticDoc {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
    #[serde(default)]
    binary_data: BTreeMap<String, String>,
    #[serde(default)]
    immutable: bool,
}

fn load_static(value: Value, kind: &str, location: &Location) -> Result<StaticTarget, Error> {
    use base64::Engine as _;
    let doc: StaticDoc = typed(value, location)?;
    require_name(&doc.metadata, location)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut data = SecretMap::new();
    let is_secret = kind == "Secret";
    for (k, v) in &doc.data {
        let value = if is_secret {
            SecretValue::new(
                b64.decode(v.trim())
                    .map_err(|_| Error::manifest(location.field(format!("data.{k}")), "not valid base64"))?,
            )
        } else {
            SecretValue::from(v.as_str())
        };
        data.insert(k.clone(), value);
    }
    for (k, v) in &doc.binary_data {
        let value = SecretValue::new(
            b64.decode(v.trim())
                .map_err(|_| Error::manifest(location.field(format!("binaryData.{k}")), "not valid base64"))?,
        );
        data.insert(k.clone(), value);
    }
    for (k, v) in &doc.string_data {
        data.insert(k.clone(), SecretValue::from(v.as_str()));
    }
    let kind = if is_secret {
        TargetKind::Secret
    } else {
        TargetKind::ConfigMap
    };
    let namespace = doc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    Ok(StaticTarget {
        target: TargetRef {
            kind,
            namespace,
            name: doc.metadata.name.clone(),
        },
        metadata: doc.metadata,
        secret_type: doc.type_,
        data,
        immutable: doc.immutable,
        origin: location.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const CES: &str = "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: db}\nspec:\n  namespaces: [listed]\n  namespaceSelector: {matchLabels: {legacy: 'yes'}}\n  namespaceSelectors:\n    - matchLabels: {team: payments}\n      matchExpressions:\n        - {key: env, operator: NotIn, values: [dev]}\n    - matchExpressions:\n        - {key: shared, operator: Exists}\n        - {key: private, operator: DoesNotExist}\n  externalSecretSpec:\n    secretStoreRef: {name: s, kind: ClusterSecretStore}\n    data:\n      - {secretKey: A, remoteRef: {key: a}}\n";

    fn parse(text: &str) -> Result<ClusterExternalSecret, Error> {
        let value: Value = serde_norway::from_str(text).unwrap();
        ClusterExternalSecret::parse(value, &Location::default())
    }

    #[test]
    fn namespaces_are_the_listed_ones_or_any_selector_match() {
        let ces = parse(CES).unwrap();
        assert_eq!(ces.selectors().len(), 3);
        assert_eq!(ces.refresh_time(), Ok(Some(DEFAULT_CES_REFRESH_TIME)));
        assert!(ces.selects("listed", &labels(&[])));
        assert!(ces.selects("x", &labels(&[("legacy", "yes")])));
        assert!(
            ces.selects("x", &labels(&[("team", "payments")])),
            "NotIn holds when unset"
        );
        assert!(ces.selects("x", &labels(&[("team", "payments"), ("env", "prod")])));
        assert!(!ces.selects("x", &labels(&[("team", "payments"), ("env", "dev")])));
        assert!(ces.selects("x", &labels(&[("shared", "")])));
        assert!(!ces.selects("x", &labels(&[("shared", "1"), ("private", "1")])));
        assert!(!ces.selects("x", &labels(&[("team", "other")])));
        assert!(
            LabelSelector::default().matches(&labels(&[])),
            "an empty selector matches all"
        );
        let in_ = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: LabelSelectorOperator::In,
                values: vec!["prod".into(), "staging".into()],
            }],
            ..LabelSelector::default()
        };
        assert!(in_.matches(&labels(&[("env", "staging")])));
        assert!(!in_.matches(&labels(&[])));
        assert!(ces.check_spec().is_empty(), "{:?}", ces.check_spec());
    }

    #[test]
    fn expanded_external_secrets_name_the_cluster_external_secret_fields() {
        let ces = parse(CES).unwrap();
        let es = ces.external_secret("listed", 0);
        assert_eq!(es.id().to_string(), "listed/db");
        assert_eq!(
            es.field_path("spec.data[0].sourceRef"),
            "spec.externalSecretSpec.data[0].sourceRef"
        );
        assert_eq!(es.field_path("spec"), "spec.externalSecretSpec");
        assert_eq!(es.field_path("metadata.name"), "metadata.name");
        assert_eq!(es.field_path("metadata.namespace"), "spec.namespaces[0]");
        assert_eq!(
            es.field_path("metadata.annotations.force-sync"),
            "spec.externalSecretMetadata.annotations.force-sync"
        );
        let named = parse(&CES.replace(
            "  namespaces: [listed]",
            "  externalSecretName: creds\n  namespaces: [listed]",
        ))
        .unwrap();
        let es = named.external_secret("other", 3);
        assert_eq!(es.id().to_string(), "other/creds");
        assert_eq!(es.field_path("metadata.name"), "spec.externalSecretName");
        assert_eq!(es.field_path("metadata.namespace"), "spec.namespaces[3]");
        // A plain ExternalSecret's paths are its own.
        let plain = ExternalSecret {
            expanded_from: None,
            ..es
        };
        assert_eq!(plain.field_path("spec.data"), "spec.data");
    }

    #[test]
    fn a_problem_shared_by_every_namespace_is_reported_once() {
        let text = "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: s}\nspec: {provider: {fake: {data: []}}}\n---\napiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: db}\nspec:\n  namespaces: [a, b, c]\n  externalSecretSpec:\n    secretStoreRef: {name: s, kind: ClusterSecretStore}\n    refreshInterval: often\n    data:\n      - {secretKey: A, remoteRef: {key: a}, sourceRef: {storeRef: {name: s}}}\n";
        let loaded = load_str(text, "ces.yaml");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.manifests.external_secrets.len(), 3);
        let (errors, _) = validate(&loaded.manifests, ValidateOptions::default());
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "ces.yaml: document 2 (ClusterExternalSecret db): spec.externalSecretSpec.refreshInterval: invalid duration `often`: expected a number",
                "ces.yaml: document 2 (ClusterExternalSecret db): spec.externalSecretSpec.data[0].sourceRef.storeRef: not supported yet: spec.externalSecretSpec.data[0].sourceRef.storeRef (one store per ExternalSecret)",
            ]
        );
        // The operator's check of the same spec, before any namespace is known.
        let ces = &loaded.manifests.cluster_external_secrets[0];
        let checked: Vec<String> = ces.check_spec().iter().map(ToString::to_string).collect();
        assert_eq!(checked, errors);
    }

    #[test]
    fn refresh_time_zero_means_no_periodic_re_evaluation() {
        let ces = parse(&CES.replace("  namespaces: [listed]", "  refreshTime: 0s\n  namespaces: [listed]")).unwrap();
        assert_eq!(ces.refresh_time(), Ok(None));
        let ces =
            parse(&CES.replace("  namespaces: [listed]", "  refreshTime: 1h30m\n  namespaces: [listed]")).unwrap();
        assert_eq!(ces.refresh_time(), Ok(Some(Duration::from_secs(5400))));
    }
}
