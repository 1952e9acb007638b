//! The operator's fingerprint key, shared by every replica through one Secret.
//!
//! Fingerprints in target annotations must not change between restarts or differ between
//! replicas, or every takeover would rewrite every annotation. Like VSO's HMAC key Secret,
//! the first replica creates a Secret with a random key in its namespace (create-if-absent:
//! a replica that loses the race reads the winner's), and every replica reads it. A lost or
//! replaced key costs one rewrite of annotations, never a data change: the fingerprint only
//! decides whether a target is written again with the same data.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use secretsync_core::{Error, FingerprintKey, Result};

/// The data key of the key Secret.
pub const KEY_FIELD: &str = "key";

/// Reads the key from `namespace/name`, creating the Secret with a new random key when it
/// does not exist.
pub(crate) async fn read_or_create(client: &kube::Client, namespace: &str, name: &str) -> Result<FingerprintKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let what = format!("fingerprint key Secret {namespace}/{name}");
    // Two tries: a replica that loses the create race reads the winner's Secret.
    for _ in 0..2 {
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| secretsync_k8s::from_kube(e, &format!("reading the {what}")))?;
        if let Some(secret) = found {
            return key_of(&secret, &what);
        }
        let text = FingerprintKey::generate_text();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/part-of".to_string(),
                    "secretsync".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_string()),
            data: Some(BTreeMap::from([(
                KEY_FIELD.to_string(),
                ByteString(text.as_bytes().to_vec()),
            )])),
            immutable: Some(true),
            ..Secret::default()
        };
        let params = PostParams {
            field_manager: Some(secretsync_k8s::FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match api.create(&params, &secret).await {
            Ok(created) => {
                tracing::info!(secret = %format!("{namespace}/{name}"), "created the fingerprint key Secret");
                return key_of(&created, &what);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(secretsync_k8s::from_kube(e, &format!("creating the {what}"))),
        }
    }
    Err(Error::invalid(format!(
        "{what}: created by another replica but not readable"
    )))
}

fn key_of(secret: &Secret, what: &str) -> Result<FingerprintKey> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_FIELD))
        .ok_or_else(|| Error::invalid(format!("{what}: no data key `{KEY_FIELD}`")))?;
    let text =
        std::str::from_utf8(&bytes.0).map_err(|_| Error::invalid(format!("{what}: key `{KEY_FIELD}` is not text")))?;
    FingerprintKey::from_text(text).map_err(|e| e.context(format!("{what}, key `{KEY_FIELD}`")))
}

/// [`read_or_create`] with a few retries (the API server may still be starting); after
/// that a random key with an error logged, so the operator still runs (fingerprints then
/// change at each restart: one annotation rewrite per target, no data change).
pub(crate) async fn resolve(client: &kube::Client, namespace: &str, name: &str) -> FingerprintKey {
    let mut wait = Duration::from_millis(500);
    for attempt in 1..=4 {
        match read_or_create(client, namespace, name).await {
            Ok(k) => return k,
            Err(e) if attempt < 4 => {
                tracing::warn!(error = %e, attempt, "fingerprint key Secret not ready; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => {
                tracing::error!(error = %e, "no fingerprint key Secret: using a random key for this process");
            }
        }
    }
    FingerprintKey::random()
}
