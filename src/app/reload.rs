//! When and what the daemon re-reads of its manifests.
//!
//! [`ManifestFiles`] keeps each file's parsed documents, so a change re-parses the changed
//! file alone: thousands of documents over many files cost one file's parse per edit, and
//! nothing at all while nothing changes. A file whose new version does not parse keeps its
//! last good version (its error is reported once, for that change); a removed file removes
//! its documents; a new file under a watched folder is read.
//!
//! [`Watch`] says when to look: a file watcher ([`notify`]: inotify, FSEvents, kqueue,
//! ReadDirectoryChangesW) on the folders given and the folders of the files given, so an
//! editor's write-to-temporary-then-rename and new files are seen. Where the watcher cannot
//! start (the inotify watch limit, a platform without one) it polls instead, every
//! `--reload-every`. Filesystems that deliver no events (some network and container mounts)
//! are covered by a slow poll even while watching ([`BACKSTOP`]); `SECRETSYNC_WATCH=poll`
//! polls at `--reload-every` instead of watching. A poll only lists folders and stats
//! files: a file whose size, modification time and inode are unchanged is not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use secretsync_core::Error;
use secretsync_core::manifest::{Loaded, Manifests, load_file, manifest_files, merge_files};

/// Environment variable: `poll` polls the manifests every `--reload-every` instead of
/// watching them (for filesystems that deliver no change events).
pub const WATCH_ENV: &str = "SECRETSYNC_WATCH";

/// While watching, the manifests are still stat-polled this often, for filesystems whose
/// changes raise no events.
pub const BACKSTOP: Duration = Duration::from_secs(30);

/// Quiet time that ends a burst of file events (an editor's save is several events).
const SETTLE: Duration = Duration::from_millis(100);

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Inode and change time, where the platform has them: a rename-write is a new inode.
    ino: u64,
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let (ino, ctime) = {
            use std::os::unix::fs::MetadataExt as _;
            (meta.ino(), (meta.ctime(), meta.ctime_nsec()))
        };
        #[cfg(not(unix))]
        let (ino, ctime) = (0, (0, 0));
        Some(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            ino,
            ctime,
        })
    }
}

/// One file's last good documents.
#[derive(Debug, Clone)]
struct FileEntry {
    stamp: Option<FileStamp>,
    /// The last version that parsed (`None`: none has yet).
    good: Option<Manifests>,
}

/// The manifests of a set of paths, kept file by file.
#[derive(Debug, Clone)]
pub struct ManifestFiles {
    roots: Vec<PathBuf>,
    /// Folders never read as manifests (the folder sink's output, when it lies under a
    /// folder given), as absolute paths.
    excluded: Vec<PathBuf>,
    files: BTreeMap<PathBuf, FileEntry>,
    parses: u64,
}

/// What a [`ManifestFiles::rescan`] found.
#[derive(Debug, Default)]
pub struct Rescan {
    /// Files read again (changed or new), in order.
    pub read: Vec<PathBuf>,
    /// Files gone, whose documents were removed.
    pub removed: Vec<PathBuf>,
    /// Problems in the files read (each naming file, document and field); those files keep
    /// their last good version.
    pub errors: Vec<Error>,
    /// Warnings of the files read.
    pub warnings: Vec<String>,
    /// Files whose new version had errors and kept their last good version.
    pub kept: Vec<PathBuf>,
    /// A path given could not be listed (gone, unreadable): its files are kept as they were.
    pub unlisted: Vec<Error>,
    /// The versions the files read replaced (`None`: the file is new), for [`ManifestFiles::restore`].
    previous: BTreeMap<PathBuf, Option<Manifests>>,
}

impl Rescan {
    /// Whether any file's documents changed (read or removed).
    pub fn changed(&self) -> bool {
        !self.read.is_empty() || !self.removed.is_empty()
    }
}

impl ManifestFiles {
    /// Reads every manifest file under `roots`; returns the set and what it loaded, as
    /// [`secretsync_core::manifest::load_paths`] does.
    pub fn load(roots: &[PathBuf]) -> (Self, Loaded) {
        Self::load_excluding(roots, &[])
    }

