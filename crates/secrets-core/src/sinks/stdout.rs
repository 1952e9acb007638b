//! Prints each applied target as a manifest on standard output (`---` separated), like
//! `kubectl create secret --dry-run=client -o yaml`. It cannot read back, so every apply
//! prints.

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::render_manifest;
use crate::error::{Error, Result};
use crate::sink::*;

/// Prints manifests to stdout.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdoutSink;

#[async_trait]
impl SecretSink for StdoutSink {
    fn name(&self) -> &str {
        "stdout"
    }
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            config_maps: true,
            metadata: true,
            ..SinkCapabilities::default()
        }
    }
    async fn read(&self, _target: &TargetRef) -> Result<Option<TargetState>> {
        Ok(None)
    }
    async fn apply(&self, desired: &DesiredTarget) -> Result<ApplyOutcome> {
        if desired.creation_policy == CreationPolicy::None {
            return Ok(ApplyOutcome::Unchanged);
        }
        // One document with its separator, written whole under a process-wide lock, so
        // concurrent applies never interleave and the stream pipes into `kubectl apply -f -`.
        static STDOUT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let mut doc = zeroize::Zeroizing::new(String::from("---\n"));
        doc.push_str(&render_manifest(desired));
        let _whole = STDOUT.lock().await;
        let mut out = tokio::io::stdout();
        let io = |e| Error::io("<stdout>", e);
        out.write_all(doc.as_bytes()).await.map_err(io)?;
        out.flush().await.map_err(io)?;
        Ok(ApplyOutcome::Created)
    }
    async fn delete(&self, _target: &TargetRef) -> Result<bool> {
        Ok(false)
    }
}
