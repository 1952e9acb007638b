//! Built-in sinks: a folder of Kubernetes manifests, dotenv files, stdout, memory.

mod dotenv;
mod folder;
mod manifest;
mod memory;
mod stdout;

use std::path::Path;

pub use dotenv::DotenvSink;
pub use folder::{FolderSink, merged_state};
pub use manifest::{parse_manifest, render_manifest};
pub use memory::MemorySink;
pub use stdout::StdoutSink;

use crate::error::{Error, Result};

/// The creation-policy and immutability rules every sink applies before writing:
/// `Ok(Some(Unchanged))` for creationPolicy None, NotFound for Merge into a missing target,
/// Conflict for an immutable target, `Ok(None)` to go on and write.
pub fn precheck(
    desired: &crate::sink::DesiredTarget,
    current: Option<&crate::sink::TargetState>,
) -> Result<Option<crate::sink::ApplyOutcome>> {
    use crate::sink::{ApplyOutcome, CreationPolicy};
    match (desired.creation_policy, current) {
        (CreationPolicy::None, _) => Ok(Some(ApplyOutcome::Unchanged)),
        (CreationPolicy::Merge, None) => Err(Error::not_found(format!(
            "{} (creationPolicy Merge only updates an existing target)",
            desired.target
        ))),
        (_, Some(cur)) if cur.immutable => Err(Error::Conflict {
            what: format!("{} is immutable; delete it to change its data", desired.target),
        }),
        _ => Ok(None),
    }
}

/// Removes a target's file; whether it existed.
pub(crate) async fn remove_file(path: &Path) -> Result<bool> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder (mode 0600),
/// flushed to disk, then renamed over `path`. A crash leaves either the old file or the new
/// one, never a half-written one. Parent folders are created (mode 0700).
pub async fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let path = path.to_path_buf();
    let bytes = zeroize::Zeroizing::new(bytes.to_vec());
    tokio::task::spawn_blocking(move || atomic_write_blocking(&path, &bytes))
        .await
        .map_err(|e| Error::invalid(format!("write task failed: {e}")))?
}

fn atomic_write_blocking(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(|e| Error::io(dir, e))?;
    }
    // tempfile creates files readable by the owner only (0600).
    let mut tmp = tempfile::Builder::new()
        .prefix(".secretsync-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
