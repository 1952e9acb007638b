//! moto's server for the tests: `SECRETSYNC_MOTO_URL`, else `.venv/bin/moto_server` started
//! once per test binary on a free port (recording requests), stopped when the binary exits.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use provider_aws::{AwsSecretsManager, AwsSecretsManagerBuilder};

struct Server {
    url: String,
    // Held for the life of the process: when the test binary exits, the pipe closes and
    // the wrapper stops moto (even after a panic or a kill).
    _process: Option<Mutex<(Child, ChildStdin)>>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

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

/// The base URL of moto (`http://127.0.0.1:<port>`). Panics, failing the test, when moto
/// cannot be used.
pub fn moto_url() -> String {
    match SERVER.get_or_init(start) {
        Ok(s) => s.url.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn start() -> Result<Server, String> {
    if let Ok(url) = std::env::var("SECRETSYNC_MOTO_URL") {
        let url = url.trim_end_matches('/').to_string();
        wait_ready(&url, Duration::from_secs(10))?;
        let (status, _) = http("POST", &format!("{url}/moto-api/recorder/start-recording"), "");
        if status != 200 {
            return Err(format!("moto at {url}: start-recording answered {status}"));
        }
        return Ok(Server { url, _process: None });
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
    let recording = tmp.join(format!("secretsync-aws-moto-{}-{port}.jsonl", std::process::id()));
    let log = tmp.join(format!("secretsync-aws-moto-{}-{port}.log", std::process::id()));
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
    Ok(Server {
        url,
        _process: Some(Mutex::new((child, stdin))),
    })
}

fn wait_ready(url: &str, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let (status, _) = http("GET", &format!("{url}/moto-api/data.json"), "");
        if status == 200 {
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

/// Every request moto recorded so far, in order.
pub fn recording() -> Vec<Recorded> {
    let (status, text) = http(
        "GET",
        &format!("{}/moto-api/recorder/download-recording", moto_url()),
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

/// Requests recorded after `mark` (a length of [`recording`]) whose body mentions `needle`.
pub fn recorded_since(mark: usize, needle: &str) -> Vec<Recorded> {
    recording()
        .into_iter()
        .skip(mark)
        .filter(|r| r.body.contains(needle))
        .collect()
}

/// How many of `recs` are `op`.
pub fn count(recs: &[Recorded], op: &str) -> usize {
    recs.iter().filter(|r| r.op == op).count()
}

/// A random name prefix, so tests run in parallel on one server.
pub fn prefix() -> String {
    format!("t{:08x}-", rand::random::<u32>())
}

/// A builder pointed at moto with dummy credentials, reading nothing from the environment.
pub fn builder() -> AwsSecretsManagerBuilder {
    AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(moto_url())
        .with_credentials("testing", "testing".into())
}

/// A fresh source on moto (its own call counts).
pub async fn source() -> AwsSecretsManager {
    builder().build().await.expect("build source")
}
