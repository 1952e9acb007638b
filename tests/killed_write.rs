//! The process killed (SIGKILL, via `kill -9`) in the middle of writing file sinks.
//!
//! The test re-runs its own binary as a child that writes large targets in a loop through
//! FolderSink and DotenvSink, each generation's values derived from the generation number,
//! and reports each completed write on stdout. The parent kills it at random moments, then
//! checks every target file: it parses, every key holds the value of one generation (no
//! mix), and that generation is the last one reported done or the one in flight — the old
//! content or the new, never anything else. Files are 0600; the only other files are
//! `.secretsync-*.tmp` leftovers (a killed writer cannot remove its temporary file), which
//! no reader of targets picks up; how many were left is printed.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use secretsync::sinks::{DotenvSink, FolderSink};
use secretsync::testkit::desired;
use secretsync::{CreationPolicy, SecretMap, SecretSink, SecretValue, TargetRef};

const CHILD_ENV: &str = "SECRETSYNC_KILLED_WRITE_CHILD";
const TEST_NAME: &str = "a_writer_killed_mid_write_leaves_old_or_new_content";
const TARGETS: [&str; 3] = ["api", "worker", "db"];
const KEYS: [&str; 4] = ["A", "B", "C", "D"];
/// Bytes per value: ~4 × 96 KiB per target, so a write takes long enough to be interrupted.
const VALUE_LEN: usize = 96 * 1024;
/// Generations of round `r` start at `r * ROUND + 1`.
const ROUND: u64 = 1_000_000;

fn value(generation: u64, target: &str, key: &str) -> String {
    let unit = format!("g{generation:010}-{target}-{key}|");
    unit.repeat(VALUE_LEN / unit.len() + 1)[..VALUE_LEN].to_string()
}

fn data(generation: u64, target: &str) -> SecretMap {
    KEYS.iter()
        .map(|k| (k.to_string(), SecretValue::from(value(generation, target, k))))
        .collect()
}

fn sinks(dir: &Path) -> (FolderSink, DotenvSink) {
    (
        FolderSink::new(dir.join("folder")),
        DotenvSink::new(format!("{}/env/{{namespace}}/{{name}}.env", dir.display())),
    )
}

/// The child: writes generation after generation until it is killed.
async fn child(dir: PathBuf, round: u64) {
    let (folder, dotenv) = sinks(&dir);
    println!("start");
    let mut generation = round * ROUND + 1;
    loop {
        for t in TARGETS {
            let target = TargetRef::secret("ns", t);
            let d = desired(target, data(generation, t), CreationPolicy::Owner);
            folder.apply(&d).await.expect("folder write");
            println!("done folder {t} {generation}");
            dotenv.apply(&d).await.expect("dotenv write");
            println!("done dotenv {t} {generation}");
        }
        generation += 1;
    }
}

/// The generation every key of a target holds, or a panic naming what is wrong.
async fn generation_of(sink: &dyn SecretSink, t: &str) -> Option<u64> {
    let state = sink
        .read(&TargetRef::secret("ns", t))
        .await
        .unwrap_or_else(|e| panic!("{} target {t} does not parse: {e}", sink.name()))?;
    let keys: Vec<&String> = state.data.keys().collect();
    assert_eq!(keys, KEYS.to_vec(), "{} target {t} has all its keys", sink.name());
    let a = state.data.get("A").unwrap().expose_str().unwrap();
    let generation: u64 = a[1..11].parse().expect("generation number");
    for k in KEYS {
        assert!(
            state.data.get(k).unwrap().expose_str() == Some(value(generation, t, k).as_str()),
            "{} target {t}: key {k} is not generation {generation}'s value (torn or mixed write)",
            sink.name()
        );
    }
    Some(generation)
}