    /// [`ManifestFiles::load`], never reading files under `excluded` (the targets a folder
    /// sink writes are Secret manifests: read back, they would become static targets).
    pub fn load_excluding(roots: &[PathBuf], excluded: &[PathBuf]) -> (Self, Loaded) {
        let mut me = Self {
            roots: roots.to_vec(),
            excluded: excluded.iter().map(|p| absolute(p)).collect(),
            files: BTreeMap::new(),
            parses: 0,
        };
        let mut loaded = Loaded::default();
        for root in roots {
            let files = match manifest_files(root) {
                Ok(f) => f,
                Err(e) => {
                    loaded.errors.push(e);
                    continue;
                }
            };
            for f in files {
                if me.is_excluded(&f) {
                    continue;
                }
                let stamp = FileStamp::of(&f);
                let l = me.parse(&f);
                loaded.errors.extend(l.errors);
                loaded.warnings.extend(l.warnings);
                loaded.notes.extend(l.notes);
                me.files.insert(
                    f,
                    FileEntry {
                        stamp,
                        good: Some(l.manifests),
                    },
                );
            }
        }
        loaded.manifests = me.merged();
        (me, loaded)
    }

    fn is_excluded(&self, f: &Path) -> bool {
        !self.excluded.is_empty() && {
            let f = absolute(f);
            self.excluded.iter().any(|x| f.starts_with(x))
        }
    }

    /// The folders never read as manifests (absolute).
    pub fn excluded(&self) -> &[PathBuf] {
        &self.excluded
    }

    fn parse(&mut self, f: &Path) -> Loaded {
        self.parses += 1;
        load_file(f)
    }

    /// How many times a file was parsed since [`ManifestFiles::load`] (the first load
    /// included).
    pub fn parses(&self) -> u64 {
        self.parses
    }

    /// The paths given.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Number of manifest files known.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no manifest file is known.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Every file's last good documents, merged (references across files resolved).
    pub fn merged(&self) -> Manifests {
        merge_files(self.files.values().filter_map(|e| e.good.clone()))
    }

    /// Lists the paths again and stats every file: reads the files that are new, whose
    /// stamp changed, or that `hinted` names (a watcher saw them written), and forgets the
    /// files that are gone. A file whose new version has errors keeps its last good one.
    pub fn rescan(&mut self, hinted: &BTreeSet<PathBuf>) -> Rescan {
        let mut out = Rescan::default();
        let mut seen = BTreeSet::new();
        let mut unlisted_roots = vec![];
        for root in self.roots.clone() {
            match manifest_files(&root) {
                Ok(files) => seen.extend(files.into_iter().filter(|f| !self.is_excluded(f))),
                Err(e) => {
                    out.unlisted.push(e);
                    unlisted_roots.push(root);
                }
            }
        }
        for f in &seen {
            let stamp = FileStamp::of(f);
            let known = self.files.get(f);
            let changed = match known {
                None => true,
                Some(e) => e.stamp != stamp || hinted.contains(f),
            };
            if !changed {
                continue;
            }
            let l = self.parse(f);
            out.read.push(f.clone());
            out.warnings.extend(l.warnings);
            out.previous
                .insert(f.clone(), self.files.get(f).and_then(|e| e.good.clone()));
            let entry = self.files.entry(f.clone()).or_insert(FileEntry { stamp, good: None });
            entry.stamp = stamp;
            if l.errors.is_empty() {
                entry.good = Some(l.manifests);
            } else {
                out.errors.extend(l.errors);
                out.kept.push(f.clone());
            }
        }
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|f| !seen.contains(*f) && !unlisted_roots.iter().any(|r| f.starts_with(r)))
            .cloned()
            .collect();
        for f in gone {
            self.files.remove(&f);
            out.removed.push(f);
        }
        out
    }

    /// Puts back the version of `file` that `rescan` replaced (its new one parsed but does
    /// not validate with the rest), keeping the new stamp so it is not read again until it
    /// changes again.
    pub fn restore(&mut self, file: &Path, rescan: &Rescan) {
        if let (Some(prev), Some(entry)) = (rescan.previous.get(file), self.files.get_mut(file)) {
            entry.good = prev.clone();
        }
    }
}

