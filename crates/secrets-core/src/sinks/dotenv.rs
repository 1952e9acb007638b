//! Dotenv files as targets: the file name is a template over `{namespace}` and `{name}`
//! (`out/{namespace}/{name}.env`, or one fixed `.env` for a single target). The file starts
//! with a comment naming its target and fingerprint; another target writing the same file
//! is a conflict, not a silent overwrite. Written atomically, mode 0600.

use std::path::PathBuf;

use async_trait::async_trait;

use super::atomic_write;
use crate::error::{Error, Result};
use crate::format::dotenv as dotenv_format;
use crate::sink::*;

const HEADER: &str = "# managed by secretsync: ";

/// Writes each target as a dotenv file.
#[derive(Debug, Clone)]
pub struct DotenvSink {
    template: String,
}

impl DotenvSink {
    /// `template` may contain `{namespace}` and `{name}`.
    pub fn new(template: impl Into<String>) -> Self {
        Self {
            template: template.into(),
        }
    }

    /// The file of a target.
    pub fn path_of(&self, t: &TargetRef) -> PathBuf {
        PathBuf::from(
            self.template
                .replace("{namespace}", &t.namespace)
                .replace("{name}", &t.name),
        )
    }

    async fn read_file(&self, target: &TargetRef) -> Result<Option<(String, TargetState)>> {
        let path = self.path_of(target);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => zeroize::Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::invalid(format!("{}: not UTF-8", path.display())))?;
        let mut owner = String::new();
        let mut state = TargetState::default();
        for line in text.lines().take_while(|l| l.starts_with('#')) {
            if let Some(o) = line.strip_prefix(HEADER) {
                owner = o.trim().to_string();
            } else if let Some(fp) = line.strip_prefix(&format!("# {FINGERPRINT_ANNOTATION}: ")) {
                state
                    .annotations
                    .insert(FINGERPRINT_ANNOTATION.into(), fp.trim().to_string());
            }
        }
        state.data = dotenv_format::parse(text, &path.display().to_string())?;
        Ok(Some((owner, state)))
    }
}

#[async_trait]
impl SecretSink for DotenvSink {
    fn name(&self) -> &str {
        "dotenv"
    }

    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            readable: true,
            ..SinkCapabilities::default()
        }
    }

    async fn read(&self, target: &TargetRef) -> Result<Option<TargetState>> {
        Ok(self.read_file(target).await?.map(|(_, s)| s))
    }

    async fn apply(&self, desired: &DesiredTarget) -> Result<ApplyOutcome> {
        let current = self.read_file(&desired.target).await?;
        let me = desired.target.to_string();
        if let Some((owner, _)) = &current
            && !owner.is_empty()
            && owner != &me
        {
            return Err(Error::Conflict {
                what: format!(
                    "{} is written by {owner}, not {me}",
                    self.path_of(&desired.target).display()
                ),
            });
        }
        if let Some(done) = super::precheck(desired, current.as_ref().map(|(_, s)| s))? {
            return Ok(done);
        }
        let mut text = zeroize::Zeroizing::new(format!("{HEADER}{me}\n"));
        if let Some(fp) = desired.annotations.get(FINGERPRINT_ANNOTATION) {
            text.push_str(&format!("# {FINGERPRINT_ANNOTATION}: {fp}\n"));
        }
        // Errors name the file and key; the engine adds the target.
        let path = self.path_of(&desired.target);
        text.push_str(&dotenv_format::render(&desired.data, &path.display().to_string())?);
        atomic_write(&self.path_of(&desired.target), text.as_bytes()).await?;
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
