//! The `sync` daemon at rest and fingerprints across runs: specs falling due together run
//! in one cycle, and two processes report the same fingerprints for the same data.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use secretsync::app::{Format, SinkChoice, Stop, SyncOptions, run_sync};

const BIN: &str = env!("CARGO_BIN_EXE_secretsync");

/// `n` ExternalSecrets refreshing every `interval` over one file store, in one manifest.
fn manifests(dir: &Path, n: usize, interval: &str) -> PathBuf {
    let mut secrets = String::new();
    for i in 0..n {
        secrets.push_str(&format!("key-{i}: value-{i}\n"));
    }
    std::fs::write(dir.join("secrets.yaml"), secrets).unwrap();
    let mut m = String::from(
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: local, namespace: dev}\nspec: {provider: {file: {path: secrets.yaml}}}\n",
    );
    for i in 0..n {
        m.push_str(&format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: es-{i}, namespace: dev}}\nspec:\n  refreshInterval: {interval}\n  secretStoreRef: {{name: local}}\n  data:\n    - {{secretKey: VALUE, remoteRef: {{key: key-{i}}}}}\n"
        ));
    }
    let p = dir.join("m.yaml");
    std::fs::write(&p, m).unwrap();
    p
}

fn once_json(manifest: &Path, out: &Path, state: &Path) -> serde_json::Value {
    let o = std::process::Command::new(BIN)
        .args(["sync", "--once", "--format", "json", "-m"])
        .arg(manifest)
        .arg("--output")
        .arg(out)
        .env_remove("SECRETSYNC_FINGERPRINT_KEY")
        .env("SECRETSYNC_STATE_DIR", state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn fingerprints(report: &serde_json::Value) -> Vec<String> {
    report["specs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["fingerprint"].as_str().expect("a fingerprint").to_string())
        .collect()
}

#[test]
fn two_once_runs_report_identical_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), 3, "1h");
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let first = once_json(&m, &out, &state);
    assert_eq!(first["writes"], 3);
    let second = once_json(&m, &out, &state);
    assert_eq!(second["writes"], 0, "unchanged targets are not rewritten: {second}");
    assert_eq!(fingerprints(&first), fingerprints(&second));
    // The key lives in the state folder, private to the user.
    let key = state.join("fingerprint.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Another key (another user) gives other fingerprints: they are keyed.
    let other = once_json(&m, &dir.path().join("out2"), &dir.path().join("state2"));
    assert_ne!(fingerprints(&first), fingerprints(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_runs_at_most_one_cycle_per_window() {
    // 500 specs at 2s: the window is 5 % of 2s = 100 ms; jitter spreads refreshes over
    // 10 % = 200 ms, so each round is at most a few cycles, not one per few specs.
    let (n, interval, run_for) = (500usize, Duration::from_secs(2), Duration::from_secs(9));
    let window = interval.mul_f64(0.05);
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), n, "2s");
    let (stop, handle) = Stop::manual();
    let opts = SyncOptions {
        manifests: vec![m],
        sink: SinkChoice::Folder(dir.path().join("out")),
        format: Format::Json,
        stop,
        ..SyncOptions::default()
    };
    let started = Instant::now();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(run_for).await;
        handle.stop();
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    run_sync(&opts, &mut out, &mut err).await;
    stopper.await.unwrap();
    let elapsed = started.elapsed();
    let reports: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cycles = reports.len();
    let refreshed: usize = reports
        .iter()
        .skip(1)
        .map(|r| r["specs"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        reports[0]["specs"].as_array().unwrap().len(),
        n,
        "the first cycle runs everything"
    );
    assert!(refreshed >= n, "every spec refreshed at least once in {elapsed:?}");
    // At most one cycle per window: cycle starts (report time less its duration) are at
    // least a window apart, because a cycle takes every spec due within the window.
    let starts: Vec<i64> = reports
        .iter()
        .map(|r| millis_of_day(r["time"].as_str().unwrap()) - r["duration_ms"].as_i64().unwrap())
        .collect();
    let per_cycle: Vec<usize> = reports.iter().map(|r| r["specs"].as_array().unwrap().len()).collect();
    for w in starts.windows(2) {
        // Half a window of slack: a start is reconstructed from the report's time less the
        // cycle's duration, and on a loaded machine the report is stamped a little after the
        // cycle ends (one CI run saw 88 ms for a 100 ms window). Without batching, cycles
        // ran ~19 ms apart, so this still tells the two apart.
        assert!(
            w[1] - w[0] >= window.as_millis() as i64 / 2,
            "two cycles {} ms apart, within one window of {window:?}; specs per cycle: {per_cycle:?}",
            w[1] - w[0]
        );
    }
    // And calm overall: each round's specs fall due within the jitter (10 % of the
    // interval, two windows), so a round is a few cycles, not one per few specs (the
    // daemon before batching ran dozens).
    let rounds = (elapsed.as_secs_f64() / interval.as_secs_f64()).ceil() as usize;
    let allowed = 1 + rounds * 4;
    assert!(
        cycles <= allowed,
        "{cycles} cycles in {elapsed:?} for {n} specs at {interval:?} (at most {allowed}); specs per cycle: {per_cycle:?}"
    );
    assert!(
        reports.iter().all(|r| r["writes"] == 0) || reports.iter().skip(1).all(|r| r["writes"] == 0),
        "nothing changed after the first cycle"
    );
}

/// Milliseconds since midnight of an RFC 3339 UTC time (`...THH:MM:SS.mmmZ`).
fn millis_of_day(t: &str) -> i64 {
    let hms = &t[11..23];
    let h: i64 = hms[0..2].parse().unwrap();
    let m: i64 = hms[3..5].parse().unwrap();
    let s: i64 = hms[6..8].parse().unwrap();
    let ms: i64 = hms[9..12].parse().unwrap();
    ((h * 60 + m) * 60 + s) * 1000 + ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_re_read_only_when_a_file_changed() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), 2, "1h");
    let (stop, handle) = Stop::manual();
    let opts = SyncOptions {
        manifests: vec![dir.path().to_path_buf()],
        sink: SinkChoice::Folder(dir.path().join("out")),
        format: Format::Json,
        reload_every: Some(Duration::from_millis(100)),
        stop,
        ..SyncOptions::default()
    };
    let m2 = m.clone();
    let editor = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Broken text of the same size with the same modification time: still a change (the
        // watcher sees the write; a poll sees its change time), read and reported once.
        let meta = std::fs::metadata(&m2).unwrap();
        let broken = "{".repeat(meta.len() as usize);
        std::fs::write(&m2, &broken).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&m2)
            .unwrap()
            .set_modified(meta.modified().unwrap())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        // Another edit: read, and its problem reported once more.
        std::fs::write(&m2, format!("{broken}{{")).unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        handle.stop();
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    run_sync(&opts, &mut out, &mut err).await;
    editor.await.unwrap();
    let err = String::from_utf8(err).unwrap();
    let problems = err
        .lines()
        .filter(|l| l.starts_with("error: ") && l.contains("m.yaml: document 1: malformed YAML"))
        .count();
    // The daemon wakes every 100 ms: re-reading at each wake would report the broken file
    // about 16 times. Each change is read, and reported, once.
    assert_eq!(
        problems, 2,
        "a broken file is reported once per change, not at every wake: {err}"
    );
    assert_eq!(err.matches("keeping the last good version of").count(), 2, "{err}");
    // The folder sink writes under the manifest folder: its output is never read back.
    assert!(
        !err.contains("/out/"),
        "the output folder is not a manifest folder: {err}"
    );
}
