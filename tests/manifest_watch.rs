//! The `sync` daemon watches its manifests: an edit of one file among many re-reads that
//! file alone and syncs what changed within a second; an editor's rename-write and a new
//! file in a watched folder are seen; a bad edit keeps the file's last good version and is
//! reported once; a deleted file's specs stop syncing. The same holds when the watcher is
//! replaced by polling (`SECRETSYNC_WATCH=poll`, the real binary), which reads nothing
//! while nothing changes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secretsync::app::{Format, SinkChoice, Stop, SyncOptions, run_sync};

const STORE: &str = "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: local, namespace: dev}\nspec: {provider: {file: {path: ../secrets.yaml}}}\n";

fn es(name: &str, key: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: dev}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: local}}\n  data:\n    - {{secretKey: VALUE, remoteRef: {{key: {key}}}}}\n"
    )
}

/// `dir/m/` with a store and `n` files of one ExternalSecret each; values in `dir/secrets.yaml`.
fn manifests(dir: &Path, n: usize) -> PathBuf {
    let m = dir.join("m");
    std::fs::create_dir_all(&m).unwrap();
    let mut secrets = String::new();
    for i in 0..n {
        secrets.push_str(&format!("k{i}: v{i}\n"));
    }
    secrets.push_str("extra: x\n");
    std::fs::write(dir.join("secrets.yaml"), secrets).unwrap();
    std::fs::write(m.join("store.yaml"), STORE).unwrap();
    for i in 0..n {
        let mut doc = es(&format!("es{i}"), &format!("k{i}"));
        if i == 5 {
            doc = doc.replace("refreshInterval: 1h", "refreshInterval: 1s");
        }
        std::fs::write(m.join(format!("es{i:02}.yaml")), doc).unwrap();
    }
    m
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn target(dir: &Path, name: &str) -> PathBuf {
    dir.join("out").join("dev").join(format!("{name}.yaml"))
}

/// Waits until `f` holds (at most 10 s); what it waited for, in the failure.
async fn until(what: &str, err: &Buf, f: impl Fn() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s; stderr:\n{}",
            err.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.elapsed()
}

/// The `manifests: read ...` lines the daemon printed.
fn reads(err: &Buf) -> Vec<String> {
    err.text()
        .lines()
        .filter(|l| l.starts_with("manifests: "))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_re_reads_its_file_alone_and_syncs_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), 20);
    let (stop, handle) = Stop::manual();
    let opts = SyncOptions {
        manifests: vec![m.clone()],
        sink: SinkChoice::Folder(dir.path().join("out")),
        format: Format::Json,
        stop,
        ..SyncOptions::default()
    };
    let (out, err) = (Buf::default(), Buf::default());
    let (mut o, mut e) = (out.clone(), err.clone());
    let daemon = run_sync(&opts, &mut o, &mut e);
    let driver = async {
        until("the first cycle", &err, || target(dir.path(), "es19").exists()).await;

        // One edit among 21 files: that file alone is read, and its spec syncs at once
        // (its refresh is 1h away).
        std::fs::write(m.join("es07.yaml"), es("edited", "extra")).unwrap();
        let took = until("the edited spec synced", &err, || target(dir.path(), "edited").exists()).await;
        eprintln!("an edit of one file of 21 synced in {took:?}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert_eq!(
            reads(&err),
            [format!("manifests: read {}", m.join("es07.yaml").display())]
        );

        // An editor's save: write a temporary file, rename it over the manifest.
        let tmp = m.join(".es03.yaml.swp");
        std::fs::write(&tmp, es("renamed", "k3")).unwrap();
        std::fs::rename(&tmp, m.join("es03.yaml")).unwrap();
        until("the rename-written spec synced", &err, || {
            target(dir.path(), "renamed").exists()
        })
        .await;
        assert_eq!(
            reads(&err).last().unwrap(),
            &format!("manifests: read {}", m.join("es03.yaml").display())
        );

        // A new file in a new folder under the watched one.
        std::fs::create_dir(m.join("team")).unwrap();
        std::fs::write(m.join("team").join("new.yaml"), es("newcomer", "k1")).unwrap();
        until("the new file's spec synced", &err, || {
            target(dir.path(), "newcomer").exists()
        })
        .await;

        // A bad edit: reported once with file and document; the last good version stays
        // and keeps syncing (es5 refreshes every second).
        std::fs::write(m.join("es05.yaml"), "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: es5-broken, namespace: dev}\nspec:\n  secretStoreRef: {name: local}\n  bogusField: 1\n").unwrap();
        until("the bad edit reported", &err, || {
            err.text().contains("keeping the last good version")
        })
        .await;
        let before = out.text().lines().count();
        until("es5 synced after the bad edit", &err, || {
            out.text().lines().skip(before).any(|l| l.contains("\"name\":\"es5\""))
        })
        .await;
        // Another file's edit reloads; the bad file is not read again.
        std::fs::write(m.join("es06.yaml"), es("es6", "k6")).unwrap();
        until("the other edit read", &err, || {
            reads(&err).last().is_some_and(|l| l.ends_with("es06.yaml"))
        })
        .await;
        let text = err.text();
        let bad: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(bad.len(), 1, "reported once, not per reload or cycle:\n{text}");
        assert!(
            bad[0].contains("es05.yaml") && bad[0].contains("document 1") && bad[0].contains("bogusField"),
            "{}",
            bad[0]
        );
        assert!(!target(dir.path(), "es5-broken").exists());

        // A deleted file: its spec is no longer synced (its target stays: ESO's
        // deletionPolicy Retain is the default).
        std::fs::remove_file(m.join("es09.yaml")).unwrap();
        until("the removal noticed", &err, || {
            reads(&err)
                .iter()
                .any(|l| l.contains("removed") && l.contains("es09.yaml"))
        })
        .await;
        handle.stop();
    };
    tokio::join!(daemon, driver);
}

const BIN: &str = env!("CARGO_BIN_EXE_secretsync");

/// With polling instead of a watcher: an edit is seen within the poll interval, and an idle
/// daemon reads no manifest file (it prints a `manifests: read` line for every read).
#[test]
fn polling_reads_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), 5);
    let mut child = std::process::Command::new(BIN)
        .args(["sync", "--format", "json", "-m"])
        .arg(&m)
        .arg("--output")
        .arg(dir.path().join("out"))
        .env("SECRETSYNC_WATCH", "poll")
        .env("SECRETSYNC_STATE_DIR", dir.path().join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for l in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            l2.lock().unwrap().push(l);
        }
    });
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{what}: {:?}",
                lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("the first cycle", &|| target(dir.path(), "es4").exists());
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("polling manifests every")),
        "says it polls: {:?}",
        lines.lock().unwrap()
    );
    // Idle over a few poll intervals (5 s): nothing read.
    std::thread::sleep(Duration::from_secs(6));
    let read = |ls: &[String]| ls.iter().filter(|l| l.starts_with("manifests: ")).count();
    assert_eq!(read(&lines.lock().unwrap()), 0, "{:?}", lines.lock().unwrap());
    std::fs::write(m.join("es02.yaml"), es("polled", "k2")).unwrap();
    wait("the edit synced", &|| target(dir.path(), "polled").exists());
    let ls = lines.lock().unwrap().clone();
    let reads: Vec<&String> = ls.iter().filter(|l| l.starts_with("manifests: ")).collect();
    assert_eq!(
        reads,
        [&format!("manifests: read {}", m.join("es02.yaml").display())],
        "{ls:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
