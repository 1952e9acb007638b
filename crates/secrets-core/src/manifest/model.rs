//! Serde model of ESO's kinds (`external-secrets.io/v1` and `v1beta1`).
//!
//! Unknown fields are errors. Fields ESO has that we do not support yet are modelled (so
//! they parse) and then refused by validation with "not supported yet: <field path>".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sink::{CreationPolicy, DeletionPolicy};

/// Kubernetes object metadata: the fields we read, plus the ones a `kubectl get -o yaml`
/// export carries (accepted and ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace (`default` when absent, for namespaced kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Uid, when exported from a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Ignored server-set fields.
    #[serde(default, skip_serializing)]
    pub resource_version: Option<Value>,
    #[serde(default, skip_serializing)]
    #[allow(missing_docs)]
    pub generation: Option<Value>,
    #[serde(default, skip_serializing)]
    #[allow(missing_docs)]
    pub creation_timestamp: Option<Value>,
    #[serde(default, skip_serializing)]
    #[allow(missing_docs)]
    pub deletion_timestamp: Option<Value>,
    #[serde(default, skip_serializing)]
    #[allow(missing_docs)]
    pub deletion_grace_period_seconds: Option<Value>,
    #[serde(default, skip_serializing)]
    #[allow(missing_docs)]
    pub managed_fields: Option<Value>,
    #[serde(default, skip_serializing)]
    #[allow(missing_docs)]
    pub finalizers: Option<Value>,
    #[serde(default, skip_serializing)]
    #[allow(missing_docs)]
    pub owner_references: Option<Value>,
    #[serde(default, skip_serializing)]
    #[allow(missing_docs)]
    pub self_link: Option<Value>,
    #[serde(default, skip_serializing)]
    #[allow(missing_docs)]
    pub generate_name: Option<Value>,
}

/// A reference to a key of a Kubernetes Secret (credentials of a store).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Secret name.
    pub name: String,
    /// Key in the Secret.
    #[serde(default)]
    pub key: String,
    /// Namespace (ClusterSecretStores must say; SecretStores use their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to a Kubernetes ServiceAccount (IRSA, workload identity).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountSelector {
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Token audiences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
}

// ---------------------------------------------------------------- stores

/// `spec` of a SecretStore / ClusterSecretStore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreSpec {
    /// Which controller handles this store (ESO's `controller` class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The provider settings; exactly one provider.
    pub provider: ProviderSpec,
    /// Retries of provider calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_settings: Option<RetrySettings>,
    /// ESO's store validation interval (seconds); accepted, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<i64>,
    /// ClusterSecretStore: which namespaces may use it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ClusterStoreCondition>,
}

/// ESO `retrySettings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrySettings {
    /// Maximum retries of one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Go duration between retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<String>,
}

/// ClusterSecretStore `conditions[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterStoreCondition {
    /// Label selector of namespaces (needs a cluster: not supported yet offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<Value>,
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces by regular expression.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_regexes: Vec<String>,
}

/// `spec.provider`: exactly one provider, by name, with its settings kept raw.
///
/// Core knows no provider's schema: the provider registered under [`name`](Self::name)
/// parses [`config`](Self::config) into its own type (`Store::provider_config`), validates
/// it and builds the source (see `crate::registry`). Debug prints the name and the top-level
/// field names only, because some providers (ESO's `fake`) hold values inline.
#[derive(Clone, PartialEq)]
pub struct ProviderSpec {
    name: String,
    config: Value,
}

impl ProviderSpec {
    /// A provider's settings: `spec.provider.<name>: <config>`.
    pub fn new(name: impl Into<String>, config: Value) -> Self {
        Self {
            name: name.into(),
            config,
        }
    }
    /// The provider's key in `spec.provider` (`aws`, `gcpsm`, `fake`, a user's own...).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The provider's settings as written (the value of `spec.provider.<name>`).
    pub fn config(&self) -> &Value {
        &self.config
    }
    /// The settings, to edit them (tests and tools that point a store at an emulator).
    pub fn config_mut(&mut self) -> &mut Value {
        &mut self.config
    }
}

impl std::fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields: Vec<&str> = match &self.config {
            Value::Object(m) => m.keys().map(String::as_str).collect(),
            _ => vec![],
        };
        f.debug_struct("ProviderSpec")
            .field("name", &self.name)
            .field("fields", &fields)
            .finish_non_exhaustive()
    }
}

impl Serialize for ProviderSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(&self.name, &self.config)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for ProviderSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let map = BTreeMap::<String, Value>::deserialize(d)?;
        let mut it = map.into_iter();
        let (name, config) = it.next().ok_or_else(|| D::Error::custom("no provider given"))?;
        if let Some((other, _)) = it.next() {
            return Err(D::Error::custom(format!(
                "more than one provider: `{name}` and `{other}`"
            )));
        }
        Ok(ProviderSpec { name, config })
    }
}

