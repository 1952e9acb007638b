//! The `secretsync sync` daemon as a child process, for tests and benchmarks that drive it
//! over HTTP (`--listen 127.0.0.1:0`) and read its JSON reports: started with
//! [`DaemonProcess::start`], killed on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `secretsync sync --format json --listen 127.0.0.1:0` and its reports.
#[derive(Debug)]
pub struct DaemonProcess {
    child: Child,
    reports: mpsc::Receiver<serde_json::Value>,
    /// `http://127.0.0.1:<port>`, where it listens.
    pub url: String,
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DaemonProcess {
    /// Starts `bin sync --format json --listen 127.0.0.1:0 -m <manifest> <args>` with
    /// `envs` (and `RUST_LOG=warn`), waits until it says where it listens, then for its
    /// first report. Its stderr is echoed with a `daemon:` prefix. Panics when it does not
    /// start or report within a minute.
    pub fn start(bin: &str, manifest: &Path, args: &[&str], envs: &[(&str, String)]) -> (Self, serde_json::Value) {
        let mut cmd = Command::new(bin);
        cmd.args(["sync", "--format", "json", "--listen", "127.0.0.1:0", "-m"])
            .arg(manifest)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the secretsync binary starts");
        let (tx, reports) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let (addr_tx, addr_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on ") {
                    let _ = addr_tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                }
                eprintln!("daemon: {line}");
            }
        });
        let url = addr_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the daemon says where it listens");
        let d = Self { child, reports, url };
        let first = d.next_report(Duration::from_secs(60)).expect("a first cycle");
        (d, first)
    }

    /// The next report, if one arrives within `within`.
    pub fn next_report(&self, within: Duration) -> Option<serde_json::Value> {
        self.reports.recv_timeout(within).ok()
    }

    /// Every report arriving within `within`.
    pub fn reports_within(&self, within: Duration) -> Vec<serde_json::Value> {
        let end = Instant::now() + within;
        let mut out = vec![];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.reports.recv_timeout(left) {
                Ok(r) => out.push(r),
                Err(_) => break,
            }
        }
        out
    }
}
