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

/// Builds a client from the environment: `KUBECONFIG` / `~/.kube/config`, else the
/// in-cluster service account.
pub async fn infer_client() -> secretsync_core::Result<kube::Client> {
    install_crypto_provider();
    let config = kube::Config::infer()
        .await
        .map_err(|e| secretsync_core::Error::Unauthenticated {
            what: format!(
                "no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster): {}",
                secretsync_core::error::redact_quoted(&e.to_string())
            ),
        })?;
    kube::Client::try_from(config).map_err(|e| error::from_kube(e, "building the Kubernetes client"))
}