/// The providers ESO knows (its `spec.provider` keys). One of these that no registered
/// factory handles is "not supported yet"; any other unregistered name is unknown.
pub const ESO_PROVIDERS: &[&str] = &[
    "akeyless",
    "alibaba",
    "aws",
    "azurekv",
    "barbican",
    "beyondtrust",
    "bitwardensecretsmanager",
    "chef",
    "cloudrusm",
    "conjur",
    "delinea",
    "device42",
    "doppler",
    "fake",
    "fortanix",
    "gcpsm",
    "github",
    "gitlab",
    "ibm",
    "infisical",
    "keepersecurity",
    "kubernetes",
    "ngrok",
    "onboardbase",
    "onepassword",
    "onepasswordSDK",
    "oracle",
    "passbolt",
    "passworddepot",
    "previder",
    "pulumi",
    "scaleway",
    "secretserver",
    "senhasegura",
    "vault",
    "volcengine",
    "webhook",
    "yandexcertificatemanager",
    "yandexlockbox",
];

/// Prefix of errors for fields we model but do not support yet.
pub const NOT_SUPPORTED_PREFIX: &str = "not supported yet: ";

// ---------------------------------------------------------------- external secrets

/// `spec` of an ExternalSecret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalSecretSpec {
    /// The store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store_ref: Option<SecretStoreRef>,
    /// The target.
    #[serde(default)]
    pub target: Target,
    /// Go duration; `0` disables periodic refresh; default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
    /// `Periodic` (default), `CreatedOnce`, `OnChange`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_policy: Option<RefreshPolicy>,
    /// Single keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<ExternalSecretData>,
    /// Whole secrets and searches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_from: Vec<DataFrom>,
}

/// ESO `refreshPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RefreshPolicy {
    /// Every `refreshInterval`.
    #[default]
    Periodic,
    /// Once, when the target does not exist yet.
    CreatedOnce,
    /// When the spec changes (or on force-sync).
    OnChange,
}

/// ESO `secretStoreRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretStoreRef {
    /// Store name.
    pub name: String,
    /// `SecretStore` (default) or `ClusterSecretStore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// ESO `target`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// Target name (default: the ExternalSecret's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Creation policy.
    #[serde(default)]
    pub creation_policy: CreationPolicy,
    /// Deletion policy.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    /// Create the target immutable.
    #[serde(default)]
    pub immutable: bool,
    /// ESO generic targets: `{apiVersion: v1, kind: ConfigMap}` writes a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<TargetManifest>,
}

/// ESO `target.manifest` (generic targets).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetManifest {
    /// `v1`.
    pub api_version: String,
    /// `ConfigMap` (other kinds are not supported yet).
    pub kind: String,
}

/// ESO `target.template`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    /// Secret type.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// `v2` (default; `v1` is not supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// `Replace` (default): only templated keys; `Merge`: fetched keys plus templated ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_policy: Option<String>,
    /// Labels and annotations of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// Keys rendered from Go templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Templates from ConfigMaps, Secrets and literals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_from: Vec<TemplateFrom>,
}

/// ESO `template.templateFrom[]`: templates kept in a ConfigMap or Secret, or a literal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateFrom {
    /// Templates in a ConfigMap of the ExternalSecret's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<TemplateRef>,
    /// Templates in a Secret of the ExternalSecret's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TemplateRef>,
    /// Where the rendered text goes: `Data` (default), `Annotations` or `Labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A template rendered as `KeysAndValues` (YAML `key: value` lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<String>,
}

/// ESO `templateFrom[].configMap` / `.secret`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRef {
    /// The object's name.
    pub name: String,
    /// Which of its keys hold templates.
    #[serde(default)]
    pub items: Vec<TemplateRefItem>,
    /// The object's data once found (in the manifests, or in a cluster by the operator):
    /// not part of the manifest.
    #[serde(skip)]
    pub resolved: Option<crate::value::SecretMap>,
}

/// ESO `templateFrom[].configMap.items[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRefItem {
    /// The key holding a template.
    pub key: String,
    /// `Values` (default: the template renders the value of `key`) or `KeysAndValues` (it
    /// renders YAML `key: value` lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_as: Option<String>,
}

/// ESO `template.metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateMetadata {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Finalizers (not supported yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// ESO `data[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalSecretData {
    /// Key in the target.
    pub secret_key: String,
    /// What to read.
    pub remote_ref: RemoteRef,
    /// Per-entry generator (`sourceRef.generatorRef`); `storeRef` is not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<SourceRef>,
}

/// ESO `sourceRef` of `data[]` and `dataFrom[]`: another store, or a generator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceRef {
    /// Another store for this entry (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<Value>,
    /// A `generators.external-secrets.io/v1alpha1` generator (`Password`, `UUID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_ref: Option<GeneratorRef>,
    /// The generator document once found among the manifests (the loader fills it, see
    /// [`resolve_generators`](super::resolve_generators)): not part of the manifest.
    #[serde(skip)]
    pub generator: Option<crate::generators::ResolvedGenerator>,
}

impl SourceRef {
    /// The generator this entry uses, when it names one.
    pub fn generator_ref(&self) -> Option<&GeneratorRef> {
        self.generator_ref.as_ref()
    }
}

