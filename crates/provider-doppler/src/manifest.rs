//! ESO's `spec.provider.doppler`, as manifests write it: this crate owns the schema.

use secretsync_core::manifest::SecretKeySelector;
use serde::{Deserialize, Serialize};

/// ESO `spec.provider.doppler`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DopplerProvider {
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<DopplerAuth>,
    /// Project (implied by a service token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Config (implied by a service token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Name transformer: upper-camel, camel, lower-snake, tf-var, dotnet-env, lower-kebab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_transformer: Option<String>,
    /// Download format: json (default), dotnet-json, env, yaml, docker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// secretsync addition: API base URL; `DOPPLER_API_HOST` also works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// ESO `spec.provider.doppler.auth`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DopplerAuth {
    /// Token from a Secret.
    pub secret_ref: DopplerSecretRef,
}

/// ESO `doppler.auth.secretRef`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DopplerSecretRef {
    /// The Doppler token.
    pub doppler_token: SecretKeySelector,
}
