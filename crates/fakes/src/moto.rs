//! moto's server (the real AWS Secrets Manager emulator from PyPI `moto[server]`), started
//! for a test process: `SECRETSYNC_MOTO_URL` when set, else `.venv/bin/moto_server` (installed
//! by `scripts/setup-test-env.sh`) on a free loopback port. A small Python wrapper holds moto
//! and stops it when this process's end of a pipe closes, so moto never outlives the tests —
//! even after a panic or a kill. Not a fake: this module only finds and runs it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const WRAPPER: &str = r#"
import subprocess, sys
log = open(sys.argv[3], "ab")
p = subprocess.Popen([sys.argv[1], "-H", "127.0.0.1", "-p", sys.argv[2]], stdout=log, stderr=log)
try:
    sys.stdin.read()
finally:
    p.terminate()
    try:
        p.wait(5)
    except Exception:
        p.kill()
"#;

/// A running moto server.
pub struct Moto {
    url: String,
    _process: Option<Mutex<(Child, ChildStdin)>>,
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moto").field("url", &self.url).finish_non_exhaustive()
    }
}

static SHARED: OnceLock<Result<Moto, String>> = OnceLock::new();

impl Moto {
    /// The moto of this process, started on first use. Panics (failing the test) with
    /// what to do when moto cannot be run: a test that needs moto never skips.
    pub fn shared() -> &'static Moto {
        match SHARED.get_or_init(Self::start) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// Base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn start() -> Result<Moto, String> {
        if let Ok(url) = std::env::var("SECRETSYNC_MOTO_URL") {
            let url = url.trim_end_matches('/').to_string();
            wait_ready(&url, Duration::from_secs(10))?;
            return Ok(Moto { url, _process: None });
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = root.join(".venv/bin/python");
        let moto = root.join(".venv/bin/moto_server");
        if !moto.exists() || !python.exists() {
            return Err(format!(
                "moto is not installed ({} missing) and SECRETSYNC_MOTO_URL is not set: run scripts/setup-test-env.sh",
                moto.display()
            ));
        }
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| format!("no free port: {e}"))?.port();
        let log = std::env::temp_dir().join(format!("secretsync-moto-{}-{port}.log", std::process::id()));
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(WRAPPER)
            .arg(&moto)
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}; run scripts/setup-test-env.sh", moto.display()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&url, Duration::from_secs(60)).map_err(|e| format!("{e} (log: {})", log.display()))?;
        Ok(Moto { url, _process: Some(Mutex::new((child, stdin))) })
    }
}

fn wait_ready(url: &str, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    let addr = url.strip_prefix("http://").unwrap_or(url).to_string();
    while start.elapsed() < limit {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET /moto-api/data.json HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            let mut buf = Vec::new();
            if s.write_all(req.as_bytes()).is_ok() && s.read_to_end(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                let head = String::from_utf8_lossy(&buf[..buf.len().min(16)]).to_string();
                if head.contains(" 200") {
                    return Ok(());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("moto at {url} did not answer within {limit:?}"))
}