/// Why the daemon should look at its manifests now.
#[derive(Debug)]
pub struct Watch {
    events: Option<tokio::sync::mpsc::UnboundedReceiver<PathBuf>>,
    _watcher: Option<notify::RecommendedWatcher>,
    poll_every: Duration,
    next_poll: Instant,
    hinted: BTreeSet<PathBuf>,
    /// How it watches, for the start-up line.
    pub how: String,
}

impl Watch {
    /// Watches `roots` (the folders given, recursively; the folder of each file given),
    /// polling every `reload_every` where it cannot, and every [`BACKSTOP`] (or
    /// `reload_every`, if longer) while it can.
    pub fn start(roots: &[PathBuf], reload_every: Duration) -> Self {
        Self::start_excluding(roots, &[], reload_every)
    }

    /// [`Watch::start`], ignoring events under `excluded` (absolute: the daemon's own
    /// output folder, see [`ManifestFiles::load_excluding`]).
    pub fn start_excluding(roots: &[PathBuf], excluded: &[PathBuf], reload_every: Duration) -> Self {
        let poll_only = std::env::var(WATCH_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("poll"));
        if !poll_only {
            match Self::watcher(roots, excluded.to_vec()) {
                Ok((w, rx)) => {
                    let poll_every = BACKSTOP.max(reload_every);
                    return Self {
                        events: Some(rx),
                        _watcher: Some(w),
                        poll_every,
                        next_poll: Instant::now() + poll_every,
                        hinted: BTreeSet::new(),
                        how: format!("watching manifests (and polling every {}s)", poll_every.as_secs()),
                    };
                }
                Err(e) => {
                    return Self::polling(
                        reload_every,
                        format!(
                            "cannot watch manifests ({e}); polling every {}ms",
                            reload_every.as_millis()
                        ),
                    );
                }
            }
        }
        Self::polling(
            reload_every,
            format!(
                "polling manifests every {}ms ({WATCH_ENV}=poll)",
                reload_every.as_millis()
            ),
        )
    }

    fn polling(poll_every: Duration, how: String) -> Self {
        Self {
            events: None,
            _watcher: None,
            poll_every,
            next_poll: Instant::now() + poll_every,
            hinted: BTreeSet::new(),
            how,
        }
    }

    /// Whether a file watcher runs (else it polls only).
    pub fn is_watching(&self) -> bool {
        self._watcher.is_some()
    }

    #[allow(clippy::type_complexity)]
    fn watcher(
        roots: &[PathBuf],
        excluded: Vec<PathBuf>,
    ) -> notify::Result<(
        notify::RecommendedWatcher,
        tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
    )> {
        use notify::Watcher as _;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // Events under a folder given, or about a file given (its folder is watched, so a
        // rename over it is seen); others in those folders are no business of ours.
        let dirs: Vec<PathBuf> = roots.iter().filter(|r| r.is_dir()).cloned().collect();
        let files: Vec<PathBuf> = roots.iter().filter(|r| !r.is_dir()).cloned().collect();
        let files_abs: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
        // The watched folders, as the events name them.
        let dirs_abs: Vec<PathBuf> = dirs.iter().map(|d| absolute(d)).collect();
        let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else {
                // An overflow or a watcher error: look at everything.
                let _ = tx.send(PathBuf::new());
                return;
            };
            if matches!(ev.kind, notify::EventKind::Access(_)) {
                return;
            }
            for p in ev.paths {
                if excluded.iter().any(|x| p.starts_with(x)) {
                    continue;
                }
                let ours = dirs_abs.iter().any(|d| p.starts_with(d)) || files_abs.contains(&p);
                if ours {
                    let _ = tx.send(p);
                }
            }
        })?;
        for d in &dirs {
            w.watch(&absolute(d), notify::RecursiveMode::Recursive)?;
        }
        for f in &files {
            let parent = absolute(f)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/"));
            w.watch(&parent, notify::RecursiveMode::NonRecursive)?;
        }
        Ok((w, rx))
    }

    /// When the next poll is due.
    pub fn next_poll(&self) -> Instant {
        self.next_poll
    }

    /// Resolves when files changed (a burst of events, settled); never when polling only.
    pub async fn changed(&mut self) {
        let Some(rx) = self.events.as_mut() else {
            return std::future::pending().await;
        };
        let Some(first) = rx.recv().await else {
            return std::future::pending().await;
        };
        self.hinted.insert(first);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(p) => { self.hinted.insert(p); }
                    None => return,
                },
                _ = tokio::time::sleep(SETTLE) => return,
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// The files to look at now: `Some` (files events named, absolute) when events arrived
    /// or a poll is due, `None` otherwise.
    pub fn take(&mut self, now: Instant) -> Option<BTreeSet<PathBuf>> {
        if self.hinted.is_empty() && now < self.next_poll {
            return None;
        }
        self.next_poll = now + self.poll_every;
        Some(std::mem::take(&mut self.hinted))
    }
}