/// ESO `remoteRef`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteRef {
    /// Remote key.
    pub key: String,
    /// gjson path into a JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// Version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `None` (default) or `Fetch` (read tags/labels instead of the value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_policy: Option<String>,
    /// `Default`; `Unicode` is not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_strategy: Option<String>,
    /// `None` (default), `Base64`, `Base64URL`, `Auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding_strategy: Option<DecodingStrategy>,
    /// `Ignore` (default) or `Fail` on NUL bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_byte_policy: Option<String>,
}

/// ESO `decodingStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DecodingStrategy {
    /// As is.
    #[default]
    None,
    /// Standard base64.
    Base64,
    /// URL-safe base64.
    #[serde(rename = "Base64URL")]
    Base64Url,
    /// Base64 or base64url if it decodes, else as is.
    Auto,
}

/// ESO `dataFrom[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataFrom {
    /// Every top-level key of a JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<RemoteRef>,
    /// Every secret matching a search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find: Option<Find>,
    /// Key rewrites, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrite: Vec<Rewrite>,
    /// A generator for this entry (`sourceRef.generatorRef`, without extract or find);
    /// `storeRef` is not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<SourceRef>,
}

/// ESO `dataFrom[].find`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Find {
    /// Name prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Name regexp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<FindName>,
    /// Tags / labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `Default`; `Unicode` is not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_strategy: Option<String>,
    /// Decoding of every found value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding_strategy: Option<DecodingStrategy>,
}

/// ESO `find.name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FindName {
    /// The regular expression.
    pub regexp: String,
}

/// ESO `rewrite[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rewrite {
    /// Regexp replace on keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<RewriteRegexp>,
    /// Template transform on keys (`{{ .value }}` is the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<RewriteTransform>,
    /// Merge rewrites (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<Value>,
}

/// ESO `rewrite[].regexp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RewriteRegexp {
    /// Pattern.
    pub source: String,
    /// Replacement (`$1` groups).
    pub target: String,
}

/// ESO `rewrite[].transform`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RewriteTransform {
    /// Go template over `.value`.
    pub template: String,
}

// ---------------------------------------------------------------- cluster external secrets

/// `spec` of a ClusterExternalSecret: one ExternalSecret per selected namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterExternalSecretSpec {
    /// The spec of every ExternalSecret created.
    pub external_secret_spec: ExternalSecretSpec,
    /// Name of the ExternalSecrets (default: the ClusterExternalSecret's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_secret_name: Option<String>,
    /// Labels and annotations of the ExternalSecrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_secret_metadata: Option<ExternalSecretMetadata>,
    /// Deprecated single selector of namespaces (ORed with the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Selectors of namespaces, ORed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Namespaces by name (ORed with the selectors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Go duration between re-evaluations of the namespaces (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<String>,
}

/// ESO `externalSecretMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalSecretMetadata {
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A Kubernetes label selector (`metav1.LabelSelector`): every `matchLabels` pair and every
/// expression must hold; an empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must have these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// How the key relates to the values.
    pub operator: LabelSelectorOperator,
    /// Values: non-empty for `In` and `NotIn`, empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelSelectorOperator {
    /// The label is set to one of the values.
    #[default]
    In,
    /// The label is unset or set to none of the values.
    NotIn,
    /// The label is set.
    Exists,
    /// The label is unset.
    DoesNotExist,
}

impl LabelSelector {
    /// Whether an object with these labels matches (Kubernetes' `LabelSelectorAsSelector`).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let got = labels.get(&e.key);
                match e.operator {
                    LabelSelectorOperator::In => got.is_some_and(|g| e.values.contains(g)),
                    LabelSelectorOperator::NotIn => got.is_none_or(|g| !e.values.contains(g)),
                    LabelSelectorOperator::Exists => got.is_some(),
                    LabelSelectorOperator::DoesNotExist => got.is_none(),
                }
            })
    }

    /// The first requirement Kubernetes would refuse, as (field path under the selector,
    /// problem): `In`/`NotIn` without values, `Exists`/`DoesNotExist` with values, an empty key.
    pub fn problem(&self) -> Option<(String, String)> {
        for (i, e) in self.match_expressions.iter().enumerate() {
            if e.key.is_empty() {
                return Some((format!("matchExpressions[{i}].key"), "empty key".into()));
            }
            let wants_values = matches!(e.operator, LabelSelectorOperator::In | LabelSelectorOperator::NotIn);
            if wants_values && e.values.is_empty() {
                return Some((
                    format!("matchExpressions[{i}].values"),
                    format!("operator {:?} needs at least one value", e.operator),
                ));
            }
            if !wants_values && !e.values.is_empty() {
                return Some((
                    format!("matchExpressions[{i}].values"),
                    format!("operator {:?} takes no values", e.operator),
                ));
            }
        }
        None
    }
}

/// A reference to a generator (`selector.generatorRef`, `sourceRef.generatorRef`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratorRef {
    /// `generators.external-secrets.io/v1alpha1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `Password` or `UUID`.
    pub kind: String,
    /// The generator's name.
    pub name: String,
}
