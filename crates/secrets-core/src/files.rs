//! Writing files that hold secret values: atomically (temporary file, 0600, fsync, rename),
//! with stale temporary files of killed writers cleaned up. Used by the file-based sinks and
//! by the `file` source's writes.

use std::path::Path;

use crate::error::{Error, Result};

/// Removes a target's file; whether it existed.
pub async fn remove_file(path: &Path) -> Result<bool> {
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

/// Prefix of the temporary files of [`atomic_write`].
pub const TEMP_PREFIX: &str = ".secretsync-";
/// A temporary file older than this was left by a writer that died mid-write.
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes temporary files a killed writer left in `dir` (they hold secret values, 0600),
/// once per folder per process so large folders are not rescanned on every write.
fn clean_stale_temp_files(dir: &Path) {
    static CLEANED: std::sync::Mutex<Option<std::collections::HashSet<std::path::PathBuf>>> =
        std::sync::Mutex::new(None);
    {
        let mut cleaned = CLEANED.lock().expect("lock");
        if !cleaned.get_or_insert_with(Default::default).insert(dir.to_path_buf()) {
            return;
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(TEMP_PREFIX) && name.ends_with(".tmp")) {
            continue;
        }
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
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
    clean_stale_temp_files(dir);
    // tempfile creates files readable by the owner only (0600).
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_temp_files_of_a_killed_writer_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".secretsync-abc123.tmp");
        let fresh = dir.path().join(".secretsync-def456.tmp");
        std::fs::write(&stale, "half").unwrap();
        std::fs::write(&fresh, "in flight").unwrap();
        let status = std::process::Command::new("touch")
            .args(["-d", "5 minutes ago"])
            .arg(&stale)
            .status()
            .unwrap();
        assert!(status.success());
        atomic_write(&dir.path().join("target.yaml"), b"data").await.unwrap();
        assert!(!stale.exists(), "a stale temp file is removed");
        assert!(fresh.exists(), "a writer's temp file in flight is left alone");
        assert_eq!(std::fs::read(dir.path().join("target.yaml")).unwrap(), b"data");
    }
}