/// `p` from the root, symbolic links left as they are (a mounted ConfigMap's files are links
/// that change target; the path given is what is watched and read).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The paths a watcher named, as the manifest set names them (relative paths as given).
pub fn hinted_as_given(files: &ManifestFiles, hinted: &BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
    if hinted.is_empty() {
        return BTreeSet::new();
    }
    files
        .files
        .keys()
        .filter(|f| hinted.contains(&absolute(f)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: s, namespace: dev}\nspec: {provider: {fake: {data: []}}}\n";

    fn es(name: &str) -> String {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: dev}}\nspec:\n  secretStoreRef: {{name: s}}\n  data:\n    - {{secretKey: A, remoteRef: {{key: {name}}}}}\n"
        )
    }

    fn names(m: &Manifests) -> Vec<String> {
        m.external_secrets.iter().map(|e| e.name().to_string()).collect()
    }

    #[test]
    fn a_changed_file_is_parsed_alone_and_a_bad_edit_keeps_the_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("store.yaml"), STORE).unwrap();
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("es{i}.yaml")), es(&format!("e{i}"))).unwrap();
        }
        let (mut files, loaded) = ManifestFiles::load(&[dir.path().to_path_buf()]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(files.parses(), 6);
        // Nothing changed: stats only.
        let r = files.rescan(&BTreeSet::new());
        assert!(!r.changed());
        assert_eq!(files.parses(), 6);
        // One edit (another size): that file alone.
        std::fs::write(dir.path().join("es2.yaml"), es("renamed-two")).unwrap();
        let r = files.rescan(&BTreeSet::new());
        assert_eq!(r.read, vec![dir.path().join("es2.yaml")]);
        assert_eq!(files.parses(), 7);
        assert!(names(&files.merged()).contains(&"renamed-two".to_string()));
        // A bad edit: reported, last good kept.
        std::fs::write(dir.path().join("es2.yaml"), "kind: [unclosed\n").unwrap();
        let r = files.rescan(&BTreeSet::new());
        assert_eq!(r.kept, vec![dir.path().join("es2.yaml")]);
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].to_string().contains("es2.yaml"), "{}", r.errors[0]);
        assert!(names(&files.merged()).contains(&"renamed-two".to_string()));
        // Not re-read while it stays bad.
        assert!(!files.rescan(&BTreeSet::new()).changed());
        // A removal removes its documents; a new file adds its own.
        std::fs::remove_file(dir.path().join("es0.yaml")).unwrap();
        std::fs::write(dir.path().join("new.yaml"), es("fresh")).unwrap();
        let r = files.rescan(&BTreeSet::new());
        assert_eq!(r.removed, vec![dir.path().join("es0.yaml")]);
        assert_eq!(r.read, vec![dir.path().join("new.yaml")]);
        let n = names(&files.merged());
        assert!(
            !n.contains(&"e0".to_string()) && n.contains(&"fresh".to_string()),
            "{n:?}"
        );
    }
}
