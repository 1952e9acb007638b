//! ESO's `spec.provider.gcpsm`, as manifests write it: this crate owns the schema.

use secretsync_core::manifest::{SecretKeySelector, ServiceAccountSelector};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// ESO `spec.provider.gcpsm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpProvider {
    /// Project id.
    #[serde(default, rename = "projectID", skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Location, for regional secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<GcpAuth>,
    /// `LatestOrFail` (default) or `LatestOrFetch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_version_selection_policy: Option<String>,
    /// secretsync addition: endpoint URL; `SECRETMANAGER_EMULATOR_HOST` also works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// ESO `spec.provider.gcpsm.auth`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpAuth {
    /// A service-account key JSON in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<GcpSecretRef>,
    /// GKE workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<GcpWorkloadIdentity>,
    /// Workload identity federation (not supported yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity_federation: Option<Value>,
}

/// ESO `gcpsm.auth.secretRef`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpSecretRef {
    /// The service-account key JSON.
    pub secret_access_key_secret_ref: SecretKeySelector,
}

/// ESO `gcpsm.auth.workloadIdentity`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpWorkloadIdentity {
    /// Cluster location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_location: Option<String>,
    /// Cluster name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Cluster project.
    #[serde(default, rename = "clusterProjectID", skip_serializing_if = "Option::is_none")]
    pub cluster_project_id: Option<String>,
    /// The service account.
    pub service_account_ref: ServiceAccountSelector,
}
