//! A folder of Kubernetes manifests: one YAML file per target, mode 0600, written
//! atomically. Secrets go to `<dir>/<namespace>/<name>.yaml`, ConfigMaps to
//! `<dir>/<namespace>/<name>.configmap.yaml`. `kubectl apply -f <dir> -R` applies them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{atomic_write, parse_manifest, render_manifest};
use crate::error::{Error, Result};
use crate::sink::*;
use crate::value::SecretMap;

/// Writes targets as manifest files under a folder.
#[derive(Debug)]
pub struct FolderSink {
    dir: PathBuf,
    writes: AtomicU64,
}

impl FolderSink {
    /// A sink writing under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            writes: AtomicU64::new(0),
        }
    }

    /// The file of a target.
    pub fn path_of(&self, t: &TargetRef) -> PathBuf {
        let file = match t.kind {
            TargetKind::Secret => format!("{}.yaml", t.name),
            TargetKind::ConfigMap => format!("{}.configmap.yaml", t.name),
        };
        self.dir.join(&t.namespace).join(file)
    }

    /// Files written since the sink was built.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    async fn read_file(path: &Path) -> Result<Option<TargetState>> {
        match tokio::fs::read(path).await {
            Ok(bytes) => {
                let bytes = zeroize::Zeroizing::new(bytes);
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| Error::invalid(format!("{}: not UTF-8", path.display())))?;
                Ok(Some(parse_manifest(text, &path.display().to_string())?.1))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// The desired state merged over the current one under the target's policy: what the
/// target will hold after `apply`. Shared by sinks that write whole objects.
pub fn merged_state(desired: &DesiredTarget, current: Option<&TargetState>) -> DesiredTarget {
    let mut out = desired.clone();
    if let Some(cur) = current {
        let mut labels = cur.labels.clone();
        labels.extend(desired.labels.clone());
        out.labels = labels;
        let mut ann = cur.annotations.clone();
        ann.extend(desired.annotations.clone());
        out.annotations = ann;
        if desired.creation_policy == CreationPolicy::Merge {
            let previously: Vec<String> = cur
                .annotations
                .get(MANAGED_KEYS_ANNOTATION)
                .map(|s| s.split(',').filter(|k| !k.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            let mut data = SecretMap::new();
            for (k, v) in cur.data.iter() {
                if !previously.contains(k) {
                    data.insert(k.clone(), v.clone());
                }
            }
            data.extend(desired.data.clone());
            out.data = data;
            out.secret_type = cur.secret_type.clone().or(desired.secret_type.clone());
        }
    }
    if desired.creation_policy == CreationPolicy::Merge {
        out.annotations.insert(
            MANAGED_KEYS_ANNOTATION.into(),
            desired.data.keys().cloned().collect::<Vec<_>>().join(","),
        );
    }
    out
}

#[async_trait]
impl SecretSink for FolderSink {
    fn name(&self) -> &str {
        "folder"
    }

    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::all()
    }

    async fn read(&self, target: &TargetRef) -> Result<Option<TargetState>> {
        Self::read_file(&self.path_of(target)).await
    }

    async fn apply(&self, desired: &DesiredTarget) -> Result<ApplyOutcome> {
        let path = self.path_of(&desired.target);
        let current = Self::read_file(&path).await?;
        if let Some(done) = super::precheck(desired, current.as_ref())? {
            return Ok(done);
        }
        let merged = merged_state(desired, current.as_ref());
        let text = render_manifest(&merged);
        atomic_write(&path, text.as_bytes()).await?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(if current.is_some() {
            ApplyOutcome::Updated
        } else {
            ApplyOutcome::Created
        })
    }

    async fn delete(&self, target: &TargetRef) -> Result<bool> {
        super::remove_file(&self.path_of(target)).await
    }
}
