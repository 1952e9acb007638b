//! ESO manifests: load multi-document YAML files of SecretStore, ClusterSecretStore and
//! ExternalSecret (`external-secrets.io/v1` and `v1beta1`), plus plain `v1` ConfigMaps and
//! Secrets that are synced as they are.
//!
//! Loading collects every problem it finds, each naming the file, the document and the
//! field path; it never stops at the first.

pub mod model;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use model::*;
pub use validate::{ValidateOptions, is_valid_object_name, validate};

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
    /// Where it was read from.
    pub origin: Location,
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

/// Everything loaded from a set of files.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// Stores.
    pub stores: Vec<Store>,
    /// ExternalSecrets.
    pub external_secrets: Vec<ExternalSecret>,
    /// Plain ConfigMaps and Secrets.
    pub static_targets: Vec<StaticTarget>,
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

/// Loads files and folders (every `*.yaml` / `*.yml` / `*.json` in a folder, sorted, not
/// recursive).
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
                }
                Err(e) => loaded.errors.push(Error::io(&f, e)),
            }
        }
    }
    loaded
}

fn list_files(p: &Path) -> Result<Vec<PathBuf>, Error> {
    let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
    if !meta.is_dir() {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut files = vec![];
    for entry in std::fs::read_dir(p).map_err(|e| Error::io(p, e))? {
        let path = entry.map_err(|e| Error::io(p, e))?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if path.is_file() && matches!(ext, "yaml" | "yml" | "json") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads the documents of one file's text; `file` names it in errors.
pub fn load_str(text: &str, file: impl AsRef<Path>) -> Loaded {
    let file = file.as_ref();
    let mut loaded = Loaded::default();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
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
        if let Err(e) = load_document(value, location, &mut loaded.manifests) {
            loaded.errors.push(e);
        }
    }
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
                });
            }
            "ClusterExternalSecret" | "PushSecret" | "ClusterPushSecret" => {
                return Err(Error::manifest(
                    location.field("kind"),
                    format!("{}kind {kind}", model::NOT_SUPPORTED_PREFIX),
                ));
            }
            _ => {
                return Err(Error::manifest(
                    location.field("kind"),
                    format!(
                        "unknown kind `{kind}` in {API_GROUP} (expected SecretStore, ClusterSecretStore or ExternalSecret)"
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
            "unknown kind `{kind}` (apiVersion `{api_version}`): secretsync reads {API_GROUP} SecretStore, ClusterSecretStore and ExternalSecret, and v1 ConfigMap and Secret"
        ),
    ))
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
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
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
