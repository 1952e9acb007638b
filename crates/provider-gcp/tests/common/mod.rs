//! Test peers: drongo (a Secret Manager emulator from PyPI, started once per test binary)
//! and the fake in `secretsync_fakes::gcp`, both reached over loopback through the real client.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use secretsync_gcp::{GcpSecretManager, GcpSecretManagerBuilder};

/// A unique, valid project id / name prefix for one test.
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{tag}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn drongo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/drongo")
}

fn healthy(host: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET /drongo/health HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
}

/// Keeps the watchdog's stdin open for the life of the test binary: when the binary exits,
/// the pipe closes, `read` returns and the watchdog kills drongo.
struct Drongo {
    host: String,
    _child: Option<Child>,
    _stdin: Option<ChildStdin>,
}

static DRONGO: OnceLock<Mutex<Drongo>> = OnceLock::new();

/// `host:port` of a running drongo: `SECRETSYNC_DRONGO_HOST`, or one started on
/// 127.0.0.1:<free port>. Panics (fails the test) when it cannot be started.
pub fn drongo_host() -> String {
    let d = DRONGO.get_or_init(|| Mutex::new(start_drongo()));
    d.lock().unwrap().host.clone()
}

fn start_drongo() -> Drongo {
    if let Ok(h) = std::env::var("SECRETSYNC_DRONGO_HOST") {
        assert!(
            healthy(&h),
            "SECRETSYNC_DRONGO_HOST={h} does not answer GET /drongo/health"
        );
        return Drongo {
            host: h,
            _child: None,
            _stdin: None,
        };
    }
    let bin = drongo_bin();
    assert!(
        bin.exists(),
        "drongo (the Secret Manager emulator) is not installed at {}: run scripts/setup-test-env.sh",
        bin.display()
    );
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let host = format!("127.0.0.1:{port}");
    // The shell is a watchdog: it starts drongo, waits for its stdin to close (this
    // process exiting, however it exits) and then kills drongo.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" server --host 127.0.0.1 --port "$1" >/dev/null 2>&1 & p=$!; read _unused; kill $p"#)
        .arg(&bin)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start drongo ({}): {e}; run scripts/setup-test-env.sh",
                bin.display()
            )
        });
    let stdin = child.stdin.take();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthy(&host) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("drongo exited ({status}) before answering on {host}: run scripts/setup-test-env.sh");
        }
        assert!(
            Instant::now() < deadline,
            "drongo did not answer on {host} within 30 s: run scripts/setup-test-env.sh"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Drongo {
        host,
        _child: Some(child),
        _stdin: stdin,
    }
}

/// A builder for an emulator at `host` (plain HTTP, anonymous) in a fresh project.
pub fn builder_for(host: &str, project: &str) -> GcpSecretManagerBuilder {
    GcpSecretManagerBuilder::new()
        .with_emulator_host(host)
        .with_project_id(project)
}

/// A source against drongo, in its own project.
pub fn drongo_source(project: &str) -> GcpSecretManager {
    builder_for(&drongo_host(), project).build().expect("build")
}
