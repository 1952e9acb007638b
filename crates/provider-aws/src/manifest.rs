//! ESO's `spec.provider.aws`, as manifests write it: this crate owns the schema.

use secretsync_core::manifest::{SecretKeySelector, ServiceAccountSelector};
use serde::{Deserialize, Serialize};

/// ESO `spec.provider.aws`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsProvider {
    /// `SecretsManager` (ParameterStore is not supported yet).
    #[serde(default = "default_aws_service")]
    pub service: String,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Role ARN to assume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Roles assumed in a chain before `role`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_roles: Vec<String>,
    /// External ID for AssumeRole.
    #[serde(default, rename = "externalID", skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Session tags for AssumeRole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_tags: Vec<AwsTag>,
    /// Transitive tag keys for AssumeRole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitive_tag_keys: Vec<String>,
    /// Prefix added to every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AwsAuth>,
    /// Secrets Manager options for writes and deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_manager: Option<AwsSecretsManagerOptions>,
    /// secretsync addition: endpoint URL (an emulator); `AWS_ENDPOINT_URL` also works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

fn default_aws_service() -> String {
    "SecretsManager".into()
}

/// An AWS tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsTag {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// ESO `spec.provider.aws.auth`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsAuth {
    /// Static keys from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<AwsSecretRef>,
    /// IRSA: a service account's web identity token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<AwsJwtAuth>,
}

/// ESO `auth.secretRef` of AWS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSecretRef {
    /// Access key id.
    #[serde(rename = "accessKeyIDSecretRef")]
    pub access_key_id: SecretKeySelector,
    /// Secret access key.
    #[serde(rename = "secretAccessKeySecretRef")]
    pub secret_access_key: SecretKeySelector,
    /// Session token.
    #[serde(rename = "sessionTokenSecretRef", default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretKeySelector>,
}

/// ESO `auth.jwt` of AWS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsJwtAuth {
    /// The service account.
    pub service_account_ref: ServiceAccountSelector,
}

/// ESO `spec.provider.aws.secretsManager`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsSecretsManagerOptions {
    /// Delete without a recovery window.
    #[serde(default)]
    pub force_delete_without_recovery: bool,
    /// Recovery window in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_window_in_days: Option<i64>,
}
