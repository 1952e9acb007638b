//! Loading: files and folders, multi-document YAML or JSON text, or one `serde_json::Value`,
//! into [`Manifests`], every problem collected with its file, document and field path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;
use crate::error::{Error, Location, redact_quoted};
use crate::sink::{TargetKind, TargetRef};
use crate::value::{SecretMap, SecretValue};

/// Loads files and folders (every `*.yaml` / `*.yml` / `*.json` under a folder, recursively,
/// dot-folders skipped, sorted); documents of other kinds are noted in [`Loaded::notes`].
///
/// The same as [`load_file`] for each of [`manifest_files`], merged by [`merge_files`].
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Loaded {
    let mut loaded = Loaded::default();
    let mut parts = vec![];
    for p in paths {
        let files = match manifest_files(p.as_ref()) {
            Ok(f) => f,
            Err(e) => {
                loaded.errors.push(e);
                continue;
            }
        };
        for f in files {
            let l = load_file(&f);
            parts.push(l.manifests);
            loaded.errors.extend(l.errors);
            loaded.warnings.extend(l.warnings);
            loaded.notes.extend(l.notes);
        }
    }
    loaded.manifests = merge_files(parts);
    loaded
}

/// The manifest files of a path: the file itself, or every `*.yaml` / `*.yml` / `*.json`
/// under a folder, recursively, skipping dot-folders and symbolic links to folders; sorted.
/// Lists names only: no file is read.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    walk::list_files(path)
}

/// Loads one file alone, so a caller that keeps each file's result (a daemon watching its
/// manifests) re-parses only the file that changed. References between documents of this
/// file (`templateFrom`, `generatorRef`) are resolved; references to other files are
/// resolved when the files are merged with [`merge_files`].
pub fn load_file(path: &Path) -> Loaded {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, path),
        Err(e) => Loaded {
            errors: vec![Error::io(path, e)],
            ..Loaded::default()
        },
    }
}

/// Merges files loaded one by one ([`load_file`]), in the order given, and resolves the
/// references between them: the manifests [`load_paths`] gives for the same files.
pub fn merge_files<I>(parts: I) -> Manifests
where
    I: IntoIterator,
    I::Item: Into<Manifests>,
{
    let mut merged = Manifests::default();
    for p in parts {
        merged.extend(p.into());
    }
    resolve_template_from(&mut merged);
    resolve_generators(&mut merged);
    merged
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
