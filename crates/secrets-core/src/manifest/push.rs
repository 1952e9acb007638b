//! ESO's other direction: `PushSecret` / `ClusterPushSecret` (`external-secrets.io/v1alpha1`)
//! and the generators they and ExternalSecrets use (`generators.external-secrets.io/v1alpha1`
//! `Password` and `UUID`).
//!
//! The whole vocabulary parses; unknown fields are errors and fields we model but do not act
//! on yet are `not supported yet: <path>` (see [`PushSecret::check`]).

pub use crate::generators::{GeneratorKind, PasswordSpec};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::model::GeneratorRef;
use super::model::{LabelSelector, NOT_SUPPORTED_PREFIX, ObjectMeta};
use crate::error::{Error, Location};

/// The API group of ESO's generators.
pub const GENERATORS_API_GROUP: &str = "generators.external-secrets.io";

/// Our annotation (on a generator, a PushSecret or an ExternalSecret) that makes a generator
/// produce a value only when the remote secret or the target key does not exist yet:
/// `secretsync.io/generate: if-absent`. ESO regenerates on every refresh; this bootstraps.
pub const GENERATE_ANNOTATION: &str = "secretsync.io/generate";
/// The value of [`GENERATE_ANNOTATION`] for "only if absent".
pub const GENERATE_IF_ABSENT: &str = "if-absent";

/// `spec` of a PushSecret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretSpec {
    /// The stores to push to.
    #[serde(default)]
    pub secret_store_refs: Vec<PushStoreRef>,
    /// What to push: a Secret or a generator.
    #[serde(default)]
    pub selector: PushSelector,
    /// Which keys go where.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<PushData>,
    /// Bulk pushes (not supported yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_to: Vec<Value>,
    /// `Replace` (default) or `IfNotExists`.
    #[serde(default)]
    pub update_policy: PushUpdatePolicy,
    /// `None` (default) or `Delete`.
    #[serde(default)]
    pub deletion_policy: PushDeletionPolicy,
    /// Go duration; default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
    /// Template applied before pushing (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
}

/// One of `secretStoreRefs`: a store by name, or every store matching labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushStoreRef {
    /// Store name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Stores whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// `SecretStore` (default) or `ClusterSecretStore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `selector`: the source of the values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSelector {
    /// A Secret in the PushSecret's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<PushSecretSelector>,
    /// A generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_ref: Option<GeneratorRef>,
}

/// `selector.secret`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretSelector {
    /// The Secret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Secrets by label (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// One `data[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushData {
    /// Which key goes where.
    #[serde(rename = "match")]
    pub match_: PushMatch,
    /// Provider-specific metadata (`PushSecretMetadata`; not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// `None` (default); `ReverseUnicode` is not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_strategy: Option<String>,
}

/// `data[].match`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushMatch {
    /// The Secret's key; absent: the whole Secret as a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Where it goes.
    pub remote_ref: PushRemoteRef,
}

/// `data[].match.remoteRef`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushRemoteRef {
    /// The remote secret's name.
    pub remote_key: String,
    /// A top-level property of a JSON secret to write into (others are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

/// `updatePolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushUpdatePolicy {
    /// Write when the remote value differs.
    #[default]
    Replace,
    /// Write only when the remote secret does not exist.
    IfNotExists,
}

/// `deletionPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushDeletionPolicy {
    /// Never delete remote secrets.
    #[default]
    None,
    /// Delete remote secrets that were pushed and are no longer (only managed ones).
    Delete,
}

/// A loaded PushSecret (ClusterPushSecrets are expanded into one per namespace).
#[derive(Debug, Clone)]
pub struct PushSecret {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: PushSecretSpec,
    /// Where it was read from.
    pub origin: Location,
    /// Field path prefix of the spec in its document (`spec` or `spec.pushSecretSpec`).
    pub spec_path: String,
}

impl PushSecret {
    /// The namespace (`default` when absent).
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
    /// The location of a field under the spec (`data[0].match`).
    pub fn field(&self, path: &str) -> Location {
        if path.is_empty() {
            self.origin.field(self.spec_path.clone())
        } else {
            self.origin.field(format!("{}.{path}", self.spec_path))
        }
    }
    /// Whether a generator used by this PushSecret runs only when the remote is absent.
    pub fn generate_if_absent(&self) -> bool {
        self.metadata.annotations.get(GENERATE_ANNOTATION).map(String::as_str) == Some(GENERATE_IF_ABSENT)
    }

