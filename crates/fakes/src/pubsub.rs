//! Google's Pub/Sub emulator (the real one from the Cloud SDK, `google-cloud-cli-pubsub-emulator`,
//! Java 17), started for a test on a free loopback port. Not a fake: this module finds it,
//! runs it and stops it. `SECRETSYNC_PUBSUB_EMULATOR_HOST=host:port` uses one already running.
//!
//! The emulator runs under a small `sh` wrapper that stops it when this process's end of a
//! pipe closes, so it never outlives the tests, even after a panic or a kill;
//! [`PubSubEmulator`]'s `Drop` closes the pipe and waits.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Runs the emulator (`$0`) on port `$1`, logging to `$2`, until stdin closes.
const WRAPPER: &str = r#""$0" --host=127.0.0.1 --port="$1" >"$2" 2>&1 &
p=$!
read _ignored || true
kill "$p" 2>/dev/null
wait "$p" 2>/dev/null
exit 0"#;

/// Where the Cloud SDK keeps the emulator's start script, relative to the SDK root.
const SCRIPT: &str = "platform/pubsub-emulator/bin/cloud-pubsub-emulator";

/// How to install it, for the failure message.
const INSTALL: &str = "install it with `apt-get install google-cloud-cli-pubsub-emulator` (and a Java 17 runtime) \
     or `gcloud components install pubsub-emulator`, or set SECRETSYNC_PUBSUB_EMULATOR_HOST to a running emulator; \
     scripts/setup-test-env.sh checks for it";

/// A running Pub/Sub emulator.
pub struct PubSubEmulator {
    host: String,
    process: Option<Mutex<(Child, Option<ChildStdin>)>>,
}

impl std::fmt::Debug for PubSubEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubEmulator")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

static SHARED: OnceLock<Result<PubSubEmulator, String>> = OnceLock::new();

impl PubSubEmulator {
    /// The emulator of this test process, started on first use (tests share it and use their
    /// own topic and subscription names). Panics (failing the test) with what to install
    /// when it cannot be run: a test that needs it never skips.
    pub fn shared() -> &'static PubSubEmulator {
        match SHARED.get_or_init(Self::launch) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    /// A new emulator owned by the caller, stopped when dropped. Panics when it cannot be
    /// run, like [`shared`](Self::shared).
    pub fn start() -> PubSubEmulator {
        Self::launch().unwrap_or_else(|e| panic!("{e}"))
    }

    /// `127.0.0.1:<port>`, what `PUBSUB_EMULATOR_HOST` holds.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// The emulator's start script, if installed: `SECRETSYNC_PUBSUB_EMULATOR` (a path), the
    /// Cloud SDK next to `gcloud` on PATH, or the usual install folders.
    pub fn script() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("SECRETSYNC_PUBSUB_EMULATOR") {
            return Some(PathBuf::from(p)).filter(|p| p.is_file());
        }
        let mut roots: Vec<PathBuf> = vec![];
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let gcloud = dir.join("gcloud");
                if let Ok(real) = std::fs::canonicalize(&gcloud) {
                    // <sdk>/bin/gcloud
                    if let Some(root) = real.parent().and_then(|b| b.parent()) {
                        roots.push(root.to_path_buf());
                    }
                }
            }
        }
        roots.extend(
            [
                "/usr/lib/google-cloud-sdk",
                "/usr/share/google-cloud-sdk",
                "/opt/google-cloud-sdk",
            ]
            .iter()
            .map(PathBuf::from),
        );
        roots.into_iter().map(|r| r.join(SCRIPT)).find(|p| p.is_file())
    }

    fn launch() -> Result<PubSubEmulator, String> {
        if let Ok(host) = std::env::var("SECRETSYNC_PUBSUB_EMULATOR_HOST") {
            let host = host
                .trim()
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            wait_ready(&host, Duration::from_secs(10))?;
            return Ok(PubSubEmulator { host, process: None });
        }
        let script = Self::script().ok_or_else(|| format!("the Pub/Sub emulator is not installed: {INSTALL}"))?;
        if Command::new("java")
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Err(format!(
                "the Pub/Sub emulator needs `java` (17 or newer) on PATH: {INSTALL}"
            ));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let log = std::env::temp_dir().join(format!("secretsync-pubsub-{}-{port}.log", std::process::id()));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg(&script)
            .arg(port.to_string())
            .arg(&log)
            // A small heap: tests publish a handful of messages, and the machine is shared.
            .env("CLOUD_PUBSUB_EMULATOR_OPTS", "-Xmx256m -XX:+UseSerialGC")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", script.display()))?;
        let stdin = child.stdin.take();
        let host = format!("127.0.0.1:{port}");
        let emulator = PubSubEmulator {
            host,
            process: Some(Mutex::new((child, stdin))),
        };
        wait_ready(&emulator.host, Duration::from_secs(90)).map_err(|e| format!("{e} (log: {})", log.display()))?;
        Ok(emulator)
    }

    /// Stops it now (what `Drop` does): a test can prove what a client says when its
    /// emulator is gone.
    pub fn stop(&mut self) {
        if let Some(p) = self.process.take() {
            let (mut child, stdin) = p.into_inner().unwrap_or_else(|e| e.into_inner());
            drop(stdin);
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if start.elapsed() < Duration::from_secs(10) => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
            // The port closes with the JVM.
            let start = Instant::now();
            while TcpStream::connect(&self.host).is_ok() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for PubSubEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_ready(host: &str, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if get_root(host).as_deref() == Some("Ok") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "the Pub/Sub emulator at {host} did not answer within {limit:?}"
    ))
}

/// `GET /`: the emulator answers `Ok`.
fn get_root(host: &str) -> Option<String> {
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    // The emulator may keep the connection open: stop at the end of the short body.
    let mut buf = vec![];
    let mut chunk = [0u8; 1024];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if String::from_utf8_lossy(&buf).trim_end().ends_with("Ok") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.contains(" 200 ").then(|| body.trim().to_string())
}
