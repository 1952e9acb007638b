#![doc = include_str!("../README.md")]

mod cache;
mod credentials;
mod error;
mod external_secrets;
mod restart;
mod sink;
pub mod validate;

pub use cache::{Cached, TargetCache, target_of};
pub use credentials::KubeCredentials;
pub use error::{from_kube, is_not_found};
pub use external_secrets::{ExternalSecretObject, KubeExternalSecrets};
pub use restart::{KubeRestarter, RESTARTED_AT_ANNOTATION};
pub use sink::{KubeSink, LIST_PAGE};

/// The field manager of Owner and Orphan targets. A Merge target is written by
/// `secretsync:<ExternalSecret name>`, so that several specs merging into one Secret, and
/// whoever else writes it, each keep their own keys.
pub const FIELD_MANAGER: &str = "secretsync";

/// Installs rustls' ring crypto provider as the process default unless one is installed.
///
/// kube's TLS uses the process-wide provider; when a binary links both ring and aws-lc-rs
/// (the AWS SDK brings the latter) rustls cannot choose and kube panics on the first
/// client. [`infer_client`] and [`KubeSink::from_config`] call this; call it yourself
/// before `kube::Client::try_from` elsewhere.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Why `kube::Config::infer` found no configuration, in the user's terms: which file is
/// missing, or that one exists and could not be read. Paths are named; the library's own
/// message (which may quote a kubeconfig's contents) is not, beyond its quoted parts
/// redacted.
fn why_no_kubeconfig(kube_message: &str) -> String {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let listed: Vec<std::path::PathBuf> = match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(v) => std::env::split_paths(&v).collect(),
        None => home.iter().map(|h| h.join(".kube").join("config")).collect(),
    };
    let from = if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        "KUBECONFIG names"
    } else {
        "KUBECONFIG is not set and there is no"
    };
    let missing: Vec<String> = listed
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() && missing.len() == listed.len() {
        let in_cluster = if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            "; the in-cluster service account could not be read either"
        } else {
            "; not running in a cluster (KUBERNETES_SERVICE_HOST is not set)"
        };
        let what = if from.starts_with("KUBECONFIG names") {
            format!("{from} {}, which does not exist", missing.join(", "))
        } else {
            format!("{from} {}", missing.join(", "))
        };
        return format!("{what}{in_cluster}");
    }
    format!(
        "the kubeconfig ({}) could not be used: {}",
        listed
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        secretsync_core::error::redact_quoted(kube_message)
    )
}

/// Builds a client from the environment: `KUBECONFIG` / `~/.kube/config`, else the
/// in-cluster service account.
pub async fn infer_client() -> secretsync_core::Result<kube::Client> {
    install_crypto_provider();
    let config = kube::Config::infer().await.map_err(|e| {
        secretsync_core::Error::invalid(format!(
            "no Kubernetes cluster to write to: {} (to write files instead, use --output DIR, --env-file PATH or --stdout)",
            why_no_kubeconfig(&e.to_string())
        ))
    })?;
    kube::Client::try_from(config).map_err(|e| error::from_kube(e, "building the Kubernetes client"))
}
