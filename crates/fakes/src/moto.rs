//! moto's server (the real AWS Secrets Manager emulator from PyPI `moto[server]`), started
//! for a test process: `SECRETSYNC_MOTO_URL` when set, else `.venv/bin/moto_server` (installed
//! by `scripts/setup-test-env.sh`) on a free loopback port. A small Python wrapper holds moto
//! and stops it when this process's end of a pipe closes, so moto never outlives the tests —
//! even after a panic or a kill. Not a fake: this module only finds and runs it, with moto's
//! request recorder on, so tests count calls at the server ([`recording`]).

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
            let (status, _) = http("POST", &format!("{url}/moto-api/recorder/start-recording"), "");
            if status != 200 {
                return Err(format!("moto at {url}: start-recording answered {status}"));
            }
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
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let tmp = std::env::temp_dir();
        let log = tmp.join(format!("secretsync-moto-{}-{port}.log", std::process::id()));
        let recording = tmp.join(format!("secretsync-moto-{}-{port}.jsonl", std::process::id()));
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(WRAPPER)
            .arg(&moto)
            .arg(port.to_string())
            .arg(&log)
            .env("MOTO_ENABLE_RECORDING", "True")
            .env("MOTO_RECORDER_FILEPATH", &recording)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}; run scripts/setup-test-env.sh", moto.display()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&url, Duration::from_secs(60)).map_err(|e| format!("{e} (log: {})", log.display()))?;
        Ok(Moto {
            url,
            _process: Some(Mutex::new((child, stdin))),
        })
    }
}

fn wait_ready(url: &str, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if http("GET", &format!("{url}/moto-api/data.json"), "").0 == 200 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("moto at {url} did not answer within {limit:?}"))
}

/// A minimal blocking HTTP/1.0 request: (status, body); status 0 when unreachable.
pub fn http(method: &str, url: &str, body: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let Ok(mut s) = TcpStream::connect(host) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut buf = vec![];
    if s.read_to_end(&mut buf).is_err() {
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// One request moto recorded.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The operation (`BatchGetSecretValue`), from `X-Amz-Target` or the `Action` form field.
    pub op: String,
    /// The request body, decoded.
    pub body: String,
}

/// Every request the shared moto recorded so far, in order.
pub fn recording() -> Vec<Recorded> {
    use base64::Engine as _;
    let (status, text) = http(
        "GET",
        &format!("{}/moto-api/recorder/download-recording", Moto::shared().url()),
        "",
    );
    assert_eq!(status, 200, "download-recording");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("recording line is JSON");
            let mut body = v["body"].as_str().unwrap_or("").to_string();
            if v["body_encoded"].as_bool() == Some(true) {
                body = String::from_utf8_lossy(
                    &base64::engine::general_purpose::STANDARD
                        .decode(&body)
                        .unwrap_or_default(),
                )
                .to_string();
            }
            let target = v["headers"].as_object().and_then(|h| {
                h.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
                    .and_then(|(_, v)| v.as_str().map(str::to_string))
            });
            let op = match target {
                Some(t) => t.rsplit('.').next().unwrap_or("").to_string(),
                None => body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("Action="))
                    .map(str::to_string)
                    .unwrap_or_else(|| "Unknown".into()),
            };
            Recorded { op, body }
        })
        .collect()
}