/// Kills the writer if the test fails before it does (no orphan left writing).
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_writer_killed_mid_write_leaves_old_or_new_content() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (dir, round) = spec.split_once(';').expect("dir;round");
        child(PathBuf::from(dir), round.parse().unwrap()).await;
        unreachable!("the child writes until it is killed");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (folder, dotenv) = sinks(&dir);
    let exe = std::env::current_exe().unwrap();
    // What each file held after the previous round: (sink, target) → generation.
    let mut held: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut kills_mid_write = 0;
    let rounds = 12;
    for round in 1..=rounds {
        let mut child = Command::new(&exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{};{round}", dir.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the writer");
        let stdout = child.stdout.take().unwrap();
        let mut child = Reap(child);
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = vec![];
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).expect("the writer starts within 60 s");
            // libtest prints `test <name> ... ` without a newline before the test runs.
            let started = line.ends_with("start");
            lines.push(line);
            if started {
                break;
            }
        }
        // Let it write for a random while, then kill it without warning.
        let wait = 20 + rand::random_range(0..400u64);
        std::thread::sleep(Duration::from_millis(wait));
        let status = Command::new("kill")
            .args(["-9", &child.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -9 worked");
        let exit = child.0.wait().unwrap();
        assert!(!exit.success(), "the writer was killed, it did not finish: {exit:?}");
        reader.join().unwrap();
        lines.extend(rx.try_iter());

        // The last generation each (sink, target) finished in this round.
        let mut done: BTreeMap<(String, String), u64> = BTreeMap::new();
        for l in &lines {
            if let Some(rest) = l.strip_prefix("done ") {
                let parts: Vec<&str> = rest.split(' ').collect();
                done.insert((parts[0].into(), parts[1].into()), parts[2].parse().unwrap());
            }
        }
        let first = round * ROUND + 1;
        for (sink, name) in [
            (&folder as &dyn SecretSink, "folder"),
            (&dotenv as &dyn SecretSink, "dotenv"),
        ] {
            for t in TARGETS {
                let key = (name.to_string(), t.to_string());
                let old = done.get(&key).copied().or(held.get(&key).copied());
                // The write in flight when the writer died.
                let new = match done.get(&key) {
                    Some(g) => g + 1,
                    None => first,
                };
                let got = generation_of(sink, t).await;
                match got {
                    Some(g) if Some(g) == old => {}
                    Some(g) if g == new => kills_mid_write += 1,
                    None if old.is_none() => {}
                    other => {
                        panic!("round {round}: {name} target {t} holds generation {other:?}; old {old:?}, new {new}")
                    }
                }
                if let Some(g) = got {
                    held.insert(key, g);
                }
            }
        }

        // Only targets and temporary files; everything owner-only.
        for f in files_under(&dir) {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is mode {mode:o}", f.display());
            let name = f.file_name().unwrap().to_str().unwrap();
            let is_tmp = name.starts_with(".secretsync-") && name.ends_with(".tmp");
            let is_target = TARGETS
                .iter()
                .any(|t| name == format!("{t}.yaml") || name == format!("{t}.env"));
            assert!(is_tmp || is_target, "unexpected file {}", f.display());
        }
    }
    assert!(!held.is_empty(), "the writer wrote something before being killed");
    let leftovers: Vec<PathBuf> = files_under(&dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "tmp"))
        .collect();
    // Informational: how often the kill landed between a finished write and its report, and
    // how many temporary files killed writers left behind (see SECURITY.md).
    println!(
        "{rounds} kills; {kills_mid_write} files held the in-flight generation; {} temporary files left: {:?}",
        leftovers.len(),
        leftovers.iter().map(|f| f.file_name().unwrap()).collect::<Vec<_>>()
    );

    // The next write through each sink works over whatever was left, and reads back.
    let next = (rounds + 1) * ROUND + 1;
    for t in TARGETS {
        let d = desired(TargetRef::secret("ns", t), data(next, t), CreationPolicy::Owner);
        folder.apply(&d).await.unwrap();
        dotenv.apply(&d).await.unwrap();
        assert_eq!(generation_of(&folder, t).await, Some(next));
        assert_eq!(generation_of(&dotenv, t).await, Some(next));
    }
}