    /// Every part of the spec we parse but do not act on, and every invalid combination.
    pub fn check(&self) -> Vec<Error> {
        let ns = |path: String, what: &str| {
            Error::manifest(
                self.field(&path),
                format!("{NOT_SUPPORTED_PREFIX}{}.{path} ({what})", self.spec_path),
            )
        };
        let mut errors = Vec::new();
        let s = &self.spec;
        if s.secret_store_refs.is_empty() {
            errors.push(Error::manifest(self.field("secretStoreRefs"), "no stores to push to"));
        }
        for (i, r) in s.secret_store_refs.iter().enumerate() {
            if r.name.is_none() == r.label_selector.is_none() {
                errors.push(Error::manifest(
                    self.field(&format!("secretStoreRefs[{i}]")),
                    "set exactly one of name and labelSelector",
                ));
            }
            if let Some(k) = &r.kind
                && k != "SecretStore"
                && k != "ClusterSecretStore"
            {
                errors.push(Error::manifest(
                    self.field(&format!("secretStoreRefs[{i}].kind")),
                    format!("unknown kind `{k}` (SecretStore, ClusterSecretStore)"),
                ));
            }
        }
        match (&s.selector.secret, &s.selector.generator_ref) {
            (Some(_), Some(_)) | (None, None) => errors.push(Error::manifest(
                self.field("selector"),
                "set exactly one of secret and generatorRef",
            )),
            (Some(sel), None) => {
                if sel.selector.is_some() {
                    errors.push(ns(
                        "selector.secret.selector".into(),
                        "out of a cluster, name the Secret",
                    ));
                } else if sel.name.as_deref().unwrap_or("").is_empty() {
                    errors.push(Error::manifest(self.field("selector.secret.name"), "missing name"));
                }
            }
            (None, Some(g)) => {
                if let Err(m) = check_generator_ref(g) {
                    errors.push(Error::manifest(self.field("selector.generatorRef"), m));
                }
            }
        }
        if !s.data_to.is_empty() {
            errors.push(ns("dataTo".into(), "list the keys in data"));
        }
        if s.template.is_some() {
            errors.push(ns(
                "template".into(),
                "push the target of an ExternalSecret with a template instead",
            ));
        }
        if s.data.is_empty() && s.data_to.is_empty() {
            errors.push(Error::manifest(self.field("data"), "nothing to push"));
        }
        for (i, d) in s.data.iter().enumerate() {
            if d.metadata.is_some() {
                errors.push(ns(format!("data[{i}].metadata"), "provider metadata"));
            }
            if let Some(c) = &d.conversion_strategy
                && c != "None"
            {
                errors.push(ns(format!("data[{i}].conversionStrategy"), "only None"));
            }
            if d.match_.remote_ref.remote_key.is_empty() {
                errors.push(Error::manifest(
                    self.field(&format!("data[{i}].match.remoteRef.remoteKey")),
                    "empty remoteKey",
                ));
            }
        }
        if let Some(r) = &s.refresh_interval
            && let Err(e) = crate::duration::parse_go_duration(r)
        {
            errors.push(Error::manifest(self.field("refreshInterval"), e));
        }
        errors
    }
}

fn check_generator_ref(g: &GeneratorRef) -> Result<(), String> {
    if let Some(v) = &g.api_version
        && v != &format!("{GENERATORS_API_GROUP}/v1alpha1")
    {
        return Err(format!("apiVersion `{v}`: expected {GENERATORS_API_GROUP}/v1alpha1"));
    }
    match g.kind.as_str() {
        "Password" | "UUID" => Ok(()),
        other => Err(format!("{NOT_SUPPORTED_PREFIX}generator kind {other} (Password, UUID)")),
    }
}

/// `spec` of a ClusterPushSecret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterPushSecretSpec {
    /// The PushSecret to make in each namespace.
    pub push_secret_spec: PushSecretSpec,
    /// Namespaces by label (need a cluster).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Name of the PushSecrets made (default: the ClusterPushSecret's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_name: Option<String>,
    /// Labels and annotations of the PushSecrets made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_metadata: Option<PushSecretMetadata>,
    /// How often namespaces are re-evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<String>,
}

/// `pushSecretMetadata` of a ClusterPushSecret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretMetadata {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A loaded generator.
#[derive(Debug, Clone)]
pub struct GeneratorDoc {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Which generator.
    pub kind: GeneratorKind,
    /// Where it was read from.
    pub origin: Location,
}

impl GeneratorDoc {
    /// The generator's kind name (`Password`, `UUID`).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            GeneratorKind::Password(_) => "Password",
            GeneratorKind::Uuid => "UUID",
        }
    }
    /// The key its value is produced under (`password`, `uuid`), as ESO.
    pub fn output_key(&self) -> &'static str {
        match self.kind {
            GeneratorKind::Password(_) => "password",
            GeneratorKind::Uuid => "uuid",
        }
    }
    /// Whether it is annotated `secretsync.io/generate: if-absent`.
    pub fn if_absent(&self) -> bool {
        self.metadata.annotations.get(GENERATE_ANNOTATION).map(String::as_str) == Some(GENERATE_IF_ABSENT)
    }
    /// Whether it is the one `r` names.
    pub fn is(&self, r: &GeneratorRef) -> bool {
        self.kind_name() == r.kind && self.metadata.name == r.name
    }
}
