//! When the daemon re-reads its manifests: only when a file it was given, or a file or
//! folder under a folder it was given, changed (path, size or modification time). A stat
//! walk costs microseconds per file, where re-parsing and re-validating thousands of
//! documents costs milliseconds at every wake.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What the manifest paths looked like: every file and folder under them, with size and
/// modification time, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManifestStamp(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl ManifestStamp {
    /// Stats every path (recursively for folders). A missing path is recorded as missing,
    /// so its appearance is a change.
    pub fn of(paths: &[PathBuf]) -> Self {
        let mut out = vec![];
        for p in paths {
            walk(p, &mut out);
        }
        Self(out)
    }

    /// Number of files and folders seen.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn walk(p: &Path, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
    let Ok(meta) = std::fs::metadata(p) else {
        out.push((p.to_path_buf(), u64::MAX, None));
        return;
    };
    out.push((p.to_path_buf(), meta.len(), meta.modified().ok()));
    if meta.is_dir()
        && let Ok(rd) = std::fs::read_dir(p)
    {
        let mut children: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for c in children {
            walk(&c, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_additions_and_removals_change_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.yaml");
        std::fs::write(&f, "a: 1\n").unwrap();
        let paths = [dir.path().to_path_buf()];
        let s0 = ManifestStamp::of(&paths);
        assert_eq!(s0, ManifestStamp::of(&paths), "nothing changed");
        std::fs::write(&f, "a: 12\n").unwrap();
        let s1 = ManifestStamp::of(&paths);
        assert_ne!(s0, s1, "an edit");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.yaml"), "b: 1\n").unwrap();
        let s2 = ManifestStamp::of(&paths);
        assert_ne!(s1, s2, "a new file in a new folder");
        std::fs::remove_file(dir.path().join("sub/b.yaml")).unwrap();
        assert_ne!(s2, ManifestStamp::of(&paths), "a removal");
    }
}
